"""``streamrec bench replay``: prequential replay of a dataset through the recommender.

Protocol
--------
The dataset's interactions are replayed in timestamp order (stable tie-break: file order); every
rating, whatever its value, is an interaction (the implicit protocol). Stream time drives
everything: the worker runs on a *logical clock* taken from event timestamps, and the lists of the
users who were active since the last refresh (plus the global trending list) are written whenever
an event's timestamp crosses a multiple of the refresh interval, *before* that event is learned.
A user's list at an event is whatever was last written for them before it, else the global list.

Each event of a user who already has history (at least one earlier event) is scored before it is
learned: was its item in the top 10 of the list the system had published for that user?

- **HR@10** and **NDCG@10** (one relevant item, so NDCG is ``1/log2(rank+1)``) over those events;
- **cold HR@10**: the same over events whose item had fewer than 5 earlier interactions;
- **coverage**: distinct items ever shown in an evaluated top 10 / catalogue size;
- **Gini** of exposure: how unequally catalogue items appear across the evaluated top-10 lists
  (0: all equally, 1: one item takes all);
- **freshness**: the age, in stream time, of the list read at each evaluated event (mean, p50);
- **events/s**: events replayed per second of wall time (learning, refreshes, scoring; for the
  Kafka path also consuming, decoding, Redis writes and reads).

Nothing is tuned on the future: models learn only from events already scored, and the
configurations below are fixed before the run.

Configurations (same model and ranking code, :class:`~streamrec.streams.recommender.Recommender`):

- ``popularity``: the decayed trending counts alone (no co-occurrence, MF or content signals in
  the ranking), minus the items the user has seen;
- ``crm``: the MF + co-occurrence + popularity blend with the default weights, no content;
- ``crm+llm``: the same plus the content signals (``embedding``, ``fresh``, ``tags``) with the
  recommender's default weights and content settings, from item embeddings computed with the
  shipped sentence encoder (all-MiniLM-L6-v2) on each item's text (what the embedding worker
  embeds) and tags from the tag worker's own functions (keyphrases + zero-shot vocabulary, same
  encoder). The catalogue is one snapshot published before the stream, so every item is "born"
  at its start and ``fresh`` (cold items first seen within ``fresh_horizon_s``) only acts during
  the first ``fresh_horizon_s`` of stream time; MovieLens has no arrival times to do better.

Each at each refresh interval of ``--refresh`` (default 60 and 5 s of stream time).

Execution modes
---------------
- **Kafka path** (default): fresh topics (one partition each, so the order the worker consumes
  is exactly the order published) and a fresh Redis key prefix per run; the catalogue is
  published and consumed first, then (``crm+llm``) the embeddings and tags as ``ItemEmbedding`` /
  ``ItemTags`` records on ``items.embeddings`` / ``items.tags``, then the events. The real
  :class:`~streamrec.streams.worker.StreamWorker` runs in this process in logical mode, and an
  observer reads each user's list back from Redis before the event is learned.
- **in-process** (``--in-process``): the same Recommender, fed the same records in the same order,
  with the same boundary rule, lists kept in a dict instead of Redis. Same seed, same order: the
  two paths give the same lists, hence the same metrics (the integration test checks
  ``|delta HR@10| <= 0.005``; in practice they agree exactly).

Embeddings and tags are cached under ``<state dir>/replay/`` keyed by the encoder's name and a
hash of every item text, so reruns do not re-encode.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.replay_data import Dataset, default_movielens_dir, load_movielens, load_synthetic
from bench.replay_metrics import K, Prequential, lorenz
from streamrec.settings import Settings

CONFIGS = ("popularity", "crm", "crm+llm")
DEFAULT_REFRESH = (60.0, 5.0)
TAG_MODES = ("worker", "none")
REQUIRED_KEYS = ("hr@10", "ndcg@10", "cold_hr@10", "coverage", "gini", "events_per_s",
                 "refresh_interval_s", "freshness_mean_s", "freshness_p50_s")  # fmt: skip


def _log(msg: str) -> None:
    print(f"[bench replay] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- model configurations


def model_config(name: str, settings: Settings):
    """The :class:`RecommenderConfig` of a named configuration (see the module docstring)."""
    from streamrec.streams.content import ContentConfig
    from streamrec.streams.ranking import BlendWeights
    from streamrec.streams.recommender import RecommenderConfig

    base = RecommenderConfig(k=settings.top_k)
    base = replace(base, mf=replace(base.mf, n_negatives=settings.negatives))
    if name == "popularity":
        return replace(base, weights=BlendWeights(cooccur=0.0, mf=0.0, popularity=1.0),
                       n_cooccur=0, n_mf=0, content=ContentConfig(enabled=False))  # fmt: skip
    if name == "crm":
        return replace(base, content=ContentConfig(enabled=False))
    if name == "crm+llm":
        return base
    raise ValueError(f"unknown configuration {name!r}; choose from {', '.join(CONFIGS)}")


def apply_overrides(config, assignments: list[str]):
    """``config`` with dotted fields replaced, e.g. ``["popularity.half_life_s=2592000",
    "weights.embedding=0.6"]`` (values are JSON: numbers, true/false, quoted strings).

    >>> from streamrec.streams.recommender import RecommenderConfig
    >>> cfg = apply_overrides(RecommenderConfig(), ["weights.fresh=0", "content.profile_half_life=5"])
    >>> cfg.weights.fresh, cfg.content.profile_half_life, cfg.weights.cooccur
    (0, 5, 1.0)
    >>> apply_overrides(RecommenderConfig(), ["weights.nope=1"])
    Traceback (most recent call last):
    ValueError: --set weights.nope=1: BlendWeights has no field 'nope'
    """
    import dataclasses

    for assignment in assignments:
        path, sep, raw = assignment.partition("=")
        if not sep or not path.strip():
            raise ValueError(f"--set {assignment}: expected FIELD.PATH=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        names = path.strip().split(".")

        def put(obj, names):
            fields = {f.name for f in dataclasses.fields(obj)}
            if names[0] not in fields:
                raise ValueError(f"--set {assignment}: {type(obj).__name__} has no field {names[0]!r}")
            if len(names) == 1:
                return replace(obj, **{names[0]: value})
            return replace(obj, **{names[0]: put(getattr(obj, names[0]), names[1:])})

        config = put(config, names)
    return config


def build_model(name: str, settings: Settings, config=None):
    """A fresh Recommender of configuration ``name`` (or of ``config``, for model research)."""
    from streamrec.streams.recommender import Recommender

    return Recommender(config or model_config(name, settings), seed=settings.seed)


def uses_content(name: str) -> bool:
    return name.endswith("+llm")


# ---------------------------------------------------------------- enrichment (embeddings, tags)


@dataclass
class Enrichment:
    """Item embeddings (rows aligned with the catalogue) and tags, as the LLM workers make them."""

    model: str
    vectors: np.ndarray
    tags: list[list[tuple[str, float]]] | None
    tag_source: str
    seconds: dict = field(default_factory=dict)


def item_texts(dataset: Dataset) -> list[str]:
    """What the embedding worker embeds for each catalogue item (title, text, attribute values)."""
    from streamrec.workers.common import text_of

    return [text_of(it.title, it.text, it.attributes) for it in dataset.items]


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _encode(encoder, texts: list[str], desc: str, progress: bool, chunk: int = 512) -> np.ndarray:
    from tqdm import tqdm

    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    with tqdm(total=len(texts), desc=desc, unit=" texts", file=sys.stderr, disable=not progress,
              leave=False) as bar:  # fmt: skip
        for start in range(0, len(texts), chunk):
            out[start : start + chunk] = encoder.encode(texts[start : start + chunk])
            bar.update(min(chunk, len(texts) - start))
    return out


def enrichment_for(dataset: Dataset, settings: Settings, tags: str = "worker",
                   progress: bool = True, cache_dir: Path | None = None) -> Enrichment:  # fmt: skip
    """Embeddings (and tags) of every catalogue item, from the cache or the real encoder."""
    from streamrec.workers.encoder import resolve_model

    if tags not in TAG_MODES:
        raise ValueError(f"tags must be one of {TAG_MODES}")
    _, model_name = resolve_model(settings.embed_model)
    texts = item_texts(dataset)
    cache = Path(cache_dir or settings.state_dir / "replay")
    cache.mkdir(parents=True, exist_ok=True)
    key = _digest(model_name, str(settings.embed_max_tokens), *texts)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in model_name)
    emb_path = cache / f"emb-{safe}-{key}.npy"
    tag_key = _digest(key, settings.tag_vocabulary, str(settings.tag_top_n))
    tag_path = cache / f"tags-{safe}-{tag_key}.json"
    encoder = None
    seconds = {}

    def get_encoder():
        nonlocal encoder
        if encoder is None:
            from streamrec.workers.embed import load_encoder

            started = time.perf_counter()
            encoder = load_encoder(settings)
            seconds["load_encoder_s"] = time.perf_counter() - started
        return encoder

    if emb_path.is_file():
        vectors = np.load(emb_path)
        _log(f"embeddings of {len(texts)} items from cache {emb_path.name}")
    else:
        enc = get_encoder()
        _log(f"embedding {len(texts)} item texts with {enc.name} on {enc.device}")
        started = time.perf_counter()
        vectors = _encode(enc, texts, "embedding items", progress)
        seconds["embed_s"] = time.perf_counter() - started
        _log(f"embedded {len(texts)} texts in {seconds['embed_s']:.1f}s")
        tmp = emb_path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(emb_path)
    item_tags = None
    if tags == "worker":
        if tag_path.is_file():
            item_tags = [distinct_tags(pairs) for pairs in json.loads(tag_path.read_text())]
            _log(f"tags of {len(texts)} items from cache {tag_path.name}")
        else:
            started = time.perf_counter()
            item_tags = worker_tags(get_encoder(), texts, vectors, settings, progress)
            seconds["tags_s"] = time.perf_counter() - started
            _log(f"tagged {len(texts)} items in {seconds['tags_s']:.1f}s")
            tmp = tag_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(item_tags))
            tmp.replace(tag_path)
    source = ("tag worker functions (keyphrases + zero-shot vocabulary, "
              f"{model_name})" if tags == "worker" else "none")  # fmt: skip
    return Enrichment(model_name, vectors, item_tags, source, seconds)


def worker_tags(encoder, texts: list[str], docs: np.ndarray, settings: Settings,
                progress: bool = True) -> list[list[tuple[str, float]]]:  # fmt: skip
    """Tags exactly as the local tag worker computes them (its pure functions, same encoder)."""
    from streamrec.workers.tag import candidates, parse_vocabulary, select_tags

    vocab = parse_vocabulary(settings.tag_vocabulary)
    vocab_vecs = encoder.encode(vocab)
    cands = [candidates(t) for t in texts]
    phrases = sorted({p for ps in cands for p in ps})
    vecs = dict(zip(phrases, _encode(encoder, phrases, "embedding keyphrases", progress)))
    out = []
    for doc, ps in zip(docs, cands):
        pv = np.stack([vecs[p] for p in ps]) if ps else np.zeros((0, encoder.dim), dtype=np.float32)
        out.append(distinct_tags(select_tags(doc, ps, pv, vocab, vocab_vecs, settings.tag_top_n)))
    return out


def distinct_tags(pairs) -> list[tuple[str, float]]:
    """Each tag once, first score wins (what ``ItemTags`` accepts and ``set_tags`` keeps).

    ``select_tags`` can name a tag twice when a keyphrase equals a vocabulary tag taken to fill
    the list ("action" from the genres and from the vocabulary); the schema refuses that.

    >>> distinct_tags([("action", 0.3), ("heat", 0.4), ("action", 0.3)])
    [('action', 0.3), ('heat', 0.4)]
    """
    out: dict[str, float] = {}
    for tag, score in pairs:
        out.setdefault(str(tag), float(score))
    return list(out.items())


# ---------------------------------------------------------------- one run


@dataclass
class RunResult:
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


def _finish(name, interval, mode, metrics: Prequential, dataset: Dataset, seconds: float, extra: dict) -> RunResult:
    result = metrics.result(it.item for it in dataset.items)
    result["events_per_s"] = len(dataset.events) / seconds if seconds > 0 else float("nan")
    result["wall_s"] = seconds
    result["refresh_interval_s"] = interval
    result["hr@10_first_half"], result["hr@10_second_half"] = metrics.hr_split(len(dataset.events) // 2)
    result.update(extra)
    times, hits = metrics.series()
    exposure = metrics.exposure_counts(it.item for it in dataset.items)
    return RunResult(name, interval, mode, result, times, hits, exposure)


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
    """The in-process stand-in for Redis plus the worker's logical-clock refresh rule.

    ``before(ts)`` must be called with each event's timestamp before the event is read or learned:
    when ``ts`` reaches the next boundary, the lists of the users active since the last write are
    recomputed (an empty list removes the user's list, as ``write_lists`` deletes the key) and the
    global list is rewritten, all stamped ``ts``; the next boundary is the next multiple of the
    interval after ``ts``.
    """

    def __init__(self, model, interval: float, k: int, keep: int = K):
        self.model, self.interval, self.k, self.keep = model, interval, k, keep
        self.next_boundary = float("-inf")
        self.active: set[str] = set()
        self.lists: dict[str, tuple[list[str], float]] = {}
        self.global_list: tuple[list[str], float] | None = None
        self.refreshes = 0
        self.lists_written = 0

    def before(self, ts: float) -> None:
        if ts < self.next_boundary:
            return
        for user in sorted(self.active):
            recs = self.model.recommend(user, self.k)
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


def replay_in_process(dataset: Dataset, name: str, interval: float, settings: Settings,
                      enrichment: Enrichment | None = None, progress: bool = True,
                      config=None) -> RunResult:  # fmt: skip
    """The fast mode: same Recommender, same order, same boundary rule; no Kafka, no Redis.

    ``config`` (a RecommenderConfig) replaces the named configuration's, for model research.
    """
    model = build_model(name, settings, config)
    owed = feed_catalogue(model, dataset, enrichment if uses_content(name) else None, settings)
    lists = LogicalLists(model, interval, settings.top_k)
    lists.active.update(owed)
    metrics = Prequential(len(dataset.items))
    rating = dataset.kind == "rating"
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
            if rating:
                model.learn_rating(user, item, value, ts)
            else:
                model.learn_click(user, item, ts)
            lists.learned(user)
            if n % step == 0:
                bar.update(step)
        seconds = time.perf_counter() - started
        bar.update(len(dataset.events) % step)
    extra = {"refreshes": lists.refreshes, "lists_written": lists.lists_written}
    return _finish(name, interval, "in-process", metrics, dataset, seconds, extra)


# ---------------------------------------------------------------- the Kafka path


def _event_records(dataset: Dataset):
    from streamrec.schemas.events import Click, Rating

    if dataset.kind == "rating":
        return (Rating(e.user, e.item, e.rating, e.ts) for e in dataset.events)
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


def replay_kafka(dataset: Dataset, name: str, interval: float, settings: Settings,
                 enrichment: Enrichment | None = None, progress: bool = True,
                 keep: bool = False, config=None) -> RunResult:  # fmt: skip
    """The real path: Kafka topics, the StreamWorker in logical mode, lists read back from Redis."""
    from streamrec.schemas.admin import admin_for, create_topics
    from streamrec.schemas.codec import decode
    from streamrec.schemas.events import ItemEmbedding, ItemTags, RecommendationList
    from streamrec.schemas.keys import RedisKeys
    from streamrec.schemas.publisher import Publisher
    from streamrec.schemas.topics import Topics
    from streamrec.streams.worker import StreamWorker

    content = enrichment if uses_content(name) else None
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

            worker = StreamWorker(s, logical=True, observer=observer, model=build_model(name, s, config))
            client = worker.redis
            _drain(worker, [topics.items])
            if content is not None:
                with Publisher.from_settings(s, topics) as pub:
                    for item, vec in zip(dataset.items, content.vectors):
                        pub.publish(ItemEmbedding(item.item, content.model, item.content_hash(), vec, item.ts))
                    if content.tags is not None:
                        for item, tags in zip(dataset.items, content.tags):
                            pub.publish(ItemTags(item.item, content.model, item.content_hash(), tags, item.ts))
                _drain(worker, [topics.embeddings, topics.tags])
            published = time.perf_counter()
            with Publisher.from_settings(s, topics) as pub:
                pub.publish_many(_event_records(dataset))
            publish_s = time.perf_counter() - published
            stats = worker.run(burst=True)
            worker = None  # run() closed it
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
                 "publish_events_s": publish_s, "partitions": 1}  # fmt: skip
        return _finish(name, interval, "kafka", metrics, dataset, seconds, extra)


# ---------------------------------------------------------------- reporting


def table(results: list[RunResult]) -> str:
    """The markdown table, one row per configuration x refresh interval."""
    head = ("| config | refresh | mode | HR@10 | NDCG@10 | cold HR@10 | coverage | Gini "
            "| list age mean / p50 (s) | events/s |")  # fmt: skip
    rows = [head, "|" + " --- |" * 10]
    for r in results:
        m = r.metrics
        rows.append(
            f"| {r.config} | {r.refresh_interval_s:g} s | {r.mode} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} "
            f"| {m['cold_hr@10']:.4f} | {m['coverage']:.3f} | {m['gini']:.3f} "
            f"| {m['freshness_mean_s']:.1f} / {m['freshness_p50_s']:.1f} | {m['events_per_s']:,.0f} |"
        )
    return "\n".join(rows)


def _rolling(hits: np.ndarray, window: int) -> np.ndarray:
    if len(hits) < window:
        window = max(1, len(hits))
    c = np.concatenate([[0.0], np.cumsum(hits)])
    return (c[window:] - c[:-window]) / window


def plot(results: list[RunResult], out_dir: Path, title: str) -> list[Path]:
    """``replay_hr.png`` (HR@10 over stream time) and ``replay_exposure.png`` (Lorenz curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    for r in results:
        if not len(r.times):
            continue
        when = np.asarray(r.times, dtype="datetime64[s]")
        cum = np.cumsum(r.hits) / np.arange(1, len(r.hits) + 1)
        ax1.plot(when, cum, label=f"{r.label} ({r.mode})")
        window = min(5000, max(1, len(r.hits) // 10))
        roll = _rolling(r.hits, window)
        ax2.plot(when[len(when) - len(roll):], roll, label=r.label, linewidth=0.8)
    ax1.set_ylabel("cumulative HR@10")
    ax1.set_title(f"{title}: HR@10 over stream time")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.set_ylabel("rolling HR@10")
    ax2.set_title("rolling over a tenth of the evaluated events (at most 5000)", fontsize=9)
    ax2.grid(alpha=0.3)
    ax2.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax2.xaxis.get_major_locator()))
    fig.tight_layout()
    path = out_dir / "replay_hr.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    for r in results:
        x, y = lorenz(r.exposure)
        ax1.plot(x, y, label=f"{r.label} (Gini {r.metrics['gini']:.3f})")
        counts = np.sort(r.exposure)[::-1]
        counts = counts[counts > 0]
        if len(counts):
            ax2.loglog(np.arange(1, len(counts) + 1), counts, label=r.label)
    ax1.plot([0, 1], [0, 1], "k--", linewidth=0.7, label="equal exposure")
    ax1.set_xlabel("share of catalogue (least exposed first)")
    ax1.set_ylabel("share of top-10 exposure")
    ax1.set_title("Lorenz curve of exposure")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("item rank by exposure")
    ax2.set_ylabel("times shown in an evaluated top 10")
    ax2.set_title("exposure distribution")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "replay_exposure.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def _clean(value):
    """JSON-safe (NaN becomes null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _clean(value.item())
    return value


# ---------------------------------------------------------------- the command


def parse_list(spec: str, kind=str) -> list:
    """``"60,5"`` -> ``[60.0, 5.0]`` with ``kind=float``.

    >>> parse_list("60, 5", float), parse_list("crm,crm+llm")
    ([60.0, 5.0], ['crm', 'crm+llm'])
    """
    return [kind(x.strip()) for x in spec.split(",") if x.strip()]


def load_dataset(args) -> Dataset:
    if args.dataset == "synthetic":
        data = load_synthetic(n_users=args.synthetic_users, n_items=args.synthetic_items,
                              n_events=args.synthetic_events, seed=args.seed)  # fmt: skip
    else:
        path = Path(args.path) if args.path else default_movielens_dir()
        if not path.is_dir():
            raise FileNotFoundError(
                f"MovieLens directory {path} not found: pass --path or set STREAMREC_MOVIELENS_DIR "
                "(download https://files.grouplens.org/datasets/movielens/ml-latest-small.zip)"
            )
        data = load_movielens(path, user_tags=not args.no_user_tags)
    return data.head(args.limit)


def _one_blas_thread():
    """One BLAS thread while replaying: the per-user mat-vecs are small, and BLAS threads fighting
    for a few cores cost more than they give (see :mod:`streamrec.streams.content`)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its own default
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def main(settings: Settings, args) -> int:
    configs = parse_list(args.configs)
    for c in configs:
        if c not in CONFIGS:
            raise ValueError(f"unknown configuration {c!r}; choose from {', '.join(CONFIGS)}")
    intervals = parse_list(args.refresh, float)
    overrides = list(getattr(args, "set", None) or [])
    for c in configs:
        apply_overrides(model_config(c, settings), overrides)  # fail before any work
    if any(i <= 0 for i in intervals):
        raise ValueError("refresh intervals must be positive seconds")
    started = time.perf_counter()
    data = load_dataset(args)
    _log(f"{data.name}: {len(data.events):,} events, {data.n_users:,} users, {len(data.items):,} items "
         f"({time.perf_counter() - started:.1f}s to load)")  # fmt: skip
    enrichment = None
    if any(uses_content(c) for c in configs):
        enrichment = enrichment_for(data, settings, tags=args.tags, progress=not args.no_progress)
    mode = "in-process" if args.in_process else "kafka"
    results = []
    for name in configs:
        for interval in intervals:
            run = replay_in_process if args.in_process else replay_kafka
            cfg = apply_overrides(model_config(name, settings), overrides) if overrides else None
            with _one_blas_thread():  # not around the encoder: torch may use the same BLAS
                r = run(data, name, interval, settings, enrichment, progress=not args.no_progress,
                        config=cfg)  # fmt: skip
            _log(f"{r.label} ({mode}): HR@10 {r.metrics['hr@10']:.4f}, cold HR@10 "
                 f"{r.metrics['cold_hr@10']:.4f}, {r.metrics['events_per_s']:,.0f} events/s")  # fmt: skip
            results.append(r)
    print(table(results))
    doc = {
        "dataset": data.summary(),
        "mode": mode,
        "protocol": {"k": K, "cold_threshold": 5, "evaluated": "events of users with >= 1 earlier event",
                     "clock": "logical (event timestamps); lists refresh at multiples of the interval",
                     "partitions": 1 if mode == "kafka" else None},  # fmt: skip
        "settings": {"top_k": settings.top_k, "negatives": settings.negatives, "seed": settings.seed,
                     "overrides": overrides},
        "enrichment": None if enrichment is None else {
            "model": enrichment.model, "dim": int(enrichment.vectors.shape[1]),
            "tags": enrichment.tag_source, **enrichment.seconds},
        "runs": [r.row() for r in results],
        "total_s": time.perf_counter() - started,
    }  # fmt: skip
    plots_dir = Path(args.plots) if args.plots else (Path(args.json).parent if args.json else None)
    if plots_dir is not None and results:
        doc["plots"] = [p.name for p in plot(results, plots_dir, f"{data.name} ({mode})")]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(_clean(doc), indent=2) + "\n")
    return 0
