"""The stream worker's side outputs (enrichment requests, dead letters), produced exactly once.

Why transactions: a side output is produced while its input is handled, long before the
checkpoint that covers the input; a worker killed in between re-reads the input from the checkpoint
and would produce the output again. So every side output goes into a Kafka transaction, and each
transaction also commits, in the same atomic step, the position of every input partition to the
worker's own *outputs group* (``send_offsets_to_transaction``). That position is the line below
which every input's outputs are already durable:

- killed before a transaction commits: the broker aborts it when the restarted worker
  initialises its producer (same ``transactional.id``), so ``read_committed`` readers never see
  its records, and the replay from the checkpoint produces them again, once;
- killed after a commit but before the checkpoint: the replay re-learns those inputs (the model
  needs them) but produces no output for an input below the committed line (:func:`suppressed`).

Outputs are a deterministic function of the checkpointed state and the inputs, so the replayed
run wants to produce exactly what was committed. Every reader of ``items.enrich`` and
``events.deadletter`` in this project reads ``read_committed``. Transactions are committed every
``commit_every_s`` while they hold records (the LLM workers see requests within about that), and
always before a checkpoint: a checkpoint never covers an input whose outputs are not durable.

When a commit fails (broker away, a record refused), the transaction is retried with backoff
(1 s doubling to 30 s); an aborted one is re-produced from the records it held, so nothing is lost
meanwhile, learning goes on and the checkpoint waits. The failure is logged (with the origin of a
refused record and how to skip it), counted and shown in the heartbeat.

>>> suppressed(("events.clicks", 0, 41), {("events.clicks", 0): 42})
True
>>> suppressed(("events.clicks", 0, 42), {("events.clicks", 0): 42}), suppressed(None, {})
(False, False)
>>> next_backoff(0.0), next_backoff(1.0), next_backoff(20.0)
(1.0, 2.0, 30.0)
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("streamrec.outputs")

Offsets = dict[tuple[str, int], int]
#: (topic, partition, offset) of the input a side output comes from
Origin = tuple[str, int, int]


def suppressed(origin: Origin | None, upto: Offsets) -> bool:
    """Was the output of the input at ``origin`` already committed (below the outputs group's line)?"""
    return origin is not None and origin[2] < upto.get((origin[0], origin[1]), 0)


def next_backoff(current: float, low: float = 1.0, high: float = 30.0) -> float:
    return min(high, max(low, current * 2))


def outputs_group(group_id: str, worker_id: str) -> str:
    """The consumer group whose committed offsets mark the inputs with durable outputs.

    >>> outputs_group("streamrec-stream", "w0")
    'streamrec-stream.outputs.w0'
    """
    return f"{group_id}.outputs.{worker_id}"


def committed_offsets(reader, parts: list, timeout_s: float) -> Offsets:
    """The outputs group's committed offsets of ``parts``, retried while its coordinator loads."""
    from confluent_kafka import KafkaError, KafkaException

    # a freshly started broker answers "not coordinator" until __consumer_offsets has its leaders;
    # librdkafka does not flag that as retriable here
    loading = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
               KafkaError.COORDINATOR_NOT_AVAILABLE}  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            committed = reader.committed(parts, timeout=max(1.0, deadline - time.monotonic()))
            return {(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0}
        except KafkaException as exc:
            err = exc.args[0]
            if not (err.retriable() or err.code() in loading) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class SideOutputs:
    """A transactional producer of one worker's side outputs; see the module docstring."""

    def __init__(self, config: dict, transactional_id: str, commit_every_s: float = 0.5,
                 timeout_s: float = 10.0, clock=time.monotonic):  # fmt: skip
        self.config = {**config, "transactional.id": transactional_id, "acks": "all",
                       "enable.idempotence": True, "linger.ms": 20,
                       "transaction.timeout.ms": 120_000}  # fmt: skip
        self.commit_every_s = commit_every_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.upto: Offsets = {}
        #: (topic, key, value, origin, partition) of the open transaction
        self.records: list[tuple[str, bytes, bytes, Origin | None, int | None]] = []
        self.opened_at: float | None = None  # when the open transaction got its first record
        self.retry_at = 0.0
        self.backoff = 0.0
        self.failures = 0  # failed commits (metric)
        self.suppressed = 0  # outputs of replayed inputs, already committed before a crash
        self.refused: list[str] = []  # delivery errors of the open transaction
        #: topics whose records' places are reported: after a commit, :attr:`placed` holds the
        #: (topic, partition, offset) of that transaction's records on them
        self.track: set[str] = set()
        self._placed: list[tuple[str, int, int]] = []
        self.placed: list[tuple[str, int, int]] = []
        self.producer = None

    # ------------------------------------------------------------ start

    def open(self) -> None:
        """Create the producer and fence (abort) whatever a previous incarnation left open."""
        from confluent_kafka import Producer

        self.producer = Producer(self.config)
        self.producer.init_transactions(self.timeout_s)

    def resume(self, committed: Offsets) -> None:
        """Inputs below ``committed`` (the outputs group's offsets) produce nothing again."""
        self.upto = dict(committed)

    # ------------------------------------------------------------ produce

    def produce(self, topic: str, key: bytes, value: bytes, origin: Origin | None,
                partition: int | None = None) -> bool:  # fmt: skip
        """Queue one output of the input at ``origin``; False when it was committed before."""
        if suppressed(origin, self.upto):
            self.suppressed += 1
            return False
        self.mark()
        self.records.append((topic, key, value, origin, partition))
        if not self._broken:  # else it goes out with the others when the transaction is reset
            self._send(topic, key, value, origin, partition)
        return True

    def mark(self) -> None:
        """The open transaction has work to commit (records, or state the caller adds at commit)."""
        if self.opened_at is None:
            self.opened_at = self.clock()

    def _send(self, topic: str, key: bytes, value: bytes, origin: Origin | None,
              partition: int | None = None) -> None:  # fmt: skip
        if not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True

        def delivered(err, msg, origin=origin):
            if err is not None:
                where = "%s[%d]@%d" % origin if origin else "?"
                self.refused.append(f"{msg.topic()} record for {where}: {err.str()}")
            elif msg.topic() in self.track:
                self._placed.append((msg.topic(), msg.partition(), msg.offset()))

        while True:
            try:
                if partition is None:
                    self.producer.produce(topic, key=key, value=value, on_delivery=delivered)
                else:
                    self.producer.produce(topic, key=key, value=value, partition=partition,
                                          on_delivery=delivered)  # fmt: skip
                return
            except BufferError:  # local queue full: let the broker catch up
                self.producer.poll(0.1)

    _in_transaction = False

    def poll(self) -> None:
        if self.producer is not None:
            self.producer.poll(0)

    @property
    def pending(self) -> int:
        """Records not yet committed."""
        return len(self.records)

    # ------------------------------------------------------------ commit

    def due(self) -> bool:
        """Time to commit the open transaction (it holds records for long enough, no backoff)?"""
        now = self.clock()
        return (self.opened_at is not None and now - self.opened_at >= self.commit_every_s
                and now >= self.retry_at)  # fmt: skip

    def commit(self, offsets: Offsets, group_metadata, more: tuple = ()) -> bool:
        """Commit the open transaction with ``offsets``; True when nothing is left uncommitted.

        ``more``: further ``(offsets, group_metadata)`` pairs committed in the same transaction
        (partitioned state commits the event offsets to the stream workers' group this way)."""
        from confluent_kafka import KafkaException, TopicPartition

        if not self.records and not self._in_transaction:
            self.opened_at = None
            return True
        if self.clock() < self.retry_at:
            return False
        try:
            if self._broken:  # an aborted or fenced transaction: its records once more, in a new one
                if self.producer is None:
                    self.open()
                self._in_transaction = False
                self.refused.clear()
                self._placed = []
                for record in self.records:
                    self._send(*record)
                self._broken = False
            for upto, metadata in ((offsets, group_metadata), *more):
                if upto:
                    self.producer.send_offsets_to_transaction(
                        [TopicPartition(t, p, o) for (t, p), o in sorted(upto.items())],
                        metadata, self.timeout_s)  # fmt: skip
            self.producer.commit_transaction(self.timeout_s)
        except KafkaException as exc:
            self._failed(exc.args[0])
            return False
        self._in_transaction = False
        self.records.clear()
        self.refused.clear()
        self.placed, self._placed = self._placed, []
        self.opened_at = None
        self.backoff = 0.0
        return True

    _broken = False

    def _failed(self, err) -> None:
        from confluent_kafka import KafkaException

        self.failures += 1
        self.backoff = next_backoff(self.backoff)
        self.retry_at = self.clock() + self.backoff
        refused = "; ".join(self.refused[:3])
        log.warning("side outputs (%d records) not committed (%s)%s; retrying in %.0fs, still "
                    "learning, checkpoints wait%s", len(self.records), err.str(),
                    f"; refused: {refused}" if refused else "", self.backoff,
                    "; to give up on a message, see STREAMREC_SKIP_MESSAGES" if refused else "")  # fmt: skip
        if err.retriable() and not self._broken:
            return  # the same transaction is committed again later
        self._broken = True
        try:
            if err.txn_requires_abort() and self.producer is not None:
                self.producer.abort_transaction(self.timeout_s)
            else:  # fatal for this producer (e.g. fenced, epoch expired): a new one next time
                self.producer = None
        except KafkaException as exc:  # a new producer (whose start aborts it) next time
            log.warning("could not abort the side-output transaction (%s)", exc.args[0].str())
            self.producer = None

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(self.timeout_s)
