"""Refresh scheduling of the stream worker: which users are owed a list, and when it is written.

Why apart from the worker: the worker does the I/O (Kafka in, Redis out, checkpoints); every
decision about *when* a list is written and *whose* is plain bookkeeping on timestamps, kept here
without a broker or a Redis server, so it can be read and tested on its own. The worker asks this
schedule and does what it says; nothing here performs I/O or reads a clock (every ``now`` is the
caller's, wall time or event time).

When lists are written:

- **the refresh pass**, every refresh interval (the worker's loop): the lists of every *owed* user
  (an event since their last list, or an enrichment made them a cold-start match) whose partition
  this worker serves, and the global list. On success the owed users are settled (:meth:`written`).
- **early refresh** (``STREAMREC_EARLY_REFRESH_S`` > 0): users act in bursts, so a user's list is
  also written that many seconds after their first new event (a debounce: later events in the burst
  do not postpone it), at most ``STREAMREC_EARLY_REFRESH_MAX_PER_S`` lists per second (a token
  bucket), so a flood of new users cannot starve the loop.
- **the logical clock** (replays): refreshes follow event time instead; the owed lists are written
  whenever an event's timestamp reaches the next multiple of the refresh interval, *before* that
  event is learned, so they are the lists as of every earlier event. No early refresh then.
- **Redis backoff**: a failed write is retried no sooner than 1 s later, doubling up to 30 s; the
  owed users stay owed meanwhile (and in the checkpoint), so nothing is lost while Redis is down.

Scale-out (see :mod:`streamrec.streams.membership`): a worker writes only the users of the
partitions it serves, but remembers the others' recently active users (:attr:`others`) for a while
that outlasts the group's session timeout and a rebalance: if one of those partitions comes to it
(its worker left), their lists may be owed, so it writes them (:meth:`gained`).

>>> anywhere = lambda position: True
>>> s = RefreshSchedule(interval_s=60.0, early_s=2.0, early_max_per_s=100, logical=False, now=0.0)
>>> s.touch("u1", ("events.clicks", 0), now=10.0)
>>> s.touch("u1", ("events.clicks", 0), now=11.5)      # same burst: still due at 12.0
>>> s.early_due(11.9, anywhere), s.early_due(12.0, anywhere)
([], ['u1'])
>>> s.owed(anywhere)
['u1']
>>> s.written(anywhere, now=60.0)
>>> s.owed(anywhere), s.early
([], {})
"""

from __future__ import annotations

from collections.abc import Callable

#: (topic, partition) of a user's latest event; None: unknown (every serving worker writes them)
Position = tuple[str, int] | None
#: does this worker serve users whose latest event came from this position?
Serves = Callable[[Position], bool]


class RefreshSchedule:
    """Owed users, the early-refresh debounce and budget, the logical clock and the Redis backoff."""

    def __init__(self, interval_s: float, early_s: float, early_max_per_s: float, logical: bool,
                 now: float, active: dict[str, Position] | None = None):  # fmt: skip
        self.interval_s = interval_s
        self.early_s = early_s
        self.early_max_per_s = early_max_per_s
        self.logical = logical
        #: user -> the event partition their latest event came from (serving ownership;
        #: None: unknown, written by every serving worker). Users here are owed a list.
        self.active: dict[str, Position] = dict(active) if active else {}
        self.early: dict[str, float] = {}  # user -> when their early refresh is due
        #: users recently active on partitions other workers serve -> (position, when last seen)
        self.others: dict[str, tuple[tuple[str, int], float]] = {}
        self.others_keep_s = max(60.0, 3 * interval_s)
        self._early_tokens = float(early_max_per_s)
        self._early_last = now
        self.next_boundary = float("-inf")  # logical clock: the next refresh boundary
        self.redis_retry_at = 0.0
        self.redis_backoff = 0.0  # 0.0: the last write succeeded
        #: an interleaved pass: the users it writes, and those of them with an event since it began
        self.in_pass: set[str] | None = None
        self.retouched: set[str] = set()

    @classmethod
    def from_settings(cls, settings, logical: bool, now: float,
                      active: dict[str, Position] | None = None) -> RefreshSchedule:  # fmt: skip
        return cls(settings.refresh_interval_s, settings.early_refresh_s,
                   settings.early_refresh_max_per_s, logical, now, active)  # fmt: skip

    # ------------------------------------------------------------ owed users

    def touch(self, user: str, position: tuple[str, int], now: float) -> None:
        """A user's event was learned: their list is owed, and (wall clock) due early."""
        self.active[user] = position
        if self.in_pass is not None and user in self.in_pass:
            self.retouched.add(user)
        if self.early_s > 0 and not self.logical and user not in self.early:
            self.early[user] = now + self.early_s

    def owe(self, user: str, position=None) -> None:
        """Owe a list to a user: of unknown partition (a cold-start match; writes are idempotent),
        or of ``position`` (a user whose partition this worker just took)."""
        if position is None:
            self.active.setdefault(user, None)
        else:
            self.active[user] = position

    def owed(self, serves: Serves) -> list[str]:
        """The owed users this worker writes, in a stable order."""
        return sorted(u for u, position in self.active.items() if serves(position))

    def written(self, serves: Serves, now: float) -> None:
        """The refresh pass wrote :meth:`owed`: settle every owed user, remember the others'."""
        for user, position in self.active.items():
            if not serves(position):
                self.others[user] = (position, now)
        horizon = now - self.others_keep_s
        self.others = {u: v for u, v in self.others.items() if v[1] >= horizon}
        self.active.clear()
        self.early.clear()

    def begin_pass(self, serves: Serves) -> list[str]:
        """An interleaved pass starts (its lists are written in slices while learning goes on):
        the owed users it writes. Settle it with :meth:`finish_pass` once every list is written.

        >>> s = RefreshSchedule(60.0, 0.0, 1, logical=False, now=0.0)
        >>> s.touch("a", ("t", 0), 1.0); s.touch("b", ("t", 0), 1.0)
        >>> s.begin_pass(lambda p: True)
        ['a', 'b']
        >>> s.touch("b", ("t", 0), 2.0); s.touch("c", ("t", 0), 2.0)   # learned during the pass
        >>> s.finish_pass(lambda p: True, now=3.0); sorted(s.active)    # still owed: b and c
        ['b', 'c']
        """
        users = self.owed(serves)
        self.in_pass, self.retouched = set(users), set()
        return users

    def finish_pass(self, serves: Serves, now: float) -> None:
        """Every list of the pass was written: settle its users, except those with an event after
        it began (their list may predate that event), and remember the others' users."""
        done = (self.in_pass or set()) - self.retouched
        for user, position in list(self.active.items()):
            if not serves(position):
                self.others[user] = (position, now)
            elif user in done:
                del self.active[user]
                self.early.pop(user, None)
        horizon = now - self.others_keep_s
        self.others = {u: v for u, v in self.others.items() if v[1] >= horizon}
        self.active = {u: p for u, p in self.active.items() if serves(p)}
        self.abandon_pass()

    def abandon_pass(self) -> None:
        """The pass stopped half way (Redis failed): its users stay owed."""
        self.in_pass, self.retouched = None, set()

    def gained(self, gained: set[tuple[str, int]]) -> None:
        """Partitions came to this worker: the others' users recently active on them are owed."""
        for user, (position, _) in list(self.others.items()):
            if position in gained:
                self.active[user] = position
                del self.others[user]

    # ------------------------------------------------------------ early refresh

    def early_due(self, now: float, serves: Serves) -> list[str]:
        """Users whose early refresh is due and served here, within the per-second budget."""
        rate = self.early_max_per_s
        self._early_tokens = min(rate, self._early_tokens + (now - self._early_last) * rate)
        self._early_last = now
        due = [u for u, t in self.early.items() if t <= now and serves(self.active.get(u, ("", -1)))]
        return due[: int(self._early_tokens)]

    def early_written(self, due: list[str]) -> None:
        """The lists of ``due`` (from :meth:`early_due`) were written: settle them, spend the budget."""
        for user in due:
            del self.early[user]
            self.active.pop(user, None)
        self._early_tokens -= len(due)

    # ------------------------------------------------------------ logical clock (replays)

    def boundary_reached(self, ts: float) -> bool:
        """Has event time reached the next refresh boundary (owed lists to write first)?"""
        return ts >= self.next_boundary

    def advance_boundary(self, ts: float) -> None:
        """The next boundary: the next multiple of the refresh interval after ``ts``."""
        self.next_boundary = (ts // self.interval_s + 1) * self.interval_s

    # ------------------------------------------------------------ Redis backoff

    def redis_ready(self, now: float) -> bool:
        return not now < self.redis_retry_at

    def redis_failed(self, now: float) -> float:
        """A write failed: back off (1 s, doubling, at most 30 s); return the delay."""
        self.redis_backoff = min(30.0, max(1.0, self.redis_backoff * 2))
        self.redis_retry_at = now + self.redis_backoff
        return self.redis_backoff

    def redis_ok(self) -> None:
        self.redis_backoff = 0.0


class PassSlices:
    """An interleaved refresh pass, cut into time slices of whole chunks of users.

    ``rank(users)`` returns their lists; each :meth:`next_slice` ranks chunks until ``slice_s`` of
    the caller's ``clock`` have passed (at least one chunk), so learning never waits a whole pass.

    >>> ticks = iter(range(100))
    >>> job = PassSlices(["a", "b", "c"], lambda us: [[u.upper()] for u in us], chunk=2)
    >>> job.next_slice(lambda: next(ticks), slice_s=0.5), job.done
    ((['a', 'b'], {'a': ['A'], 'b': ['B']}), False)
    >>> job.next_slice(lambda: next(ticks), slice_s=0.5)[0], job.done, job.first
    (['c'], True, False)
    """

    def __init__(self, users: list[str], rank: Callable[[list[str]], list], chunk: int = 64):
        self.users, self.rank, self.chunk = users, rank, chunk
        self.pos = 0
        self.first = True  # the first slice also writes the global list
        self.slices = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.users)

    def next_slice(self, clock: Callable[[], float], slice_s: float) -> tuple[list[str], dict]:
        start = clock()
        users: list[str] = []
        lists: dict = {}
        self.first = self.slices == 0
        while not self.done:
            part = self.users[self.pos : self.pos + self.chunk]
            lists.update(zip(part, self.rank(part)))
            users += part
            self.pos += len(part)
            if clock() - start >= slice_s:
                break
        self.slices += 1
        return users, lists


def active_to_meta(active: dict[str, Position]) -> list[list]:
    """Owed users as checkpoint metadata: ``[user, topic, partition]`` rows (None, None: unknown).

    >>> rows = active_to_meta({"u1": ("events.clicks", 3), "u2": None})
    >>> rows
    [['u1', 'events.clicks', 3], ['u2', None, None]]
    >>> active_from_meta(rows)
    {'u1': ('events.clicks', 3), 'u2': None}
    """
    return [[u, *(pos or (None, None))] for u, pos in active.items()]


def active_from_meta(rows) -> dict[str, Position]:
    """The inverse of :func:`active_to_meta`, for a restored checkpoint."""
    return {u: None if t is None else (t, p) for u, t, p in rows}
