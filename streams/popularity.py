"""Trending popularity: exponentially decayed interaction counts, the trending list and the
cold-start fallback.

Popularity keeps exponentially decayed counts without touching every item on every event: an event
at ``ts`` adds ``exp(lambda * (ts - t0))`` and reads divide by the same factor at "now"; the scale
is folded back into the counts before it can overflow.

>>> pop = Popularity(PopularityConfig(half_life_s=10.0))
>>> pop.learn_click("u1", "old", ts=0.0); pop.learn_click("u2", "new", ts=10.0)
>>> pop.top(2)
[('new', 1.0), ('old', 0.5)]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Hashable

import numpy as np

from streamrec.streams.itemdelta import DenseBase, apply_rows, rows_of
from streamrec.streams.state import Checkpointable, ItemIndex, RatingPolicy, _policy, _top, grow


@dataclass(frozen=True, slots=True)
class PopularityConfig:
    #: an interaction counts half as much after this many seconds
    #: 30 days: chosen on the first half of the MovieLens stream (6 h made popularity ~3x worse)
    half_life_s: float = 30 * 86400.0
    ratings: RatingPolicy = field(default_factory=RatingPolicy)


class Popularity(Checkpointable):
    """Exponentially decayed interaction counts: the trending list and the cold-start fallback."""

    KIND = "Popularity"
    _RESCALE = 30.0  # fold the scale back in before exp() gets near float64 range

    def __init__(self, config: PopularityConfig | None = None, index: ItemIndex | None = None):
        self.config = config or PopularityConfig()
        self.index = index if index is not None else ItemIndex()
        self._rate = math.log(2.0) / self.config.half_life_s
        self._counts = np.zeros(16)  # scaled by exp(rate * (ts - t0))
        self._t0: float | None = None
        self.now: float | None = None  # latest event time seen
        self._out: list[tuple[int, float | None]] | None = None  # not yet sent (partitioned)
        self._ck = DenseBase()  # the counts as of the last checkpoint (delta checkpoints)

    def learn_click(self, user: Hashable, item: Hashable, ts: float | None = None) -> None:
        self._add(self.index.add(item), ts)

    def learn_rating(self, user: Hashable, item: Hashable, rating: float, ts: float | None = None) -> None:
        if self.config.ratings.positive(rating):
            self._add(self.index.add(item), ts)

    def add_row(self, row: int, ts: float | None) -> None:
        """One positive interaction with item ``row`` at ``ts``."""
        self._add(row, ts)
        if self._out is not None:  # partitioned state: the other workers count it from the delta
            self._out.append((row, ts))

    def track_deltas(self) -> None:
        if self._out is None:
            self._out = []

    def take_delta(self) -> list[tuple[int, float | None]]:
        """The (item row, event time) of every interaction since the last call."""
        out, self._out = self._out or [], [] if self._out is not None else None
        return out

    def add_delta(self, rows: list[int], times: list[float | None]) -> None:
        add = self._add
        for row, ts in zip(rows, times):
            add(row, ts)

    def _add(self, row: int, ts: float | None) -> None:
        if ts is None:
            ts = self.now if self.now is not None else 0.0
        if self._t0 is None:
            self._t0 = self.now = ts
        elif ts > self.now:
            self.now = ts
        x = self._rate * (ts - self._t0)
        if x > self._RESCALE:
            self._counts *= math.exp(-x)
            self._t0, x = ts, 0.0
        if row >= len(self._counts):
            self._counts = grow(self._counts, len(self.index))
        self._counts[row] += math.exp(x)

    def scores(self) -> np.ndarray:
        """Decayed count of every item row as of the latest event."""
        n = len(self.index)
        out = np.zeros(n)
        m = min(n, len(self._counts))
        if self._t0 is not None:
            out[:m] = self._counts[:m] * math.exp(-self._rate * (self.now - self._t0))
        return out

    def top(self, k: int = 50, allowed: np.ndarray | None = None) -> list[tuple[Hashable, float]]:
        s = self.scores()
        s[s <= 0] = -np.inf
        if allowed is not None:
            s[~allowed[: len(s)]] = -np.inf
        return _top(s, k, self.index)

    def recommend(self, user: Hashable, k: int = 50) -> list[tuple[Hashable, float]]:
        return self.top(k)

    def to_state(self, with_index: bool = True) -> dict:
        return {
            "config": asdict(self.config),
            "items": list(self.index.items) if with_index else None,
            "counts": self._counts[: len(self.index)], "t0": self._t0, "now": self.now,
        }

    def items_state(self, changed_only: bool = False) -> dict:
        """:meth:`to_state` without the index; ``changed_only``: the counts changed since
        :meth:`checkpointed` (all of them after a rescale)."""
        state = self.to_state(with_index=False)
        if changed_only:
            n = len(state["counts"])
            state["counts"] = rows_of(state["counts"], self._ck.changed(n, counts=state["counts"]), n)
        return state

    def checkpointed(self) -> None:
        self._ck.reset(counts=self._counts[: len(self.index)])

    def load_items(self, state: dict) -> None:
        """A state of :meth:`items_state` (a partial one on top of this model's)."""
        counts = state["counts"]
        self._counts = grow(apply_rows(self._counts, counts) if isinstance(counts, dict) else counts.copy(), 16)
        self._t0, self.now = state["t0"], state["now"]

    @classmethod
    def from_state(cls, state: dict, index: ItemIndex | None = None) -> Popularity:
        cfg = dict(state["config"])
        cfg["ratings"] = _policy(cfg["ratings"])
        self = cls(PopularityConfig(**cfg), index if index is not None else ItemIndex(state["items"]))
        self._counts = grow(state["counts"].copy(), 16)
        self._t0, self.now = state["t0"], state["now"]
        return self
