"""The consumer loop the LLM workers share: batch, decode or dead-letter, produce, then commit.

The loop, and why it is ordered this way::

    consume into a batch until it is full (embed_batch_size) or its oldest message has waited
    embed_batch_wait_s ─► decode at the boundary (bad request ─► DeadLetter) ─► worker.handle
    ─► produce results and dead letters ─► commit the batch's offsets once *every* record it
       produced is acknowledged (acks=all, idempotent producer)

Offsets wait in :class:`Inflight` until their batch's records are acknowledged, in batch order, so
a crash at any moment loses nothing (at-least-once); the loop does not block on the broker between
batches, so the next batch is encoded while the previous one is still being acknowledged.
Duplicates after a crash are harmless: output topics are compacted by item and re-embedding the
same content is a cache hit.

A request is malformed when it does not decode as an ``EnrichRequest`` or when its
``content_hash`` does not match its content: the hash keys the embedding cache, so a wrong one
would hand another text's vector to every later item with that hash.

Exactly one worker kind dead-letters malformed requests: the embedding worker
(:attr:`EnrichWorker.owns_dead_letters`). Every worker kind reads every request (each is its own
consumer group on ``items.enrich``), so if each dead-lettered what it could not decode, the
dead-letter topic would hold every bad request once per kind. The other kinds (the tag worker)
skip a malformed request, count it (``malformed_skipped``, in the stats and the metrics) and log it
at debug level; the request still reaches the dead-letter topic once, through the embedding worker.

Like the stream worker, this consumes with confluent-kafka in batches; see
:mod:`streamrec.streams.worker` for why not faust.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from streamrec.metrics import WorkerMetrics, serve, write_heartbeat
from streamrec.schemas.codec import decode, encode
from streamrec.schemas.deadletters import dead_letter
from streamrec.schemas.events import DeadLetter, EnrichRequest, content_hash
from streamrec.schemas.fields import SchemaError
from streamrec.schemas.publisher import route
from streamrec.schemas.topics import Topics
from streamrec.settings import Settings

log = logging.getLogger("streamrec.workers")
HEARTBEAT_S = 2.0


class WorkerError(RuntimeError):
    """The worker cannot go on (missing topic, records the broker refused); offsets stay uncommitted."""


def text_of(title: str, text: str, attributes: Mapping[str, object]) -> str:
    """What gets embedded: title, text, then the attribute values (bools say nothing on their own).

    Everything here is covered by the content hash, so equal hashes mean equal texts.

    >>> text_of("Dune.", "A desert planet.", {"genres": ("sf", "epic"), "year": 1965, "new": True})
    'Dune. A desert planet. sf, epic. 1965'
    >>> text_of("Heat", "", {})
    'Heat'
    """
    parts = [title.strip(), text.strip()]
    for value in attributes.values():
        if isinstance(value, bool):
            continue
        parts.append(", ".join(value) if isinstance(value, tuple) else str(value))
    return ". ".join(p.rstrip(".").strip() for p in parts if p.strip())


def request_text(req: EnrichRequest) -> str:
    return text_of(req.title, req.text, req.attributes)


def batch_due(n: int, oldest: float | None, now: float, size: int, wait_s: float) -> bool:
    """Encode now? When the batch is full, or its oldest message has waited long enough.

    >>> batch_due(64, 0.0, 0.0, size=64, wait_s=0.05), batch_due(3, 0.0, 0.01, size=64, wait_s=0.05)
    (True, False)
    >>> batch_due(3, 0.0, 0.06, size=64, wait_s=0.05), batch_due(0, None, 9.0, size=64, wait_s=0.05)
    (True, False)
    """
    return n >= size or (n > 0 and oldest is not None and now - oldest >= wait_s)


def poll_wait(n: int, oldest: float | None, now: float, wait_s: float, idle_s: float = 0.5) -> float:
    """How long the next poll may block: until the partial batch is due, or ``idle_s`` when empty.

    >>> poll_wait(0, None, 5.0, wait_s=0.05), poll_wait(3, 5.0, 5.02, wait_s=0.05)
    (0.5, 0.03)
    """
    if n == 0 or oldest is None:
        return idle_s
    return round(max(0.0, oldest + wait_s - now), 6)


@dataclass
class WorkerStats:
    processed: int = 0  # requests turned into output records
    dead_letters: int = 0
    batches: int = 0
    embedded: int = 0  # texts that went through the model (cache misses)
    cache_hits: int = 0
    model_calls: int = 0  # forward passes, from the encoder
    redis_failures: int = 0
    malformed_skipped: int = 0  # malformed requests left to the worker that dead-letters them

    def line(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in asdict(self).items())


class Inflight:
    """Offsets of produced batches, released for commit only once all their records are acknowledged.

    >>> f = Inflight()
    >>> a = f.add({("t", 0): 10}, records=2); b = f.add({("t", 0): 12, ("t", 1): 5}, records=1)
    >>> f.ack(b); f.ready()          # b is done, but a (earlier) is not: nothing to commit yet
    {}
    >>> f.ack(a); f.ack(a); f.ready(), f.pending
    ({('t', 0): 12, ('t', 1): 5}, 0)
    """

    def __init__(self) -> None:
        self._batches: dict[int, list] = {}  # id -> [records outstanding, offsets]; insertion order
        self._next = 0
        self.failures: list[str] = []

    def add(self, offsets: dict[tuple[str, int], int], records: int) -> int:
        self._next += 1
        self._batches[self._next] = [records, dict(offsets)]
        return self._next

    def ack(self, batch: int) -> None:
        self._batches[batch][0] -= 1

    def fail(self, batch: int, reason: str) -> None:
        self.failures.append(reason)

    @property
    def pending(self) -> int:
        return sum(max(0, n) for n, _ in self._batches.values())

    def ready(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        while self._batches and not self.failures:
            first = next(iter(self._batches))
            outstanding, offsets = self._batches[first]
            if outstanding > 0:
                break
            del self._batches[first]
            out.update(offsets)
        return out


class EnrichWorker:
    """One LLM worker process reading ``items.enrich`` with its own group; subclasses ``handle``."""

    name = "enrich"
    #: Does this worker kind dead-letter malformed requests? Exactly one kind may (the embedding
    #: worker), or each bad request would be dead-lettered once per kind; see the module docstring.
    owns_dead_letters = False

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topics = Topics(prefix=settings.topic_prefix)
        self.group = f"{settings.enrich_group_id}-{self.name}"
        self.stats = WorkerStats()
        self.inflight = Inflight()
        self.offsets: dict[tuple[str, int], int] = {}  # next offset to read, per processed partition
        self.assigned_at: float | None = None  # monotonic time of the first assignment
        self.health_path = Path(settings.state_dir) / "workers" / self.name / "health.json"
        self._stop = False
        self._revoked: set[tuple[str, int]] = set()
        self._last_heartbeat = 0.0
        self.metrics = WorkerMetrics(self.name)

    def handle(self, requests: list[EnrichRequest], now: float) -> list:
        """The output records (one per request) for a batch of valid requests."""
        raise NotImplementedError

    def extra_health(self) -> dict:
        return {}

    # ------------------------------------------------------------ Kafka plumbing

    def connect(self) -> None:
        from confluent_kafka import Consumer, Producer

        from streamrec.connect import kafka_config

        base = kafka_config(self.settings)  # bootstrap servers and security, as for every client
        self.consumer = Consumer({
            **base, "group.id": self.group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        })  # fmt: skip
        info = self.consumer.list_topics(timeout=30).topics.get(self.topics.enrich)
        if info is None or info.error is not None:
            raise WorkerError(f"topic {self.topics.enrich!r} does not exist; run `streamrec topics create`")
        self.consumer.subscribe([self.topics.enrich], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.producer = Producer({**base, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                                  "compression.type": "lz4"})  # fmt: skip

    def _on_assign(self, consumer, partitions) -> None:
        if self.assigned_at is None:
            self.assigned_at = time.monotonic()
        log.info("%s assigned %s", self.name, [(tp.topic, tp.partition) for tp in partitions])

    def _on_revoke(self, consumer, partitions) -> None:
        self.producer.flush(30)
        self.commit(sync=True)
        self._revoked = {(tp.topic, tp.partition) for tp in partitions}

    def _delivered(self, batch: int, err, msg) -> None:
        if err is None:
            self.inflight.ack(batch)
        else:
            self.inflight.fail(batch, f"{msg.topic()}[{msg.key()!r}]: {err}")

    def commit(self, sync: bool = False) -> None:
        from confluent_kafka import TopicPartition

        self.producer.poll(0)
        if self.inflight.failures:
            raise WorkerError(f"{len(self.inflight.failures)} record(s) not delivered, offsets not "
                              f"committed: {'; '.join(self.inflight.failures[:3])}")  # fmt: skip
        ready = self.inflight.ready()
        if ready:
            try:
                self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in ready.items()],
                                     asynchronous=not sync)  # fmt: skip
            except Exception as exc:  # e.g. mid-rebalance: the records are out, a re-read is harmless
                log.info("offset commit deferred: %s", exc)

    # ------------------------------------------------------------ one batch

    def decode(self, msg, now: float) -> EnrichRequest | DeadLetter:
        value = msg.value()
        try:
            if value is None:
                raise SchemaError("<payload>", "empty message (null value)")
            req = decode(value, EnrichRequest)
            expected = content_hash(req.title, req.text, req.attributes)
            if req.content_hash != expected:
                raise SchemaError("content_hash", f"{req.content_hash[:40]!r} does not match the "
                                  f"content (expected {expected!r})")  # fmt: skip
            return req
        except SchemaError as exc:
            # hardening (issue 11): cut to fit, with the origin, so no request can stop the worker
            return dead_letter(msg.topic(), msg.key(), value, str(exc), now, msg.partition(),
                               msg.offset())  # fmt: skip

    def process(self, messages: list) -> None:
        now = time.time()
        skip = self.settings.skip_messages  # hardening (issue 11): an operator's last resort
        for m in messages:
            if (m.topic(), m.partition(), m.offset()) in skip:
                log.warning("skipped %s[%d]@%d as STREAMREC_SKIP_MESSAGES says", m.topic(),
                            m.partition(), m.offset())  # fmt: skip
        decoded = [self.decode(m, now) for m in messages
                   if (m.topic(), m.partition(), m.offset()) not in skip]  # fmt: skip
        malformed = [d for d in decoded if isinstance(d, DeadLetter)]
        requests = [d for d in decoded if isinstance(d, EnrichRequest)]
        letters = malformed if self.owns_dead_letters else []
        for d in letters:
            log.warning("dead-lettered %s: %s", d.topic, d.reason)
        if not self.owns_dead_letters:
            for d in malformed:
                log.debug("%s worker skipped a malformed request on %s (the embedding worker "
                          "dead-letters it): %s", self.name, d.topic, d.reason)  # fmt: skip
            self.stats.malformed_skipped += len(malformed)
        records = [*self.handle(requests, now), *letters] if requests else letters
        offsets = {}
        for m in messages:
            offsets[(m.topic(), m.partition())] = max(offsets.get((m.topic(), m.partition()), 0),
                                                      m.offset() + 1)  # fmt: skip
        batch = self.inflight.add(offsets, len(records))
        callback = lambda err, msg: self._delivered(batch, err, msg)  # noqa: E731
        for record in records:
            topic, key = route(record, self.topics)
            while True:
                try:
                    self.producer.produce(topic, value=encode(record), key=key, on_delivery=callback)
                    break
                except BufferError:  # local queue full: let the broker catch up
                    self.producer.poll(0.1)
        self.offsets.update(offsets)
        self.stats.processed += len(records) - len(letters)
        self.stats.dead_letters += len(letters)
        self.stats.batches += 1

    # ------------------------------------------------------------ health and the loop

    def heartbeat(self, now: float, force: bool = False) -> None:
        if not force and now - self._last_heartbeat < HEARTBEAT_S:
            return
        self._last_heartbeat = now
        body = {"ts": time.time(), "worker": self.name, "group": self.group, **asdict(self.stats),
                **self.extra_health()}  # fmt: skip
        write_heartbeat(self.health_path, body)
        self.metrics.sync({"items": self.stats.processed, "cache_hits": self.stats.cache_hits,
                           "dead_letters": self.stats.dead_letters,
                           "malformed_skipped": self.stats.malformed_skipped,
                           "redis_failures": self.stats.redis_failures})  # fmt: skip
        self.metrics.heartbeat.set(body["ts"])
        self.metrics.lag.set(self.queue_depth())

    def queue_depth(self) -> int:
        """Requests waiting in our partitions of ``items.enrich`` (from cached watermarks)."""
        depth = 0
        for tp in self.consumer.assignment():
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                depth += max(0, high - self.offsets.get((tp.topic, tp.partition), high))
        return depth

    def healthy(self) -> bool:
        return time.monotonic() - self._last_heartbeat <= max(30.0, 3 * HEARTBEAT_S)

    def caught_up(self) -> bool:
        """Every assigned partition read to its end, and nothing left to acknowledge.

        The ends are the high watermarks of the latest fetch responses (librdkafka keeps fetching
        in the background); asking the broker costs ~0.5 s a partition, so only when none is known.
        """
        assignment = self.consumer.assignment()
        if not assignment or self.inflight.pending:
            return False
        consumer = self.consumer
        committed = {(t.topic, t.partition): t.offset for t in consumer.committed(assignment, timeout=10)}
        positions = {(t.topic, t.partition): t.offset for t in consumer.position(assignment)}
        for tp in assignment:
            key = (tp.topic, tp.partition)
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:
                low, high = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            done = max(self.offsets.get(key, -1), committed.get(key, -1), positions.get(key, -1), low)
            if done < high:
                return False
        return True

    def stop(self, *_args) -> None:
        self._stop = True

    def run(self, burst: bool = False, max_seconds: float | None = None) -> WorkerStats:
        """Process until stopped (SIGTERM/SIGINT), or with ``burst`` until caught up."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        size, wait_s = self.settings.embed_batch_size, self.settings.embed_batch_wait_s
        started = time.monotonic()
        pending: list = []
        oldest: float | None = None
        try:
            self.connect()
            if self.settings.metrics_port:
                serve(self.metrics, self.settings.metrics_port, self.healthy)
            while not self._stop:
                self._revoked = set()
                wait = poll_wait(len(pending), oldest, time.monotonic(), wait_s)
                messages = self.consumer.consume(size - len(pending), wait)
                if self._revoked:  # their new owner re-reads whatever we had not produced yet
                    pending = [m for m in pending if (m.topic(), m.partition()) not in self._revoked]
                    oldest = oldest if pending else None
                for msg in messages:
                    if msg.error():
                        log.warning("consumer error: %s", msg.error())
                        continue
                    pending.append(msg)
                now = time.monotonic()
                if pending and oldest is None:
                    oldest = now
                if batch_due(len(pending), oldest, now, size, wait_s):
                    self.process(pending)
                    pending, oldest = [], None
                self.commit()
                self.heartbeat(now)
                if burst and not messages and not pending and self.caught_up():
                    break
                if max_seconds is not None and now - started > max_seconds:
                    break
            if pending:
                self.process(pending)
            if self.producer.flush(60):
                raise WorkerError("records still unacknowledged after 60s; offsets not committed")
            self.commit(sync=True)
            self.heartbeat(time.monotonic(), force=True)
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        self._stop = True
        consumer = getattr(self, "consumer", None)  # absent when connect() failed early
        try:
            if consumer is not None:
                consumer.close()
        except Exception:  # already closed
            pass
