"""Partitioned state: each stream worker learns only the users of the event partitions it owns.

``STREAMREC_STATE=partitioned`` (the scale-out mode) follows Kafka Streams' design for stateful
tasks, the proven mechanism of this kind, expressed in the worker's own terms:

- **The event partitions are the unit of state.** The consumer group assigns the event partitions
  (clicks and ratings are co-partitioned: keyed by user, the same partition count; the range
  assignor gives partition *p* of both topics to one worker). A worker learns only its partitions'
  events and so holds user-side state (factors, seen items, history, profiles) for their users only.
- **A changelog topic per store.** Every user whose state changed is written, whole, to the
  compacted topic ``state.users`` (key: the user; partition: the user's event partition), in the
  same Kafka transaction that commits the events' offsets to the group (exactly-once v2:
  ``send_offsets_to_transaction`` with the group's metadata, so a fenced zombie cannot commit).
  The partition's new owner reads that changelog partition to its end before learning the
  partition's next event: state moves with its partition, on a rebalance, a scale change, or a pod
  lost with its volume, and no event is lost or learned twice.
- **Item-side state by additive deltas through a topic.** Co-occurrence pairs, popularity counts
  and item-factor changes are not applied where they are learned: they go, in the same transaction,
  to the one-partition topic ``state.items``, and *every* worker (the learner too) applies every
  delta as it reads it back. Item-side state is thereby a function of the delta log's prefix: counts
  agree exactly across workers (item factors up to each worker's initial draw), and a worker's
  checkpoint of the item side is simply "the log read up to offset *o*".

Why not faust Tables (the Python port of the same idea): a Table keeps one key-value changelog and
replays it per partition, but the item-side state here is shared by all partitions and has to be
merged, which Tables do not do, and faust's per-message path tops out far below the worker's
batched intake (see the README's scale-out section for the figures). Why not Monolith-style
periodic parameter sync: it would lose the changes since the last sync on a crash, which the
no-lost-event promise excludes.

>>> decode_record(encode_record({"n": 3, "seen": ["a"]}))
{'n': 3, 'seen': ['a']}
>>> state_topics("shop1.")
('shop1.state.users', 'shop1.state.items')
"""

from __future__ import annotations

import logging
import time

from streamrec.streams.state import dumps, loads
from streamrec.streams.tunershare import TUNER_KEY, SharedClimb

log = logging.getLogger("streamrec.partitioned")

USERS = "state.users"
ITEMS = "state.items"
SNAPSHOTS = "state.snapshots"
SNAPSHOT_CHUNK = 4 * 1024 * 1024
#: own events between two item deltas: bounds one delta record (item factors are 64 bytes a row)
DELTA_EVERY = 1000
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


class PartitionedState:
    """The worker's side of the scheme above: which users are whose, what goes into a transaction.

    Pure bookkeeping around the model and the side-output transaction (``outputs``: anything with
    ``produce(topic, key, value, origin, partition=None)``); the Kafka reading is the caller's.

    >>> from streamrec.streams.recommender import Recommender
    >>> class Out:
    ...     def __init__(self): self.records = []
    ...     def produce(self, topic, key, value, origin, partition=None):
    ...         self.records.append((topic, key, partition)); return True
    >>> model, out = Recommender(), Out()
    >>> state = PartitionedState(model, "state.users", "state.items")
    >>> model.learn_click("u1", "a"); state.learned("u1", 3)
    >>> state.flush(out)
    >>> [(t, k, p) for t, k, p in out.records]
    [('state.items', b'', 0), ('state.users', b'u1', 3)]
    >>> state.forget({3}); model.n_users, state.users_held
    (0, 0)
    """

    def __init__(self, model, users_topic: str, items_topic: str, snapshot_topic: str = SNAPSHOTS):
        self.model = model
        self.users_topic, self.items_topic, self.snapshot_topic = users_topic, items_topic, snapshot_topic
        self.partition_of: dict = {}  # user -> the event partition their events come from
        self.changed: set = set()  # users whose state changed since the last flush
        self.since_delta = self.since_commit = 0
        #: offsets of this worker's own committed deltas not read back yet (applied already)
        self.own: set[int] = set()
        self.track()

    def track(self) -> None:
        """(Again, after the model's item side was replaced) keep item-side changes as deltas."""
        self.model.track_item_deltas()

    def committed(self, placed) -> None:
        """A transaction committed; ``placed``: where its records went (own deltas among them)."""
        self.own.update(o for t, _, o in placed if t == self.items_topic)

    #: the self-tuning climb shared through the delta log (streams/tunershare.py), if tuned
    climb = None

    def share_tuner(self, tuner) -> None:
        """Tune one blend with the other workers: ``tuner``'s evidence and promotions go to the
        delta log with each item delta, and theirs come back (None: no self-tuning blend)."""
        self.climb = SharedClimb(tuner) if tuner is not None else None

    def read_delta(self, offset: int, value: bytes, key: bytes | None = b"") -> bool:
        """A record of the item delta log: applied unless it is this worker's own (already in);
        the tuner's records (key ``tuner``) are read in log order, own ones too."""
        own = offset in self.own
        self.own.discard(offset)
        if key == TUNER_KEY:
            self.read_climb(value, own)
            return not own
        if own:
            return False
        self.model.add_item_delta(decode_record(value))
        return True

    def read_climb(self, value: bytes, own: bool) -> None:
        if self.climb is not None:
            self.climb.read(self.model, decode_record(value), own)

    def own_to_meta(self, position: int) -> list[int]:
        """Own deltas at or past the reader's ``position`` (a checkpoint's): skipped after a restore."""
        self.own = {o for o in self.own if o >= position}
        return sorted(self.own)

    @property
    def users_held(self) -> int:
        return len(self.partition_of)

    def learned(self, user, partition: int) -> None:
        self.partition_of[user] = partition
        self.changed.add(user)
        self.since_delta += 1
        self.since_commit += 1

    def delta_due(self) -> bool:
        return self.since_delta >= DELTA_EVERY

    #: own events after which the transaction commits, whatever its age (STREAMREC_COMMIT_EVERY_EVENTS)
    commit_every = DELTA_EVERY

    def commit_due(self) -> bool:
        """Commit now, before the half-second timer: the other workers' item counts and the shared
        climb lag this worker by its events since the last commit, so a saturated worker bounds
        that lag by events (at the stream's own rate the timer comes first)."""
        return self.since_commit >= self.commit_every

    def emit_delta(self, outputs) -> None:
        """The item-side change so far, as one record of the item delta log."""
        self.since_delta = 0
        delta = self.model.take_item_delta()
        if delta is not None:
            outputs.produce(self.items_topic, b"", encode_record(delta), None, partition=0)
        tuned = self.climb.record() if self.climb is not None else None
        if tuned is not None:
            outputs.produce(self.items_topic, TUNER_KEY, encode_record(tuned), None, partition=0)

    def flush(self, outputs) -> None:
        """Everything learned since the last flush into the open transaction: the item delta,
        then every changed user's whole record, to the user's event partition of the changelog."""
        self.since_commit = 0
        self.emit_delta(outputs)
        record = self.model.user_record
        for user in sorted(self.changed, key=str):
            rec = record(user)
            if rec is not None:
                outputs.produce(self.users_topic, str(user).encode(), encode_record(rec), None,
                                partition=self.partition_of[user])  # fmt: skip
        self.changed = set()

    def restore(self, partition: int, records) -> list:
        """Load the users of ``partition`` from its changelog ``records`` (key, value); returns them."""
        users = []
        for key, value in records:
            if value is None:
                continue
            user = key.decode()
            self.model.load_user_record(user, decode_record(value))
            self.partition_of[user] = partition
            users.append(user)
        return users

    def park(self, partitions: set[int], offsets: dict) -> None:
        """Revoked in a rebalance, maybe to come back at once: keep the users until the next
        assignment (:meth:`unpark`) instead of re-reading their changelog."""
        self.parked = {p: {tp: o for tp, o in offsets.items() if tp[1] == p} for p in partitions}

    def unpark(self, partitions: set[int], committed: dict) -> set[int]:
        """The newly assigned ``partitions`` whose parked users are still current (nobody committed
        past our offsets meanwhile); the other parked partitions' users are forgotten."""
        parked, self.parked = self.parked, {}
        keep = {p for p, offsets in parked.items() if p in partitions
                and all(committed.get(tp, 0) == o for tp, o in offsets.items())}  # fmt: skip
        self.forget(set(parked) - keep)
        return keep

    parked: dict = {}

    def forget(self, partitions: set[int]) -> None:
        """Drop the users of ``partitions`` (given away: their new owner restores them)."""
        gone = {u for u, p in self.partition_of.items() if p in partitions}
        if not gone:
            return
        self.model.retain_users(lambda u: u not in gone)
        for u in gone:
            del self.partition_of[u]
        self.changed -= gone
