"""No configured secret reaches any command's output: every subcommand runs with a SASL password, a
password inside the Redis URL, the Redis password setting and an OpenAI API key set, against the
secured broker and Redis of ``test_security`` (right credentials, then wrong ones, where errors name
the addresses), and all it prints is searched for each secret."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_security import APP_PLAIN, REDIS_USER, password_redis, sasl_broker  # noqa: F401 (fixtures)

OPENAI_KEY = "sk-openai-secret-7"
URL_SECRET = REDIS_USER[1]  # the ACL user's password, given inside the URL
WRONG_URL_SECRET = "wrong-url-secret-8"
WRONG_SETTING_SECRET = "wrong-setting-secret-9"

COMMANDS = [
    ("settings",), ("status",), ("up",), ("down",), ("topics", "create"),
    ("publish", "--quiet"), ("recs", "u1"), ("recs", "u1", "--json"), ("recs", "nobody"),
    ("peek", "events.clicks"),
    ("worker", "streams", "--burst"), ("worker", "streams", "--health"),
    ("worker", "embed", "--burst", "--max-seconds", "60"), ("worker", "embed", "--health"),
    ("worker", "tag", "--burst", "--max-seconds", "60"), ("worker", "tag", "--health"),
    ("bench", "stream", "--events", "200", "--probes", "2", "--refresh-interval", "1"),
    ("bench", "embed", "--items", "4"),
    ("bench", "replay", "--dataset", "synthetic", "--synthetic-events", "300", "--configs", "crm",
     "--refresh", "60", "--no-progress"),
]  # fmt: skip


def _run(env: dict, args: tuple, tmp_path) -> str:
    result = subprocess.run([sys.executable, "-m", "streamrec", *args], env=env, capture_output=True,
                            text=True, timeout=300, cwd=tmp_path,
                            input='{"type": "click", "user": "u1", "item": "i1"}\n')  # fmt: skip
    return f"$ streamrec {' '.join(args)} (exit {result.returncode})\n{result.stdout}{result.stderr}"


def _env(sasl_broker, redis_port, prefix, tmp_path, url_password, setting_password) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    return {
        **env,
        "STREAMREC_KAFKA_BOOTSTRAP": sasl_broker, "STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "STREAMREC_KAFKA_SASL_USERNAME": APP_PLAIN[0], "STREAMREC_KAFKA_SASL_PASSWORD": APP_PLAIN[1],
        "STREAMREC_REDIS_URL": f"redis://{REDIS_USER[0]}:{url_password}@127.0.0.1:{redis_port}/0",
        "STREAMREC_REDIS_PASSWORD": setting_password,
        "STREAMREC_TAG_OPENAI_API_KEY": OPENAI_KEY,
        "STREAMREC_TOPIC_PREFIX": prefix, "STREAMREC_REDIS_PREFIX": prefix,
        "STREAMREC_GROUP_ID": f"{prefix}g", "STREAMREC_ENRICH_GROUP_ID": f"{prefix}e",
        "STREAMREC_STATE_DIR": str(tmp_path / "state"), "STREAMREC_PARTITIONS": "1",
        "STREAMREC_KAFKA_TIMEOUT_S": "5", "STREAMREC_REFRESH_INTERVAL_S": "1",
    }  # fmt: skip


@pytest.mark.parametrize("credentials", ["right", "wrong"])
def test_no_secret_in_the_output_of_any_command(credentials, sasl_broker, password_redis, prefix,  # noqa: F811
                                                 tmp_path):  # fmt: skip
    if credentials == "right":
        env = _env(sasl_broker, password_redis, prefix, tmp_path, URL_SECRET, URL_SECRET)
        secrets = [APP_PLAIN[1], URL_SECRET, OPENAI_KEY]
    else:
        env = _env(sasl_broker, password_redis, prefix, tmp_path, WRONG_URL_SECRET, WRONG_SETTING_SECRET)
        env["STREAMREC_KAFKA_SASL_PASSWORD"] = "wrong-kafka-secret-10"
        secrets = ["wrong-kafka-secret-10", WRONG_URL_SECRET, WRONG_SETTING_SECRET, OPENAI_KEY]
    outputs = [_run(env, args, tmp_path) for args in COMMANDS]
    everything = "\n".join(outputs)
    for secret in secrets:
        leaks = [out.splitlines()[0] for out in outputs if secret in out]
        assert not leaks, f"secret {secret[:4]}... printed by {leaks}"
    # the commands did run (right credentials) or fail on them (wrong ones), and the output says so
    if credentials == "right":
        assert "published 1, rejected 0" in everything, everything[-4000:]
        assert "redis://recs:<secret>@127.0.0.1" in everything  # settings and status, redacted
    else:
        assert "refused the credentials" in everything, everything[-4000:]
    # nothing a worker left on disk holds a secret either (heartbeats, checkpoints)
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets), path
