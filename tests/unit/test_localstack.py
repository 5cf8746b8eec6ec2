"""Local-stack bookkeeping that needs no services: `down` only ever stops what `up` started."""

from __future__ import annotations

import json
import subprocess

from streamrec import localstack
from streamrec.settings import Settings


def test_down_never_kills_a_process_it_did_not_start(tmp_path):
    settings = Settings.from_env({}, state_dir=tmp_path)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        # a stale record whose pid now belongs to an unrelated process (pid reuse)
        (tmp_path / "kafka.json").write_text(json.dumps({"pid": bystander.pid, "version": "4.1.1"}))
        assert localstack.down(settings) == []
        assert bystander.poll() is None, "an unrelated process was killed"
        assert not (tmp_path / "kafka.json").exists(), "the stale record should be cleared"
    finally:
        bystander.kill()
        bystander.wait()


def test_status_of_nothing_says_not_running(tmp_path):
    settings = Settings.from_env(
        {}, state_dir=tmp_path, kafka_bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0"
    )
    kafka, redis = localstack.kafka_status(settings), localstack.redis_status(settings)
    assert not kafka.running and not kafka.managed and kafka.version == "-"
    assert not redis.running and "not running" in redis.line()
