"""The publishing client applications use to send events and catalogue changes.

It routes each record to its topic with the right key (clicks and ratings by user, so one user's
events stay ordered on one partition; items and enrichments by item), encodes it with the wire
codec, and produces with ``acks=all`` and an idempotent producer, so a retried send is never
duplicated. Delivery failures are collected and reported to the caller by :meth:`Publisher.flush`
(and :meth:`Publisher.close`) instead of vanishing in a background thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streamrec.schemas.codec import encode
from streamrec.schemas.events import (
    Click,
    DeadLetter,
    EnrichRequest,
    Item,
    ItemEmbedding,
    ItemTags,
    Rating,
)
from streamrec.schemas.topics import Topics


class DeliveryError(RuntimeError):
    """Some records were not acknowledged by the broker; ``failures`` lists (key, reason)."""

    def __init__(self, failures: list[tuple[bytes | None, str]], pending: int = 0):
        self.failures = failures
        self.pending = pending
        detail = "; ".join(f"{k!r}: {r}" for k, r in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        still = f"; {pending} still unacknowledged" if pending else ""
        super().__init__(f"{len(failures)} record(s) not delivered: {detail}{more}{still}")


def route(record, topics: Topics) -> tuple[str, bytes]:
    """The topic and key a record is published under.

    >>> route(Click(user="u1", item="i2", ts=1.7e9), Topics())
    ('events.clicks', b'u1')
    >>> route(Item(item="i2", title="Heat", ts=1.7e9), Topics(prefix="t."))
    ('t.catalog.items', b'i2')
    """
    if isinstance(record, Click):
        return topics.clicks, record.user.encode()
    if isinstance(record, Rating):
        return topics.ratings, record.user.encode()
    if isinstance(record, Item):
        return topics.items, record.item.encode()
    if isinstance(record, EnrichRequest):
        return topics.enrich, record.item.encode()
    if isinstance(record, ItemEmbedding):
        return topics.embeddings, record.item.encode()
    if isinstance(record, ItemTags):
        return topics.tags, record.item.encode()
    if isinstance(record, DeadLetter):
        return topics.deadletter, record.key or b""
    raise TypeError(f"cannot publish {type(record).__name__}: not a streamrec record")


@dataclass
class Publisher:
    """Publish streamrec records to Kafka.

    Use as a context manager, or call :meth:`close`; both flush and raise :class:`DeliveryError`
    if any record was not acknowledged.
    """

    bootstrap: str
    topics: Topics = Topics()
    config: dict | None = None  # extra librdkafka settings (security, tuning)

    @classmethod
    def from_settings(cls, settings, topics: Topics | None = None, **config) -> Publisher:
        """A publisher with the deployment's bootstrap servers, security options and topic prefix."""
        from streamrec.connect import kafka_config

        topics = topics or Topics(prefix=settings.topic_prefix)
        return cls(settings.kafka_bootstrap, topics, {**kafka_config(settings), **config})

    def __post_init__(self) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                **(self.config or {}),
            }
        )
        self._failures: list[tuple[bytes | None, str]] = []
        self.delivered = 0

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self._failures.append((msg.key(), str(err)))
        else:
            self.delivered += 1

    def publish(self, record) -> None:
        """Queue one record; it is sent in the background and confirmed by :meth:`flush`."""
        topic, key = route(record, self.topics)
        self.produce(topic, key, encode(record))

    def produce(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Queue raw bytes (for relaying and dead-lettering), with the same delivery tracking."""
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: let the broker catch up, then retry
                self._producer.poll(0.1)
        self._producer.poll(0)

    def publish_many(
        self, records: Iterable, on_progress: Callable[[int], None] | None = None
    ) -> int:
        n = 0
        for n, record in enumerate(records, 1):
            self.publish(record)
            if on_progress:
                on_progress(1)
        return n

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for every queued record; return how many were delivered so far."""
        pending = self._producer.flush(timeout_s)
        if self._failures or pending:
            failures, self._failures = self._failures, []
            raise DeliveryError(failures, pending)
        return self.delivered

    def close(self, timeout_s: float = 30.0) -> None:
        self.flush(timeout_s)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the original error, but still try to deliver what was queued
            self._producer.flush(5)
