"""When a ``--burst`` LLM worker may stop: every request it was handed is processed and committed.

The consumer's fetch position runs ahead of the batches. faust pulls records into the agent's
stream and the ``noack_take`` buffer, which holds a partial batch for up to
``embed_batch_wait_s``, so "every assigned partition read to its end" is true while the last
requests still wait there. A burst that stopped on that alone ended, now and then, with the last
few requests unprocessed (nothing lost: their offsets were not committed, so the next run did
them). The committed offsets cannot simply be compared with the partitions' ends either: the
markers of transactions in the input topic take offsets too.

So the agent asks two things on each tick, both without Kafka (the caller passes what it sees):

- :func:`drained`: no batch in flight, no failed delivery being retried, every partition fetched
  to its end, and nothing faust handed to the stream still unacknowledged beyond the events whose
  outputs wait for their commit (an event in the take buffer is handed over, not acknowledged);
- :class:`Quiet`: has that held, with no batch ending in between, for longer than a take's wait
  plus a margin (a record still on its way into the stream reaches a batch within the wait)?

>>> drained(busy=False, retrying=False, unacked=2, waiting=2, ends=[(10, 10), (4, 4)])
True
>>> drained(busy=False, retrying=False, unacked=3, waiting=2, ends=[(10, 10)])  # one in the take
False
>>> drained(busy=False, retrying=False, unacked=0, waiting=0, ends=[(9, 10)])   # not fetched yet
False
>>> drained(busy=False, retrying=False, unacked=0, waiting=0, ends=[(0, None)])  # no end known yet
False
>>> drained(busy=False, retrying=False, unacked=0, waiting=0, ends=[])  # nothing assigned yet
False
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def drained(busy: bool, retrying: bool, unacked: int, waiting: int,
            ends: Iterable[tuple[int | None, int | None]]) -> bool:  # fmt: skip
    """Whether everything fetched is processed: ``unacked`` events faust tracks, ``waiting`` of
    them in the outbox for their commit; ``ends`` is ``(position, high watermark)`` per assigned
    partition (``None`` where the consumer does not know it yet)."""
    if busy or retrying or unacked > waiting:
        return False
    ends = list(ends)
    return bool(ends) and all(
        high is not None and high >= 0 and position is not None and position >= high for position, high in ends
    )


@dataclass
class Quiet:
    """A spell of drained ticks with no batch ending inside it; ``hold_s`` long, it may stop.

    >>> q = Quiet(hold_s=1.0)
    >>> q.observe(True, last_batch=0.0, now=10.0)  # a spell starts
    False
    >>> q.observe(True, last_batch=0.0, now=10.6)
    False
    >>> q.observe(True, last_batch=10.8, now=10.9)  # a batch ended inside it: start again
    False
    >>> q.observe(True, last_batch=10.8, now=11.5), q.observe(True, last_batch=10.8, now=12.0)
    (False, True)
    >>> q.observe(False, last_batch=10.8, now=12.1), q.observe(True, last_batch=10.8, now=12.2)
    (False, False)
    """

    hold_s: float
    since: float | None = None

    def observe(self, drained: bool, last_batch: float, now: float) -> bool:
        if not drained:
            self.since = None
            return False
        if self.since is None or last_batch >= self.since:
            self.since = now
            return False
        return now - self.since >= self.hold_s
