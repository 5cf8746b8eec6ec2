"""The stream worker's stats write is best effort: a Redis that went away costs a stale status."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import redis

from streamrec.schemas.keys import RedisKeys
from streamrec.settings import Settings
from streamrec.streams.worker import Stats, StreamWorker


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stats_write_survives_redis_going_away():
    gone = redis.Redis(port=_closed_port(), socket_connect_timeout=0.5)
    worker = SimpleNamespace(
        keys=RedisKeys(), settings=Settings.from_env({}), stats=Stats(), redis=gone,
        model_version=lambda: "m.1", catalog_state=SimpleNamespace(hashes={}),
        served=SimpleNamespace(stats_fields=lambda catalogue: {"quality_hr@10": 0.1}),
    )  # fmt: skip
    StreamWorker._write_stats(worker, now=1.0)  # must not raise
    assert worker.stats.redis_failures == 1
