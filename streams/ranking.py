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

New signals are just more :class:`Signal` objects with a name. The content signals of
:mod:`streamrec.streams.content` (``embedding``, ``fresh``, ``recent``, ``tags``) have their own
weights in :class:`BlendWeights`; a runtime source is weighed through ``extra`` only (which can also
override a named weight). Two further knobs exist for content signals: ``normalise="raw"`` takes
values already on a [0, 1] scale as they are (so "the best of a bad lot" does not become 1), and
``missing="mean"`` gives a candidate the signal has no opinion on (an item with no embedding yet)
the mean of the others, so missing enrichment is neutral rather than a penalty.

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

from streamrec.settings import SIGNALS

NORMALISERS = ("max", "minmax", "raw")
MISSING = ("zero", "mean")
#: weights with their own field in BlendWeights (defined with the settings, which validate
#: ``STREAMREC_BLEND_WEIGHTS`` against them without importing the model code)
NAMED = SIGNALS


@dataclass(frozen=True, slots=True)
class BlendWeights:
    """How much each normalised signal counts; unknown names weigh ``default_extra``.

    ``extra`` names further signals (runtime sources) and, when it names one of the fields, wins
    over that field. The content fields default to 0 here, so a hand-built ``BlendWeights`` is the
    CRM blend alone; the recommender's default is :data:`DEFAULT_WEIGHTS`, which weighs them:

    >>> w = BlendWeights(extra=(("fresh", 2.0), ("mine", 0.4)))
    >>> w.of("fresh"), w.of("mine"), w.of("embedding"), w.of("unknown")
    (2.0, 0.4, 0.0, 0.0)
    >>> [DEFAULT_WEIGHTS.of(name) for name in ("embedding", "fresh", "recent", "tags")]
    [0.9, 1.0, 0.2, 0.05]
    """

    cooccur: float = 1.0
    mf: float = 0.3
    popularity: float = 0.3  # tuned on the first half of MovieLens (0.05 -> 0.3), CRM and LLM alike
    #: content signals (see streamrec.streams.content); they exist only when enrichment arrived,
    #: so their weights change nothing for a recommender without embeddings or tags
    embedding: float = 0.0
    fresh: float = 0.0
    recent: float = 0.0
    tags: float = 0.0
    #: ordered transitions (streams/transitions.py): what users take next after their recent items
    transitions: float = 0.0
    #: weights of further signals by name, e.g. (("my-source", 0.5),); overrides the fields above
    extra: tuple[tuple[str, float], ...] = ()
    default_extra: float = 0.0

    def of(self, name: str, source: bool = False) -> float:
        """The weight of signal ``name``; a runtime ``source`` is weighed through ``extra`` only,
        so it never inherits a built-in signal's weight by sharing its name.

        >>> BlendWeights(fresh=0.5).of("fresh"), BlendWeights(fresh=0.5).of("fresh", source=True)
        (0.5, 0.0)
        """
        for key, weight in self.extra:
            if key == name:
                return weight
        if name in NAMED and not source:
            return getattr(self, name)
        return self.default_extra


#: the recommender's default blend: the CRM weights plus the content signals
#: embedding and recent: tuned on the first half of the MovieLens stream (see bench/replay.py)
CONTENT_WEIGHTS = {"embedding": 0.9, "fresh": 1.0, "recent": 0.2, "tags": 0.05}
#: transitions: set on the first half of the MovieLens stream (crm at 5 s, see the README)
TRANSITIONS_WEIGHT = 0.5
DEFAULT_WEIGHTS = BlendWeights(**CONTENT_WEIGHTS, transitions=TRANSITIONS_WEIGHT)


@dataclass(frozen=True, slots=True)
class Signal:
    """One source's scores for every item row (shorter vectors are padded with "no opinion")."""

    name: str
    scores: np.ndarray
    #: how many of its best allowed rows this signal adds to the candidate set (0: scores only)
    n_candidates: int = 200
    #: "max" for non-negative evidence (0 = none), "minmax" for scores of any sign, "raw" for
    #: values already on a [0, 1] scale (clipped)
    normalise: str = field(default="max")
    #: what a candidate the signal has no opinion on (-inf/nan) gets: 0, or the candidates' mean
    missing: str = field(default="zero")
    #: from a runtime source (weighed through ``BlendWeights.extra`` only)
    source: bool = field(default=False)

    def __post_init__(self) -> None:
        if self.normalise not in NORMALISERS:
            raise ValueError(f"normalise must be one of {NORMALISERS}")
        if self.missing not in MISSING:
            raise ValueError(f"missing must be one of {MISSING}")

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
    if k >= m:  # every position: a stable sort keeps ties in position order
        return np.argsort(-values, kind="stable")
    # ``.nonzero()[0]``, not ``np.flatnonzero``: the same rows without its ravel (2 against 4 µs
    # at a list's ~900 candidates; a pass calls this a dozen times a list)
    idx = (values >= np.partition(values, m - k)[m - k]).nonzero()[0]
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
    rows = ok.nonzero()[0]
    return rows[best_k(scores[rows], n)]


def normalise(values: np.ndarray, how: str) -> np.ndarray:
    """Scale a signal's values at the candidates into [0, 1]; missing values become 0.

    >>> normalise(np.array([2.0, 4.0, -np.inf]), "max").tolist()
    [0.5, 1.0, 0.0]
    >>> normalise(np.array([-1.0, 1.0, np.nan]), "minmax").tolist()
    [0.0, 1.0, 0.0]
    >>> normalise(np.array([0.25, 1.5, -1.0, -np.inf]), "raw").tolist()
    [0.25, 1.0, 0.0, 0.0]
    """
    if not len(values):
        return np.zeros(0)
    ok = np.isfinite(values)
    return _normalise(values, how, None if ok.all() else ok)


def _normalise(values: np.ndarray, how: str, ok: np.ndarray | None) -> np.ndarray:
    """:func:`normalise` of non-empty ``values``; ``ok``: their finite mask, ``None`` when all are
    finite (the common case at candidates: no masking, the same values as the masked path)."""
    if ok is None:
        if how == "raw":
            return np.clip(values, 0.0, 1.0).astype(np.float64, copy=False)
        if how == "max":
            top = values.max()
            if top > 0:
                return (np.maximum(values, 0.0) / top).astype(np.float64, copy=False)
            return np.zeros(len(values))
        lo, hi = values.min(), values.max()
        if hi > lo:
            return ((values - lo) / (hi - lo)).astype(np.float64, copy=False)
        return np.ones(len(values))
    out = np.zeros(len(values))
    if not ok.any():
        return out
    v = values[ok]
    if how == "raw":
        out[ok] = np.clip(v, 0.0, 1.0)
    elif how == "max":
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
        top_n(s.dense(n), s.n_candidates, allowed, positive=s.normalise != "minmax")
        for s in signals
        if s.n_candidates > 0
    ]
    if not picks:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(picks))


def features(signal: Signal, values: np.ndarray) -> np.ndarray:
    """One signal's normalised values at the candidates (``values``: its raw scores there).

    >>> s = Signal("embedding", np.zeros(0), normalise="minmax", missing="mean")
    >>> features(s, np.array([0.2, -np.inf, 0.6, 0.4])).round(6).tolist()
    [0.0, 0.5, 1.0, 0.5]
    """
    if not len(values):
        return np.zeros(0)
    # one finiteness test for both steps; a finite sum means every value is finite (an inf or NaN
    # makes it non-finite; a sum that overflows only sends the values down the masked path)
    ok = None if np.isfinite(values.sum()) else np.isfinite(values)
    if ok is not None and ok.all():
        ok = None
    x = _normalise(values, signal.normalise, ok)
    if signal.missing == "mean" and ok is not None and ok.any():
        x[~ok] = x[ok].mean()
    return x


def feature_matrix(signals: list[Signal], cand: np.ndarray, n: int) -> np.ndarray:
    """``len(cand) x len(signals)``: every signal normalised over the candidate set."""
    out = np.zeros((len(cand), len(signals)))
    for j, s in enumerate(signals):
        out[:, j] = features(s, s.dense(n)[cand])
    return out


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
        w = weights.of(s.name, s.source)
        if w:
            total += w * features(s, s.dense(n)[cand])
    best = best_k(total, k)  # cand is sorted, so ties go to the lower row
    return cand[best], total[best]

