"""Records to bytes and back: msgpack or JSON on the wire, plain dicts for JSON and the CLI.

A wire message is a map ``{"type": <name>, "v": <version>, **fields}``, as msgpack (what streamrec
itself writes, and every Redis value) or as a JSON object (what other languages' producers and
Kafka's console producer most easily send). :func:`decode` tells them apart per message: a
``content-type`` header when there is one, else the first byte, which is unambiguous: a JSON
object starts with ``{`` (after optional whitespace), and no msgpack map does (``{`` and the
whitespace bytes are msgpack positive ints). Both formats then go through the same checks and give
the same reasons; only a parse failure names its format. Embedding vectors travel as one bin of little-endian float32 (4 bytes a
dimension rather than 9). :func:`decode` turns *any* input into a record or a :class:`SchemaError`,
never another exception: consumers dead-letter on exactly one exception type. Decoding builds the
record through its constructor, so the checks in :mod:`.events` (written once in :mod:`.fields`) are
the only ones; the wire-only conversions (vector bytes, base64 in JSON) happen here first.

In :func:`to_mapping` output vectors are lists of floats and a dead letter's ``key``/``value`` are
standard base64 strings (with padding); :func:`from_mapping` accepts those or raw bytes.

>>> click = Click("u1", "i9", 1_700_000_000)
>>> decode(encode(click)) == click
True
>>> to_mapping(click)
{'type': 'click', 'v': 1, 'user': 'u1', 'item': 'i9', 'ts': 1700000000.0}
>>> from_mapping({"type": "click", "user": "u1", "item": "i9", "ts": 1700000000}) == click
True
>>> decode(encode(click), expected=Rating)
Traceback (most recent call last):
...
streamrec.schemas.fields.SchemaError: type: expected rating, got click
>>> decode(encode(click)[:-3])
Traceback (most recent call last):
...
streamrec.schemas.fields.SchemaError: <payload>: not valid msgpack (Unpack failed: incomplete input)
>>> decode(b'{"type": "click", "v": 1, "user": "u1", "item": "i9", "ts": 1700000000}') == click
True
>>> decode(b'{"type": "click", "v": 1, "user": "u1", "ts": 1700000000}')
Traceback (most recent call last):
...
streamrec.schemas.fields.SchemaError: item: missing (required for 'click')
>>> wire_format(b' {"type": "click"}'), wire_format(encode(click)), wire_format(b"x", "application/json")
('json', 'msgpack', 'json')
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Annotated, Any, Literal

import msgpack
import msgspec
import numpy as np

from .events import (
    RECORD_TYPES,
    SCHEMA_VERSION,
    Click,  # noqa: F401  (doctests)
    DeadLetter,
    ItemEmbedding,
    Rating,  # noqa: F401  (doctests)
    Record,
    RecommendationList,
    SimilarItems,
)
from .fields import (
    MAX_ATTRIBUTES,
    MAX_HASH_LEN,
    MAX_ID_LEN,
    MAX_MODEL_LEN,
    MAX_PAYLOAD_BYTES,
    MAX_RECS,
    MAX_TEXT_LEN,
    MAX_VECTOR_DIM,
    TS_MAX,
    TS_MIN,
    Attributes,
    SchemaError,
)

__all__ = ["JSON", "MSGPACK", "SCHEMA_VERSION", "content_type", "decode", "encode", "from_mapping", "to_mapping", "wire_format"]

PAYLOAD = "<payload>"
JSON, MSGPACK = "json", "msgpack"
#: ``content-type`` header values (parameters such as ``; charset=utf-8`` ignored) -> wire format
CONTENT_TYPES = {
    "application/json": JSON,
    "text/json": JSON,
    "application/msgpack": MSGPACK,
    "application/x-msgpack": MSGPACK,
    "application/vnd.msgpack": MSGPACK,
}
_JSON_WS = b" \t\r\n"
_JSON_DECODER = msgspec.json.Decoder()
#: a JSON message may spell a maximal msgpack one in base64 with escapes; more is refused unparsed
MAX_JSON_BYTES = 4 * MAX_PAYLOAD_BYTES

#: Generous enough for every valid record, small enough that no header can make us allocate much.
_UNPACK = dict(
    raw=False,
    strict_map_key=True,
    use_list=True,  # arrays are lists, as JSON arrays are: the same type names in reasons
    max_str_len=4 * MAX_TEXT_LEN,  # UTF-8 is at most 4 bytes a char
    max_bin_len=MAX_PAYLOAD_BYTES,
    max_array_len=MAX_VECTOR_DIM,
    max_map_len=2 * MAX_ATTRIBUTES,
    max_ext_len=0,  # no extension types (nor msgpack Timestamps) in this schema
)

_MISSING = object()
_FIELDS: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in fields(cls)) for cls in RECORD_TYPES.values()}
_REQUIRED: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls) if f.default is f.default_factory)  # both MISSING
    for cls in RECORD_TYPES.values()
}
_ALLOWED: dict[type, frozenset[str]] = {cls: frozenset(("type", "v", *names)) for cls, names in _FIELDS.items()}


def _vector_in(value: Any) -> Any:
    """Wire bin of little-endian float32 -> array (the constructor checks it); lists pass through."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        if not value or len(value) % 4 or len(value) > 4 * MAX_VECTOR_DIM:
            raise SchemaError("vector", f"{len(value)} bytes is not 1 to {MAX_VECTOR_DIM} float32 values")
        return np.frombuffer(value, dtype="<f4")
    return value


def _base64_in(name: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise SchemaError(name, "is not valid base64") from None
        return value

    return convert


_FROM: dict[type, dict[str, Callable[[Any], Any]]] = {
    ItemEmbedding: {"vector": _vector_in},
    DeadLetter: {"key": _base64_in("key"), "value": _base64_in("value")},
}


def _pairs_out(pairs: tuple[Any, ...]) -> list[Any]:
    """Pairs as JSON arrays; plain ids (a seen list's items) stay as they are."""
    return [list(p) if type(p) is tuple else p for p in pairs]


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


#: field name -> conversion to msgpack-able / to JSON-able values (the rest is already both)
_TO_WIRE: dict[str, Callable[[Any], Any]] = {
    "attributes": lambda a: dict(a.items()),
    "vector": lambda v: struct.pack(f"<{len(v)}f", *v),
}
_TO_JSON: dict[str, Callable[[Any], Any]] = {
    "attributes": Attributes.to_dict,
    "vector": list,
    "items": _pairs_out,
    "tags": _pairs_out,
    "key": _b64,
    "value": _b64,
}


def _fields_of(record: Record, convert: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    cls = type(record)
    if cls not in _FIELDS:
        raise TypeError(f"not a streamrec record: {cls.__name__}")
    out: dict[str, Any] = {"type": cls.TYPE, "v": cls.VERSION}
    for name in _FIELDS[cls]:
        value = getattr(record, name)
        fn = convert.get(name)
        out[name] = value if fn is None else fn(value)
    return out


def encode(record: Record) -> bytes:
    """The record as a msgpack map with its ``type`` and ``v``; a TypeError for a non-record."""
    return msgpack.packb(_fields_of(record, _TO_WIRE), use_bin_type=True)


def to_mapping(record: Record) -> dict[str, Any]:
    """A plain, JSON-serialisable dict with ``type`` and ``v`` (see the module docstring)."""
    return _fields_of(record, _TO_JSON)


def _name(key: Any) -> str:
    return key if isinstance(key, str) else repr(key)


def _build(obj: Mapping[Any, Any], default_version: Any) -> Record:
    """The one path from a mapping (decoded or given) to a checked record."""
    tname = obj.get("type", _MISSING)
    if tname is _MISSING:
        raise SchemaError("type", "missing")
    if type(tname) is not str:
        raise SchemaError("type", f"expected str, got {type(tname).__name__}")
    cls = RECORD_TYPES.get(tname)
    if cls is None:
        raise SchemaError("type", f"unknown record type {tname[:60]!r} (known: {', '.join(RECORD_TYPES)})")
    v = obj.get("v", default_version)
    if v is _MISSING:
        raise SchemaError("v", "missing")
    if type(v) is not int:
        raise SchemaError("v", f"expected int, got {type(v).__name__}")
    if v != cls.VERSION:
        raise SchemaError("v", f"unsupported schema version {v} for {tname!r}")
    extra = obj.keys() - _ALLOWED[cls]
    if extra:
        names = sorted(map(_name, extra))
        also = f" (also: {', '.join(names[1:])})" if len(names) > 1 else ""
        raise SchemaError(names[0][:100], f"unknown field for {tname!r}{also}"[:500])
    for name in _REQUIRED[cls]:
        if name not in obj:
            raise SchemaError(name, f"missing (required for {tname!r})")
    kwargs = {name: obj[name] for name in _FIELDS[cls] if name in obj}
    for name, convert in _FROM.get(cls, {}).items():
        if name in kwargs:
            kwargs[name] = convert(kwargs[name])
    return cls(**kwargs)


def from_mapping(data: Mapping[str, Any]) -> Record:
    """A record from a dict such as a parsed JSON line; ``v`` defaults to the current version.

    >>> from_mapping({"type": "click", "user": "u1", "ts": 1})
    Traceback (most recent call last):
    ...
    streamrec.schemas.fields.SchemaError: item: missing (required for 'click')
    >>> from_mapping({"type": "click", "v": 7, "user": "u1", "item": "i9", "ts": 1})
    Traceback (most recent call last):
    ...
    streamrec.schemas.fields.SchemaError: v: unsupported schema version 7 for 'click'
    """
    if not isinstance(data, Mapping):
        raise SchemaError(PAYLOAD, f"expected a mapping, got {type(data).__name__}")
    return _build(data, SCHEMA_VERSION)


# -- the read path's fast lane: lists in Redis -------------------------------------------------------
#
# Readers fetch ranked lists (``rec:{user}``, ``sim:{item}``) on every request, where validating 50
# pairs in Python costs more than the Redis GET itself. msgspec checks the same rules in C: each
# Struct below states exactly the checks of its record in events.py (types, lengths, finite scores,
# timestamp range, no unknown field); distinct keys are checked after. Anything it refuses goes the
# ordinary way, which accepts or words the reason as always: the lane only ever says "valid".

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
_Score = Annotated[float, msgspec.Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)]
_Model = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_MODEL_LEN)]
_Digest = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_HASH_LEN)]
_Ts = Annotated[float, msgspec.Meta(gt=TS_MIN, lt=TS_MAX)]
#: decoded straight into the record's tuple of pairs (no copy after)
_Pairs = Annotated[tuple[tuple[_Id, _Score], ...], msgspec.Meta(max_length=MAX_RECS)]


class _RecsWire(msgspec.Struct, tag_field="type", tag="recs", forbid_unknown_fields=True):
    v: Literal[SCHEMA_VERSION]
    user: _Id
    items: _Pairs
    model_version: _Model
    generated_at: _Ts
    config_digest: _Digest


class _SimilarWire(msgspec.Struct, tag_field="type", tag="similar", forbid_unknown_fields=True):
    v: Literal[SCHEMA_VERSION]
    item: _Id
    items: _Pairs
    model_version: _Model
    generated_at: _Ts
    config_digest: _Digest


_FAST: dict[type, tuple[Any, tuple[str, ...]]] = {
    RecommendationList: (msgspec.msgpack.Decoder(_RecsWire), ("user", "model_version", "generated_at",
                                                             "config_digest")),
    SimilarItems: (msgspec.msgpack.Decoder(_SimilarWire), ("item", "model_version", "generated_at",
                                                          "config_digest")),
}  # fmt: skip


def _fast(cls: type, data: bytes) -> Record | None:
    """The record when msgspec finds it valid, else ``None`` (the ordinary path then decides)."""
    decoder, names = _FAST[cls]
    try:
        wire = decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    items = wire.items
    if len({key for key, _ in items}) != len(items):
        return None  # a repeated key: let the ordinary path say so
    record = object.__new__(cls)  # every field checked above: build it without checking again
    for name in names:
        _setattr(record, name, getattr(wire, name))
    _setattr(record, "items", items)
    return record


_setattr = object.__setattr__


def content_type(headers) -> bytes | None:
    """The ``content-type`` header's value (any case) among Kafka message headers, if any.

    >>> content_type([("trace", b"1"), ("Content-Type", b"application/json")])
    b'application/json'
    """
    for name, value in headers or ():
        if name.lower() == "content-type":
            return value
    return None


def wire_format(data: bytes, content_type: str | bytes | None = None) -> str:
    """``"json"`` or ``"msgpack"``: the ``content-type`` header decides when it names one of the
    two, else the first non-whitespace byte (``{`` is JSON; a msgpack map never starts so)."""
    if content_type:
        if isinstance(content_type, (bytes, bytearray)):
            content_type = bytes(content_type).decode("latin-1")
        fmt = CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())
        if fmt is not None:
            return fmt
    head = bytes(data[:64]).lstrip(_JSON_WS)
    return JSON if head[:1] == b"{" else MSGPACK


def _parse_json(data: bytes) -> Any:
    """A JSON object, parsed by msgspec (strict RFC 8259: UTF-8 only, no NaN, no trailing data; about
    four times the stdlib's speed, see ``streamrec bench wire``); validation stays with the records."""
    if len(data) > MAX_JSON_BYTES:
        raise SchemaError(PAYLOAD, f"{len(data)} bytes of JSON exceeds the limit of {MAX_JSON_BYTES}")
    try:
        obj = _JSON_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise SchemaError(PAYLOAD, f"not valid JSON ({str(exc)[:200] or type(exc).__name__})") from None
    if type(obj) is not dict:
        raise SchemaError(PAYLOAD, f"expected a JSON object, got {_JSON_NAMES.get(type(obj), type(obj).__name__)}")
    return obj


_JSON_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}  # fmt: skip


def _parse_msgpack(data: bytes) -> Any:
    try:
        obj = msgpack.unpackb(data, **_UNPACK)
    except Exception as exc:  # msgpack raises ValueError subclasses, TypeError, UnicodeDecodeError...
        detail = str(exc)[:200] or type(exc).__name__
        hint = ""
        if bytes(data[:64]).lstrip(_JSON_WS)[:1] in (b"[", b'"'):
            hint = "; a JSON message must be an object, starting with '{'"
        raise SchemaError(PAYLOAD, f"not valid msgpack ({detail}){hint}") from None
    if type(obj) is not dict:
        raise SchemaError(PAYLOAD, f"expected a msgpack map, got {type(obj).__name__}")
    return obj


def decode(
    data: bytes, expected: type | tuple[type, ...] | None = None, content_type: str | bytes | None = None
) -> Record:
    """The record in ``data`` (msgpack or JSON, see :func:`wire_format`), optionally required to be
    of type(s) ``expected``.

    Raises :class:`SchemaError` and nothing else, whatever ``data`` holds. The same rules hold for
    both formats: ``v`` is required on the wire, unknown fields are refused. In JSON, vectors are
    arrays of numbers and a dead letter's ``key``/``value`` base64 strings.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SchemaError(PAYLOAD, f"expected bytes, got {type(data).__name__}")
    if expected in _FAST and content_type is None:
        record = _fast(expected, data)
        if record is not None:
            return record
    if wire_format(data, content_type) == JSON:
        obj = _parse_json(data)
    else:
        obj = _parse_msgpack(data)
    if expected is not None:
        tname = obj.get("type")
        cls = RECORD_TYPES.get(tname) if type(tname) is str else None
        if cls is not None and not issubclass(cls, expected):
            want = expected if isinstance(expected, tuple) else (expected,)
            names = " or ".join(getattr(t, "TYPE", t.__name__) for t in want)
            raise SchemaError("type", f"expected {names}, got {cls.TYPE}")
    return _build(obj, _MISSING)
