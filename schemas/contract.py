"""The wire contract as JSON Schema: one document per record type, generated from the records.

Why generated: the records in :mod:`.events` (their fields, which ones have defaults) and the
limits in :mod:`.fields` are the source of truth; this module only says, per field, which check
it gets, using the same constants, and turns that into JSON Schema (draft 2020-12). The documents
kept in ``schemas/json/`` are this module's output; ``tests/unit/test_contract.py`` fails when
they drift from it or from the records, and checks over property-based cases that a JSON Schema
validator accepts every record the decoder accepts and refuses what the decoder refuses.

The schemas describe the JSON form of a message. The msgpack form is the same map, except that an
embedding's ``vector`` may be a bin of little-endian float32 and a dead letter's ``key`` and
``value`` are bins (base64 strings in JSON).

A few rules of the decoder cannot be written in JSON Schema; they are listed in
:data:`NOT_EXPRESSIBLE` (and in each schema's ``$comment``), so the property test knows them.

>>> s = schema("click")
>>> s["required"], s["properties"]["ts"]["exclusiveMaximum"]
(['type', 'v', 'user', 'item', 'ts'], 4102444800.0)
>>> sorted(SCHEMAS) == sorted(RECORD_TYPES)
True
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from typing import Any

from .codec import to_mapping
from .events import (
    RECORD_TYPES,
    Click,
    DeadLetter,
    EnrichRequest,
    Item,
    ItemEmbedding,
    ItemTags,
    Rating,
    RecommendationList,
    SeenItems,
    SimilarItems,
)
from .fields import (
    FLOAT32_MAX,
    MAX_ATTR_KEY_LEN,
    MAX_ATTR_LIST_LEN,
    MAX_ATTR_VALUE_LEN,
    MAX_ATTRIBUTES,
    MAX_HASH_LEN,
    MAX_ID_LEN,
    MAX_MODEL_LEN,
    MAX_PAYLOAD_BYTES,
    MAX_REASON_LEN,
    MAX_RECS,
    MAX_SEEN,
    MAX_TAG_LEN,
    MAX_TAGS,
    MAX_TEXT_LEN,
    MAX_TITLE_LEN,
    MAX_TOPIC_LEN,
    MAX_VECTOR_DIM,
    RATING_MAX,
    RATING_MIN,
    TS_MAX,
    TS_MIN,
)

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://streamrec.dev/schemas/"
FLOAT_MAX = 1.7976931348623157e308

#: decoder rules JSON Schema cannot state; each is a substring of the reason the decoder gives
NOT_EXPRESSIBLE = {
    "repeats": "the keys of [str, score] pairs (items, tags) must be distinct",
    "outside int64": "an integer attribute must fit int64 (JSON Schema does not tell 1e19 from 10000000000000000000)",
    "lone surrogate": "strings must be encodable as UTF-8 (no lone surrogate escapes such as \\ud800)",
    "v: expected int": "the schema version is an integer literal (JSON Schema takes 1.0 for 1)",
}


# -- field kinds: each mirrors one check in fields.py ----------------------------------------------


def _str(max_len: int, empty: bool = False, description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "minLength": 0 if empty else 1, "maxLength": max_len}
    if description:
        out["description"] = description
    return out


def _id(what: str) -> dict[str, Any]:
    return _str(MAX_ID_LEN, description=f"{what} id (also the Kafka key where the topic is keyed by it)")


def _number(lo: float = -FLOAT_MAX, hi: float = FLOAT_MAX, description: str = "") -> dict[str, Any]:
    return {"type": "number", "minimum": lo, "maximum": hi, **({"description": description} if description else {})}


_TS = {"type": "number", "exclusiveMinimum": TS_MIN, "exclusiveMaximum": TS_MAX,
       "description": "epoch seconds (not milliseconds); ints are taken as floats"}  # fmt: skip


def _pairs(max_len: int, max_key_len: int, what: str) -> dict[str, Any]:
    return {
        "type": "array",
        "maxItems": max_len,
        "description": f"ranked [{what}, score] pairs, {what}s distinct",
        "items": {"type": "array", "minItems": 2, "maxItems": 2,
                  "prefixItems": [_str(max_key_len), _number()]},  # fmt: skip
    }


_ATTRIBUTES = {
    "type": "object",
    "maxProperties": MAX_ATTRIBUTES,
    "propertyNames": {"minLength": 1, "maxLength": MAX_ATTR_KEY_LEN},
    "additionalProperties": {
        "anyOf": [
            _str(MAX_ATTR_VALUE_LEN, empty=True),
            {"type": "boolean"},
            _number(description="integers must fit int64"),
            {"type": "array", "maxItems": MAX_ATTR_LIST_LEN, "items": _str(MAX_ATTR_VALUE_LEN, empty=True)},
        ]
    },
    "description": "item attributes used for content and filters (e.g. category, genres, year)",
}

#: a base64 string (standard alphabet, with padding) of at most MAX_PAYLOAD_BYTES bytes
_BASE64 = {
    "type": "string",
    "contentEncoding": "base64",
    "maxLength": 4 * -(-MAX_PAYLOAD_BYTES // 3),
    "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
}

FIELDS: dict[type, dict[str, dict[str, Any]]] = {
    Click: {"user": _id("user"), "item": _id("item"), "ts": _TS},
    Rating: {"user": _id("user"), "item": _id("item"), "rating": _number(RATING_MIN, RATING_MAX), "ts": _TS},
    Item: {
        "item": _id("item"),
        "title": _str(MAX_TITLE_LEN, empty=True, description="required (not blank) unless deleted"),
        "text": _str(MAX_TEXT_LEN, empty=True),
        "attributes": _ATTRIBUTES,
        "ts": _TS,
        "deleted": {"type": "boolean", "description": "true: remove the item from every list"},
    },
    EnrichRequest: {
        "item": _id("item"), "content_hash": _str(MAX_HASH_LEN), "title": _str(MAX_TITLE_LEN, empty=True),
        "text": _str(MAX_TEXT_LEN, empty=True), "attributes": _ATTRIBUTES, "ts": _TS,
    },
    ItemEmbedding: {
        "item": _id("item"), "model": _str(MAX_MODEL_LEN), "content_hash": _str(MAX_HASH_LEN),
        "vector": {"type": "array", "minItems": 1, "maxItems": MAX_VECTOR_DIM,
                   "items": _number(-FLOAT32_MAX, FLOAT32_MAX),
                   "description": "float32 values (a bin of little-endian float32 in msgpack)"},
        "ts": _TS,
    },
    ItemTags: {
        "item": _id("item"), "model": _str(MAX_MODEL_LEN), "content_hash": _str(MAX_HASH_LEN),
        "tags": _pairs(MAX_TAGS, MAX_TAG_LEN, "tag"), "ts": _TS,
    },
    RecommendationList: {
        "user": _id("user"), "items": _pairs(MAX_RECS, MAX_ID_LEN, "item"),
        "model_version": _str(MAX_MODEL_LEN), "generated_at": _TS, "config_digest": _str(MAX_HASH_LEN),
    },
    SimilarItems: {
        "item": _id("item"), "items": _pairs(MAX_RECS, MAX_ID_LEN, "item"),
        "model_version": _str(MAX_MODEL_LEN), "generated_at": _TS, "config_digest": _str(MAX_HASH_LEN),
    },
    SeenItems: {
        "user": _id("user"),
        "items": {"type": "array", "maxItems": MAX_SEEN, "items": _str(MAX_ID_LEN),
                  "description": "item ids, most recent last"},
        "ts": _TS,
    },
    DeadLetter: {
        "topic": _str(MAX_TOPIC_LEN), "key": {"anyOf": [{"type": "null"}, _BASE64]}, "value": _BASE64,
        "reason": _str(MAX_REASON_LEN), "ts": _TS,
        "partition": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}],
                      "description": "the original's partition (null: unknown)"},
        "offset": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}],
                   "description": "the original's offset (null: unknown)"},
        "size": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}],
                 "description": "the original value's size in bytes, before any cut"},
        "truncated": {"type": "boolean", "description": "true: key or value cut short to fit"},
    },
}  # fmt: skip

#: one example per record type: in the schemas (``examples``) and the README reference
EXAMPLES: dict[type, Any] = {
    Click: Click("u42", "i9", 1_700_000_000.0),
    Rating: Rating("u42", "i9", 4.5, 1_700_000_000.0),
    Item: Item("i9", "Heat", "A heist thriller.", {"category": "film", "year": 1995}, ts=1_700_000_000.0),
    EnrichRequest: EnrichRequest.for_item(Item("i9", "Heat", ts=1.0), 1_700_000_000.0),
    ItemEmbedding: ItemEmbedding("i9", "all-MiniLM-L6-v2", "ab" * 16, (0.25, -0.5, 1.0), 1_700_000_000.0),
    ItemTags: ItemTags("i9", "all-MiniLM-L6-v2", "ab" * 16, (("heist", 0.9), ("crime", 0.7)), 1_700_000_000.0),
    RecommendationList: RecommendationList("u42", (("i9", 2.5), ("i3", 1.0)), "streamrec-blend.7",
                                           1_700_000_000.0, "5a02bd6f2077"),  # fmt: skip
    SimilarItems: SimilarItems("i9", (("i3", 0.8), ("i7", 0.5)), "streamrec-blend.7", 1_700_000_000.0,
                               "5a02bd6f2077"),  # fmt: skip
    SeenItems: SeenItems("u42", ("i3", "i9"), 1_700_000_000.0),
    DeadLetter: DeadLetter("events.clicks", b"u42", b"{}", "type: missing (json)", 1_700_000_000.0),
}


def _conditions(cls: type) -> dict[str, Any]:
    """Cross-field rules: an item upsert needs a title that is not blank."""
    if cls is Item:
        return {"if": {"required": ["deleted"], "properties": {"deleted": {"const": True}}},
                "else": {"required": ["title"], "properties": {"title": {"pattern": "\\S"}}}}  # fmt: skip
    return {}


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema of record type ``name`` (``click``, ``item``, ...)."""
    cls = RECORD_TYPES[name]
    specs = FIELDS[cls]
    props: dict[str, Any] = {
        "type": {"const": cls.TYPE},
        "v": {"const": cls.VERSION, "description": "schema version; required on the wire"},
    }
    required = ["type", "v"]
    for f in fields(cls):
        props[f.name] = specs[f.name]  # a KeyError here: a field without a spec (drift)
        if f.default is MISSING and f.default_factory is MISSING:
            required.append(f.name)
        elif f.default is not MISSING and not isinstance(f.default, (str, bool, int, float)):
            props[f.name] = {**specs[f.name], "default": {}}
        elif f.default is not MISSING:
            props[f.name] = {**specs[f.name], "default": f.default}
    unused = specs.keys() - props.keys()
    if unused:
        raise KeyError(f"specs for fields {sorted(unused)} that {cls.__name__} does not have")
    doc = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "`")
    return {
        "$schema": DIALECT,
        "$id": f"{BASE_ID}{name}.json",
        "title": cls.__name__,
        "description": doc,
        "$comment": "Not expressible here, checked by the decoder: " + "; ".join(NOT_EXPRESSIBLE.values()),
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
        **_conditions(cls),
        "examples": [to_mapping(EXAMPLES[cls])],
    }


SCHEMAS: dict[str, dict[str, Any]] = {name: schema(name) for name in RECORD_TYPES}


def dumps(doc: dict[str, Any]) -> str:
    """The canonical text of a schema file (what ``schemas/json/*.json`` hold)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def reference_rows(name: str) -> list[tuple[str, str, str, str]]:
    """(field, type, required, limits) rows for the README reference of record type ``name``.

    >>> reference_rows("click")[2]
    ('user', 'string', 'yes', '1 to 256 chars')
    """
    doc = SCHEMAS[name]
    rows = []
    for field, spec in doc["properties"].items():
        req = "yes" if field in doc["required"] else f"no (default {json.dumps(spec['default'])})"
        rows.append((field, _type(spec), req, _limits(spec)))
    return rows


def _type(spec: dict[str, Any]) -> str:
    if "const" in spec:
        return f"const {json.dumps(spec['const'])}"
    if "anyOf" in spec:
        return " or ".join(_type(s) for s in spec["anyOf"])
    t = spec.get("type", "any")
    if t == "array" and "prefixItems" in spec.get("items", {}):
        return "array of [string, number]"
    if t == "array":
        return f"array of {_type(spec['items'])}"
    if t == "object":
        return "object"
    return t


def _limits(spec: dict[str, Any]) -> str:
    if spec.get("type") == "string" and "maxLength" in spec:
        if spec.get("contentEncoding") == "base64":
            return f"base64, at most {MAX_PAYLOAD_BYTES} bytes decoded"
        return f"{spec['minLength']} to {spec['maxLength']} chars"
    if "exclusiveMinimum" in spec:
        return f"({spec['exclusiveMinimum']:.0f}, {spec['exclusiveMaximum']:.0f}), epoch seconds"
    if spec.get("type") == "number" and spec.get("maximum") != FLOAT_MAX:
        return f"[{spec['minimum']:g}, {spec['maximum']:g}]"
    if spec.get("type") == "array":
        lo = spec.get("minItems", 0)
        return f"{lo} to {spec['maxItems']} entries"
    if spec.get("type") == "object":
        return (f"at most {spec['maxProperties']} keys of 1 to {MAX_ATTR_KEY_LEN} chars; values string, "
                f"number, bool or list of strings")  # fmt: skip
    return spec.get("description", "")[:60] if "anyOf" in spec else ""


#: the topic each record type travels on, for the README reference (Redis values are listed too)
WHERE = {
    "click": "`events.clicks` (key: user)", "rating": "`events.ratings` (key: user)",
    "item": "`catalog.items` (key: item; Redis `item:{item}` keeps it for filters, without `text`)", "enrich": "`items.enrich` (key: item)",
    "embedding": "`items.embeddings` (key: item)", "tags": "`items.tags` (key: item)",
    "recs": "Redis `rec:{user}` (msgpack)", "similar": "Redis `sim:{item}` (msgpack)",
    "seen": "Redis `seen:{user}` (msgpack)", "deadletter": "`events.deadletter` (key: original key)",
}  # fmt: skip


def reference_markdown() -> str:
    """The README's per-topic reference: a table and a JSON example per record type."""
    parts = []
    for name, doc in SCHEMAS.items():
        parts.append(f"**`{name}`** on {WHERE.get(name, name)}: {doc['description']}\n")
        parts.append("| field | type | required | limits |\n| --- | --- | --- | --- |")
        for field, typ, req, limits in reference_rows(name):
            parts.append(f"| `{field}` | {typ} | {req} | {limits} |")
        parts.append(f"\nExample: `{json.dumps(doc['examples'][0], separators=(', ', ': '))}`\n")
    return "\n".join(parts)
