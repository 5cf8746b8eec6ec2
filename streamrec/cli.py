"""The ``streamrec`` command: one entrypoint, a subcommand per job.

Each subcommand is a thin wrapper: it builds the :class:`~streamrec.settings.Settings` once, calls
plain functions from the package and turns their errors into a one-line message and exit code 2.
This module holds the entrypoint, the parser and the short subcommands (the stack, topics, publish
and read); ``worker`` lives in :mod:`streamrec.cli_worker` and ``bench`` in :mod:`streamrec.cli_bench`,
each with its handlers and flags together.
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
from streamrec.logs import error
from streamrec.settings import Secret, Settings, SettingsError, redact_url

EPILOG = """\
Configuration comes from STREAMREC_* environment variables (see `streamrec settings`).
Typical session:
  streamrec up && streamrec topics create
  streamrec publish events.jsonl
  streamrec recs u42
"""


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
        if isinstance(value, Secret):
            shown = repr(value)
        elif name == "STREAMREC_REDIS_URL":
            shown = redact_url(value)
        else:
            shown = str(value)
        print(f"{name:<34} {shown:<28} {doc}")
    return 0


# ---------------------------------------------------------------- topics


def _topics(settings: Settings):
    from streamrec.schemas.topics import Topics

    return Topics(prefix=settings.topic_prefix)


def cmd_topics_create(settings: Settings, args) -> int:
    from streamrec.schemas.admin import admin_for, create_topics

    admin = admin_for(settings, settings.kafka_timeout_s)
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

    from streamrec.connect import check_kafka, kafka_config

    check_kafka(kafka_config(settings), settings.kafka_timeout_s)  # one clear line if it is away
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
        error(str(exc))
    for r in rejected[: args.show_rejected]:
        print(f"rejected line {r.line}: {r.reason}", file=sys.stderr)
    if len(rejected) > args.show_rejected:
        print(f"... and {len(rejected) - args.show_rejected} more rejected", file=sys.stderr)
    print(f"published {delivered}, rejected {len(rejected)}, failed {failed}")
    return 1 if failed or rejected else 0


def cmd_recs(settings: Settings, args) -> int:
    from streamrec.connect import redis_client
    from streamrec.schemas.keys import GLOBAL_USER, RedisKeys
    from streamrec.schemas.reader import RecsReader

    reader = RecsReader(redis_client(settings), RedisKeys(prefix=settings.redis_prefix))
    recs = reader.get(args.user)
    personal = recs.personal and args.user != GLOBAL_USER  # the global list is nobody's own
    if args.json:
        lst = recs.list
        print(json.dumps({
            "user": args.user, "personal": personal, "items": recs.items[: args.k],
            "model_version": lst.model_version if lst else None,
            "generated_at": lst.generated_at if lst else None,
        }))  # fmt: skip
        return 0 if lst else 1
    if recs.list is None:
        print(f"no list for {args.user!r} and no global fallback list yet")
        return 1
    age = time.time() - recs.list.generated_at
    kind = "personal" if personal else "global fallback"
    print(f"{kind} list for {args.user!r}: model {recs.list.model_version}, {age:.0f}s old")
    for rank, (item, score) in enumerate(recs.items[: args.k], 1):
        print(f"{rank:>4}  {item:<24} {score:.4f}")
    return 0


def cmd_peek(settings: Settings, args) -> int:
    from streamrec.schemas.codec import decode, to_mapping
    from streamrec.schemas.fields import SchemaError
    from streamrec.schemas.peek import read_topic

    from streamrec.schemas.topics import LAYOUT

    topic = _topics(settings).name(args.topic) if args.topic in LAYOUT else args.topic
    n = 0
    from streamrec.connect import check_kafka, kafka_config

    config = kafka_config(settings)
    check_kafka(config, settings.kafka_timeout_s)
    records = read_topic(settings.kafka_bootstrap, topic, args.n, config=config,
                         timeout_s=max(20.0, settings.kafka_timeout_s))  # fmt: skip
    for n, (key, value) in enumerate(records, 1):
        try:
            print(json.dumps(to_mapping(decode(value)), default=str))
        except SchemaError as exc:
            print(json.dumps({"key": repr(key), "error": str(exc)}))
    print(f"{n} record(s) from {topic}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- parser


def _positive(raw: str) -> int:
    """An argument that must be a whole number of at least 1."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    # imported here rather than at the top: both modules import error() from this one
    from streamrec import cli_bench, cli_contract, cli_worker

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
    recs.add_argument("-k", type=_positive, default=10, help="how many items to show (default 10)")
    recs.add_argument("--json", action="store_true", help="print JSON")

    peek = add("peek", cmd_peek, "print the records of a topic as JSON lines (reads, commits nothing)")
    peek.add_argument("topic", help="a topic name, e.g. events.clicks (the prefix is added)")
    peek.add_argument("-n", type=int, default=None, help="at most N records")

    cli_contract.add_commands(add)
    worker = add("worker", None, "run a worker (stream worker, LLM workers)")
    cli_worker.add_kinds(worker)
    bench = add("bench", None, "benchmarks against the running stack")
    cli_bench.add_benches(bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        error(f"invalid settings: {exc}")
        return 2
    from streamrec.logs import configure

    configure(settings.log_level, settings.log_format, settings.secrets())
    from streamrec.connect import KafkaUnreachable
    from streamrec.localstack import StackError
    from streamrec.schemas.admin import TopicAdminError
    from streamrec.schemas.fields import SchemaError

    try:
        return args.func(settings, args)
    except (StackError, TopicAdminError, SchemaError, SettingsError, KafkaUnreachable, OSError) as exc:
        error(str(exc))
        return 2
    except Exception as exc:
        import redis
        from redis.exceptions import RedisClusterException

        if isinstance(exc, RedisClusterException) and exc.__cause__ is not None:
            exc = exc.__cause__  # an unreachable cluster: report why its node refused or was away
        if isinstance(exc, redis.AuthenticationError):
            error(f"Redis at {redact_url(settings.redis_url)} refused the credentials ({exc}); check "
                  "STREAMREC_REDIS_USERNAME / STREAMREC_REDIS_PASSWORD")  # fmt: skip
            return 2
        if isinstance(exc, (redis.RedisError, RedisClusterException)):
            error(f"Redis at {redact_url(settings.redis_url)}: {exc}")
            return 2
        from confluent_kafka import KafkaException

        if isinstance(exc, KafkaException):  # e.g. the broker went away mid-command
            reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
            error(f"Kafka at {settings.kafka_bootstrap}: {reason}")
            return 2
        raise
    except KeyboardInterrupt:
        return 130
