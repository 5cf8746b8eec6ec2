"""When the LLM workers' outputs cannot be delivered: bounded exponential backoff, and what to report.

An output record (embedding, tags, dead letter) the broker refuses or does not acknowledge in time
(a topic whose ``max.message.bytes`` rejects it, the broker away) must neither be lost nor stop
the worker: the agent (:mod:`.agents`) drops the open transactions (their records are aborted),
waits, and produces every uncommitted output again in fresh ones, until the broker takes them.
:class:`Backoff` is the bookkeeping of that loop, without Kafka (the caller passes ``now``):

- the delay before the next try starts at ``low`` and doubles up to ``high``
  (``STREAMREC_ENRICH_RETRY_MIN_S`` / ``_MAX_S``); one success resets it;
- ``failures`` counts every failed try (the ``streamrec_output_failures_total`` metric);
- while failing, :meth:`Backoff.health` says so in the heartbeat (``degraded``, since when, the
  error, the next delay), which makes ``--health`` and ``/healthz`` report the worker unhealthy
  until its outputs flow again.

:class:`Outbox` is the thin async loop around it: it holds each transaction's uncommitted outputs,
produces them, drops and reopens the transactions after a failure, and commits.

Why retry in the process rather than exit and let the supervisor restart it: a restart reloads the
model (seconds), redoes the batch from the committed offsets and meets the same refusal again;
here the model's outputs are kept and only the delivery is redone.

>>> b = Backoff(low=1.0, high=4.0)
>>> [b.failed("refused", now=t) for t in (10.0, 11.0, 13.0, 17.0)]
[1.0, 2.0, 4.0, 4.0]
>>> b.degraded, b.failures, b.health(now=20.0)["output_failing_s"]
(True, 4, 10.0)
>>> b.recovered(); b.degraded, b.failures, b.health(now=21.0)["degraded"]
(False, 4, False)
>>> b.failed("again", now=30.0)  # a new run of failures starts low again
1.0
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # common imports this module (for Backoff)
    from streamrec.workers.common import Message, Output

log = logging.getLogger("streamrec.workers.agents")


@dataclass
class Backoff:
    """Retry delays and the failure state of one worker's output delivery."""

    low: float = 1.0
    high: float = 30.0
    delay: float = 0.0  # the last delay handed out; 0.0: the last try succeeded
    failures: int = 0  # failed tries, cumulative
    since: float | None = None  # when the current run of failures began
    error: str = ""  # the last failure, as logged

    @property
    def degraded(self) -> bool:
        return self.since is not None

    def failed(self, error: str, now: float) -> float:
        """Record a failed try at ``now``; the seconds to wait before the next one."""
        self.failures += 1
        self.error = error
        if self.since is None:
            self.since = now
        self.delay = min(self.high, max(self.low, self.delay * 2))
        return self.delay

    def recovered(self) -> None:
        """The outputs went through: back to normal, the next failure starts at ``low`` again."""
        self.delay, self.since, self.error = 0.0, None, ""

    def health(self, now: float) -> dict:
        """The heartbeat's view (``degraded`` makes ``--health`` fail)."""
        body: dict = {"degraded": self.degraded, "output_failures": self.failures}
        if self.degraded:
            body.update(output_failing_s=round(now - self.since, 1), output_error=self.error[:500],
                        output_retry_s=self.delay)  # fmt: skip
        return body


@dataclass
class Pending:
    """What one transaction (one input partition) holds and has not committed yet."""

    events: list = field(default_factory=list)  # faust events, acked once committed
    msgs: list[Message] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)


class Undelivered(RuntimeError):
    """An output the broker refused or did not acknowledge in time; the message names its request."""


def origin(out: Output) -> str:
    """Names an output by its request, as ``STREAMREC_SKIP_MESSAGES`` wants it.

    >>> from streamrec.workers.common import Message, Output
    >>> m = Message("items.enrich", 2, 41, b"i1", b"x")
    >>> origin(Output(m, "items.embeddings", b"i1", b"y" * 10))
    'record for items.enrich[2]@41 (to items.embeddings, 10 bytes)'
    """
    src = out.source
    return f"record for {src.topic}[{src.partition}]@{src.offset} (to {out.topic}, {len(out.value)} bytes)"


class Outbox:
    """The agent's outputs from production to commit, one transaction per input partition.

    ``send(outputs)`` produces records and returns once the broker has them (raising otherwise);
    ``tid(msg)`` names the transaction of a message's partition; ``producer()`` returns faust's
    producer (``None`` for a unit test's sink: nothing to drop, reopen or commit; a function, since
    faust builds its producer on first use); ``report()`` writes the
    heartbeat. Events are acked only once their transaction has committed, so faust's own commits
    (at a rebalance or a stop) never cover an output that is not durable.
    """

    def __init__(self, worker, settings, send, tid, producer=None, group_id: str = "", report=None,
                 generation=None):  # fmt: skip
        self.worker, self.settings = worker, settings
        self.send, self.tid, self.group_id = send, tid, group_id
        self._producer = producer
        #: the consumer group's generation: a rebalance while a failure is retried hands the
        #: pending outputs' requests to the new assignment, which reads them again
        self.generation = generation or (lambda: 0)
        self.generation_at = 0  # the generation the pending outputs were produced in
        self.report = report or (lambda: None)
        self.delivery: Backoff = worker.delivery
        #: transactional id -> what its open transaction holds
        self.pending: dict[str, Pending] = {}
        #: the open transactions were dropped after a failed try: at the next one (not before
        #: ``retry_at``) every pending output is produced again, in fresh transactions
        self.broken = False
        self.retry_at = 0.0
        self.last_commit = time.monotonic()
        self.done: dict[tuple[str, int], int] = {}  # next offset to process, per partition
        self.stream = None  # the agent's stream (acks)
        self.lock = asyncio.Lock()  # one delivery or commit at a time (the agent and the timer)

    @property
    def producer(self):
        return self._producer() if self._producer is not None else None

    @property
    def outputs(self) -> int:
        """Outputs produced (or to be produced again) and not committed yet."""
        return sum(len(part.outputs) for part in self.pending.values())

    @property
    def events(self) -> int:
        """Events whose outputs wait for their commit (acked only once it is done)."""
        return sum(len(part.events) for part in self.pending.values())

    async def put(self, events: list, msgs: list[Message], outputs: list[Output]) -> None:
        """Produce a batch into the transactions of its partitions; a failure is retried later."""
        async with self.lock:
            if not self.pending:
                self.generation_at = self.generation()
            for event, msg in zip(events, msgs):
                part = self.pending.setdefault(self.tid(msg), Pending())
                part.events.append(event)
                part.msgs.append(msg)
            for out in outputs:
                self.pending[self.tid(out.source)].outputs.append(out)
            if not self.broken:  # else the retry produces everything pending, this batch too
                try:
                    await self.send(outputs)
                except Exception as exc:  # noqa: BLE001: an undeliverable output is retried
                    await self._failed(exc)

    async def settle(self, due: bool = False) -> bool:
        """One try at making the pending outputs durable: after a failure (once its backoff has
        passed) produce them all again in fresh transactions, then commit (with ``due``, only
        once ``enrich_commit_interval_s`` has passed). False while a failure is being retried."""
        async with self.lock:
            if self.broken and self.generation() != self.generation_at:
                self._abandon()
                return True
            if self.broken:
                if time.monotonic() < self.retry_at:
                    return False
                try:
                    await self._reopen()
                    await self.send([o for part in self.pending.values() for o in part.outputs])
                except Exception as exc:  # noqa: BLE001
                    await self._failed(exc)
                    return False
                self.broken, due = False, False  # delivered again: commit at once
            try:
                await self.commit(due)
            except Exception as exc:  # noqa: BLE001
                await self._failed(exc)
                return False
            return True

    async def _failed(self, exc: BaseException) -> None:
        """A failed delivery or commit: drop the open transactions (the broker aborts what they
        hold), back off, report (log, ``output_failures``, the heartbeat's ``degraded``)."""
        from aiokafka.errors import ProducerFenced

        if isinstance(exc, ProducerFenced):  # another instance owns these transactions now
            raise exc
        now = time.monotonic()
        delay = self.delivery.failed(str(exc) or repr(exc), now)
        self.retry_at, self.broken = now + delay, True
        log.warning("%s worker: %d outputs not delivered (%s); producing them again in %.1fs, "
                    "nothing of them committed meanwhile; to give up on a request, see "
                    "STREAMREC_SKIP_MESSAGES", self.worker.name, self.outputs, exc, delay)  # fmt: skip
        await self._drop()
        self.report()

    def _abandon(self) -> None:
        """The group rebalanced while the pending outputs waited for a retry: faust seeks every
        assigned partition back to its committed offset, so their requests are read again (here
        or by the new owner) and retrying them too would repeat them. Their transactions were
        dropped at the failure, their events never acked: nothing of them is committed."""
        log.warning("%s worker: the group rebalanced while %d outputs waited for a retry; their "
                    "requests are read again from the committed offsets", self.worker.name,
                    self.outputs)  # fmt: skip
        self.pending.clear()
        self.broken = False
        self.delivery.recovered()
        self.report()

    async def _drop(self) -> None:
        """Stop the producers of the pending transactions: their open transactions are aborted
        when :meth:`_reopen` starts new producers with the same ids (as a restart would)."""
        if self.producer is None:
            return
        for tid in self.pending:
            try:
                await asyncio.wait_for(self.producer.stop_transaction(tid),
                                       self.settings.enrich_delivery_timeout_s)  # fmt: skip
            except Exception as exc:  # noqa: BLE001: the new producer fences it anyway
                log.debug("stopping the producer of %s: %r", tid, exc)

    async def _reopen(self) -> None:
        if self.producer is not None:
            for tid in self.pending:
                await self.producer.maybe_begin_transaction(tid)

    async def commit(self, due: bool = False) -> None:
        """Commit the pending transactions (outputs and offsets), then ack their events; with
        ``due``, only once ``enrich_commit_interval_s`` has passed since the last commit. Called
        between batches only. A commit the broker does not answer is reported and awaited, not
        dropped: it may have been committed already, and producing its outputs again would
        repeat them."""
        now = time.monotonic()
        if not self.pending or due and now - self.last_commit < self.settings.enrich_commit_interval_s:
            return
        self.last_commit = now
        for tid in list(self.pending):
            part = self.pending[tid]
            if self.producer is not None:
                await self._commit_one(tid, part)
            del self.pending[tid]
            for event in part.events:
                await self.stream.ack(event)
            for m in part.msgs:
                key = (m.topic, m.partition)
                self.done[key] = max(self.done.get(key, 0), m.offset + 1)
        if self.delivery.degraded:
            log.warning("%s worker: outputs delivered again (%d failed tries in all)", self.worker.name,
                        self.delivery.failures)  # fmt: skip
            self.delivery.recovered()
            self.report()

    async def _commit_one(self, tid: str, part: Pending) -> None:
        from aiokafka.structs import TopicPartition

        offsets: dict = {}
        for m in part.msgs:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
        task = asyncio.ensure_future(self.producer.commit_transactions(
            {tid: offsets}, self.group_id, start_new_transaction=True))  # fmt: skip
        timeout = self.settings.enrich_delivery_timeout_s
        while True:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if done:
                task.result()
                return
            now = time.monotonic()
            self.delivery.failed(f"commit of {tid} not acknowledged within {timeout:g}s", now)
            log.warning("%s worker: the commit of %s is not acknowledged after %.0fs; still "
                        "waiting for the broker", self.worker.name, tid, now - self.last_commit)  # fmt: skip
            self.report()
