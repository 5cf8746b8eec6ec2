"""The records that travel on the wire, validated where they are made.

Every record is a frozen dataclass that checks itself in ``__post_init__``, so a record that exists
is a valid one: the codec decodes by building records, and producers cannot publish what a consumer
would refuse. Every failure is a :class:`SchemaError` naming the field. Inputs are normalised on the
way in (ints become floats, attributes an immutable :class:`Attributes`, vectors float32-rounded
tuples), so ``decode(encode(r)) == r`` holds exactly.

>>> Click("u1", "i9", 1_700_000_000).ts
1700000000.0
>>> Rating("u1", "i9", 7.0, 1_700_000_000)
Traceback (most recent call last):
...
streamrec.schemas.events.SchemaError: rating: 7.0 is outside [0.0, 5.0]
>>> a = Item("i9", "Dune", attributes={"year": 1965, "genres": ["sf"]}, ts=1.0)
>>> b = Item("i9", "Dune", attributes={"genres": ("sf",), "year": 1965}, ts=2.0)
>>> a.content_hash() == b.content_hash(), a.attributes["genres"]
(True, ('sf',))
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from numbers import Real
from types import MappingProxyType
from typing import Any, ClassVar, Union

import numpy as np

SCHEMA_VERSION = 1

MAX_ID_LEN = 256
MAX_TITLE_LEN = 1_000
MAX_TEXT_LEN = 20_000
MAX_MODEL_LEN = 256
MAX_HASH_LEN = 128
#: Kafka's own limit on topic names
MAX_TOPIC_LEN = 249
MAX_REASON_LEN = 2_000
#: the broker's default message.max.bytes; a dead letter's original key and value fit under it
MAX_PAYLOAD_BYTES = 1_048_576
RATING_MIN = 0.0
RATING_MAX = 5.0
#: timestamps are epoch seconds in the open interval (TS_MIN, TS_MAX); TS_MAX is 2100-01-01
TS_MIN = 0.0
TS_MAX = 4_102_444_800.0
MAX_ATTRIBUTES = 64
MAX_ATTR_KEY_LEN = 128
MAX_ATTR_VALUE_LEN = 1_000
MAX_ATTR_LIST_LEN = 64
MAX_VECTOR_DIM = 4_096
MAX_TAGS = 256
MAX_TAG_LEN = 128
MAX_RECS = 1_000
#: attribute ints must survive msgpack and other languages' int64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)

AttrValue = Union[str, int, float, bool, tuple[str, ...]]


class SchemaError(ValueError):
    """A record, or the bytes or mapping it came from, is invalid; ``field`` says where."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self):  # keep it picklable despite the two-argument constructor
        return (type(self), (self.field, self.reason))


def _kind(value: object) -> str:
    return type(value).__name__


def _check_str(name: str, value: Any, max_len: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise SchemaError(name, f"expected str, got {_kind(value)}")
    if not value and not empty:
        raise SchemaError(name, "must not be empty")
    if len(value) > max_len:
        raise SchemaError(name, f"{len(value)} chars exceeds the limit of {max_len}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SchemaError(name, "is not encodable as UTF-8 (lone surrogate)") from None
    return value


def _check_id(name: str, value: Any) -> str:
    return _check_str(name, value, MAX_ID_LEN)


def _check_number(name: str, value: Any) -> float:
    """A finite float; ints (and other reals) are converted, bools refused."""
    if type(value) is not float:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise SchemaError(name, f"expected a number, got {_kind(value)}")
        try:
            value = float(value)
        except (OverflowError, ValueError, TypeError):
            raise SchemaError(name, "is not representable as a float") from None
    if not math.isfinite(value):
        raise SchemaError(name, f"{value!r} is not a finite number")
    return value


def _check_ts(name: str, value: Any) -> float:
    value = _check_number(name, value)
    if not TS_MIN < value < TS_MAX:
        raise SchemaError(name, f"{value!r} is outside ({TS_MIN}, {TS_MAX})")
    return value


def _check_bytes(name: str, value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise SchemaError(name, f"expected bytes, got {_kind(value)}")
    value = bytes(value)
    if len(value) > MAX_PAYLOAD_BYTES:
        raise SchemaError(name, f"{len(value)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}")
    return value


def _check_pairs(name: str, value: Any, max_len: int, max_key_len: int) -> tuple[tuple[str, float], ...]:
    """A ranked sequence of distinct ``(str, finite score)`` pairs, e.g. recommendations or tags."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise SchemaError(name, f"expected a sequence of [str, score] pairs, got {_kind(value)}")
    out: list[tuple[str, float]] = []
    seen: set[str] = set()
    for i, pair in enumerate(value):
        if i >= max_len:
            raise SchemaError(name, f"more than {max_len} entries")
        if type(pair) not in (tuple, list) or len(pair) != 2:
            raise SchemaError(name, f"entry {i} must be a [str, score] pair, got {_kind(pair)}")
        key, score = pair
        # fast path for what the decoder hands over; anything else gets the full checks
        if not (type(key) is str and 0 < len(key) <= max_key_len and key.isascii()
                and type(score) is float and math.isfinite(score)):
            try:
                key, score = _check_str(name, key, max_key_len), _check_number(name, score)
            except SchemaError as exc:
                raise SchemaError(name, f"entry {i}: {exc.reason}") from None
        if key in seen:
            raise SchemaError(name, f"entry {i} repeats {key[:40]!r}")
        seen.add(key)
        out.append((key, score))
    return tuple(out)


def _check_vector(name: str, value: Any) -> tuple[float, ...]:
    """A non-empty vector of finite float32 values, returned float32-rounded as Python floats."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "fiu":
            raise SchemaError(name, f"expected a 1-d numeric array, got {value.dtype} {value.shape}")
        arr = value.astype(np.float64)
    elif isinstance(value, (str, bytes, bytearray, memoryview, Mapping)) or not isinstance(value, Iterable):
        raise SchemaError(name, f"expected a sequence of numbers, got {_kind(value)}")
    else:
        floats = []
        for i, x in enumerate(value):
            if i >= MAX_VECTOR_DIM:
                raise SchemaError(name, f"dimension exceeds the limit of {MAX_VECTOR_DIM}")
            try:
                floats.append(_check_number(name, x))
            except SchemaError as exc:
                raise SchemaError(name, f"element {i}: {exc.reason}") from None
        arr = np.array(floats, dtype=np.float64)
    if not 0 < len(arr) <= MAX_VECTOR_DIM:
        raise SchemaError(name, f"dimension must be 1 to {MAX_VECTOR_DIM}")
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(arr) <= FLOAT32_MAX)  # also catches nan
    if bad.any():
        i = int(bad.argmax())
        raise SchemaError(name, f"element {i}: {float(arr[i])!r} is not a finite float32")
    return tuple(arr.astype(np.float32).tolist())


def _check_attr_value(key: str, value: Any) -> AttrValue:
    where = f"value of {key[:40]!r}"
    if type(value) is str:
        return _check_str("attributes", value, MAX_ATTR_VALUE_LEN, empty=True)
    if type(value) is bool:
        return value
    if type(value) is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise SchemaError("attributes", f"{where} is outside int64")
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise SchemaError("attributes", f"{where} {value!r} is not a finite number")
        return value
    if type(value) in (list, tuple):
        if len(value) > MAX_ATTR_LIST_LEN:
            raise SchemaError("attributes", f"{where} has more than {MAX_ATTR_LIST_LEN} entries")
        if not all(type(v) is str for v in value):
            raise SchemaError("attributes", f"{where} must be a list of str only")
        return tuple(_check_str("attributes", v, MAX_ATTR_VALUE_LEN, empty=True) for v in value)
    raise SchemaError("attributes", f"{where} must be str, int, float, bool or a list of str, got {_kind(value)}")


class Attributes(Mapping[str, AttrValue]):
    """An immutable, hashable, validated attribute map; keys iterate sorted, lists are tuples.

    >>> Attributes({"b": 1, "a": ["x"]})
    Attributes({'a': ('x',), 'b': 1})
    >>> Attributes({"a": ("x",)}) == {"a": ["x"]}
    True
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] = MappingProxyType({}), /) -> None:
        if not isinstance(data, Mapping):
            raise SchemaError("attributes", f"expected a map of str keys, got {_kind(data)}")
        if len(data) > MAX_ATTRIBUTES:
            raise SchemaError("attributes", f"{len(data)} entries exceeds the limit of {MAX_ATTRIBUTES}")
        checked = {}
        for key, value in data.items():
            if type(key) is not str or not 0 < len(key) <= MAX_ATTR_KEY_LEN:
                raise SchemaError("attributes", f"keys must be str of 1 to {MAX_ATTR_KEY_LEN} chars, got {key!r:.60}")
            checked[_check_str("attributes", key, MAX_ATTR_KEY_LEN)] = _check_attr_value(key, value)
        self._data = dict(sorted(checked.items()))

    def __getitem__(self, key: str) -> AttrValue:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attributes):
            return self._data == other._data
        if isinstance(other, Mapping):
            try:
                return self._data == Attributes(other)._data
            except SchemaError:
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return f"Attributes({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict (lists for list values)."""
        return {k: list(v) if type(v) is tuple else v for k, v in self._data.items()}


EMPTY_ATTRIBUTES = Attributes()


def _check_attributes(value: Any) -> Attributes:
    return value if type(value) is Attributes else Attributes(value)


def content_hash(title: str, text: str, attributes: Mapping[str, Any] | None = None) -> str:
    """32 hex chars of sha256 over the canonical JSON of ``[title, text, sorted attributes]``.

    Unchanged content hashes the same whatever the attribute order or the item id, so enrichments
    (keyed ``emb:{model}:{content_hash}``) are reused. Ints, floats and bools stay distinct.

    >>> content_hash("Dune", "", {"a": 1, "b": 2}) == content_hash("Dune", "", {"b": 2, "a": 1})
    True
    >>> content_hash("Dune", "")
    '7628f8961611ea7676e962330bdee6a9'
    """
    attrs = _check_attributes(attributes if attributes is not None else EMPTY_ATTRIBUTES)
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
        _check_id("user", self.user)
        _check_id("item", self.item)
        _set(self, "ts", _check_ts("ts", self.ts))


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
        _check_id("user", self.user)
        _check_id("item", self.item)
        rating = _check_number("rating", self.rating)
        if not RATING_MIN <= rating <= RATING_MAX:
            raise SchemaError("rating", f"{rating!r} is outside [{RATING_MIN}, {RATING_MAX}]")
        _set(self, "rating", rating)
        _set(self, "ts", _check_ts("ts", self.ts))


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
        _check_id("item", self.item)
        _check_str("title", self.title, MAX_TITLE_LEN, empty=True)
        _check_str("text", self.text, MAX_TEXT_LEN, empty=True)
        _set(self, "attributes", _check_attributes(self.attributes))
        _set(self, "ts", _check_ts("ts", self.ts))
        if type(self.deleted) is not bool:
            raise SchemaError("deleted", f"expected bool, got {_kind(self.deleted)}")
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
        _check_id("item", self.item)
        _check_str("content_hash", self.content_hash, MAX_HASH_LEN)
        _check_str("title", self.title, MAX_TITLE_LEN, empty=True)
        _check_str("text", self.text, MAX_TEXT_LEN, empty=True)
        _set(self, "attributes", _check_attributes(self.attributes))
        _set(self, "ts", _check_ts("ts", self.ts))

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
        _check_id("item", self.item)
        _check_str("model", self.model, MAX_MODEL_LEN)
        _check_str("content_hash", self.content_hash, MAX_HASH_LEN)
        _set(self, "vector", _check_vector("vector", self.vector))
        _set(self, "ts", _check_ts("ts", self.ts))


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
        _check_id("item", self.item)
        _check_str("model", self.model, MAX_MODEL_LEN)
        _check_str("content_hash", self.content_hash, MAX_HASH_LEN)
        _set(self, "tags", _check_pairs("tags", self.tags, MAX_TAGS, MAX_TAG_LEN))
        _set(self, "ts", _check_ts("ts", self.ts))


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
        _check_id("user", self.user)
        _set(self, "items", _check_pairs("items", self.items, MAX_RECS, MAX_ID_LEN))
        _check_str("model_version", self.model_version, MAX_MODEL_LEN)
        _set(self, "generated_at", _check_ts("generated_at", self.generated_at))
        _check_str("config_digest", self.config_digest, MAX_HASH_LEN)


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

    def __post_init__(self) -> None:
        _check_str("topic", self.topic, MAX_TOPIC_LEN)
        if self.key is not None:
            _set(self, "key", _check_bytes("key", self.key))
        _set(self, "value", _check_bytes("value", self.value))
        _check_str("reason", self.reason, MAX_REASON_LEN)
        _set(self, "ts", _check_ts("ts", self.ts))


Record = Union[Click, Rating, Item, EnrichRequest, ItemEmbedding, ItemTags, RecommendationList, DeadLetter]

#: wire type name -> record class
RECORD_TYPES: dict[str, type[Record]] = {
    cls.TYPE: cls
    for cls in (Click, Rating, Item, EnrichRequest, ItemEmbedding, ItemTags, RecommendationList, DeadLetter)
}
