"""Read a topic from the beginning to its current end, without joining a consumer group.

For operators (``streamrec peek``) and tests: it assigns every partition at the earliest offset,
stops when each partition reports its end, and commits nothing, so it never disturbs the workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator


def read_topic(
    bootstrap: str, topic: str, limit: int | None = None, timeout_s: float = 20.0,
    config: dict | None = None,
) -> Iterator[tuple[bytes | None, bytes | None]]:  # fmt: skip
    """Yield ``(key, value)`` for the records in ``topic`` now, oldest first per partition."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "streamrec-peek",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            **(config or {}),
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            raise KafkaException(info.error if info else f"topic {topic!r} not found")
        partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in info.partitions]
        consumer.assign(partitions)
        remaining = {p.partition for p in partitions}
        seen = 0
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline and (limit is None or seen < limit):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    remaining.discard(msg.partition())
                    continue
                raise KafkaException(msg.error())
            seen += 1
            yield msg.key(), msg.value()
    finally:
        consumer.close()
