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

Equal timestamps carry no order: events with the same timestamp are replayed in file order
(MovieLens orders one second's ratings of a user by movie id), but the ordered-transition signal
(:mod:`streamrec.streams.transitions`) never counts a pair of one user's events with equal
timestamps as a transition, so the file's tie-break cannot leak into what is learned as "next".

Configurations (same model and ranking code, :class:`~streamrec.streams.recommender.Recommender`):

- ``popularity``: the decayed trending counts alone (no co-occurrence, MF or content signals in
  the ranking), minus the items the user has seen;
- ``crm``: the MF + co-occurrence + ordered transitions + popularity blend with the default
  weights, no content, except that the transitions' weight is the self-tuning blend's to set,
  from off, as in ``crm+llm`` (``STREAMREC_TUNE_SIGNALS=transitions``): a fixed weight chosen on
  MovieLens cost 2.5% on a stream without order;
- ``crm-hand``: the same with every weight fixed (transitions at 0.5; ``--set
  transitions.enabled=false``: without transitions, in every configuration);
- ``crm+llm``: the same plus the content signals (``embedding``, ``fresh``, ``recent``, ``tags``),
  blended by the self-tuning blend the worker runs by default (:mod:`streamrec.streams.tuner`:
  it starts from the CRM weights with ``embedding``, ``recent``, ``tags`` and ``transitions`` off and promotes
  weightings that win on the stream so far; nothing of it is tuned by hand), from item embeddings computed with
  the shipped sentence encoder (all-MiniLM-L6-v2) on each item's text (what the embedding worker
  embeds) and tags from the tag worker's own functions (keyphrases + zero-shot vocabulary, same
  encoder). The catalogue is one snapshot published before the stream, so every item is "born" at
  its start and ``fresh`` (cold items first seen within ``fresh_horizon_s``) only acts during the
  first ``fresh_horizon_s`` of stream time; MovieLens has no arrival times to do better.
- ``crm+llm-hand``: the same signals with the recommender's hand-set default weights (chosen on
  the first half of MovieLens), no tuning: what the self-tuning blend replaces.

Each at each refresh interval of ``--refresh`` (default 60 and 5 s of stream time).

What the LLM signals are worth here
-----------------------------------
On ml-latest-small the item text is a title, genres and a few user tags, and the encoder is
all-MiniLM-L6-v2: it knows little about "Before and After (1996)" beyond "Drama, Mystery". Against
a tuned CRM the content signals add 6-7% HR@10 (10% on the second half of the stream, 26% on cold
items). Tried on the first half (tuned on its first 60%, measured on the rest, candidates and
features dumped under the 5 s protocol; per-event lists in brackets), relative to the tuned CRM:

- the shipped content signals with tuned weights: +6% (+11%);
- ``recent`` (similarity to the last 1-10 items, sharpened): +9% (+15% with the last item alone,
  per-event lists, where "the last item" is always current; at 5 s a burst outruns it);
- a logistic regression and gradient-boosted trees over all signals' normalised values instead of
  the fixed blend: no better than the tuned linear blend (+6 to +13%, per-event);
- content-gated popularity (popularity x cosine**g), co-occurrence expanded through each recent
  item's 10 nearest items by embedding, a long-term profile beside the short one, and the release
  year's proximity to the last items: 0 to +1% more.

So the ceiling is the text, not the blend: a richer item text (plot, cast) or a generative
tagger (``STREAMREC_TAG_BACKEND=openai``) are the levers left.

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

Code
----
This module is the entry point (:func:`main`, which the CLI calls) and holds the configurations
(:func:`model_config`, :func:`build_model`); each stage has a module beside it:

- :mod:`streamrec.bench.replay_data`: the datasets (MovieLens layouts, synthetic);
- :mod:`streamrec.bench.replay_enrich`: the ``crm+llm`` embeddings and tags, and their cache;
- :mod:`streamrec.bench.replay_run`: one run, in process or through Kafka and Redis;
- :mod:`streamrec.bench.replay_metrics`: the prequential metrics;
- :mod:`streamrec.bench.replay_report`: the markdown table, the plots, the JSON.

The names other code imports from ``streamrec.bench.replay`` are re-exported here. :func:`replay_in_process`
and :func:`replay_kafka` turn a configuration into what a run needs and look :func:`build_model` up
in this module at each run, so research code that sets ``streamrec.bench.replay.build_model`` changes what
they build.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from streamrec.bench.replay_data import Dataset, default_movielens_dir, load_movielens, load_synthetic
from streamrec.bench.replay_enrich import TAG_MODES, Enrichment, distinct_tags, enrichment_for, item_texts, worker_tags
from streamrec.bench.replay_metrics import K
from streamrec.bench.replay_report import _clean, plot, table
from streamrec.bench.replay_run import LogicalLists, RunResult, feed_catalogue, run_in_process, run_kafka, run_settings
from streamrec.settings import Settings

__all__ = [
    "CONFIGS", "DEFAULT_REFRESH", "REQUIRED_KEYS", "TAG_MODES", "Enrichment", "LogicalLists",
    "RunResult", "apply_overrides", "build_model", "distinct_tags", "enrichment_for",
    "feed_catalogue", "item_texts", "load_dataset", "main", "model_config", "parse_list", "plot",
    "replay_in_process", "replay_kafka", "run_settings", "table", "uses_content", "worker_tags",
]  # fmt: skip

CONFIGS = ("popularity", "crm", "crm-hand", "crm+llm", "crm+llm-hand")
DEFAULT_CONFIGS = "popularity,crm,crm+llm"
DEFAULT_REFRESH = (60.0, 5.0)
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
                       n_cooccur=0, n_mf=0, content=ContentConfig(enabled=False),
                       transitions=replace(base.transitions, enabled=False))  # fmt: skip
    if name in ("crm", "crm-hand"):
        return replace(base, content=ContentConfig(enabled=False))
    if name in ("crm+llm", "crm+llm-hand"):
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
    return "+llm" in name


def tuner_config(name: str, settings: Settings):
    """The self-tuning blend of a configuration: ``crm+llm`` is the worker's default (tuned on the
    stream, from the CRM weights with the content signals and transitions off; see
    :mod:`streamrec.streams.tuner`), ``crm`` the fixed CRM weights with only ``transitions`` tuned
    (off until the stream shows an order, as in ``crm+llm``), ``crm+llm-hand`` and ``crm-hand``
    the hand-set weights they replace, ``popularity`` a fixed baseline.

    >>> tuner_config("crm-hand", Settings()) is None, tuner_config("crm+llm", Settings()).start_off
    (True, ('embedding', 'recent', 'tags', 'transitions'))
    >>> tuner_config("crm", Settings()).signals, tuner_config("crm+llm", Settings()).signals
    (('transitions',), ())
    """
    from streamrec.streams.tuner import TunerConfig

    config = TunerConfig.from_settings(crm_settings(settings) if name == "crm" else settings)
    return config if name in ("crm", "crm+llm") and config.enabled else None


def crm_settings(settings: Settings) -> Settings:
    """The ``crm`` baseline's tuner: only ``transitions`` moves (off at the start, as in
    ``crm+llm``); the other CRM weights stay the fixed ones.

    >>> crm_settings(Settings()).tune_signals
    ('transitions',)
    """
    return settings.replace(tune_signals=("transitions",))


# ---------------------------------------------------------------- one run of a configuration


def _builder(name: str, config):
    """``settings -> a fresh model`` of configuration ``name`` (or ``config``) for one run.

    :func:`build_model` is looked up in this module when the run calls it, not when this is
    defined, so a ``streamrec.bench.replay.build_model`` replaced by research code is the one used.
    """
    return lambda settings: build_model(name, settings, config)


def replay_in_process(dataset: Dataset, name: str, interval: float, settings: Settings,
                      enrichment: Enrichment | None = None, progress: bool = True,
                      config=None, workers: int | None = None) -> RunResult:  # fmt: skip
    """The fast mode (:func:`streamrec.bench.replay_run.run_in_process`): same Recommender, same order, same
    boundary rule; no Kafka, no Redis. ``enrichment`` is used only by configurations with content.

    ``config`` (a RecommenderConfig) replaces the named configuration's, for model research.
    """
    if workers:  # partitioned state (bench/replay_partitioned.py)
        from streamrec.bench.replay_partitioned import run_partitioned

        return run_partitioned(dataset, name, interval, settings, build=_builder(name, config),
                               workers=workers, content=enrichment if uses_content(name) else None,
                               progress=progress, tuner=tuner_config(name, settings))  # fmt: skip
    return run_in_process(dataset, name, interval, settings, build=_builder(name, config),
                          content=enrichment if uses_content(name) else None, progress=progress,
                          tuner=tuner_config(name, settings))  # fmt: skip


def replay_kafka(dataset: Dataset, name: str, interval: float, settings: Settings,
                 enrichment: Enrichment | None = None, progress: bool = True,
                 keep: bool = False, config=None) -> RunResult:  # fmt: skip
    """The real path (:func:`streamrec.bench.replay_run.run_kafka`): Kafka topics, the StreamWorker in
    logical mode, lists read back from Redis. ``enrichment`` is used only by configurations with
    content; ``keep`` leaves the run's topics and Redis keys in place.
    """
    # the worker decides from its settings whether the blend tunes itself, as in a deployment
    settings = settings.replace(tune_blend="on" if tuner_config(name, settings) is not None else "off")
    settings = crm_settings(settings) if name == "crm" else settings
    return run_kafka(dataset, name, interval, settings, build=_builder(name, config),
                     content=enrichment if uses_content(name) else None, progress=progress,
                     keep=keep)  # fmt: skip


# ---------------------------------------------------------------- the command


def parse_list(spec: str, kind=str) -> list:
    """``"60,5"`` -> ``[60.0, 5.0]`` with ``kind=float``.

    >>> parse_list("60, 5", float), parse_list("crm,crm+llm")
    ([60.0, 5.0], ['crm', 'crm+llm'])
    """
    return [kind(x.strip()) for x in spec.split(",") if x.strip()]


def load_dataset(args, settings: Settings | None = None) -> Dataset:
    if getattr(args, "from_topics", False):
        from streamrec.bench.replay_events import load_topics

        return load_topics(settings or Settings.from_env()).head(args.limit)
    if args.dataset == "events":
        from streamrec.bench.replay_events import load_events

        if not args.path:
            raise ValueError("--dataset events needs --path FILE (JSON lines or CSV in the wire format)")
        return load_events(args.path).head(args.limit)
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
    data = load_dataset(args, settings)
    _log(f"{data.name}: {len(data.events):,} events, {data.n_users:,} users, {len(data.items):,} items "
         f"({time.perf_counter() - started:.1f}s to load)")  # fmt: skip
    enrichment = None
    if any(uses_content(c) for c in configs):
        enrichment = enrichment_for(data, settings, tags=args.tags, progress=not args.no_progress)
    mode = "in-process" if args.in_process else "kafka"
    if getattr(args, "workers", None) and not args.in_process:
        raise ValueError("--workers needs --in-process (several workers through Kafka: tests/integration)")
    results = []
    for name in configs:
        for interval in intervals:
            run = replay_in_process if args.in_process else replay_kafka
            cfg = apply_overrides(model_config(name, settings), overrides) if overrides else None
            with _one_blas_thread():  # not around the encoder: torch may use the same BLAS
                more = {"workers": args.workers} if getattr(args, "workers", None) else {}
                r = run(data, name, interval, settings, enrichment, progress=not args.no_progress,
                        config=cfg, **more)  # fmt: skip
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
