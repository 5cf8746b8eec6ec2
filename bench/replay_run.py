"""One replay run of ``streamrec bench replay``: a configuration at a refresh interval, scored
prequentially, in process or through Kafka and Redis.

The two execution modes live side by side because their agreement is the point: the in-process
mode (:func:`run_in_process`, with :class:`LogicalLists` standing in for Redis and the worker's
refresh rule) is only trustworthy for model research while it gives the same lists as the real
path (:func:`run_kafka`). So the in-process mode gives the model the records the Kafka path
publishes, in the order it publishes them (:func:`feed_catalogue`, then the events), both score
through the same :func:`_finish`, and the integration test compares them.

Neither knows the named configurations: the caller passes ``build`` (settings -> a fresh model)
and the enrichment the model may see. :mod:`streamrec.bench.replay` makes both from a configuration name, so
research code that replaces ``streamrec.bench.replay.build_model`` still changes what every run builds.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrec.bench.replay_data import Dataset
from streamrec.bench.replay_enrich import Enrichment
from streamrec.bench.replay_metrics import K, Prequential
from streamrec.settings import Settings


def _log(msg: str) -> None:
    print(f"[bench replay] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the result of a run (both paths)


@dataclass
class RunResult:
    """One configuration at one refresh interval: its metrics, and per evaluated event its time
    and hit plus per item its exposure, which the report plots."""

    config: str
    refresh_interval_s: float
    mode: str
    metrics: dict
    times: np.ndarray
    hits: np.ndarray
    exposure: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.config} @{self.refresh_interval_s:g}s"

    def row(self) -> dict:
        return {"config": self.config, "refresh_interval_s": self.refresh_interval_s,
                "mode": self.mode, **self.metrics}  # fmt: skip


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" ev", file=sys.stderr, disable=not progress,
                mininterval=0.5, smoothing=0.05)  # fmt: skip


def _finish(name, interval, mode, metrics: Prequential, dataset: Dataset, seconds: float,
            extra: dict) -> RunResult:  # fmt: skip
    """The result of a run, computed the same way for both paths so that they can be compared."""
    result = metrics.result(it.item for it in dataset.items)
    result["events_per_s"] = len(dataset.events) / seconds if seconds > 0 else float("nan")
    result["wall_s"] = seconds
    result["refresh_interval_s"] = interval
    result["hr@10_first_half"], result["hr@10_second_half"] = metrics.hr_split(len(dataset.events) // 2)
    result.update(extra)
    times, hits = metrics.series()
    exposure = metrics.exposure_counts(it.item for it in dataset.items)
    return RunResult(name, interval, mode, result, times, hits, exposure)


# ---------------------------------------------------------------- in process


def feed_catalogue(model, dataset: Dataset, enrichment: Enrichment | None,
                   settings: Settings | None = None) -> set[str]:  # fmt: skip
    """What the worker learns from the catalogue topics, in the order the Kafka path publishes it
    (all items, then every embedding, then all tags). Returns the users the worker would mark for
    a cold-start refresh as embeddings arrive (none, before any event: kept for fidelity)."""
    for item in dataset.items:
        model.upsert_item(item.item, item.ts)
    owed: set[str] = set()
    if enrichment is None:
        return owed
    near = getattr(model, "users_near", None)
    n_near = getattr(settings, "cold_start_users", 0) if settings is not None else 0
    for item, vec in zip(dataset.items, enrichment.vectors):
        model.set_embedding(item.item, vec, item.ts)
        if near is not None and n_near:
            owed.update(near(item.item, n_near))
    if enrichment.tags is not None:
        for item, tags in zip(dataset.items, enrichment.tags):
            model.set_tags(item.item, tags, item.ts)
    return owed


class LogicalLists:
    """The in-process stand-in for Redis plus the worker's logical-clock refresh rule (see
    :class:`streamrec.streams.schedule.RefreshSchedule`).

    ``before(ts)`` must be called with each event's timestamp before the event is read or learned:
    when ``ts`` reaches the next boundary, the lists of the users active since the last write are
    recomputed (an empty list removes the user's list, as ``write_lists`` deletes the key) and the
    global list is rewritten, all stamped ``ts``; the next boundary is the next multiple of the
    interval after ``ts``.
    """

    def __init__(self, model, interval: float, k: int, keep: int = K, rank_many=None):
        self.model, self.interval, self.k, self.keep = model, interval, k, keep
        #: ``(users, k) -> lists`` in one batched pass: the model's own weights, or the self-tuning
        #: blend's served weighting (the worker's choice)
        self.rank_many = rank_many or model.recommend_many
        self.next_boundary = float("-inf")
        self.active: set[str] = set()
        self.lists: dict[str, tuple[list[str], float]] = {}
        self.global_list: tuple[list[str], float] | None = None
        self.refreshes = 0
        self.lists_written = 0

    def before(self, ts: float) -> None:
        if ts < self.next_boundary:
            return
        users = sorted(self.active)
        for user, recs in zip(users, self.rank_many(users, self.k)):  # one batched pass
            if recs:
                self.lists[user] = ([str(i) for i, _ in recs[: self.keep]], ts)
                self.lists_written += 1
            else:
                self.lists.pop(user, None)
        self.global_list = ([str(i) for i, _ in self.model.fallback(self.k)[: self.keep]], ts)
        self.active.clear()
        self.refreshes += 1
        self.next_boundary = (ts // self.interval + 1) * self.interval

    def read(self, user: str) -> tuple[list[str], float] | None:
        return self.lists.get(user) or self.global_list

    def learned(self, user: str) -> None:
        self.active.add(user)


def served_lists(model, dataset: Dataset, content: Enrichment | None, settings: Settings, interval: float,
                 tuner=None):  # fmt: skip
    """A fresh model's catalogue fed, its self-tuning blend (None without ``tuner``) and the
    :class:`LogicalLists` served through it, owed to the users the catalogue made due: the set-up
    of every in-process replay, one worker or several."""
    from streamrec.streams.tuner import Tuner

    owed = feed_catalogue(model, dataset, content, settings)
    tuned = Tuner.for_model(model, tuner) if tuner is not None and tuner.enabled else None
    if tuned is not None:
        model.set_weights(**tuned.weights)
    rank_many = None if tuned is None else (
        lambda users, k: model.recommend_many(users, k, ranker=tuned.ranker(model)))
    lists = LogicalLists(model, interval, settings.top_k, rank_many=rank_many)
    lists.active.update(owed)
    return lists, tuned


def run_in_process(dataset: Dataset, name: str, interval: float, settings: Settings, *, build,
                   content: Enrichment | None = None, progress: bool = True,
                   tuner=None) -> RunResult:  # fmt: skip
    """The fast mode: same Recommender, same order, same boundary rule; no Kafka, no Redis.

    ``build(settings)`` makes the fresh model and ``content`` is the enrichment it sees (None: no
    content signals); :func:`streamrec.bench.replay.replay_in_process` derives both from a configuration.
    ``tuner`` (a :class:`~streamrec.streams.tuner.TunerConfig`) serves the lists through the
    self-tuning blend, as the worker does: it sees each event before the model learns it.
    """
    model = build(settings)
    lists, tuned = served_lists(model, dataset, content, settings, interval, tuner)
    metrics = Prequential(len(dataset.items))
    kind = dataset.kind
    promoted_at: list[int] = []  # the stream position (1-based) of each promotion
    step = 500
    with _bar(len(dataset.events), f"{name} @{interval:g}s in-process", progress) as bar:
        started = time.perf_counter()
        for n, (user, item, ts, value) in enumerate(dataset.events, 1):
            lists.before(ts)
            current = lists.read(user)
            if current is None:
                metrics.event(user, item, ts, None, None)
            else:
                metrics.event(user, item, ts, current[0], current[1])
            if tuned is not None:
                tuned.observe(model, user, item)
                if len(tuned.promotions) > len(promoted_at):
                    promoted_at.append(n)
            if kind == "rating" or (kind == "mixed" and value is not None):
                model.learn_rating(user, item, value, ts)
            else:
                model.learn_click(user, item, ts)
            lists.learned(user)
            if n % step == 0:
                bar.update(step)
        seconds = time.perf_counter() - started
        bar.update(len(dataset.events) % step)
    extra = {"refreshes": lists.refreshes, "lists_written": lists.lists_written}
    if tuned is not None:
        extra["tuner"] = {"promotions": tuned.promotions, "weights": tuned.weights,
                          "promoted_at_event": promoted_at,
                          "settled_at_event": promoted_at[-1] if promoted_at else 0}
    return _finish(name, interval, "in-process", metrics, dataset, seconds, extra)


# ---------------------------------------------------------------- the Kafka path


def _event_records(dataset: Dataset):
    from streamrec.schemas.events import Click, Rating

    if dataset.kind == "rating":
        return (Rating(e.user, e.item, e.rating, e.ts) for e in dataset.events)
    if dataset.kind == "mixed":  # an event log: each event as what it was
        return (Click(e.user, e.item, e.ts) if e.rating is None else Rating(e.user, e.item, e.rating, e.ts)
                for e in dataset.events)  # fmt: skip
    return (Click(e.user, e.item, e.ts) for e in dataset.events)


def _drain(worker, topics: list[str], timeout_s: float = 300.0) -> None:
    """Poll until the worker has consumed every record of the given one-partition topics.

    The worker reads all its input topics through one consumer, in no guaranteed order across
    topics; publishing the catalogue, then the enrichments, then the events, each only after the
    worker has consumed the previous phase, makes the order of the model's calls exact.
    """
    from confluent_kafka import TopicPartition

    highs = {}
    for t in topics:
        _, high = worker.reader.get_watermark_offsets(TopicPartition(t, 0), timeout=10, cached=False)
        highs[(t, 0)] = high
    deadline = time.monotonic() + timeout_s
    while any(worker.offsets.get(tp, 0) < h for tp, h in highs.items()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not consume {topics} within {timeout_s:.0f}s")
        worker.poll(0.05)


def _cleanup(settings: Settings, topics) -> None:
    from streamrec.connect import redis_client
    from streamrec.schemas.admin import admin_for

    try:
        admin = admin_for(settings)
        names = [s.name for s in topics.specs()]
        for future in admin.delete_topics(names, operation_timeout=30).values():
            try:
                future.result()
            except Exception:  # already gone, or never created
                pass
    except Exception as exc:  # cleanup is best effort
        _log(f"could not delete the run's topics: {exc}")
    try:
        client = redis_client(settings)
        keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()
    except Exception as exc:
        _log(f"could not delete the run's Redis keys: {exc}")


def run_settings(settings: Settings, name: str, interval: float, checkpoints: Path) -> Settings:
    """A fresh topic/key prefix and consumer group for one Kafka-path run."""
    slug = name.replace("+", "-")
    prefix = f"replay{uuid.uuid4().hex[:8]}.{slug}-{interval:g}s."
    changes = {"topic_prefix": prefix, "redis_prefix": prefix, "group_id": f"{prefix}stream",
               "checkpoint_dir": checkpoints, "refresh_interval_s": float(interval),
               "early_refresh_s": 0.0, "partitions": 1}  # fmt: skip
    if hasattr(settings, "metrics_port"):
        changes["metrics_port"] = 0  # several workers in one process must not share a port
    return settings.replace(**changes)


def run_kafka(dataset: Dataset, name: str, interval: float, settings: Settings, *, build,
              content: Enrichment | None = None, progress: bool = True,
              keep: bool = False) -> RunResult:  # fmt: skip
    """The real path: Kafka topics, the StreamWorker in logical mode, lists read back from Redis.

    ``build(settings)`` makes the worker's model (called with the run's own settings: fresh topic
    and key prefixes) and ``content`` is the enrichment published before the events (None: none);
    :func:`streamrec.bench.replay.replay_kafka` derives both from a configuration. ``keep`` leaves the run's
    topics and Redis keys in place, for inspection.
    """
    from streamrec.schemas.admin import admin_for, create_topics
    from streamrec.schemas.codec import decode
    from streamrec.schemas.events import ItemEmbedding, ItemTags, RecommendationList
    from streamrec.schemas.keys import RedisKeys
    from streamrec.schemas.publisher import Publisher
    from streamrec.schemas.topics import Topics
    from streamrec.streams.worker import StreamWorker

    with tempfile.TemporaryDirectory(prefix="streamrec-replay-") as tmp:
        s = run_settings(settings, name, interval, Path(tmp) / "checkpoints")
        topics = Topics(prefix=s.topic_prefix)
        create_topics(admin_for(s), topics, partitions=1, replication=s.replication)
        keys = RedisKeys(prefix=s.redis_prefix)
        metrics = Prequential(len(dataset.items))
        clock = {"first": None, "last": None, "n": 0}
        bar = _bar(len(dataset.events), f"{name} @{interval:g}s kafka", progress)
        worker = None
        try:
            with Publisher.from_settings(s, topics) as pub:
                pub.publish_many(dataset.items)
            client = None

            def observer(record, w) -> None:
                now = time.perf_counter()
                if clock["first"] is None:
                    clock["first"] = now
                clock["last"] = now
                raw = client.get(keys.recs(record.user)) or client.get(keys.fallback())
                if raw is None:
                    metrics.event(record.user, record.item, record.ts, None, None)
                else:
                    lst = decode(raw, RecommendationList)
                    top = [i for i, _ in lst.items[:K]]
                    metrics.event(record.user, record.item, record.ts, top, lst.generated_at)
                clock["n"] += 1
                if clock["n"] % 500 == 0:
                    bar.update(500)

            worker = StreamWorker(s, logical=True, observer=observer, model=build(s))
            client = worker.redis
            _drain(worker, [topics.items])
            if content is not None:
                with Publisher.from_settings(s, topics) as pub:
                    for item, vec in zip(dataset.items, content.vectors):
                        pub.publish(ItemEmbedding(item.item, content.model, item.content_hash(), vec,
                                                  item.ts))  # fmt: skip
                    if content.tags is not None:
                        for item, tags in zip(dataset.items, content.tags):
                            pub.publish(ItemTags(item.item, content.model, item.content_hash(), tags,
                                                 item.ts))  # fmt: skip
                _drain(worker, [topics.embeddings, topics.tags])
            published = time.perf_counter()
            with Publisher.from_settings(s, topics) as pub:
                pub.publish_many(_event_records(dataset))
            publish_s = time.perf_counter() - published
            ran = worker
            stats = worker.run(burst=True)
            worker = None  # run() closed it
            # what the worker itself measured (its live prequential metrics), beside the replay's
            live = ran.served.quality.overall("total", catalogue=ran.catalog_state.hashes)
            bar.update(clock["n"] % 500)
        finally:
            bar.close()
            if worker is not None:
                worker.close()
            if not keep:
                _cleanup(s, topics)
        if stats.learned != len(dataset.events) or clock["n"] != len(dataset.events):
            raise RuntimeError(f"the worker learned {stats.learned} and the observer saw {clock['n']} "
                               f"of {len(dataset.events)} events")  # fmt: skip
        if stats.dead_letters:
            raise RuntimeError(f"{stats.dead_letters} events were dead-lettered")
        seconds = (clock["last"] or 0) - (clock["first"] or 0)
        extra = {"refreshes": stats.refreshes, "lists_written": stats.lists_written,
                 "publish_events_s": publish_s, "partitions": 1,
                 **{f"live_{k}": v for k, v in live.items()}}  # fmt: skip
        if ran.served.tuner is not None:
            extra["tuner"] = {"promotions": ran.served.tuner.promotions, "weights": ran.served.tuner.weights}
        return _finish(name, interval, "kafka", metrics, dataset, seconds, extra)
