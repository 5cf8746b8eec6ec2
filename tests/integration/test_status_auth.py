"""`streamrec status` and `up` against a password-protected Redis whose password is given only in
``STREAMREC_REDIS_PASSWORD`` (and ``STREAMREC_REDIS_USERNAME``), not in the URL: the server is
reported as running with its version, with the credentials every other client uses; wrong
credentials are reported as such by `up` instead of it starting a second server on the port."""

from __future__ import annotations

import os
import subprocess
import sys

from test_security import REDIS_USER, password_redis  # noqa: F401 (fixture)

DEFAULT_PASSWORD = "default-secret-5"  # the fixture's requirepass


def _cli(env_extra: dict, *args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_REDIS")}
    env.update({"STREAMREC_STATE_DIR": str(tmp_path / "state"), **env_extra})
    return subprocess.run([sys.executable, "-m", "streamrec", *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def _redis_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("redis"))


def test_status_sees_a_redis_whose_password_is_only_in_the_setting(password_redis, stack, tmp_path):  # noqa: F811
    url = f"redis://127.0.0.1:{password_redis}/0"
    for extra in ({"STREAMREC_REDIS_PASSWORD": DEFAULT_PASSWORD},
                  {"STREAMREC_REDIS_USERNAME": REDIS_USER[0], "STREAMREC_REDIS_PASSWORD": REDIS_USER[1]}):  # fmt: skip
        result = _cli({"STREAMREC_REDIS_URL": url, **extra}, "status", tmp_path=tmp_path)
        line = _redis_line(result.stdout)
        assert " running " in line and "not running" not in line, result.stdout + result.stderr
        assert result.returncode == 0, result.stdout + result.stderr  # Kafka (the test stack) runs too
        assert extra["STREAMREC_REDIS_PASSWORD"] not in result.stdout + result.stderr
    # without the password, or with a wrong one, the same server is not usable: not running
    for extra in ({}, {"STREAMREC_REDIS_PASSWORD": "wrong-secret"}):
        result = _cli({"STREAMREC_REDIS_URL": url, **extra}, "status", tmp_path=tmp_path)
        assert "not running" in _redis_line(result.stdout) and result.returncode == 1, result.stdout


def test_up_with_wrong_credentials_says_so_and_starts_no_second_server(password_redis, stack, tmp_path):  # noqa: F811
    url = f"redis://127.0.0.1:{password_redis}/0"
    result = _cli({"STREAMREC_REDIS_URL": url, "STREAMREC_REDIS_PASSWORD": "wrong-secret"}, "up",
                  tmp_path=tmp_path)  # fmt: skip
    assert result.returncode != 0
    assert "refuses the credentials" in result.stderr and "STREAMREC_REDIS_PASSWORD" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "wrong-secret" not in result.stdout + result.stderr
    assert not (tmp_path / "state" / "redis.json").exists(), "up must not start a Redis of its own"
    # with the right password `up` reuses the server
    result = _cli({"STREAMREC_REDIS_URL": url, "STREAMREC_REDIS_PASSWORD": DEFAULT_PASSWORD}, "up",
                  tmp_path=tmp_path)  # fmt: skip
    assert "reusing it" in result.stderr, result.stderr
