"""Live prequential quality: does every event's item appear in the list the user was being served?

The replay benchmark (``bench replay``) scores each event of a user with history against the list
published for that user before it; this module does the same inside the running stream worker, so
every deployment measures the quality it serves, on its own stream, continuously. The caller (the
worker) tells it each list it publishes (:meth:`LiveQuality.published`, the global list with
``user=None``) and each click or rating before it is learned (:meth:`LiveQuality.event`, passing
whether the user had an earlier event). The definition is the replay's (see
:mod:`streamrec.bench.replay_metrics`), so the two agree on the same stream:

- an event is *evaluated* when its user had an earlier event; it is scored against the user's
  last published list, else the global list (no list at all: a miss);
- a hit is the event's item in the first ``k`` entries; NDCG is ``1/log2(rank+1)``;
- *cold*: the item had fewer than ``cold_threshold`` earlier events (counted here, by anyone);
- *coverage*: distinct catalogue items shown in the evaluated top ``k`` lists / catalogue size
  (only catalogued items count, so it never exceeds 1).

Everything is kept twice: since start (``total``, which the replay compares with) and over a
sliding window of the last ``window`` evaluated events (``window``, what a dashboard shows, so a
regression is visible in minutes rather than diluted by a month of history). Both are split by the
configuration digest of the list that was scored, so two configurations served side by side (a
rolling deploy, a promoted blend) are measured apart.

Pure bookkeeping: no clock, no I/O; lists are item ids as the reader sees them.

>>> q = LiveQuality(window=2)
>>> q.published(None, ["a", "b"], "d1")           # the global list
>>> q.event("u", "a", had_history=False)           # u's first event: not evaluated
>>> q.published("u", ["b", "c"], "d1")
>>> q.event("u", "c", had_history=True)            # hit at rank 2 of u's own list
True
>>> q.event("v", "z", had_history=True)            # v has no list: scored on the global list
False
>>> s = q.summary("total", catalogue={"a", "b", "c"})
>>> s["d1"]["hr@10"], round(s["d1"]["ndcg@10"], 4), s["d1"]["evaluated"], s["d1"]["coverage"]
(0.5, 0.3155, 2, 1.0)
"""

from __future__ import annotations

import json
import math
from collections import Counter, deque
from collections.abc import Container, Hashable, Sequence

K = 10
COLD_THRESHOLD = 5
WINDOW = 10_000
METRICS = ("hr@10", "ndcg@10", "cold_hr@10", "coverage", "evaluated")


class _Tally:
    """Sums of one digest's evaluated events, and how often each item was shown to them."""

    __slots__ = ("evaluated", "hits", "ndcg", "cold", "cold_hits", "shown")

    def __init__(self):
        self.evaluated = self.hits = self.cold = self.cold_hits = 0
        self.ndcg = 0.0
        self.shown: Counter = Counter()

    def add(self, sign: int, hit: bool, gain: float, cold: bool, head: Sequence[str]) -> None:
        self.evaluated += sign
        self.hits += sign * hit
        self.ndcg += sign * gain
        self.cold += sign * cold
        self.cold_hits += sign * (hit and cold)
        shown = self.shown
        for item in head:
            n = shown[item] + sign
            if n:
                shown[item] = n
            else:
                del shown[item]

    def metrics(self, catalogue: Container | None, catalogue_size: int | None) -> dict:
        ev = self.evaluated
        if catalogue is None:
            covered, size = len(self.shown), catalogue_size or 0
        else:
            covered = sum(1 for item in self.shown if item in catalogue)
            size = catalogue_size if catalogue_size is not None else len(catalogue)  # type: ignore[arg-type]
        return {
            "hr@10": self.hits / ev if ev else 0.0,
            "ndcg@10": self.ndcg / ev if ev else 0.0,
            "cold_hr@10": self.cold_hits / self.cold if self.cold else 0.0,
            "coverage": min(1.0, covered / size) if size else 0.0,
            "evaluated": ev,
            "cold_evaluated": self.cold,
        }


class LiveQuality:
    """The live prequential metrics of one worker (see the module docstring)."""

    def __init__(self, k: int = K, cold_threshold: int = COLD_THRESHOLD, window: int = WINDOW,
                 max_users: int = 1_000_000):  # fmt: skip
        self.k, self.cold_threshold, self.window_size = k, cold_threshold, window
        self.max_users = max_users
        #: user -> (top k item ids, digest) of the last list published for them
        self.lists: dict[Hashable, tuple[tuple[str, ...], str]] = {}
        self.global_list: tuple[tuple[str, ...], str] | None = None
        self.item_events: Counter = Counter()
        self.total: dict[str, _Tally] = {}
        self.recent: dict[str, _Tally] = {}
        self._window: deque = deque()

    def published(self, user: Hashable | None, items: Sequence[str], digest: str) -> None:
        """A list was written for ``user`` (``None``: the global list); an empty one removes the
        user's list, as the refresh deletes the key and the reader falls back to the global list."""
        head = tuple(str(i) for i in items[: self.k])
        if user is None:
            self.global_list = (head, digest)
        elif head:
            if user not in self.lists and len(self.lists) >= self.max_users:
                self.lists.pop(next(iter(self.lists)))  # the oldest: its user reads the global list
            self.lists[user] = (head, digest)
        else:
            self.lists.pop(user, None)

    def event(self, user: Hashable, item: str, had_history: bool) -> bool | None:
        """Score one click or rating before it is learned; ``None`` when it is not evaluated."""
        item = str(item)
        cold = self.item_events[item] < self.cold_threshold
        self.item_events[item] += 1
        if not had_history:
            return None
        current = self.lists.get(user) or self.global_list
        head, digest = current if current is not None else ((), "")
        rank = next((r for r, x in enumerate(head, 1) if x == item), None)
        hit = rank is not None
        gain = 0.0 if rank is None else 1.0 / math.log2(rank + 1)
        for tallies in (self.total, self.recent):
            tally = tallies.get(digest)
            if tally is None:
                tally = tallies[digest] = _Tally()
            tally.add(1, hit, gain, cold, head)
        self._window.append((digest, hit, gain, cold, head))
        if len(self._window) > self.window_size:
            old = self._window.popleft()
            tally = self.recent[old[0]]
            tally.add(-1, *old[1:])
            if not tally.evaluated:
                del self.recent[old[0]]
        return hit

    def summary(self, which: str = "window", catalogue: Container | None = None,
                catalogue_size: int | None = None) -> dict[str, dict]:  # fmt: skip
        """``{digest: metrics}`` since start (``"total"``) or over the window (``"window"``).

        Coverage counts only items in ``catalogue`` (any container of ids) over its size, or
        ``catalogue_size`` when given (e.g. a catalogue that is only a count).
        """
        tallies = self.total if which == "total" else self.recent
        return {d: t.metrics(catalogue, catalogue_size) for d, t in tallies.items()}

    def overall(self, which: str = "window", catalogue: Container | None = None,
                catalogue_size: int | None = None) -> dict:  # fmt: skip
        """The metrics over every digest together.

        >>> q = LiveQuality()
        >>> q.published(None, ["a"], "x"); q.event("u", "a", True)
        True
        >>> q.published(None, ["b"], "y"); q.event("u", "a", True)
        False
        >>> q.overall("total", catalogue={"a", "b"})["hr@10"]
        0.5
        """
        tallies = self.total if which == "total" else self.recent
        merged = _Tally()
        for t in tallies.values():
            merged.evaluated += t.evaluated
            merged.hits += t.hits
            merged.ndcg += t.ndcg
            merged.cold += t.cold
            merged.cold_hits += t.cold_hits
            merged.shown.update(t.shown)
        return merged.metrics(catalogue, catalogue_size)

    # -- state (the worker keeps it in its checkpoint, so a restart does not reset the metrics) ------

    def to_state(self) -> dict:
        def tallies(ts: dict[str, _Tally]) -> dict:
            return {d: [t.evaluated, t.hits, t.ndcg, t.cold, t.cold_hits, dict(t.shown)] for d, t in ts.items()}

        return {"lists": [[u, list(h), d] for u, (h, d) in self.lists.items()],
                "global": None if self.global_list is None else [list(self.global_list[0]), self.global_list[1]],
                "items": dict(self.item_events), "total": tallies(self.total), "recent": tallies(self.recent),
                "window": [[d, h, g, c, list(head)] for d, h, g, c, head in self._window]}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict | None, **kw) -> LiveQuality:
        """Inverse of :meth:`to_state`.

        >>> q = LiveQuality(); q.published(None, ["a"], "x"); _ = q.event("u", "a", True)
        >>> LiveQuality.from_state(q.to_state()).overall("total", catalogue_size=1)["hr@10"]
        1.0
        """
        self = cls(**kw)
        if not state:
            return self
        self.lists = {u: (tuple(h), d) for u, h, d in state["lists"]}
        if state["global"] is not None:
            self.global_list = (tuple(state["global"][0]), state["global"][1])
        self.item_events = Counter(state["items"])
        for name in ("total", "recent"):
            out = getattr(self, name)
            for d, (ev, hits, gain, cold, cold_hits, shown) in state[name].items():
                t = out[d] = _Tally()
                t.evaluated, t.hits, t.ndcg, t.cold, t.cold_hits = ev, hits, gain, cold, cold_hits
                t.shown = Counter(shown)
        self._window = deque((d, bool(h), g, bool(c), tuple(head)) for d, h, g, c, head in state["window"])
        return self


def quality_fields(report: dict, digest: str) -> dict:
    """The stats hash's fields: the served digest's windowed metrics flat, the whole report as JSON.

    >>> f = quality_fields({"window": {"d1": {"hr@10": 0.1}}, "total": {}}, "d1")
    >>> f["quality_hr@10"], f["quality_digest"], json.loads(f["quality"])["window"]["d1"]["hr@10"]
    (0.1, 'd1', 0.1)
    """
    current = report.get("window", {}).get(digest, {})
    out: dict = {f"quality_{m}": current.get(m, 0) for m in METRICS}
    out["quality_digest"] = digest
    out["quality"] = json.dumps(report, sort_keys=True)
    return out
