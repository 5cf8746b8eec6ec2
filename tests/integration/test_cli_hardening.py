"""The command line under faults and at its edges: an unreachable broker, rejected lines, bad
arguments, the global list, restarted workers' summaries and digests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from workerkit import TS, publish, read_list, start_worker, taste_events, wait_for

from streamrec.schemas.events import RecommendationList
from streamrec.schemas.keys import RedisKeys
from streamrec.streams.refresh import config_digest
from streamrec.streams.worker import MODEL_NAME


def _cli(env: dict, *args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamrec", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


KAFKA_COMMANDS = [
    ("publish", "--quiet"), ("peek", "events.clicks"), ("topics", "create"),
    ("worker", "streams", "--burst"), ("worker", "embed", "--burst"), ("worker", "tag", "--burst"),
    ("bench", "stream", "--events", "10"), ("bench", "embed", "--items", "4"),
    ("bench", "replay", "--dataset", "synthetic", "--limit", "10"),
]  # fmt: skip


@pytest.mark.parametrize("args", KAFKA_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_kafka_command_ends_with_one_clear_line_when_the_broker_is_away(args, tmp_path):
    env = {**os.environ, "STREAMREC_KAFKA_BOOTSTRAP": f"127.0.0.1:{_dead_port()}",
           "STREAMREC_KAFKA_TIMEOUT_S": "2", "STREAMREC_STATE_DIR": str(tmp_path)}  # fmt: skip
    result = _cli(env, *args, stdin='{"type": "click", "user": "u1", "item": "i1"}\n', timeout=60)
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith("streamrec: error: no Kafka broker answers"), lines
    assert "Traceback" not in result.stderr and "|FAIL|" not in result.stderr  # no librdkafka flood


def test_the_client_log_is_there_when_asked_for(tmp_path):
    env = {**os.environ, "STREAMREC_KAFKA_BOOTSTRAP": f"127.0.0.1:{_dead_port()}",
           "STREAMREC_KAFKA_TIMEOUT_S": "2", "STREAMREC_LOG_LEVEL": "DEBUG"}  # fmt: skip
    result = _cli(env, "topics", "create", timeout=60)
    assert result.returncode == 2
    assert "streamrec.kafka" in result.stderr, result.stderr[-2000:]


def test_publish_exits_1_when_lines_were_rejected(topics, stack, prefix):
    env = {**os.environ, "STREAMREC_TOPIC_PREFIX": prefix}
    good = '{"type": "click", "user": "u1", "item": "i1"}\n'
    assert _cli(env, "publish", "--quiet", stdin=good).returncode == 0
    mixed = _cli(env, "publish", "--quiet", stdin=good + '{"type": "click", "user": ""}\n')
    assert mixed.returncode == 1 and "published 1, rejected 1" in mixed.stdout, mixed


def test_recs_refuses_a_non_positive_k_and_labels_the_global_list(stack, prefix, redis_client):
    from streamrec.schemas.codec import encode

    env = {**os.environ, "STREAMREC_REDIS_PREFIX": prefix}
    for k in ("0", "-5", "x"):
        result = _cli(env, "recs", "u1", "-k", k)
        assert result.returncode == 2 and "-k" in result.stderr, (k, result)
    lst = RecommendationList(user="__global__", items=(("i1", 1.0),), model_version="m.1",
                             generated_at=TS, config_digest="d")  # fmt: skip
    redis_client.set(RedisKeys(prefix=prefix).fallback(), encode(lst), ex=60)
    shown = _cli(env, "recs", "__global__")
    assert shown.returncode == 0 and shown.stdout.startswith("global fallback list"), shown.stdout
    assert json.loads(_cli(env, "recs", "__global__", "--json").stdout)["personal"] is False


def test_worker_summary_separates_this_run_from_the_state_and_the_digest_follows_the_model(
    worker_env, stack, topics, prefix, redis_client
):
    # fixed weights, so that the digest is the model's settings alone (a tuned blend adds its own)
    worker_env = {**worker_env, "STREAMREC_TUNE_BLEND": "off"}
    events = taste_events(n_users=4, per_user=5)
    publish(stack, topics, events)
    out = "".join(start_worker(worker_env, "--burst").communicate(timeout=120))
    assert f"this run: learned {len(events)}," in out and f"holds {len(events)} learned" in out, out
    # restarted with other model settings: the restored model keeps its own, and so does the digest
    env = {**worker_env, "STREAMREC_NEGATIVES": "7", "STREAMREC_SEED": "9"}
    publish(stack, topics, taste_events(n_users=1, per_user=2, seed=5))
    out = "".join(start_worker(env, "--burst").communicate(timeout=120))
    assert "this run: learned 2," in out and f"holds {len(events) + 2} learned" in out, out
    lst = wait_for(lambda: read_list(redis_client, prefix, "u0"), 30, "u0's list")
    from streamrec.settings import Settings

    top_k = Settings.from_env({}).top_k
    assert lst.config_digest == config_digest({"model": MODEL_NAME, "k": top_k, "negatives": 3,
                                               "seed": 42})  # fmt: skip
