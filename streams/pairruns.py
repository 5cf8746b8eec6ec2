"""Sorted runs of ``(a, b)`` entries and the numpy passes that look keys up and merge runs: the
storage under :class:`~streamrec.streams.paircounts.PairCounts`.

Why apart: these are pure array functions (doctested one by one); what an addition, a cut or a
checkpoint means for the counts stays in :mod:`~streamrec.streams.paircounts`. Keys are
``a << 32 | b`` (``SHIFT``, ``LOW``), so one sorted array orders entries row after row.
"""

from __future__ import annotations

import numpy as np

SHIFT = np.int64(32)
LOW = np.int64((1 << 32) - 1)


def grow_1d(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` (1-d) zero-padded to at least ``n``, geometrically (amortised O(1) per row)."""
    if n <= len(a):
        return a
    out = np.zeros(max(n, 2 * len(a), 16), a.dtype)
    out[: len(a)] = a
    return out


def key_groups(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct keys ``a << 32 | b`` sorted, each one's first position and number of pairs,
    and the positions of all pairs grouped by key (within a key in the order added): what
    ``np.unique(..., return_index=True, return_counts=True)`` and a stable argsort of its inverse
    give, several times faster. When rows, columns and positions fit in 63 bits together: one plain
    sort of the packed values (positions ride along in the low bits, which makes it stable).

    >>> [x.tolist() for x in key_groups(np.array([0, 0, 0, 1, 0]), np.array([7, 3, 7, 1, 3]))]
    [[3, 7, 4294967297], [1, 0, 3], [2, 2, 1], [1, 4, 0, 2, 3]]
    """
    n = len(a)
    pb = max(int(n - 1).bit_length(), 1)
    cb = max(int(b.max()).bit_length(), 1) if n else 1
    rb = max(int(a.max()).bit_length(), 1) if n else 1
    if rb + cb + pb > 63:
        uk, first, inv, counts = np.unique((a << SHIFT) | b, return_index=True, return_inverse=True,
                                           return_counts=True)  # fmt: skip
        return uk, first, counts, np.argsort(inv, kind="stable")
    packed = np.sort((((a << np.int64(cb)) | b) << np.int64(pb)) | np.arange(n, dtype=np.int64))
    pos = packed & np.int64((1 << pb) - 1)
    ks = packed >> np.int64(pb)
    new = np.empty(n, bool)
    new[:1] = True
    np.not_equal(ks[1:], ks[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    counts = np.diff(starts, append=n)
    uk = ks[starts]
    return ((uk >> np.int64(cb)) << SHIFT) | (uk & np.int64((1 << cb) - 1)), pos[starts], counts, pos


def find_sorted(keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``q`` in sorted ``keys`` and whether each is there.

    >>> p, ok = find_sorted(np.array([2, 5, 9]), np.array([5, 1, 9, 10])); p.tolist(), ok.tolist()
    ([1, 0, 2, 3], [True, False, True, False])
    """
    pos = np.searchsorted(keys, q)
    if not len(keys):
        return pos, np.zeros(len(q), bool)
    return pos, keys[np.minimum(pos, len(keys) - 1)] == q


def merged(keys: np.ndarray, new: np.ndarray, *cols):
    """Sorted ``keys`` with the sorted ``new`` keys merged in, and each ``(old values, new values)``
    column alike: one destination mask for every column (``np.insert`` builds one per call).

    >>> [c.tolist() for c in merged(np.array([1, 5]), np.array([3, 9]), (np.array([.1, .5]), 0.0))]
    [[1, 3, 5, 9], [0.1, 0.0, 0.5, 0.0]]
    """
    dest = np.searchsorted(keys, new) + np.arange(len(new))
    old = np.ones(len(keys) + len(new), bool)
    old[dest] = False
    out = []
    for was, add in ((keys, new), *cols):
        col = np.empty(len(old), was.dtype)
        col[old], col[dest] = was, add
        out.append(col)
    return out


def run_ranks(tags: np.ndarray) -> np.ndarray:
    """Each element's place within its run of equal ``tags`` (runs contiguous).

    >>> run_ranks(np.array([3, 3, 3, 1, 4, 4])).tolist()
    [0, 1, 2, 0, 0, 1]
    """
    new = np.empty(len(tags), bool)
    new[:1] = True
    np.not_equal(tags[1:], tags[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    return np.arange(len(tags)) - np.repeat(starts, np.diff(starts, append=len(tags)))


class SortedRun:
    """One sorted run of entries: keys, values, first-insertion sequence numbers, live flags."""

    __slots__ = ("k", "v", "s", "live", "_ptr")

    def __init__(self, k=None, v=None, s=None, live=None):
        self.k = np.zeros(0, np.int64) if k is None else k
        self.v = np.zeros(0) if v is None else v
        self.s = np.zeros(0, np.int64) if s is None else s
        self.live = np.ones(len(self.k), bool) if live is None else live
        self._ptr: np.ndarray | None = None

    def insert(self, k: np.ndarray, s: np.ndarray) -> None:
        """New keys (sorted, none present) with value 0."""
        if len(k):
            self.k, self.v, self.s, self.live = merged(self.k, k, (self.v, 0.0), (self.s, s), (self.live, True))
            self._ptr = None

    def ptr(self) -> np.ndarray:
        """Where each row's entries start, up to one past the last row with entries."""
        if self._ptr is None:
            n = int(self.k[-1] >> SHIFT) + 2 if len(self.k) else 1
            self._ptr = np.searchsorted(self.k, np.arange(n, dtype=np.int64) << SHIFT)
        return self._ptr

    def gather(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The positions of the live entries of rows ``a``, row after row, and for each the index
        into ``a`` it belongs to."""
        ptr = self.ptr()
        inside = a + 1 < len(ptr)
        a = np.where(inside, a, 0)
        lo, hi = ptr[a], ptr[np.minimum(a + 1, len(ptr) - 1)]
        lens = np.where(inside, hi - lo, 0)
        total = int(lens.sum())
        if not total:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ends = np.cumsum(lens)
        pos = np.arange(total) + np.repeat(lo - (ends - lens), lens)
        tag = np.repeat(np.arange(len(a)), lens)
        live = self.live[pos]
        return pos[live], tag[live]


class RowSums:
    """The distinct keys of ``keys`` sorted and the sum of each one's ``weights``: what
    ``np.unique(keys, return_inverse=True)`` and ``np.bincount(inverse, weights)`` give, bit for bit
    (``bincount`` adds in input order either way), at about half the cost on a user's few hundred
    neighbour entries: one plain sort finds the keys, and a key -> slot scratch array, reused from
    call to call (so one per owner, not shared between threads), replaces unique's inverse.

    >>> sums = RowSums()
    >>> [x.tolist() for x in sums(np.array([7, 3, 7, 0]), np.array([0.5, 1.0, 0.25, 2.0]))]
    [[0, 3, 7], [2.0, 1.0, 0.75]]
    >>> [x.tolist() for x in sums(np.zeros(0, np.int64), np.zeros(0))]
    [[], []]
    """

    __slots__ = ("_slot",)

    def __init__(self) -> None:
        self._slot = np.zeros(0, np.intp)

    def __reduce__(self):  # the scratch is no state: a copy starts empty
        return (RowSums, ())

    def __call__(self, keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(keys)
        if not n:
            return np.zeros(0, np.int64), np.zeros(0)
        sk = np.sort(keys)
        keep = np.empty(n, bool)
        keep[0] = True
        np.not_equal(sk[1:], sk[:-1], out=keep[1:])
        rows = sk[keep]
        top = int(rows[-1]) + 1
        if top > len(self._slot):
            self._slot = np.zeros(max(top, 2 * len(self._slot)), np.intp)
        slot = self._slot
        slot[rows] = np.arange(len(rows))
        return rows, np.bincount(slot[keys], weights=weights, minlength=len(rows))


def group_sums(group: np.ndarray, keys: np.ndarray, weights: np.ndarray, n_groups: int):
    """:class:`RowSums` for many groups at once (a chunk of users): the distinct keys of each
    group sorted, each one's weights summed in input order, as ``(bounds, keys, sums)`` with group
    ``g``'s at ``bounds[g]:bounds[g + 1]``. One sort (:func:`key_groups`) and one ``bincount`` for
    the whole chunk.

    >>> b, k, s = group_sums(np.array([1, 0, 1, 1]), np.array([4, 4, 2, 4]), np.array([1., 2., 3., 4.]), 3)
    >>> b.tolist(), k.tolist(), s.tolist()
    ([0, 1, 3, 3], [4, 2, 4], [2.0, 3.0, 5.0])
    """
    group = np.asarray(group, np.int64)
    if not len(keys):
        return np.zeros(n_groups + 1, np.int64), np.zeros(0, np.int64), np.zeros(0)
    uk, _, counts, pos = key_groups(group, keys)  # each key's pairs in input order: so are the sums
    sums = np.bincount(np.repeat(np.arange(len(uk)), counts), weights=weights[pos], minlength=len(uk))
    bounds = np.searchsorted(uk, np.arange(n_groups + 1, dtype=np.int64) << SHIFT)
    return bounds, uk & LOW, sums
