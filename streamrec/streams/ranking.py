"""Candidate generation, blending, filtering and top-K, on dense per-item score vectors.

Every signal is a numpy vector over the shared item rows (see ``ItemIndex``), so one user's ranking
is a handful of vectorised passes, not a Python loop over items: each signal nominates its top
``n_candidates`` allowed rows (``argpartition``), the union is the candidate set, every signal is
read at every candidate and normalised over the candidate set, and the weighted sum decides.

Normalising over the candidates rather than globally keeps the weights meaningful across users:
a weight says how much a signal's best candidate beats its worst, whatever the raw scale. Counts
(co-occurrence, popularity) are divided by their maximum, so "no evidence" stays 0; MF scores can
be negative and are min-max scaled. A signal with no opinion on an item (``-inf`` or ``nan``)
contributes 0 there.

New signals (embedding neighbours, fresh items, ...) are just more :class:`Signal` objects with a
name; :class:`BlendWeights` carries their weights in ``extra`` without a schema change.

>>> import numpy as np
>>> allowed = np.array([True, True, False, True])
>>> co = Signal("cooccur", np.array([0.0, 2.0, 9.0, 1.0]))
>>> pop = Signal("popularity", np.array([5.0, 1.0, 1.0, 0.0]))
>>> rows, scores = rank([co, pop], BlendWeights(cooccur=1.0, popularity=0.5), allowed, k=3)
>>> rows.tolist(), scores.round(2).tolist()      # row 2 is not allowed; ties go to the lower row
([1, 0, 3], [1.1, 0.5, 0.5])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NORMALISERS = ("max", "minmax")


@dataclass(frozen=True, slots=True)
class BlendWeights:
    """How much each normalised signal counts; unknown names weigh ``default_extra``.

    >>> BlendWeights(extra=(("embedding", 0.4),)).of("embedding")
    0.4
    """

    cooccur: float = 1.0
    mf: float = 0.3
    popularity: float = 0.05
    #: weights of further signals by name, e.g. (("embedding", 0.5), ("fresh", 0.2))
    extra: tuple[tuple[str, float], ...] = ()
    default_extra: float = 0.0

    def of(self, name: str) -> float:
        if name in ("cooccur", "mf", "popularity"):
            return getattr(self, name)
        for key, weight in self.extra:
            if key == name:
                return weight
        return self.default_extra


@dataclass(frozen=True, slots=True)
class Signal:
    """One source's scores for every item row (shorter vectors are padded with "no opinion")."""

    name: str
    scores: np.ndarray
    #: how many of its best allowed rows this signal adds to the candidate set (0: scores only)
    n_candidates: int = 200
    #: "max" for non-negative evidence (0 = none), "minmax" for scores of any sign
    normalise: str = field(default="max")

    def __post_init__(self) -> None:
        if self.normalise not in NORMALISERS:
            raise ValueError(f"normalise must be one of {NORMALISERS}")

    @classmethod
    def sparse(cls, name: str, rows, values, n_items: int, **kw) -> Signal:
        """A signal known for a few rows only (e.g. nearest neighbours by embedding).

        >>> Signal.sparse("fresh", [2], [1.0], 4).scores.tolist()
        [-inf, -inf, 1.0, -inf]
        """
        dense = np.full(n_items, -np.inf)
        dense[np.asarray(rows, dtype=np.int64)] = values
        return cls(name, dense, **kw)

    def dense(self, n: int) -> np.ndarray:
        s = np.asarray(self.scores, dtype=np.float64)
        if len(s) >= n:
            return s[:n]
        return np.concatenate([s, np.full(n - len(s), -np.inf)])


def best_k(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values, best first, ties by position (values: no NaN).

    >>> best_k(np.array([1.0, 3.0, 3.0, 2.0]), 2).tolist()
    [1, 2]
    """
    m = len(values)
    if k <= 0 or m == 0:
        return np.zeros(0, dtype=np.int64)
    if k >= m:
        idx = np.arange(m)
    else:
        idx = np.flatnonzero(values >= np.partition(values, m - k)[m - k])
    return idx[np.lexsort((idx, -values[idx]))[:k]]


def top_n(scores: np.ndarray, n: int, allowed: np.ndarray | None = None, positive: bool = False) -> np.ndarray:
    """Rows of the ``n`` largest finite scores, best first, skipping disallowed rows.

    >>> top_n(np.array([3.0, -np.inf, 5.0, 1.0]), 2).tolist()
    [2, 0]
    """
    ok = np.isfinite(scores)
    if positive:
        ok &= scores > 0
    if allowed is not None:
        ok &= allowed
    rows = np.flatnonzero(ok)
    return rows[best_k(scores[rows], n)]


def normalise(values: np.ndarray, how: str) -> np.ndarray:
    """Scale a signal's values at the candidates into [0, 1]; missing values become 0.

    >>> normalise(np.array([2.0, 4.0, -np.inf]), "max").tolist()
    [0.5, 1.0, 0.0]
    >>> normalise(np.array([-1.0, 1.0, np.nan]), "minmax").tolist()
    [0.0, 1.0, 0.0]
    """
    ok = np.isfinite(values)
    out = np.zeros(len(values))
    if not ok.any():
        return out
    v = values[ok]
    if how == "max":
        top = v.max()
        if top > 0:
            out[ok] = np.maximum(v, 0.0) / top
    else:
        lo, hi = v.min(), v.max()
        out[ok] = (v - lo) / (hi - lo) if hi > lo else 1.0
    return out


def candidates(signals: list[Signal], allowed: np.ndarray) -> np.ndarray:
    """Sorted union of every signal's nominated rows."""
    n = len(allowed)
    picks = [
        top_n(s.dense(n), s.n_candidates, allowed, positive=s.normalise == "max")
        for s in signals
        if s.n_candidates > 0
    ]
    if not picks:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(picks))


def rank(
    signals: list[Signal], weights: BlendWeights, allowed: np.ndarray, k: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` allowed rows by blended score, best first (ties broken by row): ``(rows, scores)``."""
    n = len(allowed)
    cand = candidates(signals, allowed)
    if not len(cand) or k <= 0:
        return cand[:0], np.zeros(0)
    total = np.zeros(len(cand))
    for s in signals:
        w = weights.of(s.name)
        if w:
            total += w * normalise(s.dense(n)[cand], s.normalise)
    best = best_k(total, k)  # cand is sorted, so ties go to the lower row
    return cand[best], total[best]
