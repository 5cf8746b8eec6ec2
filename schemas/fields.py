"""The fields records are built from: the limits, the checks, and the one error they raise.

Kept apart from the record classes in :mod:`.events` so that a record definition reads as a list of
fields and the checks each one gets, while the rules behind those checks (UTF-8 safety, finite
numbers, float32 vectors, int64 attribute ints, size limits under the broker's message size) are
written once, here. Every check returns the value normalised (ints become floats, attribute maps an
immutable :class:`Attributes`, vectors float32-rounded tuples), which is what makes
``decode(encode(r)) == r`` hold exactly, and every failure is a :class:`SchemaError` naming the field.

>>> check_number("rating", 4)
4.0
>>> check_ts("ts", -1)
Traceback (most recent call last):
...
streamrec.schemas.fields.SchemaError: ts: -1.0 is outside (0.0, 4102444800.0)
>>> check_pairs("tags", [["sf", 1], ("space", 0.5)], max_len=8, max_key_len=16)
(('sf', 1.0), ('space', 0.5))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from numbers import Real
from types import MappingProxyType
from typing import Any, Union

import numpy as np

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
#: items kept in a user's seen list in Redis (the most recent ones)
MAX_SEEN = 1_000
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


def type_name(value: object) -> str:
    """What the messages call a value of the wrong type: its class name, never its (maybe huge) repr."""
    return type(value).__name__


def check_str(name: str, value: Any, max_len: int, *, empty: bool = False) -> str:
    """A str of at most ``max_len`` chars that msgpack can encode (no lone surrogates)."""
    if not isinstance(value, str):
        raise SchemaError(name, f"expected str, got {type_name(value)}")
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


def check_id(name: str, value: Any) -> str:
    """A user or item id: a non-empty str; the same limit everywhere, since ids become Kafka keys."""
    return check_str(name, value, MAX_ID_LEN)


def check_number(name: str, value: Any) -> float:
    """A finite float; ints (and other reals) are converted, bools refused."""
    if type(value) is not float:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise SchemaError(name, f"expected a number, got {type_name(value)}")
        try:
            value = float(value)
        except (OverflowError, ValueError, TypeError):
            raise SchemaError(name, "is not representable as a float") from None
    if not math.isfinite(value):
        raise SchemaError(name, f"{value!r} is not a finite number")
    return value


def check_ts(name: str, value: Any) -> float:
    """Epoch seconds in (TS_MIN, TS_MAX): catches milliseconds and zero timestamps at the boundary."""
    value = check_number(name, value)
    if not TS_MIN < value < TS_MAX:
        raise SchemaError(name, f"{value!r} is outside ({TS_MIN}, {TS_MAX})")
    return value


def check_bytes(name: str, value: Any) -> bytes:
    """Bytes of at most MAX_PAYLOAD_BYTES, so a dead letter carrying them still fits on the broker."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise SchemaError(name, f"expected bytes, got {type_name(value)}")
    value = bytes(value)
    if len(value) > MAX_PAYLOAD_BYTES:
        raise SchemaError(name, f"{len(value)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}")
    return value


def check_pairs(name: str, value: Any, max_len: int, max_key_len: int) -> tuple[tuple[str, float], ...]:
    """A ranked sequence of distinct ``(str, finite score)`` pairs, e.g. recommendations or tags."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise SchemaError(name, f"expected a sequence of [str, score] pairs, got {type_name(value)}")
    out: list[tuple[str, float]] = []
    seen: set[str] = set()
    for i, pair in enumerate(value):
        if i >= max_len:
            raise SchemaError(name, f"more than {max_len} entries")
        if type(pair) not in (tuple, list) or len(pair) != 2:
            raise SchemaError(name, f"entry {i} must be a [str, score] pair, got {type_name(pair)}")
        key, score = pair
        # fast path for what the decoder hands over; anything else gets the full checks
        if not (type(key) is str and 0 < len(key) <= max_key_len and key.isascii()
                and type(score) is float and math.isfinite(score)):
            try:
                key, score = check_str(name, key, max_key_len), check_number(name, score)
            except SchemaError as exc:
                raise SchemaError(name, f"entry {i}: {exc.reason}") from None
        if key in seen:
            raise SchemaError(name, f"entry {i} repeats {key[:40]!r}")
        seen.add(key)
        out.append((key, score))
    return tuple(out)


def check_vector(name: str, value: Any) -> tuple[float, ...]:
    """A non-empty vector of finite float32 values, returned float32-rounded as Python floats."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "fiu":
            raise SchemaError(name, f"expected a 1-d numeric array, got {value.dtype} {value.shape}")
        arr = value.astype(np.float64)
    elif isinstance(value, (str, bytes, bytearray, memoryview, Mapping)) or not isinstance(value, Iterable):
        raise SchemaError(name, f"expected a sequence of numbers, got {type_name(value)}")
    else:
        floats = []
        for i, x in enumerate(value):
            if i >= MAX_VECTOR_DIM:
                raise SchemaError(name, f"dimension exceeds the limit of {MAX_VECTOR_DIM}")
            try:
                floats.append(check_number(name, x))
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
        return check_str("attributes", value, MAX_ATTR_VALUE_LEN, empty=True)
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
        return tuple(check_str("attributes", v, MAX_ATTR_VALUE_LEN, empty=True) for v in value)
    raise SchemaError("attributes",
                      f"{where} must be str, int, float, bool or a list of str, got {type_name(value)}")


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
            raise SchemaError("attributes", f"expected a map of str keys, got {type_name(data)}")
        if len(data) > MAX_ATTRIBUTES:
            raise SchemaError("attributes", f"{len(data)} entries exceeds the limit of {MAX_ATTRIBUTES}")
        checked = {}
        for key, value in data.items():
            if type(key) is not str or not 0 < len(key) <= MAX_ATTR_KEY_LEN:
                raise SchemaError("attributes",
                                  f"keys must be str of 1 to {MAX_ATTR_KEY_LEN} chars, got {key!r:.60}")
            checked[check_str("attributes", key, MAX_ATTR_KEY_LEN)] = _check_attr_value(key, value)
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


def check_attributes(value: Any) -> Attributes:
    """An :class:`Attributes`, reused as is when it already is one (it was checked when made)."""
    return value if type(value) is Attributes else Attributes(value)
