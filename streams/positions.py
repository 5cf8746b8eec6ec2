"""Where the stream worker reads: every input partition, from the checkpoint's offsets.

Why the worker positions its reader itself instead of letting a consumer group do it: the model
state and the offsets it reflects are saved together in one checkpoint (see
:mod:`streamrec.streams.checkpoint`), so a restarted worker must resume every partition exactly
where the restored state ends. One reader is therefore *assigned* every partition of every input
topic (events, catalogue, embeddings, tags) at the checkpoint's offset, or the beginning when the
checkpoint has none; Kafka's committed offsets are never read back. Which users' lists a worker
writes is a separate matter (:mod:`streamrec.streams.membership`).

How far behind the reader is (for metrics) and whether it has caught up (for ``--burst``) are
measured against the same offsets: the next offset to read, per partition, as the worker records
them after handling each message.
"""

from __future__ import annotations

from streamrec.schemas.topics import Topics

Offsets = dict[tuple[str, int], int]


def input_topics(topics: Topics) -> list[str]:
    """Every topic the worker reads, the event topics first."""
    return [*event_topics(topics), topics.items, topics.embeddings, topics.tags]


def event_topics(topics: Topics) -> list[str]:
    """The topics of clicks and ratings: keyed by user, so their partitions decide serving."""
    return [topics.clicks, topics.ratings]


def start_positions(metadata, topics: Topics, offsets: Offsets, names: list[str] | None = None) -> list:
    """A ``TopicPartition`` for every partition of every input topic, at the checkpoint's offset.

    ``metadata`` is the broker's answer to ``list_topics``; a missing input topic is an error that
    says how to create it.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    parts = []
    for topic in names or input_topics(topics):
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            raise RuntimeError(f"topic {topic!r} does not exist; run `streamrec topics create`")
        parts += [TopicPartition(topic, p, offsets.get((topic, p), OFFSET_BEGINNING))
                  for p in info.partitions]  # fmt: skip
    return parts


def open_reader(config: dict, group: str, parts: list):
    """One consumer assigned ``parts`` (from :func:`start_positions`); it never commits itself.

    ``read_committed``: records of aborted transactions are never learned. ``group`` is the
    worker's outputs group, to which its side-output transactions commit (see
    :mod:`streamrec.streams.outputs`); the reader's own position comes from the checkpoint.
    """
    from confluent_kafka import Consumer

    reader = Consumer({**config, "group.id": group,
                       "enable.auto.commit": False, "enable.auto.offset.store": False,
                       "isolation.level": "read_committed"})  # fmt: skip
    reader.assign(parts)
    return reader


def lag(reader, partitions, offsets: Offsets) -> int:
    """Messages behind the end of ``partitions`` (from cached watermarks)."""
    from confluent_kafka import TopicPartition

    behind = 0
    for topic, partition in partitions:
        try:
            _, high = reader.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        except Exception:  # no fetch response yet for this partition
            continue
        if high >= 0:
            behind += max(0, high - offsets.get((topic, partition), 0))
    return behind


def caught_up(reader, offsets: Offsets) -> bool:
    """True when every partition assigned to ``reader`` has been read to its end (fresh watermarks)."""
    for tp in reader.assignment():
        _, high = reader.get_watermark_offsets(tp, timeout=5, cached=False)
        if offsets.get((tp.topic, tp.partition), 0) < high:
            return False
    return True
