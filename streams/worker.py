"""The stream worker: consume events, learn every one, refresh active users' lists, checkpoint.

The loop, and why it is ordered this way::

    consume a batch ─► decode at the boundary ─► learn (or dead-letter) ─► mark user active
    every refresh interval, interleaved with the consuming above (a slice of lists per batch):
        write lists of active users to Redis ─► flush dead letters ─► checkpoint (state+offsets)
        ─► commit offsets to Kafka

The refresh pass does not stop learning: it ranks and writes ``PASS_SLICE_S`` worth of lists
between two consumed batches (:meth:`StreamWorker.begin_pass`). The order guarantee holds per
pass: every list of the pass is written before the checkpoint, and the offsets are committed after
it. A user with an event learned while the pass ran stays owed (the checkpoint's ``pending``), so
that event reaches a list at the next pass; the checkpoint itself covers every event learned.

The checkpoint carries the offset of every input partition (see :mod:`streamrec.streams.checkpoint`):
a restart seeks every partition to the checkpoint's position, so no event is lost and none is
learned twice. Offsets are committed to Kafka only after the checkpoint is durable, for monitoring.

Scale-out (see :mod:`streamrec.streams.membership`): every worker reads and learns every partition;
the consumer group only decides which partitions' users each worker writes lists for.

Events are consumed with confluent-kafka in batches rather than through faust agents: on this
two-core box faust's per-message path alone topped out near 18k messages/s while a batched
confluent-kafka consumer delivers millions, and the worker's throughput target is a fraction of
River's bare ``learn_one`` rate (well above 18k/s). Faust's acknowledgement-driven commits also
commit on rebalance and shutdown on their own schedule, which is not tied to our checkpoints.

All input topics, events, catalogue and enrichments, are read by one reader with manually
assigned partitions; its positions live only in the checkpoint (see
:mod:`streamrec.streams.positions`).

Replays (``bench replay``) run the same worker on a *logical* clock: lists are written whenever an
event's timestamp crosses a refresh boundary, before that event is learned, and an observer hook
sees each event before it is learned, so it can read the list a user had at that moment.

Which users are owed a list and when it is written (refresh interval, early refresh, logical
clock, owed users across a rebalance, Redis backoff) is decided by pure bookkeeping in
:mod:`streamrec.streams.schedule`; this module does the I/O around it.

The worker is three stages, one module each: the per-event path (:mod:`streamrec.streams.intake`),
the refresh passes and checkpoints (:mod:`streamrec.streams.passes`), and here the set-up, the
Kafka plumbing, health and the loop.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamrec.connect import check_kafka, kafka_config, redis_client
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.topics import Topics
from streamrec.metrics import WorkerMetrics, serve, write_heartbeat
from streamrec.settings import Settings
from streamrec.streams import positions
from streamrec.streams.catalog import Catalog
from streamrec.streams.checkpoint import FileCheckpointStore, Snapshots
from streamrec.streams.ingest import Boundary
from streamrec.streams.listindex import ListIndex
from streamrec.streams.membership import Membership
from streamrec.streams.outputs import SideOutputs, committed_offsets, outputs_group
from streamrec.streams.partitioned import PartitionedState
from streamrec.streams.statetopics import DELTA_MAX_BYTES, Ownership, ensure_state_topics
from streamrec.streams.statetopics import snapshot_topic, state_topics
from streamrec.streams.partitiontasks import PartitionTasks
from streamrec.streams.intake import EventPath
from streamrec.streams.passes import MODEL_NAME, RefreshPasses
from streamrec.streams.recommender import Recommender
from streamrec.streams.schedule import PassSlices, RefreshSchedule, active_from_meta
from streamrec.streams.serving import ServingState
from streamrec.streams.served import Served

log = logging.getLogger("streamrec.worker")
BATCH = 1000
HEARTBEAT_S = 2.0
LOGICAL_CHECKPOINT_S = 30.0  # wall-clock checkpoint period of a logical-clock (replay) worker


@dataclass
class Stats:
    learned: int = 0
    dead_letters: int = 0
    lists_written: int = 0
    enrich_requests: int = 0
    enrichments: int = 0
    refreshes: int = 0
    early_refreshes: int = 0
    redis_failures: int = 0
    skipped: int = 0  # messages named by STREAMREC_SKIP_MESSAGES
    errors: int = 0  # messages whose handling raised (dead-lettered with the error)
    output_failures: int = 0  # failed commits of side outputs (retried)
    suppressed_outputs: int = 0  # side outputs of replayed inputs, committed before a restart
    checkpoint_fallbacks: int = 0
    fresh_starts: int = 0
    learned_before: int = 0  # events the restored state already held
    tuner_promotions: int = 0
    last_refresh_s: float = 0.0
    extra: dict = field(default_factory=dict)


def build_recommender(settings: Settings) -> Recommender:
    from dataclasses import replace

    from streamrec.streams.recommender import RecommenderConfig

    cfg = RecommenderConfig(k=settings.top_k, max_seen=settings.max_seen)
    cfg = replace(cfg, mf=replace(cfg.mf, n_negatives=settings.negatives),
                  cooccur=replace(cfg.cooccur, history=settings.history),
                  content=replace(cfg.content, index_background=True))  # fmt: skip
    return Recommender(cfg, seed=settings.seed)


class StreamWorker(EventPath, RefreshPasses):
    """One stream worker process. ``run()`` until stopped; ``run(burst=True)`` until caught up.

    ``logical=True`` drives refreshes by event time instead of wall time (replays); ``observer``,
    if given, is called as ``observer(record, worker)`` before each click or rating is learned.
    """

    def __init__(self, settings: Settings, clock=time.time, logical: bool = False,
                 observer=None, model: Recommender | None = None):  # fmt: skip
        self.settings = settings
        self.clock = clock
        self.logical = logical
        self.observer = observer
        self.topics = Topics(prefix=settings.topic_prefix)
        self.keys = RedisKeys(prefix=settings.redis_prefix)
        self.boundary = Boundary(self.topics)
        self.store = FileCheckpointStore(settings.checkpoints)
        self.stats = Stats()
        #: item records, seen lists and similar-item lists for the read API (written at refreshes)
        self.serving = ServingState(settings.similar_k, settings.similar_per_refresh, enabled=not logical,
                                    cycle_s=settings.similar_cycle_s)  # fmt: skip
        restored = self.store.restore(Recommender.from_checkpoint)
        checkpoint = restored.checkpoint if restored else None
        self._fresh = checkpoint is None
        self._deltas = 0  # delta checkpoints since the last full one
        self._have_full = False  # deltas extend the newest chain only, so a fallback writes a full one
        if checkpoint:
            # format 1 (bytes) is restored as it is, and the next checkpoint is a full format-2 one
            self.model = restored.model
            if isinstance(checkpoint.model, Snapshots) and restored.path == self.store.path:
                self._have_full, self._deltas = True, len(checkpoint.model.deltas)
            self.offsets: dict[tuple[str, int], int] = dict(checkpoint.offsets)
            self.seq = checkpoint.seq
            active = active_from_meta(checkpoint.meta.get("active", []))
            self.stats.learned = self.stats.learned_before = int(checkpoint.meta.get("learned", 0))
            self.catalog_state = Catalog(checkpoint.meta.get("content_hashes", {}))
            self.serving.restore(checkpoint.meta.get("serving", ()))
            #: who holds which item in their last written list (deletes reach every list)
            self.lists = ListIndex.from_meta(checkpoint.meta.get("lists"), settings.top_k)
        else:
            self.model = model or build_recommender(settings)
            self.offsets, self.seq = {}, 0
            active = {}
            self.catalog_state = Catalog()
            self.lists = ListIndex(settings.top_k)
        #: partitioned state (see streams/partitioned.py): users of the owned partitions only
        self.partitioned = settings.state == "partitioned" and not logical
        self.state: PartitionedState | None = None
        if self.partitioned:
            events = set(positions.event_topics(self.topics))
            self.offsets = {tp: o for tp, o in self.offsets.items() if tp[0] not in events}
            self.model.retain_users(lambda u: False)  # the changelog has them, current
            self.state = PartitionedState(self.model, *state_topics(settings.topic_prefix),
                                          snapshot_topic(settings.topic_prefix),
                                          commit_every=settings.commit_every_events)  # fmt: skip
            self.state.own = set(checkpoint.meta.get("own_deltas", ())) if checkpoint else set()
        # negatives and seed of the model in use: a restored model keeps its own
        mf = self.model.config.mf
        version = {"model": MODEL_NAME, "k": settings.top_k, "negatives": mf.n_negatives,
                   "seed": mf.seed}  # fmt: skip
        if settings.blend_weights:  # ranking only, so it applies to a restored model as well
            self.model.set_weights(**dict(settings.blend_weights))
            version["weights"] = [list(p) for p in settings.blend_weights]
        #: the blend served (self-tuning by default) and the live quality metrics (streams/served.py)
        self.served = Served(self.model, settings, version, checkpoint.meta if checkpoint else None)
        if self.state is not None:  # one self-tuning climb for all workers (streams/tunershare.py)
            self.state.share_tuner(self.served.tuner)
        #: owed users and when their lists are due (see :mod:`streamrec.streams.schedule`)
        self.schedule = RefreshSchedule.from_settings(settings, logical, self.clock(), active)
        self.redis = redis_client(settings)
        self._stop = False
        self._pass: PassSlices | None = None  # the interleaved refresh pass in progress
        self._pass_started = 0.0
        self._cached_pass = None
        self._last_heartbeat = 0.0
        self._consumers()
        self._restored_log(restored)  # after Kafka answered: an unreachable broker is one line
        self.metrics = WorkerMetrics("streams")
        if settings.metrics_port:
            serve(self.metrics, settings.metrics_port, self.healthy)

    def _restored_log(self, restored) -> None:
        """Say where the state comes from; a fallback and a fresh start are warnings, and counted."""
        if restored is None:
            self.stats.fresh_starts += 1
            (log.info if self.logical else log.warning)(
                "no checkpoint in %s: a fresh start; every event still on the input topics is "
                "learned from the beginning, and the lists' model version starts again at 1",
                self.store.dir)  # fmt: skip
            return
        cp = restored.checkpoint
        if restored.passed_over:
            self.stats.checkpoint_fallbacks += 1
            log.warning("checkpoint fallback: %s; restored the previous one (%s, checkpoint %d): "
                        "the events after it are learned again", "; ".join(restored.passed_over),
                        restored.path, cp.seq)  # fmt: skip
        else:
            log.info("restored checkpoint %d (%d partitions)", cp.seq, len(cp.offsets))

    # ------------------------------------------------------------ Kafka plumbing

    def _consumers(self) -> None:
        settings = self.settings
        config = kafka_config(settings)
        timeout = settings.kafka_timeout_s
        metadata = check_kafka(config, timeout).list_topics(timeout=timeout)
        event_topics = positions.event_topics(self.topics)
        names = None
        if self.partitioned:  # events come through the group (Ownership), the rest as before
            info = metadata.topics.get(event_topics[0])
            if info is None or info.error is not None:
                raise RuntimeError(f"topic {event_topics[0]!r} does not exist; run `streamrec topics create`")
            ensure_state_topics(config, settings.topic_prefix, len(info.partitions),
                                settings.replication, timeout)  # fmt: skip
            self.tasks = PartitionTasks(self.state, self.model, settings, self.offsets, self.schedule,
                                        self.outputs_pending, self._commit_outputs)  # fmt: skip
            if self._fresh:
                self.tasks.bootstrap(config, timeout)
            names = [*positions.input_topics(self.topics)[len(event_topics):], self.state.items_topic]
            metadata = check_kafka(config, timeout).list_topics(timeout=timeout)
        # one reader for every partition of every input topic, positioned from the checkpoint
        parts = positions.start_positions(metadata, self.topics, self.offsets, names)
        # side outputs: opening the transactional producer aborts what a killed predecessor left
        # open; only then are the outputs group's offsets stable to read (see streams/outputs.py)
        self.outputs = SideOutputs({**config, "message.max.bytes": DELTA_MAX_BYTES},
                                   f"{settings.group_id}.{settings.worker_id}", timeout_s=timeout)  # fmt: skip
        if self.state is not None:
            self.outputs.track = {self.state.items_topic}
        self.outputs.open()
        group = outputs_group(settings.group_id, settings.worker_id)
        self.reader = positions.open_reader(config, group, parts)
        self.outputs.resume(committed_offsets(self.reader, parts, timeout))
        self.event_partitions = {(tp.topic, tp.partition) for tp in parts if tp.topic in event_topics}
        self.membership = self.ownership = None
        if self.partitioned:
            self.ownership = Ownership(config, settings.group_id, settings.worker_id, event_topics,
                                       self.tasks.assigned, self.tasks.revoked)  # fmt: skip
        elif not self.logical:  # a replay serves everything itself
            self.membership = Membership(config, self.settings.group_id, self.settings.worker_id,
                                         event_topics,
                                         on_gained=self.schedule.gained)  # fmt: skip

    def serves(self, position: tuple[str, int] | None) -> bool:
        """Does this worker write the lists of users whose latest event came from ``position``?"""
        if self.ownership is not None:
            return position is None or position[1] in self.ownership.owned
        return self.membership is None or position is None or position in self.membership.owned

    def poll(self, timeout: float = 0.1) -> int:
        """Consume and learn one batch from the catalogue and the event topics."""
        if self.membership is not None:
            self.membership.poll()
        messages = self.reader.consume(BATCH, timeout if self.ownership is None else 0)
        if self.ownership is not None:
            messages += self.ownership.consume(BATCH, 0 if messages else timeout)
        now = self.clock()
        for msg in messages:
            if msg.error():
                log.warning("consumer error: %s", msg.error())
                continue
            self.handle(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), now,
                        msg.headers())  # fmt: skip
            if self.state is not None and self.state.commit_due():  # bounds the peers' lag
                self._commit_outputs()
        self.outputs.poll()
        if self.outputs.due():  # enrichment requests reach the LLM workers within about a second
            self._commit_outputs()
        return len(messages)

    def _commit_outputs(self) -> bool:
        if self.state is not None:  # the state learned so far, and the event offsets it covers
            self.state.flush(self.outputs)
            events = set(positions.event_topics(self.topics))
            mine = {tp: o for tp, o in self.offsets.items() if tp[0] in events}
            rest = {tp: o for tp, o in self.offsets.items() if tp[0] not in events}
            ok = self.outputs.commit(rest, self.reader.consumer_group_metadata(),
                                     ((mine, self.ownership.group_metadata()),))  # fmt: skip
            if ok:
                self.state.committed(self.outputs.placed)
        else:
            ok = self.outputs.commit(self.offsets, self.reader.consumer_group_metadata())
        self.stats.output_failures = self.outputs.failures
        self.stats.suppressed_outputs = self.outputs.suppressed
        return ok

    # ------------------------------------------------------------ health and the loop

    def lag(self) -> int:
        """Messages behind the end of the assigned event partitions (from cached watermarks)."""
        return positions.lag(self.reader, self.event_partitions, self.offsets)

    def healthy(self) -> bool:
        return time.time() - self._last_heartbeat <= max(30.0, 3 * HEARTBEAT_S)

    def heartbeat(self, now: float) -> None:
        if now - self._last_heartbeat < HEARTBEAT_S:
            return
        self._last_heartbeat = now
        self.stats.tuner_promotions = self.served.promotions
        self.metrics.sync(vars(self.stats))
        self.metrics.quality(self.served.report(self.catalog_state.hashes), self.served.weights())
        self.metrics.heartbeat.set(now)
        body = {"ts": now, "seq": self.seq, "learned": self.stats.learned,
                "active": len(self.schedule.active), "dead_letters": self.stats.dead_letters,
                "enrichments": self.stats.enrichments, "outputs_pending": self.outputs.pending,
                "output_failures": self.outputs.failures, "skipped": self.stats.skipped,
                "errors": self.stats.errors,
                "redis_ok": self.schedule.redis_backoff == 0.0, "worker_id": self.settings.worker_id,
                "serving": self._serving_view(),
                "users_held": self.model.n_users}  # fmt: skip
        write_heartbeat(Path(self.store.dir) / "health.json", body)

    def _serving_view(self):
        if self.ownership is not None:
            return sorted((t, p) for t in positions.event_topics(self.topics) for p in self.ownership.owned)
        return sorted(self.membership.owned) if self.membership else "all"

    def caught_up(self) -> bool:
        """True when every input partition has been read to its end (and, in a group, we serve)."""
        if self.membership is not None and not self.membership.assigned_once:
            return False
        if self.ownership is not None:
            if not self.ownership.assigned_once or not positions.caught_up(self.ownership.consumer, self.offsets):
                return False
        return positions.caught_up(self.reader, self.offsets)

    def stop(self, *_args) -> None:
        self._stop = True

    def run(self, burst: bool = False, max_seconds: float | None = None) -> Stats:
        """Process until stopped (SIGTERM/SIGINT), or with ``burst`` until caught up."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        started = self.clock()
        period = LOGICAL_CHECKPOINT_S if self.logical else self.settings.refresh_interval_s
        next_refresh = started + period
        try:
            while not self._stop:
                n = self.poll()
                now = self.clock()
                self.early_refresh()
                if self._pass is not None:
                    self.pass_step(now)
                elif now >= next_refresh:
                    if self.logical:
                        self.refresh()
                    else:
                        self.begin_pass(now)
                    next_refresh = now + period
                self.heartbeat(now)
                if burst and n == 0 and self.caught_up():
                    break
                if max_seconds is not None and now - started > max_seconds:
                    break
            if self._pass is not None:  # finish in one go: every owed list, then the checkpoint
                self.schedule.abandon_pass()
                self._pass = None
            self.refresh()  # lists and a checkpoint for everything learned so far
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        self._stop = True
        if self.ownership is not None:
            self.ownership.close()
        self.outputs.close()
        if self.membership is not None:
            self.membership.close()
        self.reader.close()
