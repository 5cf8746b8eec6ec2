"""The records that travel on the wire, validated where they are made.

Every record is a frozen dataclass that checks itself in ``__post_init__``, so a record that exists
is a valid one: the codec decodes by building records, and producers cannot publish what a consumer
would refuse. Every failure is a :class:`SchemaError` naming the field. Inputs are normalised on the
way in (ints become floats, attributes an immutable :class:`Attributes`, vectors float32-rounded
tuples), so ``decode(encode(r)) == r`` holds exactly. The checks and limits themselves live in
:mod:`.fields`; the names other code has always imported from here (``SchemaError``, the limits,
``Attributes``) are re-exported, so those imports keep working.

>>> Click("u1", "i9", 1_700_000_000).ts
1700000000.0
>>> Rating("u1", "i9", 7.0, 1_700_000_000)
Traceback (most recent call last):
...
streamrec.schemas.fields.SchemaError: rating: 7.0 is outside [0.0, 5.0]
>>> a = Item("i9", "Dune", attributes={"year": 1965, "genres": ["sf"]}, ts=1.0)
>>> b = Item("i9", "Dune", attributes={"genres": ("sf",), "year": 1965}, ts=2.0)
>>> a.content_hash() == b.content_hash(), a.attributes["genres"]
(True, ('sf',))
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from .fields import (  # the limits and types are re-exported: importers predate fields.py
    EMPTY_ATTRIBUTES,
    FLOAT32_MAX,
    INT64_MAX,
    INT64_MIN,
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
    Attributes,
    AttrValue,
    SchemaError,
    check_attributes,
    check_bytes,
    check_id,
    check_number,
    check_pairs,
    check_str,
    check_ts,
    check_vector,
    type_name,
)

SCHEMA_VERSION = 1

__all__ = [
    "EMPTY_ATTRIBUTES", "FLOAT32_MAX", "INT64_MAX", "INT64_MIN", "MAX_ATTRIBUTES", "MAX_ATTR_KEY_LEN",
    "MAX_ATTR_LIST_LEN", "MAX_ATTR_VALUE_LEN", "MAX_HASH_LEN", "MAX_ID_LEN", "MAX_MODEL_LEN",
    "MAX_PAYLOAD_BYTES", "MAX_REASON_LEN", "MAX_RECS", "MAX_SEEN", "MAX_TAGS", "MAX_TAG_LEN", "MAX_TEXT_LEN",
    "MAX_TITLE_LEN", "MAX_TOPIC_LEN", "MAX_VECTOR_DIM", "RATING_MAX", "RATING_MIN", "RECORD_TYPES",
    "SCHEMA_VERSION", "TS_MAX", "TS_MIN", "AttrValue", "Attributes", "Click", "DeadLetter",
    "EnrichRequest", "Item", "ItemEmbedding", "ItemTags", "Rating", "Record", "RecommendationList",
    "SchemaError", "SeenItems", "SimilarItems", "content_hash",
]  # fmt: skip


def content_hash(title: str, text: str, attributes: Mapping[str, Any] | None = None) -> str:
    """32 hex chars of sha256 over the canonical JSON of ``[title, text, sorted attributes]``.

    Unchanged content hashes the same whatever the attribute order or the item id, so enrichments
    (keyed ``emb:{model}:{content_hash}``) are reused. Ints, floats and bools stay distinct.

    >>> content_hash("Dune", "", {"a": 1, "b": 2}) == content_hash("Dune", "", {"b": 2, "a": 1})
    True
    >>> content_hash("Dune", "")
    '7628f8961611ea7676e962330bdee6a9'
    """
    attrs = check_attributes(attributes if attributes is not None else EMPTY_ATTRIBUTES)
    canon = json.dumps([title, text, attrs.to_dict()], ensure_ascii=False, separators=(",", ":"),
                       sort_keys=True, allow_nan=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:32]


_set = object.__setattr__  # frozen dataclasses normalise their own fields in __post_init__


@dataclass(frozen=True, slots=True)
class Click:
    """Implicit feedback: ``user`` interacted with ``item`` at ``ts`` (epoch seconds)."""

    TYPE: ClassVar[str] = "click"
    VERSION: ClassVar[int] = SCHEMA_VERSION
    user: str
    item: str
    ts: float

    def __post_init__(self) -> None:
        check_id("user", self.user)
        check_id("item", self.item)
        _set(self, "ts", check_ts("ts", self.ts))


@dataclass(frozen=True, slots=True)
class Rating:
    """Explicit feedback on the scale [RATING_MIN, RATING_MAX]."""

    TYPE: ClassVar[str] = "rating"
    VERSION: ClassVar[int] = SCHEMA_VERSION
    user: str
    item: str
    rating: float
    ts: float

    def __post_init__(self) -> None:
        check_id("user", self.user)
        check_id("item", self.item)
        rating = check_number("rating", self.rating)
        if not RATING_MIN <= rating <= RATING_MAX:
            raise SchemaError("rating", f"{rating!r} is outside [{RATING_MIN}, {RATING_MAX}]")
        _set(self, "rating", rating)
        _set(self, "ts", check_ts("ts", self.ts))


@dataclass(frozen=True, slots=True)
class Item:
    """A catalogue upsert (needs a title), or a delete when ``deleted`` (title and text may be empty)."""

    TYPE: ClassVar[str] = "item"
    VERSION: ClassVar[int] = SCHEMA_VERSION
    item: str
    title: str = ""
    text: str = ""
    attributes: Mapping[str, AttrValue] = EMPTY_ATTRIBUTES
    ts: float = field(kw_only=True)
    deleted: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        check_id("item", self.item)
        check_str("title", self.title, MAX_TITLE_LEN, empty=True)
        check_str("text", self.text, MAX_TEXT_LEN, empty=True)
        _set(self, "attributes", check_attributes(self.attributes))
        _set(self, "ts", check_ts("ts", self.ts))
        if type(self.deleted) is not bool:
            raise SchemaError("deleted", f"expected bool, got {type_name(self.deleted)}")
        if not self.deleted and not self.title.strip():
            raise SchemaError("title", "must not be blank for an upsert (deleted=False)")

    def content_hash(self) -> str:
        """See :func:`content_hash`."""
        return content_hash(self.title, self.text, self.attributes)


@dataclass(frozen=True, slots=True)
class EnrichRequest:
    """Asks the LLM workers to embed and tag one version of an item's content."""

    TYPE: ClassVar[str] = "enrich"
    VERSION: ClassVar[int] = SCHEMA_VERSION
    item: str
    content_hash: str
    title: str
    text: str
    attributes: Mapping[str, AttrValue]
    ts: float

    def __post_init__(self) -> None:
        check_id("item", self.item)
        check_str("content_hash", self.content_hash, MAX_HASH_LEN)
        check_str("title", self.title, MAX_TITLE_LEN, empty=True)
        check_str("text", self.text, MAX_TEXT_LEN, empty=True)
        _set(self, "attributes", check_attributes(self.attributes))
        _set(self, "ts", check_ts("ts", self.ts))

    @classmethod
    def for_item(cls, item: Item, ts: float) -> EnrichRequest:
        """The request for an upserted item's current content."""
        return cls(item.item, item.content_hash(), item.title, item.text, item.attributes, ts)


@dataclass(frozen=True, slots=True)
class ItemEmbedding:
    """An item's content embedding; float32 on the wire, so stored float32-rounded here."""

    TYPE: ClassVar[str] = "embedding"
    VERSION: ClassVar[int] = SCHEMA_VERSION
    item: str
    model: str
    content_hash: str
    vector: tuple[float, ...]
    ts: float

    def __post_init__(self) -> None:
        check_id("item", self.item)
        check_str("model", self.model, MAX_MODEL_LEN)
        check_str("content_hash", self.content_hash, MAX_HASH_LEN)
        _set(self, "vector", check_vector("vector", self.vector))
        _set(self, "ts", check_ts("ts", self.ts))


@dataclass(frozen=True, slots=True)
class ItemTags:
    """LLM-assigned tags with their scores."""

    TYPE: ClassVar[str] = "tags"
    VERSION: ClassVar[int] = SCHEMA_VERSION
    item: str
    model: str
    content_hash: str
    tags: tuple[tuple[str, float], ...]
    ts: float

    def __post_init__(self) -> None:
        check_id("item", self.item)
        check_str("model", self.model, MAX_MODEL_LEN)
        check_str("content_hash", self.content_hash, MAX_HASH_LEN)
        _set(self, "tags", check_pairs("tags", self.tags, MAX_TAGS, MAX_TAG_LEN))
        _set(self, "ts", check_ts("ts", self.ts))


@dataclass(frozen=True, slots=True)
class RecommendationList:
    """A user's ranked top-K, as stored at ``rec:{user}`` (see keys.py)."""

    TYPE: ClassVar[str] = "recs"
    VERSION: ClassVar[int] = SCHEMA_VERSION
    user: str
    items: tuple[tuple[str, float], ...]
    model_version: str
    generated_at: float
    config_digest: str

    def __post_init__(self) -> None:
        check_id("user", self.user)
        _set(self, "items", check_pairs("items", self.items, MAX_RECS, MAX_ID_LEN))
        check_str("model_version", self.model_version, MAX_MODEL_LEN)
        _set(self, "generated_at", check_ts("generated_at", self.generated_at))
        check_str("config_digest", self.config_digest, MAX_HASH_LEN)


@dataclass(frozen=True, slots=True)
class SimilarItems:
    """An item's ranked neighbours (co-occurrence and embedding), as stored at ``sim:{item}``."""

    TYPE: ClassVar[str] = "similar"
    VERSION: ClassVar[int] = SCHEMA_VERSION
    item: str
    items: tuple[tuple[str, float], ...]
    model_version: str
    generated_at: float
    config_digest: str

    def __post_init__(self) -> None:
        check_id("item", self.item)
        _set(self, "items", check_pairs("items", self.items, MAX_RECS, MAX_ID_LEN))
        check_str("model_version", self.model_version, MAX_MODEL_LEN)
        _set(self, "generated_at", check_ts("generated_at", self.generated_at))
        check_str("config_digest", self.config_digest, MAX_HASH_LEN)


@dataclass(frozen=True, slots=True)
class SeenItems:
    """A user's most recent distinct items (at most MAX_SEEN), as stored at ``seen:{user}``: what a
    reader leaves out of the global list for a user who has no personal list."""

    TYPE: ClassVar[str] = "seen"
    VERSION: ClassVar[int] = SCHEMA_VERSION
    user: str
    items: tuple[str, ...]
    ts: float

    def __post_init__(self) -> None:
        check_id("user", self.user)
        if isinstance(self.items, (str, bytes)) or not isinstance(self.items, (list, tuple)):
            raise SchemaError("items", f"expected a list of item ids, got {type_name(self.items)}")
        if len(self.items) > MAX_SEEN:
            raise SchemaError("items", f"{len(self.items)} entries exceeds the limit of {MAX_SEEN}")
        _set(self, "items", tuple(check_id("items", i) for i in self.items))
        _set(self, "ts", check_ts("ts", self.ts))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message a worker could not handle: the original key and value bytes, and why."""

    TYPE: ClassVar[str] = "deadletter"
    VERSION: ClassVar[int] = SCHEMA_VERSION
    topic: str
    key: bytes | None
    value: bytes
    reason: str
    ts: float
    #: where the original sits, its size in bytes, and whether ``key``/``value`` are cut short
    #: (see :func:`streamrec.schemas.deadletters.dead_letter`); optional for older producers
    partition: int | None = field(default=None, kw_only=True)
    offset: int | None = field(default=None, kw_only=True)
    size: int | None = field(default=None, kw_only=True)
    truncated: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        check_str("topic", self.topic, MAX_TOPIC_LEN)
        if self.key is not None:
            _set(self, "key", check_bytes("key", self.key))
        _set(self, "value", check_bytes("value", self.value))
        check_str("reason", self.reason, MAX_REASON_LEN)
        _set(self, "ts", check_ts("ts", self.ts))
        for name in ("partition", "offset", "size"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or not 0 <= value < 2**63):
                raise SchemaError(name, f"expected a non-negative int, got {value!r:.40}")
        if type(self.truncated) is not bool:
            raise SchemaError("truncated", f"expected bool, got {type_name(self.truncated)}")


Record = Union[Click, Rating, Item, EnrichRequest, ItemEmbedding, ItemTags, RecommendationList, SimilarItems,
               SeenItems, DeadLetter]  # fmt: skip

#: wire type name -> record class
RECORD_TYPES: dict[str, type[Record]] = {
    cls.TYPE: cls
    for cls in (Click, Rating, Item, EnrichRequest, ItemEmbedding, ItemTags, RecommendationList, SimilarItems,
                SeenItems, DeadLetter)
}
