"""The ``streamrec`` command: one entrypoint, a subcommand per job.

Each subcommand is a thin wrapper: it builds the :class:`~streamrec.settings.Settings` once, calls
plain functions from the package and turns their errors into a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# numpy's BLAS threads would fight the worker's own loop for the few cores a worker gets; the
# per-user mat-vecs are small, so one thread is fastest (measured: 0.35 ms vs ~10 ms contended)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from streamrec import __version__
from streamrec.settings import Secret, Settings, SettingsError

EPILOG = """\
Configuration comes from STREAMREC_* environment variables (see `streamrec settings`).
Typical session:
  streamrec up && streamrec topics create
  streamrec publish events.jsonl
  streamrec recs u42
"""


def _err(msg: str) -> None:
    print(f"streamrec: error: {msg}", file=sys.stderr)


# ---------------------------------------------------------------- stack


def cmd_up(settings: Settings, args) -> int:
    from streamrec import localstack

    for s in localstack.up(settings):
        print(s.line())
    return 0


def cmd_down(settings: Settings, args) -> int:
    from streamrec import localstack

    stopped = localstack.down(settings)
    print("\n".join(stopped) if stopped else "nothing started by streamrec is running")
    return 0


def cmd_status(settings: Settings, args) -> int:
    from streamrec import localstack

    statuses = localstack.status(settings)
    print(f"streamrec {__version__}; state dir {settings.state_dir}")
    for s in statuses:
        print(s.line())
    return 0 if all(s.running for s in statuses) else 1


def cmd_settings(settings: Settings, args) -> int:
    for name, doc in Settings.variables().items():
        value = getattr(settings, name[len("STREAMREC_") :].lower())
        shown = repr(value) if isinstance(value, Secret) else str(value)
        print(f"{name:<34} {shown:<28} {doc}")
    return 0


# ---------------------------------------------------------------- topics


def _topics(settings: Settings):
    from streamrec.schemas.topics import Topics

    return Topics(prefix=settings.topic_prefix)


def cmd_topics_create(settings: Settings, args) -> int:
    from streamrec.schemas.admin import admin_for, create_topics

    admin = admin_for(settings)
    results = create_topics(admin, _topics(settings), settings.partitions, settings.replication)
    for r in results:
        what = "created" if r.created else "exists "
        kind = "compacted" if r.spec.compacted else "delete"
        print(f"{what} {r.spec.name:<32} partitions={r.partitions:<4} cleanup={kind}")
    return 0


# ---------------------------------------------------------------- publish and read


def cmd_publish(settings: Settings, args) -> int:
    from tqdm import tqdm

    from streamrec.schemas.lines import Rejected, guess_format, parse_lines
    from streamrec.schemas.publisher import DeliveryError, Publisher

    fmt = args.format or guess_format(None if args.file == "-" else args.file)
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8", newline="")
    rejected: list[Rejected] = []
    publisher = Publisher.from_settings(settings)
    with stream, tqdm(unit=" lines", desc="publishing", file=sys.stderr, disable=args.quiet) as bar:
        for out in parse_lines(stream, fmt=fmt, now=time.time(), default_type=args.type):
            if isinstance(out, Rejected):
                rejected.append(out)
            else:
                publisher.publish(out)
            bar.update(1)
    try:
        delivered = publisher.flush()
        failed = 0
    except DeliveryError as exc:
        delivered, failed = publisher.delivered, len(exc.failures) + exc.pending
        _err(str(exc))
    for r in rejected[: args.show_rejected]:
        print(f"rejected line {r.line}: {r.reason}", file=sys.stderr)
    if len(rejected) > args.show_rejected:
        print(f"... and {len(rejected) - args.show_rejected} more rejected", file=sys.stderr)
    print(f"published {delivered}, rejected {len(rejected)}, failed {failed}")
    return 1 if failed else 0


def cmd_recs(settings: Settings, args) -> int:
    from streamrec.connect import redis_client
    from streamrec.schemas.keys import RedisKeys
    from streamrec.schemas.reader import RecsReader

    reader = RecsReader(redis_client(settings), RedisKeys(prefix=settings.redis_prefix))
    recs = reader.get(args.user)
    if args.json:
        lst = recs.list
        print(json.dumps({
            "user": args.user, "personal": recs.personal, "items": recs.items[: args.k],
            "model_version": lst.model_version if lst else None,
            "generated_at": lst.generated_at if lst else None,
        }))  # fmt: skip
        return 0 if lst else 1
    if recs.list is None:
        print(f"no list for {args.user!r} and no global fallback list yet")
        return 1
    age = time.time() - recs.list.generated_at
    kind = "personal" if recs.personal else "global fallback"
    print(f"{kind} list for {args.user!r}: model {recs.list.model_version}, {age:.0f}s old")
    for rank, (item, score) in enumerate(recs.items[: args.k], 1):
        print(f"{rank:>4}  {item:<24} {score:.4f}")
    return 0


def cmd_peek(settings: Settings, args) -> int:
    from streamrec.schemas.codec import decode, to_mapping
    from streamrec.schemas.events import SchemaError
    from streamrec.schemas.peek import read_topic

    from streamrec.schemas.topics import LAYOUT

    topic = _topics(settings).name(args.topic) if args.topic in LAYOUT else args.topic
    n = 0
    from streamrec.connect import kafka_config

    records = read_topic(settings.kafka_bootstrap, topic, args.n, config=kafka_config(settings))
    for n, (key, value) in enumerate(records, 1):
        try:
            print(json.dumps(to_mapping(decode(value)), default=str))
        except SchemaError as exc:
            print(json.dumps({"key": repr(key), "error": str(exc)}))
    print(f"{n} record(s) from {topic}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- workers


def cmd_worker_streams(settings: Settings, args) -> int:
    from streamrec.metrics import heartbeat_health

    if args.health:
        ok, msg = heartbeat_health(settings.checkpoints / "health.json", args.max_age)
        print(msg)
        return 0 if ok else 1
    from streamrec.streams.worker import StreamWorker

    stats = StreamWorker(settings).run(burst=args.burst, max_seconds=args.max_seconds)
    print(f"learned {stats.learned}, lists written {stats.lists_written}, "
          f"dead letters {stats.dead_letters}, refreshes {stats.refreshes}")  # fmt: skip
    return 0


def _llm_worker(kind: str, settings: Settings, args) -> int:
    """``worker embed`` / ``worker tag``: torch is imported here only, never by the stream worker."""
    from streamrec.metrics import heartbeat_health

    if args.health:
        ok, msg = heartbeat_health(settings.state_dir / "workers" / kind / "health.json", args.max_age)
        print(msg)
        return 0 if ok else 1
    import importlib

    from streamrec.workers.common import WorkerError

    try:
        module = importlib.import_module(f"streamrec.workers.{kind}")
        print(module.run(settings, burst=args.burst, max_seconds=args.max_seconds))
    except WorkerError as exc:
        _err(str(exc))
        return 2
    return 0


def cmd_worker_embed(settings: Settings, args) -> int:
    return _llm_worker("embed", settings, args)


def cmd_worker_tag(settings: Settings, args) -> int:
    return _llm_worker("tag", settings, args)


# ---------------------------------------------------------------- benchmarks


def _bench(name: str):
    """``bench.<name>``, imported only when that benchmark runs (they pull in heavy modules)."""
    import importlib

    return importlib.import_module(f"bench.{name}")


def cmd_bench_stream(settings: Settings, args) -> int:
    if args.refresh_interval is not None:
        settings = settings.replace(refresh_interval_s=args.refresh_interval)
    if args.early_refresh is not None:
        settings = settings.replace(early_refresh_s=args.early_refresh)
    _bench("stream").run(settings, n_events=args.events, probes=args.probes, json_path=args.json)
    return 0


def cmd_bench_embed(settings: Settings, args) -> int:
    return _bench("embed").main(settings, items=args.items, json_path=args.json)


def cmd_bench_replay(settings: Settings, args) -> int:
    try:
        return _bench("replay").main(settings, args)
    except ValueError as exc:
        _err(str(exc))
        return 2


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamrec",
        description="Streaming recommendations: Kafka events in, fresh top-K lists in Redis.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"streamrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, func, help_, **kw):
        p = sub.add_parser(name, help=help_, description=help_, **kw)
        p.set_defaults(func=func)
        return p

    add("up", cmd_up, "start the local stack (Kafka broker in KRaft mode, Redis) if not running")
    add("down", cmd_down, "stop what `streamrec up` started, and nothing else")
    add("status", cmd_status, "show what runs where, with versions (exit 1 if something is down)")
    add("settings", cmd_settings, "list every STREAMREC_* setting with its current value")

    topics = add("topics", None, "manage the Kafka topics")
    tsub = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    tc = tsub.add_parser("create", help="create every streamrec topic (idempotent)")
    tc.set_defaults(func=cmd_topics_create)

    pub = add("publish", cmd_publish, "publish events or items from JSON lines or CSV")
    pub.add_argument("file", nargs="?", default="-", help="input file; '-' or omitted for stdin")
    pub.add_argument("--format", choices=("jsonl", "csv"), help="default: by file extension")
    pub.add_argument("--type", choices=("click", "rating", "item"),
                     help="record type for lines without a 'type' field")  # fmt: skip
    pub.add_argument("--show-rejected", type=int, default=20, metavar="N",
                     help="print the first N rejected lines with their reasons (default 20)")  # fmt: skip
    pub.add_argument("--quiet", action="store_true", help="no progress bar")

    recs = add("recs", cmd_recs, "print a user's recommendation list from Redis")
    recs.add_argument("user")
    recs.add_argument("-k", type=int, default=10, help="how many items to show (default 10)")
    recs.add_argument("--json", action="store_true", help="print JSON")

    peek = add("peek", cmd_peek, "print the records of a topic as JSON lines (reads, commits nothing)")
    peek.add_argument("topic", help="a topic name, e.g. events.clicks (the prefix is added)")
    peek.add_argument("-n", type=int, default=None, help="at most N records")

    worker = add("worker", None, "run a worker (stream worker, LLM workers)")
    wsub = worker.add_subparsers(dest="worker", metavar="KIND", required=True)
    for kind, func, help_ in (
        ("streams", cmd_worker_streams, "the stream worker: consume clicks, ratings and the "
         "catalogue, learn online, and every STREAMREC_REFRESH_INTERVAL_S write the lists of active "
         "users to Redis, checkpoint, commit"),
        ("embed", cmd_worker_embed, "the embedding worker: items.enrich -> items.embeddings, "
         "each distinct text embedded once (Redis cache by content hash)"),
        ("tag", cmd_worker_tag, "the tag worker: items.enrich -> items.tags (keyphrases and "
         "zero-shot tags from the sentence encoder, or an OpenAI-compatible endpoint)"),
    ):  # fmt: skip
        wp = wsub.add_parser(kind, help=help_, description=help_)
        wp.set_defaults(func=func)
        wp.add_argument("--burst", action="store_true",
                        help="process until caught up with every partition, then finish and exit")
        wp.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
        wp.add_argument("--health", action="store_true",
                        help="exit 0 if a running worker's heartbeat is fresh, 1 otherwise")
        wp.add_argument("--max-age", type=float, default=30.0,
                        help="heartbeat age (s) still counted healthy (default 30)")  # fmt: skip

    bench = add("bench", None, "benchmarks against the running stack")
    bsub = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    be = bsub.add_parser(
        "embed", help="items/s through the embedding worker end to end vs the raw encoder",
        description="Publish N unique enrichment requests under a fresh topic and key prefix, time "
        "the embedding worker until every embedding is read back, and compare with the encoder alone.",
    )  # fmt: skip
    be.set_defaults(func=cmd_bench_embed)
    be.add_argument("--items", type=int, default=2000, metavar="N", help="requests (default 2000)")
    be.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    bs = bsub.add_parser(
        "stream", help="events/s through the stream worker vs River's bare learn_one; freshness",
        description="Publish N synthetic events and time the stream worker through them, next to "
        "River's learn_one rate for the same model in the same run; then publish probe clicks and "
        "measure publish-to-fresh-list latency (p50, p99) in Redis.",
    )  # fmt: skip
    bs.set_defaults(func=cmd_bench_stream)
    bs.add_argument("--events", type=int, default=100_000, metavar="N", help="default 100000")
    bs.add_argument("--probes", type=int, default=100, help="freshness probes (default 100)")
    bs.add_argument("--refresh-interval", type=float, default=None, metavar="S",
                    help="refresh interval for the run (default: STREAMREC_REFRESH_INTERVAL_S)")
    bs.add_argument("--early-refresh", type=float, default=None, metavar="S",
                    help="debounced early refresh delay (default: STREAMREC_EARLY_REFRESH_S)")
    bs.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    br = bsub.add_parser(
        "replay", help="prequential replay of MovieLens or synthetic data: HR@10, NDCG@10, cold "
        "HR@10, coverage, Gini, freshness, events/s per configuration and refresh interval",
        description="Replay a dataset in timestamp order through Kafka and the stream worker on a "
        "logical clock (or in-process with --in-process); score each event of a user with history "
        "against the list published before it. Protocol: bench/replay.py.",
    )  # fmt: skip
    br.set_defaults(func=cmd_bench_replay)
    br.add_argument("--dataset", choices=("movielens", "synthetic"), default="movielens")
    br.add_argument("--path", metavar="DIR", help="MovieLens directory, ml-latest-small or ml-100k "
                    "layout (default: $STREAMREC_MOVIELENS_DIR, else ../shared/data/ml-latest-small)")
    br.add_argument("--configs", default="popularity,crm,crm+llm",
                    help="comma-separated: popularity, crm, crm+llm (default all three)")
    br.add_argument("--refresh", default="60,5", metavar="S,S",
                    help="comma-separated refresh intervals in stream seconds (default 60,5)")
    br.add_argument("--in-process", action="store_true",
                    help="fast mode: same model and refresh rule without Kafka and Redis")
    br.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N events")
    br.add_argument("--tags", choices=("worker", "none"), default="worker",
                    help="crm+llm item tags: from the tag worker's functions (default) or none")
    br.add_argument("--no-user-tags", action="store_true",
                    help="leave MovieLens user tags out of the item texts")
    br.add_argument("--synthetic-users", type=int, default=200, metavar="N")
    br.add_argument("--synthetic-items", type=int, default=1000, metavar="N")
    br.add_argument("--synthetic-events", type=int, default=20_000, metavar="N")
    br.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    br.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    br.add_argument("--plots", metavar="DIR", help="write the PNG plots here (default: beside --json)")
    br.add_argument("--set", action="append", metavar="FIELD=VALUE",
                    help="override a RecommenderConfig field for every configuration, e.g. "
                    "popularity.half_life_s=2592000 or weights.embedding=0.6 (repeatable)")
    br.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _err(f"invalid settings: {exc}")
        return 2
    from streamrec.logs import configure

    configure(settings.log_level, settings.log_format)
    from streamrec.connect import KafkaUnreachable
    from streamrec.localstack import StackError
    from streamrec.schemas.admin import TopicAdminError
    from streamrec.schemas.events import SchemaError

    try:
        return args.func(settings, args)
    except (StackError, TopicAdminError, SchemaError, SettingsError, KafkaUnreachable, OSError) as exc:
        _err(str(exc))
        return 2
    except Exception as exc:
        import redis

        if isinstance(exc, redis.AuthenticationError):
            _err(f"Redis at {settings.redis_url} refused the credentials ({exc}); check "
                 "STREAMREC_REDIS_USERNAME / STREAMREC_REDIS_PASSWORD")  # fmt: skip
            return 2
        if isinstance(exc, redis.RedisError):
            _err(f"Redis at {settings.redis_url}: {exc}")
            return 2
        raise
    except KeyboardInterrupt:
        return 130
