"""What every model shares: the item index, the checkpoint codec, rating policies, growable arrays.

State is saved with :func:`dumps` / :func:`loads`: msgpack, with numpy arrays as raw bytes plus
dtype and shape. Never pickle for checkpoints: they cross machines and pickle executes code.
Each model wrapper implements plain-data ``to_state``/``from_state``; :class:`Checkpointable`
adds ``to_bytes``/``from_bytes`` on top. Every model of one :class:`~streamrec.streams.recommender.
Recommender` shares one :class:`ItemIndex`, so their per-item score vectors line up row for row.

State of any size restores: an array's header (dtype and shape) is at most :data:`HEADER_MAX`
bytes, which the writer enforces and the reader decodes from exactly that prefix, and its raw bytes
are read straight from the buffer; nothing on the way depends on a decoder limit the writer does
not also enforce (msgpack's ``Unpacker`` refuses more than 100 MiB by default, which made every
checkpoint with one array past 100 MiB unrestorable). What remains is msgpack's own format limit,
4 GiB per array and per checkpoint, which the writer reports when it is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Iterable

import msgpack
import numpy as np

from streamrec.streams.ranking import top_n

FORMAT = 1
_EXT_NDARRAY = 1
#: the longest array header (msgpack of dtype and shape) written, and read back
HEADER_MAX = 1024
#: dtypes a checkpoint may contain; anything else is refused on load (no object arrays)
_SAFE_DTYPES = frozenset({"<f8", "<f4", "<i8", "<i4", "<u4", "|b1", "|u1"})


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj, dtype=obj.dtype.newbyteorder("<"))  # portable: little-endian
        if arr.dtype.str not in _SAFE_DTYPES:
            raise TypeError(f"refusing to serialise dtype {arr.dtype.str}")
        meta = msgpack.packb([arr.dtype.str, list(arr.shape)])
        if len(meta) > HEADER_MAX:
            raise TypeError(f"refusing to serialise an array of {arr.ndim} dimensions")
        return msgpack.ExtType(_EXT_NDARRAY, meta + arr.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != _EXT_NDARRAY:
        return msgpack.ExtType(code, data)
    # only the header goes through an Unpacker (whose buffer is bounded); the bytes stay in place
    unpacker = msgpack.Unpacker(max_buffer_size=HEADER_MAX)
    unpacker.feed(memoryview(data)[:HEADER_MAX])
    dtype, shape = next(unpacker)
    if dtype not in _SAFE_DTYPES:
        raise ValueError(f"refusing to load dtype {dtype}")
    offset = unpacker.tell()
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape).copy()


def dumps(obj: Any) -> bytes:
    """msgpack with numpy arrays as (dtype, shape, raw bytes).

    >>> loads(dumps({"a": np.arange(3.0), 1: [2, "x"]}))
    {'a': array([0., 1., 2.]), 1: [2, 'x']}
    """
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def loads(data: bytes) -> Any:
    """The inverse of :func:`dumps`; ``unpackb`` bounds every length by the buffer's own size."""
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def grow(arr: np.ndarray, n: int, fill: Any = 0) -> np.ndarray:
    """``arr`` with at least ``n`` rows, doubling the capacity (new rows set to ``fill``).

    >>> grow(np.zeros(20), 25).shape
    (40,)
    """
    cap = len(arr)
    if n <= cap:
        return arr
    new_cap = max(n, 2 * cap, 16)
    out = np.full((new_cap,) + arr.shape[1:], fill, dtype=arr.dtype)
    out[:cap] = arr
    return out


def key_rows(rows: dict, keys: Iterable[Hashable], added=None) -> np.ndarray:
    """The row of every key in ``rows`` (a key -> row dict), appending a new row for a key not in
    it (``added(key)`` is called for each): how a moved user's record finds or makes its rows.

    >>> users = {"a": 0}; new = []
    >>> key_rows(users, ["b", "a", "c"], new.append).tolist(), new
    ([1, 0, 2], ['b', 'c'])
    """
    out = []
    for key in keys:
        row = rows.get(key)
        if row is None:
            row = rows[key] = len(rows)
            if added is not None:
                added(key)
        out.append(row)
    return np.asarray(out, dtype=np.int64)


class ItemIndex:
    """Item id <-> dense row. Shared by every model so their score vectors line up.

    >>> ix = ItemIndex(["a"])
    >>> ix.add("b"), ix.add("a"), ix.get("zzz"), len(ix)
    (1, 0, None, 2)
    """

    def __init__(self, items: Iterable[Hashable] = ()):
        self.items: list[Hashable] = []
        self.rows: dict[Hashable, int] = {}
        for item in items:
            self.add(item)

    def add(self, item: Hashable) -> int:
        row = self.rows.get(item)
        if row is None:
            row = self.rows[item] = len(self.items)
            self.items.append(item)
        return row

    def get(self, item: Hashable) -> int | None:
        return self.rows.get(item)

    def add_many(self, items: Iterable[Hashable]) -> np.ndarray:
        """Rows of ``items`` (new ones added), as an int64 array."""
        rows, add = self.rows, self.add
        return np.fromiter((r if (r := rows.get(i)) is not None else add(i) for i in items), np.int64)

    def __len__(self) -> int:
        return len(self.items)


RATING_MODES = ("interaction", "threshold", "explicit")


@dataclass(frozen=True, slots=True)
class RatingPolicy:
    """How a rating event is learned.

    ``interaction`` (the MovieLens benchmark protocol): every rating is a positive interaction.
    ``threshold``: a rating >= ``threshold`` is a positive; a lower one is an explicit negative for
    MF (target 0) and is not counted by co-occurrence or popularity. ``explicit``: MF regresses on
    the rating value itself; counters behave as for ``threshold``.

    >>> RatingPolicy().positive(1.0), RatingPolicy("threshold", 3.5).positive(3.0)
    (True, False)
    """

    mode: str = "interaction"
    threshold: float = 3.5

    def __post_init__(self) -> None:
        if self.mode not in RATING_MODES:
            raise ValueError(f"rating mode must be one of {RATING_MODES}, not {self.mode!r}")

    def positive(self, rating: float) -> bool:
        return self.mode == "interaction" or rating >= self.threshold


def _policy(d: dict) -> RatingPolicy:
    return RatingPolicy(**d) if isinstance(d, dict) else d


class Checkpointable:
    """``to_bytes``/``from_bytes`` on top of each model's plain-data ``to_state``/``from_state``."""

    KIND = "?"

    def to_state(self, with_index: bool = True) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: dict, index: ItemIndex | None = None):  # pragma: no cover
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        return dumps({"kind": self.KIND, "format": FORMAT, "state": self.to_state()})

    @classmethod
    def from_bytes(cls, data: bytes):
        doc = loads(data)
        if doc.get("kind") != cls.KIND or doc.get("format") != FORMAT:
            raise ValueError(f"not a {cls.KIND} checkpoint (format {FORMAT})")
        return cls.from_state(doc["state"])


def _top(scores: np.ndarray, k: int, index: ItemIndex) -> list[tuple[Hashable, float]]:
    """The ``k`` best finite scores as (item, score), best first, ties by row."""
    rows = top_n(scores, k)
    return [(index.items[r], s) for r, s in zip(rows.tolist(), scores[rows].tolist())]
