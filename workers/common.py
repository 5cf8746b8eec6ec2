"""The enrichment stage the LLM workers share: decode or dead-letter, handle, say what to produce.

No Kafka here: :mod:`.agents` runs a stage as a faust-streaming agent (batches from
``stream.take_events``, the model in an executor, outputs and offsets in one Kafka transaction).
What a stage does with one batch::

    consumed messages ─► decode at the boundary (bad request ─► DeadLetter) ─► handle (the model)
    ─► one output record per message it answers, paired with that message

The pairing is what makes the outputs exactly once: the agent writes each record in the
transaction of the partition its request came from, the transaction that also commits that
partition's offset.

A request is malformed when it does not decode as an ``EnrichRequest`` or when its
``content_hash`` does not match its content: the hash keys the embedding cache, so a wrong one
would hand another text's vector to every later item with that hash.

Exactly one worker kind dead-letters malformed requests: the embedding worker
(:attr:`EnrichWorker.owns_dead_letters`). Every worker kind reads every request (each is its own
consumer group on ``items.enrich``), so if each dead-lettered what it could not decode, the
dead-letter topic would hold every bad request once per kind. The other kinds (the tag worker)
skip a malformed request, count it (``malformed_skipped``, in the stats and the metrics) and log it
at debug level; the request still reaches the dead-letter topic once, through the embedding worker.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from streamrec.metrics import WorkerMetrics, write_heartbeat
from streamrec.schemas.codec import content_type, decode, encode
from streamrec.schemas.deadletters import dead_letter
from streamrec.schemas.events import DeadLetter, EnrichRequest, content_hash
from streamrec.schemas.fields import SchemaError
from streamrec.schemas.publisher import route
from streamrec.schemas.topics import Topics
from streamrec.settings import Settings
from streamrec.workers.delivery import Backoff

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


def partition_for(key: bytes | None, partitions: int) -> int | None:
    """The partition a keyed record goes to: CRC-32 of the key, as librdkafka's default
    ``consistent_random`` partitioner does, so the workers put an item on the same partition of a
    compacted topic as every other streamrec producer (aiokafka's own default hashes with murmur2).
    Empty and null keys: ``None``, the client picks.

    >>> partition_for(b"i42", 6), partition_for(b"i42", 6) == zlib.crc32(b"i42") % 6, partition_for(b"", 6)
    (4, True, None)
    """
    if not key:
        return None
    return zlib.crc32(key) % partitions


@dataclass(frozen=True)
class Message:
    """What a stage needs of one consumed message (faust's event, a test's hand-made one)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: (name, value) pairs; the ``content-type`` header chooses JSON or msgpack
    headers: tuple = ()


@dataclass(frozen=True)
class Output:
    """One record to produce, and the message it answers (whose transaction it belongs to)."""

    source: Message
    topic: str
    key: bytes
    value: bytes


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


class EnrichWorker:
    """One LLM worker kind reading ``items.enrich`` with its own group; subclasses ``handle``."""

    name = "enrich"
    #: Does this worker kind dead-letter malformed requests? Exactly one kind may (the embedding
    #: worker), or each bad request would be dead-lettered once per kind; see the module docstring.
    owns_dead_letters = False

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topics = Topics(prefix=settings.topic_prefix)
        self.group = f"{settings.enrich_group_id}-{self.name}"
        self.stats = WorkerStats()
        self.health_path = Path(settings.state_dir) / "workers" / self.name / "health.json"
        self.metrics = WorkerMetrics(self.name)
        #: wall-clock moments of this process ("consumer_start": the model is loaded and the
        #: consumer starts; "first_batch": its first batch of records is in hand, so the group
        #: gave it partitions; "first_output": that batch is done), in the heartbeat: they show
        #: how long a restart takes to get back to work
        self.timeline: dict[str, float] = {}
        #: retries of outputs the broker refused or did not acknowledge (see :mod:`.delivery`)
        self.delivery = Backoff(settings.enrich_retry_min_s, settings.enrich_retry_max_s)
        self._last_heartbeat = 0.0

    @property
    def output_topics(self) -> list[str]:
        """Where this kind writes (checked at start-up, partition counts learned)."""
        return [self.topics.deadletter] if self.owns_dead_letters else []

    def handle(self, requests: list[EnrichRequest], now: float) -> list:
        """The output records (one per request) for a batch of valid requests."""
        raise NotImplementedError

    def extra_health(self) -> dict:
        return {}

    def decode(self, msg: Message, now: float) -> EnrichRequest | DeadLetter:
        value = msg.value
        try:
            if value is None:
                raise SchemaError("<payload>", "empty message (null value)")
            req = decode(value, EnrichRequest, content_type(msg.headers))
            expected = content_hash(req.title, req.text, req.attributes)
            if req.content_hash != expected:
                raise SchemaError("content_hash", f"{req.content_hash[:40]!r} does not match the "
                                  f"content (expected {expected!r})")  # fmt: skip
            return req
        except SchemaError as exc:
            # cut to fit, with the origin, so that no request can stop the worker
            return dead_letter(msg.topic, msg.key, value, str(exc), now, msg.partition, msg.offset)

    def process(self, messages: list[Message], now: float | None = None) -> list[Output]:
        """The records to produce for one batch, each paired with its message; blocking (the
        model runs here), so the agent calls it in an executor. Messages named by
        ``STREAMREC_SKIP_MESSAGES`` (an operator's last resort) produce nothing and are acked."""
        now = time.time() if now is None else now
        skip = self.settings.skip_messages
        if skip:
            for m in messages:
                if (m.topic, m.partition, m.offset) in skip:
                    log.warning("skipped %s[%d]@%d as STREAMREC_SKIP_MESSAGES says", m.topic,
                                m.partition, m.offset)  # fmt: skip
            messages = [m for m in messages if (m.topic, m.partition, m.offset) not in skip]
        decoded = [(m, self.decode(m, now)) for m in messages]
        good = [(m, d) for m, d in decoded if isinstance(d, EnrichRequest)]
        malformed = [(m, d) for m, d in decoded if isinstance(d, DeadLetter)]
        pairs = list(zip([m for m, _ in good], self.handle([d for _, d in good], now))) if good else []
        if self.owns_dead_letters:
            for _, d in malformed:
                log.warning("dead-lettered %s: %s", d.topic, d.reason)
            pairs += malformed
            self.stats.dead_letters += len(malformed)
        else:
            for _, d in malformed:
                log.debug("%s worker skipped a malformed request on %s (the embedding worker "
                          "dead-letters it): %s", self.name, d.topic, d.reason)  # fmt: skip
            self.stats.malformed_skipped += len(malformed)
        self.stats.processed += len(good)
        self.stats.batches += 1
        out = []
        for msg, record in pairs:
            topic, key = route(record, self.topics)
            out.append(Output(msg, topic, key, encode(record)))
        return out

    # ------------------------------------------------------------ health

    def heartbeat(self, now: float, depth: int = 0, force: bool = False) -> None:
        if not force and now - self._last_heartbeat < HEARTBEAT_S:
            return
        self._last_heartbeat = now
        body = {"ts": time.time(), "worker": self.name, "group": self.group, "pid": os.getpid(),
                **asdict(self.stats), **self.timeline, **self.extra_health(),
                **self.delivery.health(now)}  # fmt: skip
        write_heartbeat(self.health_path, body)
        self.metrics.sync({"items": self.stats.processed, "cache_hits": self.stats.cache_hits,
                           "dead_letters": self.stats.dead_letters,
                           "malformed_skipped": self.stats.malformed_skipped,
                           "redis_failures": self.stats.redis_failures,
                           "output_failures": self.delivery.failures})  # fmt: skip
        self.metrics.heartbeat.set(body["ts"])
        self.metrics.lag.set(depth)

    def healthy(self) -> bool:
        """Heartbeat fresh and outputs flowing (a worker retrying a refused output is degraded)."""
        fresh = time.monotonic() - self._last_heartbeat <= max(30.0, 3 * HEARTBEAT_S)
        return fresh and not self.delivery.degraded
