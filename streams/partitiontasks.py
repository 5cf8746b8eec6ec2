"""The stream worker's partition tasks under partitioned state: taking and giving up partitions,
and the item-side snapshot for workers that start without a checkpoint.

The bookkeeping (which users are whose, what a transaction carries) is
:class:`~streamrec.streams.partitioned.PartitionedState`; this is the I/O around it, called from
the consumer group's rebalance callbacks and from the worker's checkpoint. The worker hands in the
objects it shares: its offsets (one dict, updated in place), its refresh schedule, whether anything
is uncommitted, and how to commit.
"""

from __future__ import annotations

import io
import logging
import os
import time

from streamrec.connect import kafka_config
from streamrec.streams import positions, snapshot
from streamrec.streams.statetopics import SNAPSHOT_CHUNK, read_changelog, read_item_snapshot, snapshot_records
from streamrec.schemas.topics import Topics

log = logging.getLogger("streamrec.worker")


class PartitionTasks:
    def __init__(self, state, model, settings, offsets: dict, schedule, pending, commit):
        self.state, self.model, self.settings = state, model, settings
        self.offsets, self.schedule = offsets, schedule
        self.pending, self.commit = pending, commit
        self.events = positions.event_topics(Topics(prefix=settings.topic_prefix))
        self.owned: set[int] = set()
        self._snapshot_at = float("-inf")
        self._snapshot_prev: tuple[int, int] | None = None

    def assigned(self, partitions: set[int], committed: dict) -> None:
        """Gained event partitions: their users from the changelog, their offsets from the group
        (both written by the same transactions), and a list for each user at the next refresh.
        A partition that comes straight back after a rebalance keeps its users in memory."""
        started = time.perf_counter()
        config, timeout = kafka_config(self.settings), self.settings.kafka_timeout_s
        kept = self.state.unpark(partitions, committed)
        restored = 0
        for p in sorted(partitions - kept):
            users = self.state.restore(p, read_changelog(config, self.state.users_topic, [p], timeout))
            for user in users:
                self.schedule.owe(user, (self.events[0], p))
            restored += len(users)
        for topic in self.events:
            for p in partitions:
                self.offsets[(topic, p)] = committed.get((topic, p), 0)
        self.owned = set(partitions)
        log.info("took event partitions %s (kept %s): %d users restored from %s in %.2fs",
                 sorted(partitions), sorted(kept), restored, self.state.users_topic,
                 time.perf_counter() - started)  # fmt: skip

    def revoked(self, partitions: set[int], lost: bool) -> None:
        """Giving event partitions away: commit what was learned from them, then forget their
        users (or park them, in case the rebalance gives them straight back)."""
        mine_now = partitions & self.owned
        if mine_now and not lost and not self.commit():
            lost = True
        if lost and mine_now and self.pending():
            # the new owner resumes from the last commit; this process must not commit again
            log.error("could not commit before giving up partitions %s; exiting so that nothing "
                      "learned here after the last commit is ever committed", sorted(partitions))
            os._exit(70)
        events = set(self.events)
        mine = {tp: o for tp, o in self.offsets.items() if tp[0] in events and tp[1] in partitions}
        if lost:
            self.state.forget(partitions)
        else:
            self.state.park(partitions, mine)
        for tp in mine:
            del self.offsets[tp]
        self.owned -= partitions

    def publish_snapshot(self, outputs, seq: int, now: float, owned: set[int]) -> None:
        """The owner of event partition 0 publishes the item side now and then, for workers that
        start without a checkpoint (a lost volume, a new pod): it goes into the next transaction
        and describes the state of the checkpoint just taken (delta log position, own deltas)."""
        every = self.settings.item_snapshot_s
        if not every or 0 not in owned or now - self._snapshot_at < every:
            return
        self._snapshot_at = now
        position = self.offsets.get((self.state.items_topic, 0), 0)
        buffer = io.BytesIO()
        snapshot.write(buffer, self.model.snapshot(with_users=False))
        data = buffer.getvalue()
        meta = {"position": position, "own": self.state.own_to_meta(position), "created": now,
                "worker": self.settings.worker_id}  # fmt: skip
        for key, value in snapshot_records(data, seq, self._snapshot_prev, meta):
            outputs.produce(self.state.snapshot_topic, key, value, None, partition=0)
        self._snapshot_prev = (seq, -(-len(data) // SNAPSHOT_CHUNK) or 1)
        log.info("item snapshot %d published (%d bytes, delta log at %d)", seq, len(data), position)

    def bootstrap(self, config: dict, timeout: float) -> None:
        """No checkpoint: start the item side from the latest published snapshot, if any, so
        the delta log is read from its position instead of from its start (which retention cuts)."""
        found = read_item_snapshot(config, self.state.snapshot_topic, timeout)
        if found is None:
            log.info("no item snapshot on %s: the item side comes from the delta log's start",
                     self.state.snapshot_topic)  # fmt: skip
            return
        data, manifest = found
        self.model.load_snapshot(snapshot.read(io.BytesIO(data), len(data)))
        self.model.retain_users(lambda u: False)
        self.state.track()
        self.offsets[(self.state.items_topic, 0)] = manifest["position"]
        self.state.own = set(manifest["own"])
        log.info("item side from snapshot %d of %s (delta log from %d)", manifest["generation"],
                 manifest["worker"], manifest["position"])  # fmt: skip
