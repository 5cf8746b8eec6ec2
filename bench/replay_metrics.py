"""Metrics of the prequential replay (pure functions and one accumulator, no I/O).

:class:`Prequential` sees every event of the stream, in order, together with the list the system
had published for that user before the event (``None`` when no list existed at all), and keeps:

- HR@K and NDCG@K over the *evaluated* events: events of users with at least one earlier event.
  A hit is the event's item within the first K entries of the list; NDCG@K is ``1/log2(rank+1)``
  for a hit at ``rank`` (1-based), else 0 (one relevant item, so the ideal DCG is 1);
- the same restricted to *cold* items: items with fewer than ``cold_threshold`` earlier
  interactions in the stream (by anyone);
- exposure: how often each item appeared in an evaluated top-K list, hence catalogue coverage
  (distinct catalogue items shown / catalogue size; items outside the catalogue do not count) and the Gini coefficient of exposure over the whole
  catalogue (never-shown items count as zero exposure);
- freshness: the age, in stream time, of the list read at each evaluated event
  (``event ts - list generated_at``), mean and median; and, since an old list of a user who was
  away is not a stale one, how many of the user's own earlier events the list did not reflect yet
  (events at or after its ``generated_at``: lists are written before the event that crosses the
  boundary is learned), mean and the share of evaluated events whose list reflected them all;
- per evaluated event its time and hit, for the HR-over-time plot.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

K = 10
COLD_THRESHOLD = 5


def rank_of(item: str, top: Sequence[str], k: int = K) -> int | None:
    """1-based rank of ``item`` among the first ``k`` of ``top``, or None.

    >>> rank_of("b", ["a", "b", "c"]), rank_of("c", ["a", "b", "c"], k=2), rank_of("z", [])
    (2, None, None)
    """
    for r, x in enumerate(top[:k], 1):
        if x == item:
            return r
    return None


def ndcg(rank: int | None) -> float:
    """NDCG of a single relevant item found at ``rank`` (1-based).

    >>> ndcg(1), round(ndcg(3), 4), ndcg(None)
    (1.0, 0.5, 0.0)
    """
    return 0.0 if rank is None else 1.0 / math.log2(rank + 1)


def gini(counts: Iterable[float]) -> float:
    """Gini coefficient of non-negative values: 0 when all equal, ``1 - 1/n`` when one holds all.

    >>> gini([5, 5, 5, 5]), gini([0, 0, 0, 8]), round(gini([1, 2, 3, 4]), 4)
    (0.0, 0.75, 0.25)
    """
    x = np.sort(np.asarray(list(counts), dtype=np.float64))
    n, total = len(x), float(x.sum()) if len(x) else 0.0
    if n == 0 or total <= 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def coverage(shown: Iterable[str], catalogue_size: int, catalogue: Iterable[str] | None = None) -> float:
    """Share of the catalogue that appeared at least once; with ``catalogue``, only its items count
    (a list may show an item that events named but the catalogue never announced), so it never
    exceeds 1.

    >>> coverage(["a", "b", "a"], 4)
    0.5
    >>> coverage(["a", "x", "y", "z"], 2, catalogue=["a", "b"])
    0.5
    """
    if not catalogue_size:
        return 0.0
    distinct = set(shown)
    if catalogue is not None:
        distinct &= set(catalogue)
    return min(1.0, len(distinct) / catalogue_size)


def lorenz(counts: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz curve: cumulative share of items (x) against cumulative share of exposure (y).

    >>> x, y = lorenz([0, 0, 2, 2])
    >>> x.tolist(), y.tolist()
    ([0.0, 0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.0, 0.5, 1.0])
    """
    c = np.sort(np.asarray(list(counts), dtype=np.float64))
    n, total = len(c), c.sum()
    x = np.linspace(0.0, 1.0, n + 1)
    y = np.concatenate([[0.0], np.cumsum(c) / total]) if total > 0 else x.copy()
    return x, y


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (NaN for no values).

    >>> quantile([4.0, 1.0, 3.0, 2.0], 0.5), quantile([1.0], 0.99)
    (2.0, 1.0)
    """
    if not len(values):
        return float("nan")
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    return float(ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))])


class Prequential:
    """Accumulates the metrics above; call :meth:`event` for every event, before it is learned.

    >>> p = Prequential(catalogue_size=4)
    >>> p.event("u", "a", 10.0, None, None)            # first event of u: not evaluated
    >>> p.event("u", "b", 20.0, ["b", "c"], 15.0)      # hit at rank 1; b is cold; list 5 s old
    >>> p.event("u", "d", 30.0, ["c", "a"], 20.0)      # miss; the list predates u's event at 20
    >>> r = p.result()
    >>> r["hr@10"], r["ndcg@10"], r["evaluated"], r["cold_hr@10"], r["coverage"], r["freshness_mean_s"]
    (0.5, 0.5, 2, 0.5, 0.75, 7.5)
    >>> r["unreflected_events_mean"], r["up_to_date_share"]
    (0.5, 0.5)
    """

    def __init__(self, catalogue_size: int, k: int = K, cold_threshold: int = COLD_THRESHOLD):
        self.catalogue_size = catalogue_size
        self.k = k
        self.cold_threshold = cold_threshold
        self.user_events: Counter[str] = Counter()
        self.item_events: Counter[str] = Counter()
        self.exposure: Counter[str] = Counter()
        self.events = 0
        self.evaluated = 0
        self.hits = 0
        self.ndcg_sum = 0.0
        self.cold_evaluated = 0
        self.cold_hits = 0
        self.no_list = 0
        self.ages = array("d")
        self.unreflected = 0
        self.up_to_date = 0
        self.user_times: dict[str, array] = {}
        self.times = array("d")  # ts of each evaluated event
        self.positions = array("l")  # its position in the stream (0-based)
        self.hit_flags = array("b")

    def event(self, user: str, item: str, ts: float, top: Sequence[str] | None,
              generated_at: float | None) -> None:  # fmt: skip
        """Score one event against ``top`` (the user's list as read before it), then count it."""
        self.events += 1
        if self.user_events[user] > 0:
            top = top or ()
            head = list(top[: self.k])
            r = rank_of(item, head, self.k)
            hit = r is not None
            self.evaluated += 1
            self.hits += hit
            self.ndcg_sum += ndcg(r)
            if self.item_events[item] < self.cold_threshold:
                self.cold_evaluated += 1
                self.cold_hits += hit
            self.exposure.update(head)
            past = self.user_times[user]
            if generated_at is None:
                self.no_list += 1
                behind = len(past)
            else:
                self.ages.append(ts - generated_at)
                behind = len(past) - bisect_left(past, generated_at)
            self.unreflected += behind
            self.up_to_date += behind == 0
            self.times.append(ts)
            self.positions.append(self.events - 1)
            self.hit_flags.append(1 if hit else 0)
        self.user_events[user] += 1
        self.item_events[item] += 1
        times = self.user_times.get(user)
        if times is None:
            times = self.user_times[user] = array("d")
        times.append(ts)

    def exposure_counts(self, catalogue: Iterable[str]) -> np.ndarray:
        """Exposure of every catalogue item (zeros included), plus any shown item outside it."""
        names = list(catalogue)
        known = set(names)
        counts = [self.exposure.get(i, 0) for i in names]
        counts += [c for i, c in self.exposure.items() if i not in known]
        return np.asarray(counts, dtype=np.float64)

    def result(self, catalogue: Iterable[str] | None = None) -> dict:
        ev = self.evaluated
        catalogue = list(catalogue) if catalogue is not None else None
        counts = (self.exposure_counts(catalogue) if catalogue is not None else
                  np.asarray(list(self.exposure.values()) + [0] * max(0, self.catalogue_size - len(self.exposure))))  # fmt: skip
        ages = np.frombuffer(self.ages, dtype=np.float64) if len(self.ages) else np.zeros(0)
        return {
            "hr@10": self.hits / ev if ev else 0.0,
            "ndcg@10": self.ndcg_sum / ev if ev else 0.0,
            "cold_hr@10": self.cold_hits / self.cold_evaluated if self.cold_evaluated else 0.0,
            "coverage": coverage(self.exposure, self.catalogue_size, catalogue),
            "gini": gini(counts),
            "freshness_mean_s": float(ages.mean()) if len(ages) else float("nan"),
            "freshness_p50_s": quantile(ages, 0.5),
            "freshness_p90_s": quantile(ages, 0.9),
            "unreflected_events_mean": self.unreflected / ev if ev else 0.0,
            "up_to_date_share": self.up_to_date / ev if ev else 0.0,
            "events": self.events,
            "evaluated": ev,
            "hits": self.hits,
            "cold_evaluated": self.cold_evaluated,
            "cold_hits": self.cold_hits,
            "evaluated_without_list": self.no_list,
        }

    def hr_split(self, position: int) -> tuple[float, float]:
        """HR@K of the evaluated events before and from stream position ``position`` (e.g. half
        the events: a model tuned on the first half is judged on the second).

        >>> p = Prequential(catalogue_size=3)
        >>> for i, top in enumerate([None, ["b"], ["x"], ["d"], ["x"]]):
        ...     p.event("u", "abcde"[i], float(i), top, 0.0)
        >>> p.hr_split(3)
        (0.5, 0.5)
        """
        pos = np.frombuffer(self.positions, dtype=np.int64) if len(self.positions) else np.zeros(0, np.int64)
        hits = np.frombuffer(self.hit_flags, dtype=np.int8) if len(self.hit_flags) else np.zeros(0, np.int8)
        early = pos < position
        first = float(hits[early].mean()) if early.any() else float("nan")
        second = float(hits[~early].mean()) if (~early).any() else float("nan")
        return first, second

    def series(self) -> tuple[np.ndarray, np.ndarray]:
        """(ts, hit 0/1) of every evaluated event, in stream order."""
        return (np.frombuffer(self.times, dtype=np.float64).copy() if len(self.times) else np.zeros(0),
                np.frombuffer(self.hit_flags, dtype=np.int8).astype(np.float64))  # fmt: skip
