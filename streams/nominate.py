"""Pure helpers of a ranking pass (:mod:`streamrec.streams.candidates`): choosing a signal's
nominees and reading its values at candidate rows, without a score vector over the catalogue.

Why apart: they are the per-user inner loop of every pass, pure functions of arrays (doctested
here), while the pass itself is bookkeeping over the recommender's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from streamrec.streams.ranking import BlendWeights, Signal, best_k, features, top_n

rows_none = np.zeros(0, dtype=np.int64)


def nominate(rows: np.ndarray, values: np.ndarray, n: int, allowed: np.ndarray, positive: bool) -> np.ndarray:
    """The ``n`` best allowed ``rows`` by ``values`` (finite, and > 0 with ``positive``), in the
    order of ``rows``: nominees are a set (the pass ranks their union), so they are not sorted.

    >>> nominate(np.array([2, 5, 7]), np.array([1.0, 3.0, 2.0]), 2, np.array([True] * 6 + [False] * 2), True).tolist()
    [2, 5]
    """
    if n <= 0 or not len(rows):
        return rows[:0]
    ok = allowed[rows] & np.isfinite(values)
    if positive:
        ok &= values > 0
    idx = ok.nonzero()[0]
    return rows[idx[best_set(values[idx], n)]]


def best_set(values: np.ndarray, k: int) -> np.ndarray:
    """The positions :func:`~streamrec.streams.ranking.best_k` picks (ties at the cut go to the
    lower position), in position order: the same set without sorting it (11 against 15 µs for
    200 of a few hundred values). ``values``: no NaN.

    >>> best_set(np.array([1.0, 3.0, 3.0, 2.0, 3.0]), 2).tolist()
    [1, 2]
    >>> best_set(np.array([1.0, 3.0, 2.0]), 5).tolist()
    [0, 1, 2]
    """
    m = len(values)
    if k <= 0 or m == 0:
        return rows_none
    if k >= m:
        return np.arange(m)
    thr = np.partition(values, m - k)[m - k]
    keep = values > thr  # fewer than k: the rest are ties at the threshold, lowest positions first
    keep[(values == thr).nonzero()[0][: k - int(np.count_nonzero(keep))]] = True
    return keep.nonzero()[0]


def top_superset(values: np.ndarray, t: int) -> np.ndarray:
    """Sorted positions that include those of the ``t`` largest ``values`` (and maybe a few more).

    Why: selecting a user's best few hundred MF rows out of a whole catalogue with
    ``argpartition`` cost more than the product that scored them. A threshold read from a strided
    sample (``3 t`` of the values expected above it) and one comparison pass find a superset;
    when fewer than ``t`` values pass (unlucky sample, NaN) it falls back to the full selection.
    The caller picks its best among the superset, so its choice is the same as over the exact top
    ``t``.

    >>> v = np.random.default_rng(0).normal(size=100_000)
    >>> got = top_superset(v, 200)
    >>> set(np.argsort(-v)[:200].tolist()) <= set(got.tolist()), 200 <= len(got) < 2_000
    (True, True)
    >>> top_superset(np.array([3.0, 1.0, 2.0]), 2).tolist()
    [0, 2]
    """
    m = len(values)
    if t >= m:
        return np.arange(m)
    if t <= 0:
        return rows_none
    if m >= 32 * t:
        stride = max(1, min(t, m // (16 * t)))  # about 3 t + stride values pass
        sample = values[::stride]
        q = min(len(sample), 3 * t // stride + 1)
        thr = np.partition(sample, len(sample) - q)[len(sample) - q]
        pos = (values >= thr).nonzero()[0]
        if len(pos) >= t:
            return pos
    pos = np.argpartition(-values, t - 1)[:t]
    pos.sort()
    return pos


#: items per block of :func:`block_supersets`: the block's products, proxies and mask stay in the cache
MF_BLOCK = 4096


def block_supersets(P: np.ndarray, QT: np.ndarray, bias: np.ndarray | None, ts: list[int],
                    block: int = MF_BLOCK) -> list[tuple[np.ndarray, np.ndarray] | None]:  # fmt: skip
    """For each row ``i`` of ``P`` (users' factors, float32): :func:`top_superset` of the proxy
    ``P[i] @ QT + bias`` for ``ts[i]``, and the products ``P[i] @ QT`` at those positions, as
    ``(positions, products)``; ``None`` where the sampled threshold passes fewer than ``ts[i]``
    (the caller then selects from the whole row).

    Why blocks: the whole products of a chunk of 64 users and 100k items are 25 MB, and the
    proxy another 25 MB, each written, read back and scanned per user; a block's stay in the cache,
    so the product is read once. The thresholds are :func:`top_superset`'s, read from the same
    strided samples; every product is the one a whole product gives (the same users, ``P``, in
    every block: a BLAS product rounds a row differently with other rows around it), so the
    positions and products are the same to the bit.

    >>> rng = np.random.default_rng(1)
    >>> P, QT = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4, 20_000)).astype(np.float32)
    >>> b = rng.normal(size=20_000).astype(np.float32)
    >>> got = block_supersets(P, QT, b, [100, 120, 30_000], block=3000)
    >>> full = P @ QT
    >>> [np.array_equal(got[i][0], top_superset(full[i] + b, t)) for i, t in ((0, 100), (1, 120))]
    [True, True]
    >>> np.array_equal(got[0][1], full[0][got[0][0]]), got[2]
    (True, None)
    """
    n, m = P.shape[0], QT.shape[1]
    thr = np.full(n, np.inf, dtype=np.float32)  # inf: nothing passes, the caller selects
    by_stride: dict[int, list[int]] = {}
    for i, t in enumerate(ts):
        if 0 < t < m and m >= 32 * t:
            by_stride.setdefault(max(1, min(t, m // (16 * t))), []).append(i)
    for stride, users in by_stride.items():
        sample = P @ QT[:, ::stride]
        if bias is not None:
            sample += bias[::stride]
        for i in users:
            row, q = sample[i], min(sample.shape[1], 3 * ts[i] // stride + 1)
            thr[i] = np.partition(row, len(row) - q)[len(row) - q]
    rows_at, cols_at, prods = [], [], []
    S = np.empty((n, min(block, m)), dtype=np.float32)
    B = np.empty_like(S) if bias is not None else S
    for start in range(0, m, block):
        end = min(m, start + block)
        Sb = np.matmul(P, QT[:, start:end], out=S[:, : end - start])
        Bb = Sb if bias is None else np.add(Sb, bias[start:end], out=B[:, : end - start])
        hit = np.flatnonzero(Bb >= thr[:, None])  # flat: a 1-d nonzero is several times faster
        r, c = np.divmod(hit, end - start)
        rows_at.append(r)
        cols_at.append(c + start)
        prods.append(Sb.ravel()[hit] if Sb.flags.c_contiguous else Sb[r, c])
    r, c, v = np.concatenate(rows_at), np.concatenate(cols_at), np.concatenate(prods)
    order = np.argsort(r, kind="stable")  # by user, positions ascending within one
    c, v = c[order], v[order]
    cut = np.searchsorted(r[order], np.arange(n + 1)).tolist()
    return [(c[cut[i] : cut[i + 1]], v[cut[i] : cut[i + 1]]) if cut[i + 1] - cut[i] >= ts[i] else None
            for i in range(n)]  # fmt: skip


def lookup(rows: np.ndarray, values: np.ndarray, default: float) -> Callable[[np.ndarray], np.ndarray]:
    """``values`` at sorted ``rows``, ``default`` elsewhere, as a function of candidate rows.

    >>> lookup(np.array([2, 5]), np.array([1.0, 3.0]), -np.inf)(np.array([1, 5, 9])).tolist()
    [-inf, 3.0, -inf]
    """

    def at(cand: np.ndarray) -> np.ndarray:
        out = np.full(len(cand), default)
        if len(rows):
            pos = np.minimum(np.searchsorted(rows, cand), len(rows) - 1)
            hit = rows[pos] == cand
            out[hit] = values[pos[hit]]
        return out

    return at


class DenseLookup:
    """:func:`lookup` for one user at a time, over a dense array of every row of a pass.

    Why: a list's ~900 candidates are read from it in one gather (5 µs) where the sorted search
    of :func:`lookup` takes six calls (28 µs), and a pass reads three or four such signals a list.
    The rows set for a user are put back to ``default`` by :meth:`clear` (the caller's job once the
    user is ranked), so a user costs ``O(rows)``, not ``O(catalogue)``; ``rows`` distinct and below
    the array's length (the pass's :func:`below`).

    >>> d = DenseLookup(6, 0.0)
    >>> at = d.lookup(np.array([2, 5]), np.array([1.0, 3.0]))
    >>> at(np.array([1, 5, 2])).tolist()
    [0.0, 3.0, 1.0]
    >>> d.clear(); at(np.array([5])).tolist()
    [0.0]
    """

    def __init__(self, n: int, default: float):
        self.default = default
        self._dense = np.full(n, default)
        self._set: list[np.ndarray] = []

    def lookup(self, rows: np.ndarray, values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        self._dense[rows] = values
        self._set.append(rows)
        return self._dense.take  # a copy at the candidate rows

    def clear(self) -> None:
        for rows in self._set:
            self._dense[rows] = self.default
        self._set.clear()


def lift_scalar(cos: np.ndarray, mu: float, top: float) -> np.ndarray:
    """:func:`~streamrec.streams.content.lift` from the reference's mean and maximum.

    >>> lift_scalar(np.array([0.9, 0.5, 0.1]), 0.4, 0.9).round(3).tolist()
    [1.0, 0.2, 0.0]
    """
    if top <= mu:
        return np.where(cos >= top, 1.0, 0.0)
    return np.clip((cos - mu) / (top - mu), 0.0, 1.0)


def below(rows: np.ndarray, vals: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``rows`` (and their values) below ``n``: rows that arrived after a pass began are
    left to the next pass.

    >>> [a.tolist() for a in below(np.array([1, 4, 9]), np.array([0.1, 0.4, 0.9]), 5)]
    [[1, 4], [0.1, 0.4]]
    """
    if len(rows) and rows[-1] >= n:
        m = int(np.searchsorted(rows, n))
        return rows[:m], vals[:m]
    return rows, vals


def union_sorted(parts: list[np.ndarray]) -> np.ndarray:
    """The sorted distinct rows of ``parts`` (``np.unique`` of their concatenation).

    Why not ``np.unique``: numpy 2.x answers it with a hash table and then sorts, 137 µs for the
    ~900 rows of a list's nominees against 17 µs for one sort and a comparison; a pass calls it
    three times a list.

    >>> union_sorted([np.array([5, 1, 3]), np.array([3, 9]), np.array([], dtype=np.int64)]).tolist()
    [1, 3, 5, 9]
    >>> union_sorted([]).tolist()
    []
    """
    c = np.concatenate(parts) if len(parts) > 1 else (parts[0].copy() if parts else rows_none)
    if len(c) < 2:
        return c
    c.sort()
    keep = np.empty(len(c), dtype=bool)
    keep[0] = True
    np.not_equal(c[1:], c[:-1], out=keep[1:])
    return c[keep]


def hit_rows(hits: np.ndarray) -> np.ndarray:
    """An index search's rows without its ``-1`` padding, as int64.

    >>> hit_rows(np.array([7, 3, -1, -1])).tolist()
    [7, 3]
    """
    return hits[hits >= 0].astype(np.int64)


@dataclass(slots=True)
class Nominated:
    """A signal's nominees (``rows``) and its exact value at any rows (``values``; -inf: no opinion).

    Not frozen: a pass builds eight a list, and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) costs four times a plain one's (1.8 against 0.4 µs)."""

    name: str
    rows: np.ndarray
    values: Callable[[np.ndarray], np.ndarray]
    normalise: str = "max"
    missing: str = "zero"
    source: bool = False


def feature_columns(signals: list[Nominated], rows: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``len(rows) x len(signals)``: each signal's values at ``rows`` normalised over them (the
    :class:`Nominated` form of :func:`~streamrec.streams.ranking.feature_matrix`); with
    ``weights``, the columns of signals weighed 0 are left at 0 unread.

    >>> co = Nominated("cooccur", np.array([1]), lambda c: np.array([0.0, 2.0, 4.0])[c])
    >>> mf = Nominated("mf", np.array([2]), lambda c: np.array([-1.0, 1.0, 3.0])[c], "minmax")
    >>> feature_columns([co, mf], np.array([1, 2])).tolist(), feature_columns([co, mf], np.array([1, 2]), np.array([0.0, 1.0])).tolist()
    ([[0.5, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]])
    """
    X = np.zeros((len(rows), len(signals)))
    for c, s in enumerate(signals):
        if weights is None or weights[c]:
            X[:, c] = features(s, s.values(rows))
    return X


def rank_nominated(signals: list[Nominated], weights: BlendWeights, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~streamrec.streams.ranking.rank` over the union of the nominees: ``(rows, scores)``.

    >>> co = Nominated("cooccur", np.array([1, 3]), lambda c: np.array([0.0, 2.0, 9.0, 1.0])[c])
    >>> pop = Nominated("popularity", np.array([0]), lambda c: np.array([5.0, 1.0, 1.0, 0.0])[c])
    >>> rows, scores = rank_nominated([co, pop], BlendWeights(cooccur=1.0, popularity=0.5), k=3)
    >>> rows.tolist(), scores.round(2).tolist()
    ([1, 0, 3], [1.1, 0.5, 0.5])
    """
    picks = [s.rows for s in signals if len(s.rows)]
    if not picks or k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    cand = union_sorted(picks)
    total = np.zeros(len(cand))
    for s in signals:
        w = weights.of(s.name, s.source)
        if w:
            total += w * features(s, s.values(cand))
    best = best_k(total, k)  # cand is sorted, so ties go to the lower row
    return cand[best], total[best]


def as_nominated(signals: list[Signal], allowed: np.ndarray) -> list[Nominated]:
    """Dense :class:`~streamrec.streams.ranking.Signal` objects as :class:`Nominated` ones: each
    nominates its ``n_candidates`` best allowed rows (sorted), as
    :func:`~streamrec.streams.ranking.candidates` picks them.

    >>> s = Signal("cooccur", np.array([0.0, 2.0, 9.0, 1.0]), n_candidates=2)
    >>> g, = as_nominated([s], np.array([True, True, False, True]))
    >>> g.rows.tolist(), g.values(np.array([2, 3])).tolist()
    ([1, 3], [9.0, 1.0])
    """
    n = len(allowed)
    out = []
    for s in signals:
        dense = s.dense(n)
        rows = rows_none
        if s.n_candidates > 0:
            rows = np.sort(top_n(dense, s.n_candidates, allowed, positive=s.normalise != "minmax"))
        out.append(Nominated(s.name, rows, dense.take, s.normalise, s.missing, s.source))
    return out
