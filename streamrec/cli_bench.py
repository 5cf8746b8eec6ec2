"""``streamrec bench NAME``: the benchmarks against the running stack, and their flags.

Apart from the rest of the command because the benchmarks carry most of its flags (the replay's
alone outnumber all the others, each a knob of the evaluation protocol in bench/replay.py), and
because their code lives in the ``bench`` package, imported only when a benchmark runs, so no other
subcommand and no worker ever loads it.
"""

from __future__ import annotations

import argparse

from streamrec.logs import error
from streamrec.settings import Settings


def _bench(name: str):
    """``streamrec.bench.<name>``, imported only when that benchmark runs (they pull in heavy modules)."""
    import importlib

    return importlib.import_module(f"streamrec.bench.{name}")


def _kafka_answers(settings: Settings) -> None:
    """One clear line, within STREAMREC_KAFKA_TIMEOUT_S, when the broker is away."""
    from streamrec.connect import check_kafka, kafka_config

    check_kafka(kafka_config(settings), settings.kafka_timeout_s)


def cmd_bench_stream(settings: Settings, args) -> int:
    _kafka_answers(settings)
    if args.refresh_interval is not None:
        settings = settings.replace(refresh_interval_s=args.refresh_interval)
    if args.early_refresh is not None:
        settings = settings.replace(early_refresh_s=args.early_refresh)
    _bench("stream").run(settings, n_events=args.events, probes=args.probes, json_path=args.json)
    return 0


def cmd_bench_embed(settings: Settings, args) -> int:
    _kafka_answers(settings)
    return _bench("embed").main(settings, items=args.items, json_path=args.json)


def cmd_bench_agents(settings: Settings, args) -> int:
    return _bench("agents").main(settings, n_events=args.events, rounds=args.rounds, json_path=args.json)


def cmd_bench_replay(settings: Settings, args) -> int:
    if not args.in_process:
        _kafka_answers(settings)
    try:
        return _bench("replay").main(settings, args)
    except ValueError as exc:
        error(str(exc))
        return 2


def cmd_bench_scale(settings: Settings, args) -> int:
    try:
        return _bench("scale").main(settings, args)
    except ValueError as exc:
        error(str(exc))
        return 2


def add_scale(bsub) -> None:
    sc = bsub.add_parser(
        "scale", help="one worker's model at tenant scale: µs/event, ms/list vs a numpy roofline, "
        "recall of the indexed candidates, memory, checkpoint bytes and restore time",
        description="Learn a synthetic Zipf stream with the worker's own model for each USERSxITEMS "
        "size, then rank a sample of lists and write and restore a checkpoint. Protocol: bench/scale.py.",
    )  # fmt: skip
    sc.set_defaults(func=cmd_bench_scale)
    sc.add_argument("--sizes", default="100kx10k,1Mx100k", metavar="UxI,...",
                    help="comma-separated USERSxITEMS, k/M suffixes (default 100kx10k,1Mx100k)")
    sc.add_argument("--embeddings", choices=("yes", "no", "both"), default="both",
                    help="384-d item embeddings (default both, one configuration each)")
    sc.add_argument("--events-per-user", type=float, default=3.0, metavar="F",
                    help="events per user (default 3; at least one per item)")
    sc.add_argument("--lists", type=int, default=2000, metavar="N", help="lists timed per pass (default 2000)")
    sc.add_argument("--passes", type=int, default=3, metavar="N",
                    help="timed passes, each over its own sample after the roofline over it; the "
                    "figures are their medians (default 3)")
    sc.add_argument("--recall-lists", type=int, default=200, metavar="N",
                    help="of those, ranked again exhaustively for recall_at_50 (default 200)")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--index-min-items", type=int, default=None, metavar="N",
                    help="embedded items from which candidates come from the index (default: the model's)")
    sc.add_argument("--workers", type=int, default=None, metavar="N",
                    help="also simulate N partitioned workers against one (STREAMREC_STATE=partitioned): "
                    "rows with intake_ratio_vs_one and user_state_share_per_worker (bench/scaleout.py)")
    sc.add_argument("--json", metavar="PATH", help="write the list of configurations as JSON here")
    sc.add_argument("--no-progress", action="store_true", help="no progress display")


def cmd_bench_serve(settings: Settings, args) -> int:
    return _bench("serve").main(settings, requests=args.requests, json_path=args.json)


def cmd_bench_wire(settings: Settings, args) -> int:
    return _bench("wire").main(args.events, json_path=args.json)


def cmd_bench_learn(settings: Settings, args) -> int:
    return _bench("learn").main(settings, events=args.events, rounds=args.rounds, json_path=args.json)


def add_benches(bench: argparse.ArgumentParser) -> None:
    """The NAME subcommands of ``streamrec bench``: ``embed``, ``stream``, ``agents``, ``serve``, ``wire``, ``learn``, ``replay`` and ``scale``."""
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
    ba = bsub.add_parser(
        "agents", help="messages/s of a faust agent vs the batched confluent-kafka loop on the "
        "stream worker's per-event path (why the stream worker is not a faust agent)",
        description="Publish N synthetic events once; read them all, in turn, with the stream "
        "worker's confluent-kafka batches and with faust agents (per event, and with take), doing "
        "the stream worker's per-event work (decode, learn) on each. Protocol: bench/agents.py.",
    )  # fmt: skip
    ba.set_defaults(func=cmd_bench_agents)
    ba.add_argument("--events", type=int, default=50_000, metavar="N", help="default 50000")
    ba.add_argument("--rounds", type=int, default=2, help="runs of each path; best kept (default 2)")
    ba.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    bv = bsub.add_parser(
        "serve", help="GET /recommend latency and requests/s vs a bare Redis GET + unpack",
        description="Write users' lists under a fresh prefix, start `streamrec serve` on loopback, "
        "and time GET /recommend next to a bare Redis GET + msgpack unpack and RecsReader.get of "
        "the same keys, in interleaved rounds of one run.",
    )  # fmt: skip
    bv.set_defaults(func=cmd_bench_serve)
    bv.add_argument("--requests", type=int, default=2000, metavar="N", help="per path (default 2000)")
    bv.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    bw = bsub.add_parser(
        "wire", help="decode + validation events/s: JSON vs msgpack, and msgspec variants",
        description="Decode the same mix of clicks, ratings and items as msgpack and as JSON through "
        "the codec, next to msgspec Structs and bare parsers, in one run (no services needed).",
    )  # fmt: skip
    bw.set_defaults(func=cmd_bench_wire)
    bw.add_argument("--events", type=int, default=50_000, metavar="N", help="default 50000")
    bw.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    bl = bsub.add_parser(
        "learn", help="learning µs/event of the model with and without transitions, same events, same run",
        description="Learn the same events (MovieLens ratings if present, else synthetic clicks) into "
        "fresh models, the variants alternating round after round; median µs/event and the ratio "
        "(no services needed). Protocol: bench/learn.py.",
    )  # fmt: skip
    bl.set_defaults(func=cmd_bench_learn)
    bl.add_argument("--events", type=int, default=None, metavar="N", help="only the first N events (default all)")
    bl.add_argument("--rounds", type=int, default=5, metavar="N", help="rounds per variant (default 5)")
    bl.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    br = bsub.add_parser(
        "replay", help="prequential replay of MovieLens or synthetic data: HR@10, NDCG@10, cold "
        "HR@10, coverage, Gini, freshness, events/s per configuration and refresh interval",
        description="Replay a dataset in timestamp order through Kafka and the stream worker on a "
        "logical clock (or in-process with --in-process); score each event of a user with history "
        "against the list published before it. Protocol: bench/replay.py.",
    )  # fmt: skip
    br.set_defaults(func=cmd_bench_replay)
    br.add_argument("--dataset", choices=("movielens", "synthetic", "events"), default="movielens",
                    help="movielens, synthetic, or events: an event log in the wire format (--path)")
    br.add_argument("--path", metavar="PATH", help="movielens: the directory, ml-latest-small or "
                    "ml-100k layout (default: $STREAMREC_MOVIELENS_DIR, else ../shared/data/ml-latest-small); "
                    "events: a JSON-lines or CSV file of catalogue records, clicks and ratings")
    br.add_argument("--from-topics", action="store_true",
                    help="replay this deployment's own catalogue and event topics from their earliest "
                    "retained offsets (STREAMREC_TOPIC_PREFIX names them)")
    br.add_argument("--configs", default="popularity,crm,crm+llm",
                    help="comma-separated: popularity, crm (transitions' weight self-tuned), crm-hand "
                    "(every weight fixed), crm+llm (self-tuned blend), crm+llm-hand (the hand-set "
                    "weights); default popularity,crm,crm+llm")
    br.add_argument("--refresh", default="60,5", metavar="S,S",
                    help="comma-separated refresh intervals in stream seconds (default 60,5)")
    br.add_argument("--in-process", action="store_true",
                    help="fast mode: same model and refresh rule without Kafka and Redis")
    br.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N events")
    br.add_argument("--workers", type=int, default=None, metavar="N",
                    help="with --in-process: N stream workers with partitioned state "
                    "(STREAMREC_STATE=partitioned; bench/replay_partitioned.py)")
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
    add_scale(bsub)
