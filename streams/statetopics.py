"""Partitioned state on the broker: the state topics, a changelog read back, the item snapshot.

Why a module of its own: :mod:`streamrec.streams.partitioned` is the bookkeeping of which users
are whose and what goes into a transaction (pure, no Kafka); this is the Kafka side of the same
scheme: creating the state topics as Kafka Streams creates its internal topics, reading a
changelog partition to its end when a partition is gained, the records of an item-side snapshot,
and :class:`Ownership`, the consumer through which the group assigns the event partitions.

>>> decode_record(encode_record({"n": 3, "seen": ["a"]}))
{'n': 3, 'seen': ['a']}
>>> state_topics("shop1.")
('shop1.state.users', 'shop1.state.items')
"""

from __future__ import annotations

import logging
import time

from streamrec.streams.state import dumps, loads

log = logging.getLogger("streamrec.partitioned")

USERS = "state.users"
ITEMS = "state.items"
SNAPSHOTS = "state.snapshots"
SNAPSHOT_CHUNK = 4 * 1024 * 1024
#: a delta record may exceed Kafka's 1 MB default; the items topic and its producer allow this
DELTA_MAX_BYTES = 8 * 1024 * 1024



def state_topics(prefix: str = "") -> tuple[str, str]:
    """The user changelog and the item delta log of one deployment."""
    return f"{prefix}{USERS}", f"{prefix}{ITEMS}"


def snapshot_topic(prefix: str = "") -> str:
    """Where the item side is published for workers that start without a checkpoint."""
    return f"{prefix}{SNAPSHOTS}"


def snapshot_records(data: bytes, generation: int, previous: tuple[int, int] | None, meta: dict) -> list:
    """The records of one item-side snapshot: its chunks, the manifest naming them, tombstones for
    the ``previous`` snapshot's (generation, chunks); produced in one transaction to the
    compacted topic, so a reader sees a whole snapshot or the one before.

    >>> [k for k, v in snapshot_records(b"abc", 2, (1, 2), {"position": 5})]
    [b'items/2/0', b'items', b'items/1/0', b'items/1/1']
    """
    chunks = [data[i : i + SNAPSHOT_CHUNK] for i in range(0, len(data), SNAPSHOT_CHUNK)] or [b""]
    records = [(f"items/{generation}/{i}".encode(), c) for i, c in enumerate(chunks)]
    records.append((b"items", encode_record({"generation": generation, "chunks": len(chunks), **meta})))
    if previous is not None and previous[0] != generation:
        records += [(f"items/{previous[0]}/{i}".encode(), None) for i in range(previous[1])]
    return records


def read_item_snapshot(config: dict, topic: str, timeout_s: float) -> tuple[bytes, dict] | None:
    """The latest complete item-side snapshot on ``topic``: its bytes and its manifest."""
    latest: dict[bytes, bytes | None] = {}
    for key, value in read_changelog(config, topic, [0], timeout_s):
        latest[key] = value
    if not latest.get(b"items"):
        return None
    manifest = decode_record(latest[b"items"])
    gen = manifest["generation"]
    parts = [latest.get(f"items/{gen}/{i}".encode()) for i in range(manifest["chunks"])]
    if any(p is None for p in parts):
        log.warning("item snapshot %d on %s is incomplete; not used", gen, topic)
        return None
    return b"".join(parts), manifest


def encode_record(record: dict) -> bytes:
    return dumps(record)


def decode_record(data: bytes) -> dict:
    return loads(data)


def ensure_state_topics(config: dict, prefix: str, partitions: int, replication: int,
                        timeout_s: float) -> None:  # fmt: skip
    """Create the state topics if missing, as Kafka Streams creates its internal topics."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic

    users, items = state_topics(prefix)
    admin = AdminClient(config)
    have = admin.list_topics(timeout=timeout_s).topics
    new = []
    if users not in have:
        new.append(NewTopic(users, num_partitions=partitions, replication_factor=replication,
                            config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}))  # fmt: skip
    elif len(have[users].partitions) != partitions:
        raise RuntimeError(f"topic {users!r} has {len(have[users].partitions)} partitions, the event "
                           f"topics {partitions}: they must match (recreate {users!r})")  # fmt: skip
    snapshots = snapshot_topic(prefix)
    if snapshots not in have:
        new.append(NewTopic(snapshots, num_partitions=1, replication_factor=replication,
                            config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000",
                                    "max.message.bytes": str(DELTA_MAX_BYTES)}))  # fmt: skip
    if items not in have:
        new.append(NewTopic(items, num_partitions=1, replication_factor=replication,
                            config={"cleanup.policy": "delete", "retention.ms": str(7 * 86400_000),
                                    "max.message.bytes": str(DELTA_MAX_BYTES)}))  # fmt: skip
    for name, future in admin.create_topics(new, operation_timeout=timeout_s).items() if new else ():
        try:
            future.result()
            log.info("created state topic %s", name)
        except Exception as exc:
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    # ready = listed with a leader for every partition: a topic just created (here or by a peer
    # starting at the same moment) is listed before its leaders are elected, and reading it then
    # fails with NOT_LEADER_FOR_PARTITION
    deadline = time.monotonic() + timeout_s
    while not _led(admin.list_topics(timeout=timeout_s).topics, (users, items, snapshots)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"state topics {users!r}, {items!r}, {snapshots!r} have no leader "
                               f"for every partition after {timeout_s:g}s")  # fmt: skip
        time.sleep(0.2)


def _led(topics: dict, names) -> bool:
    """Is every partition of every topic in ``names`` listed in ``topics`` with a leader?"""
    for name in names:
        meta = topics.get(name)
        if meta is None or meta.error is not None or not meta.partitions:
            return False
        if any(p.leader < 0 or p.error is not None for p in meta.partitions.values()):
            return False
    return True


def read_changelog(config: dict, topic: str, partitions: list[int], timeout_s: float):
    """Yield ``(key, value)`` of every committed record of ``partitions`` of ``topic``, up to
    the end as it was when called (a compacted topic: the latest record per user wins)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    if not partitions:
        return
    reader = Consumer({**config, "group.id": f"{topic}.restore", "enable.auto.commit": False,
                       "isolation.level": "read_committed", "enable.partition.eof": True})  # fmt: skip
    try:
        ends = {}
        for p in partitions:
            low, high = _watermarks(reader, TopicPartition(topic, p), timeout_s)
            if high > low:
                ends[p] = high
        if not ends:
            return
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + max(timeout_s, 60.0)
        while ends:
            if time.monotonic() > deadline:
                raise RuntimeError(f"restoring {topic} partitions {sorted(ends)} timed out")
            for msg in reader.consume(1000, 0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        ends.pop(msg.partition(), None)  # at the end (past trailing markers)
                    continue
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
                yield msg.key(), msg.value()
            for tp in reader.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    ends.pop(tp.partition, None)
    finally:
        reader.close()


#: errors of a partition whose leader is moving or not yet elected: asked again, not fatal
_RETRIABLE = ("NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "UNKNOWN_TOPIC_OR_PART")


def _watermarks(reader, tp, timeout_s: float) -> tuple[int, int]:
    """``get_watermark_offsets``, asked again while the partition's leader is moving."""
    from confluent_kafka import KafkaError, KafkaException

    retriable = {getattr(KafkaError, name) for name in _RETRIABLE}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return reader.get_watermark_offsets(tp, timeout=timeout_s)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() not in retriable or time.monotonic() > deadline:
                raise
            log.info("%s[%d] has no leader yet (%s); asking again", tp.topic, tp.partition, err)
            time.sleep(0.2)


class Ownership:
    """The consumer group's view of which event partitions this worker owns, and their reader.

    Unlike :class:`~streamrec.streams.membership.Membership` (replicated state, where the group
    only decides serving), this consumer *reads* the owned partitions, from the group's committed
    offsets, which only the worker's transactions write. ``on_assign`` runs before the first event
    of a gained partition is returned (the worker restores the partition's users there), and
    ``on_revoke`` before a partition is given away (the worker commits, then forgets its users).
    """

    def __init__(self, config: dict, group_id: str, instance_id: str, topics: list[str],
                 on_assign, on_revoke):  # fmt: skip
        from confluent_kafka import Consumer

        self.owned: set[int] = set()
        self.assigned_once = False
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self.consumer = Consumer({**config, "group.id": group_id, "enable.auto.commit": False,
                                  "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                                  "isolation.level": "read_committed", "session.timeout.ms": 10_000,
                                  "partition.assignment.strategy": "range",
                                  "group.instance.id": instance_id})  # fmt: skip
        self.consumer.subscribe(topics, on_assign=self._assign, on_revoke=self._revoke,
                                on_lost=self._lost)  # fmt: skip

    def _assign(self, consumer, partitions) -> None:
        gained = {tp.partition for tp in partitions}
        committed = consumer.committed(partitions, timeout=30) if partitions else []
        offsets = {(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0}
        self._on_assign(gained, offsets)
        self.owned = gained
        self.assigned_once = True
        log.info("owning event partitions %s", sorted(self.owned))

    def _revoke(self, consumer, partitions) -> None:
        gone = {tp.partition for tp in partitions}
        self._on_revoke(gone, False)
        self.owned -= gone
        log.info("gave up event partitions %s", sorted(gone))

    def _lost(self, consumer, partitions) -> None:
        """Partitions taken away without a revoke (our session expired): another member may
        already be learning them, so nothing learned here since the last commit may be committed."""
        gone = {tp.partition for tp in partitions}
        self._on_revoke(gone, True)
        self.owned -= gone
        log.warning("lost event partitions %s (session expired)", sorted(gone))

    def consume(self, n: int, timeout: float) -> list:
        return self.consumer.consume(n, timeout)

    def group_metadata(self):
        return self.consumer.consumer_group_metadata()

    def close(self) -> None:
        self.consumer.close()
