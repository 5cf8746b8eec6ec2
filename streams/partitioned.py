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
- **Item-side state by additive deltas through a topic.** Co-occurrence pairs, transitions,
  popularity counts and item-factor changes are applied where they are learned, at once, and go,
  in the same transaction, to the one-partition topic ``state.items``; every other worker applies
  them as it reads them, and a worker skips its own records by their offsets (known from the
  delivery reports when the transaction commits). Applying one's own deltas only when they come
  back would make item state a pure function of the log, but lag a user's burst behind its own
  counts (two thousand events of lag cost 0.03 HR@10 on MovieLens). Counts agree across workers
  up to the order in which the per-item caps prune, item factors up to each worker's initial draw;
  a checkpoint keeps the own records not read back yet with the log position, so a restore
  applies every committed delta exactly once.

Why not faust Tables (the Python port of the same idea): a Table keeps one key-value changelog and
replays it per partition, but the item-side state here is shared by all partitions and has to be
merged, which Tables do not do, and faust's per-message path tops out far below the worker's
batched intake (see the README's scale-out section for the figures). Why not Monolith-style
periodic parameter sync: it would lose the changes since the last sync on a crash, which the
no-lost-event promise excludes.

The broker side (the state topics, reading a changelog back, the item snapshot's records, the
consumer that owns the event partitions) is :mod:`streamrec.streams.statetopics`.

>>> decode_record(encode_record({"n": 3, "seen": ["a"]}))
{'n': 3, 'seen': ['a']}
"""

from __future__ import annotations

from streamrec.streams.statetopics import SNAPSHOTS, decode_record, encode_record
from streamrec.streams.tunershare import TUNER_KEY, SharedClimb

#: own events between two item deltas: bounds one delta record (item factors are 64 bytes a row)
DELTA_EVERY = 1000
#: a young worker commits after a quarter of what it has learned (at least this many events)
YOUNG_COMMIT_MIN = 100


def commit_bound(learned: int, commit_every: int) -> int:
    """Own events after which a worker commits, having learned ``learned`` since it started.

    Why it grows: what another worker's delta adds is large next to a young model and small next
    to an old one, and the self-tuning climb decides its first steps in the first thousand events
    of a stream; a commit costs a broker round trip (milliseconds) whatever it holds. So a worker
    commits once its uncommitted events are a quarter of what it has learned (from
    ``YOUNG_COMMIT_MIN`` up to ``commit_every`` events): about a dozen early commits in all.

    >>> [commit_bound(n, 1000) for n in (0, 100, 400, 2000, 10_000)], commit_bound(0, 3)
    ([100, 100, 100, 500, 1000], 3)
    """
    return min(commit_every, max(YOUNG_COMMIT_MIN, learned // 4))


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

    def __init__(self, model, users_topic: str, items_topic: str, snapshot_topic: str = SNAPSHOTS,
                 commit_every: int = DELTA_EVERY):
        self.model = model
        #: own events after which the transaction commits, whatever its age (STREAMREC_COMMIT_EVERY_EVENTS)
        self.commit_every = commit_every
        self.users_topic, self.items_topic, self.snapshot_topic = users_topic, items_topic, snapshot_topic
        self.partition_of: dict = {}  # user -> the event partition their events come from
        self.changed: set = set()  # users whose state changed since the last flush
        self.since_delta = self.since_commit = self.learned_here = 0
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
        self.learned_here += 1

    def delta_due(self) -> bool:
        return self.since_delta >= DELTA_EVERY

    def commit_due(self) -> bool:
        """Commit now, before the half-second timer: the other workers' item counts and the shared
        climb lag this worker by its events since the last commit, so a saturated worker bounds
        that lag by events (at the stream's own rate the timer comes first)."""
        return self.since_commit >= commit_bound(self.learned_here, self.commit_every)

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
