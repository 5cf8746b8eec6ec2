"""The stream worker's refresh passes and checkpoints: lists first, then state, then offsets.

Why a stage of its own: the order guarantee lives here. Every list of a pass is written before the
checkpoint, and the offsets are committed after it (see :mod:`streamrec.streams.worker` for the
loop and :mod:`streamrec.streams.schedule` for who is owed a list when). :class:`RefreshPasses` is a
base class of :class:`~streamrec.streams.worker.StreamWorker` and works on the worker's own state,
which the worker sets up.
"""

from __future__ import annotations

import logging
import time

from streamrec.connect import redis_errors
from streamrec.streams import positions
from streamrec.streams.checkpoint import Checkpoint
from streamrec.streams.refresh import write_lists
from streamrec.streams.schedule import PassSlices, active_to_meta

log = logging.getLogger("streamrec.worker")
MODEL_NAME = "streamrec-blend"
PASS_SLICE_S = 0.05  # an interleaved refresh pass ranks this long, then the loop consumes a batch
PASS_REUSE_S = 1.0  # early refreshes within this long share one ranking pass


class RefreshPasses:
    """Rank and write the owed users' lists, a slice at a time or in one go, then checkpoint."""


    def model_version(self) -> str:
        """The name of the state the lists come from: the checkpoint that will hold it."""
        return f"{MODEL_NAME}.{self.seq + 1}"

    def _write(self, users: list[str], with_fallback: bool, now: float, lists: dict | None = None) -> bool:
        """Write ``users``' lists (ranked here in one batched pass unless ``lists`` has them)."""
        if not self.schedule.redis_ready(now):
            return False
        k = self.settings.top_k
        fallback = self.model.fallback(k) if with_fallback else None
        if lists is None:
            lists = dict(zip(users, self._ranking(now).lists(users, k)))
        try:
            written = write_lists(
                self.redis, self.keys, users, lists.__getitem__, fallback,
                self.model_version(), now, self.served.digest,
            )  # fmt: skip
            if not self.logical:  # a replay reads lists only
                self.serving.write(self.redis, self.keys, self.model, users, now, self.model_version(),
                                   self.served.digest)  # fmt: skip
        except redis_errors() as exc:
            self.stats.redis_failures += 1
            delay = self.schedule.redis_failed(now)
            log.warning("Redis unavailable (%s); retrying in %.0fs, still learning", exc, delay)
            return False
        self.schedule.redis_ok()
        if fallback is not None:
            self.served.published(fallback)
        self.stats.lists_written += written
        for user, items in lists.items():  # what each user's list in Redis now holds
            self.served.noted(user, items)
            if items:
                self.lists.record(user, [i for i, _ in items])
            else:
                self.lists.forget(user)
        return True

    def _ranking(self, now: float):
        """A ranking pass for a write; early refreshes reuse one for up to ``PASS_REUSE_S`` (its
        per-pass work is tens of ms at 100k items; deletions still apply at once), replays never."""
        cached = self._cached_pass
        if self.logical or cached is None or not 0 <= now - cached[1] < PASS_REUSE_S:
            cached = self._cached_pass = (self.model.ranking_pass(ranker=self.served.ranker), now)
        return cached[0]

    def write_active(self, now: float) -> bool:
        """Write the lists of the active users we serve, and the global list; keep them on failure."""
        if not self._write(self.schedule.owed(self.serves), with_fallback=True, now=now):
            return False
        self.schedule.written(self.serves, now)
        self.stats.refreshes += 1
        return True

    def refresh(self) -> None:
        """The minute pass: lists of every active user, then checkpoint, then commit."""
        started = time.perf_counter()
        now = self.clock()
        if not self.logical and self.write_active(now):
            self._write_stats(now)
        self.checkpoint()
        self.stats.last_refresh_s = time.perf_counter() - started
        self.metrics.refresh_seconds.observe(self.stats.last_refresh_s)
        self.metrics.lag.set(self.lag())

    def begin_pass(self, now: float) -> None:
        """Start an interleaved refresh pass: its lists are ranked and written a slice at a time
        between consumed batches (:meth:`pass_step`), so learning never waits a whole pass; when
        every list is written: the stats, the checkpoint, then the offsets, as in :meth:`refresh`."""
        self._pass_started = time.perf_counter()
        if not self.schedule.redis_ready(now):  # Redis backing off: checkpoint, lists stay owed
            self._end_pass()
            return
        k, ranking = self.settings.top_k, self.model.ranking_pass(ranker=self.served.ranker)
        users = self.schedule.begin_pass(self.serves)
        self._pass = PassSlices(users, lambda us: ranking.lists(us, k))

    def pass_step(self, now: float) -> None:
        job = self._pass
        users, lists = job.next_slice(time.perf_counter, PASS_SLICE_S)
        if not self._write(users, with_fallback=job.first, now=now, lists=lists):
            self.schedule.abandon_pass()  # its users stay owed (and in the checkpoint)
            self._pass = None
            self._end_pass()
            return
        if job.done:
            self._pass = None
            self.schedule.finish_pass(self.serves, now)
            self.stats.refreshes += 1
            self._write_stats(now)
            self._end_pass()

    def _end_pass(self) -> None:
        self.checkpoint()
        self.stats.last_refresh_s = time.perf_counter() - self._pass_started
        self.metrics.refresh_seconds.observe(self.stats.last_refresh_s)
        self.metrics.lag.set(self.lag())

    def early_refresh(self) -> None:
        """Lists of users whose debounce delay has passed, within the per-second budget."""
        if not self.schedule.early:
            return
        now = self.clock()
        due = self.schedule.early_due(now, self.serves)
        if due and self._write(due, with_fallback=False, now=now):
            self.schedule.early_written(due)
            self.stats.early_refreshes += len(due)

    def checkpoint(self) -> None:
        """Make state durable, then commit the offsets it covers."""
        if not self._commit_outputs():  # never checkpoint past an input whose outputs may be lost
            log.warning("%d side outputs not yet committed; checkpoint postponed", self.outputs.pending)
            return
        self.seq += 1
        full = (not self._have_full or self.model.needs_full
                or self._deltas + 1 >= self.settings.checkpoint_full_every)  # fmt: skip
        offsets = dict(self.offsets)
        if self.partitioned:  # event positions live in the group, with the changelog
            events = set(positions.event_topics(self.topics))
            offsets = {tp: o for tp, o in offsets.items() if tp[0] not in events}
        self.store.save(
            Checkpoint(
                seq=self.seq, created=self.clock(), offsets=offsets,
                model=self.model.snapshot(delta=not full), pending=tuple(sorted(self.schedule.active)),
                meta={"learned": self.stats.learned, "model_version": self.model_version(),
                      "content_hashes": self.catalog_state.hashes, "serving": self.serving.to_meta(),
                      "active": active_to_meta(self.schedule.active), "lists": self.lists.to_meta(),
                      "own_deltas": self.state.own_to_meta(self.offsets.get((self.state.items_topic, 0), 0))
                      if self.state is not None else [],
                      **self.served.to_meta()},
            )
        )  # fmt: skip
        self.model.checkpointed()
        self._have_full, self._deltas = True, 0 if full else self._deltas + 1
        self.stats.extra["checkpoint_bytes"] = self.store.last_bytes
        if self.membership is not None:
            self.membership.commit(self.offsets)
        if self.state is not None:
            self.tasks.publish_snapshot(self.outputs, self.seq, self.clock(), self.ownership.owned)

    def outputs_pending(self) -> bool:
        """Anything learned or produced since the last commit?"""
        return bool(self.outputs.pending or (self.state is not None and self.state.changed))

    def _write_stats(self, now: float) -> None:
        """The group's stats hash (what `streamrec status` shows). Best effort: Redis can go away
        between the lists and this write, and that must cost a stale status, not the worker."""
        key = self.keys.stats(self.settings.group_id)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping={"learned": self.stats.learned, "refreshed_at": now,
                                        "dead_letters": self.stats.dead_letters,
                                        "model_version": self.model_version(),
                                        **self.served.stats_fields(self.catalog_state.hashes)})  # fmt: skip
                pipe.expire(key, self.keys.recs_ttl_s)
                pipe.execute()
        except redis_errors() as exc:
            self.stats.redis_failures += 1
            log.warning("could not write the stats to Redis (%s); lists and learning go on", exc)
