"""``streamrec worker KIND``: the long-running workers, one subcommand with a kind each.

Apart from the rest of the command because the three kinds share their flags (``--burst``,
``--max-seconds``, and the ``--health``/``--max-age`` pair that container health checks and
Kubernetes probes call), defined once below for all of them, and because each kind imports its own
stack only when it runs: the online model for ``streams``, torch for ``embed`` and ``tag``.
"""

from __future__ import annotations

import argparse

from streamrec.logs import error
from streamrec.settings import Settings


def cmd_worker_streams(settings: Settings, args) -> int:
    from streamrec.metrics import heartbeat_health

    if args.health:
        ok, msg = heartbeat_health(settings.checkpoints / "health.json", args.max_age, args.live)
        print(msg)
        return 0 if ok else 1
    from streamrec.streams.checkpoint import CheckpointError, FileCheckpointStore
    from streamrec.streams.worker import StreamWorker

    if args.reset_state:
        for path in FileCheckpointStore(settings.checkpoints).set_aside():
            print(f"set aside {path}; starting afresh")
    try:
        worker = StreamWorker(settings)
    except CheckpointError as exc:
        error(str(exc))
        return 2
    stats = worker.run(burst=args.burst, max_seconds=args.max_seconds)
    # this run's counts, then the state's running total (a restored state already held some)
    print(f"this run: learned {stats.learned - stats.learned_before}, lists written "
          f"{stats.lists_written}, dead letters {stats.dead_letters}, refreshes {stats.refreshes}, "
          f"skipped {stats.skipped}; the state holds {stats.learned} learned events")  # fmt: skip
    return 0


def _llm_worker(kind: str, settings: Settings, args) -> int:
    """``worker embed`` / ``worker tag``: torch is imported here only, never by the stream worker."""
    from streamrec.metrics import heartbeat_health

    if args.health:
        ok, msg = heartbeat_health(settings.state_dir / "workers" / kind / "health.json", args.max_age,
                                   args.live)  # fmt: skip
        print(msg)
        return 0 if ok else 1
    import importlib

    from streamrec.connect import check_kafka, kafka_config
    from streamrec.workers.common import WorkerError

    check_kafka(kafka_config(settings), settings.kafka_timeout_s)  # one clear line if it is away

    try:
        module = importlib.import_module(f"streamrec.workers.{kind}")
        print(module.run(settings, burst=args.burst, max_seconds=args.max_seconds))
    except WorkerError as exc:
        error(str(exc))
        return 2
    return 0


def cmd_worker_embed(settings: Settings, args) -> int:
    return _llm_worker("embed", settings, args)


def cmd_worker_tag(settings: Settings, args) -> int:
    return _llm_worker("tag", settings, args)


def add_kinds(worker: argparse.ArgumentParser) -> None:
    """The KIND subcommands of ``streamrec worker``, with the flags they share."""
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
                        help="heartbeat age (s) still counted healthy (default 30)")
        wp.add_argument("--live", action="store_true",
                        help="with --health: a fresh heartbeat is enough, even while the worker is "
                        "degraded (retrying outputs the broker refuses): for liveness probes")  # fmt: skip
        if kind == "streams":
            wp.add_argument("--reset-state", action="store_true",
                            help="set the checkpoints aside (renamed *.unusable-TIME) and start "
                            "afresh, re-learning every event still on the input topics")  # fmt: skip
