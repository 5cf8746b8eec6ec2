"""Redis Cluster mode in the settings and the client factory: no server needed.

Cluster mode must take every option the plain client takes (user, password, TLS CA), fail at
start-up on URLs a cluster cannot serve, and not need the cluster to be up until the first command.
"""

from __future__ import annotations

import socket

import pytest
import redis

from streamrec.connect import LazyRedisCluster, redis_client, redis_errors
from streamrec.schemas.keys import RedisKeys
from streamrec.settings import Settings, SettingsError
from streamrec.streams.refresh import write_lists

SECURED = {
    "STREAMREC_REDIS_URL": "rediss://redis.example:6380/0",
    "STREAMREC_REDIS_USERNAME": "app",
    "STREAMREC_REDIS_PASSWORD": "s3cret",
    "STREAMREC_REDIS_SSL_CA_LOCATION": "/etc/ca.pem",
}


@pytest.mark.parametrize("raw, value", [("true", True), ("FALSE", False), ("1", True), ("off", False)])
def test_cluster_flag_parses_booleans(raw, value):
    assert Settings.from_env({"STREAMREC_REDIS_CLUSTER": raw}).redis_cluster is value


def test_cluster_mode_is_off_by_default_and_the_plain_client_is_unchanged():
    settings = Settings.from_env({})
    assert settings.redis_cluster is False
    assert type(redis_client(settings)) is redis.Redis


@pytest.mark.parametrize("env, problem", [
    ({"STREAMREC_REDIS_CLUSTER": "maybe"}, "'maybe' is not true or false"),
    ({"STREAMREC_REDIS_CLUSTER": "true", "STREAMREC_REDIS_URL": "unix:///run/redis.sock"}, "unix://"),
    ({"STREAMREC_REDIS_CLUSTER": "true", "STREAMREC_REDIS_URL": "redis://h:6379/2"}, "database 2"),
    ({"STREAMREC_REDIS_CLUSTER": "true", "STREAMREC_REDIS_URL": "redis://:pw@h:6379?db=1"}, "database 1"),
])  # fmt: skip
def test_urls_a_cluster_cannot_serve_fail_at_start_up(env, problem):
    with pytest.raises(SettingsError, match="STREAMREC_REDIS_CLUSTER") as info:
        Settings.from_env(env)
    assert problem in str(info.value) and "pw" not in str(info.value)


def test_cluster_client_takes_the_same_options_as_the_plain_one():
    plain = redis_client(Settings.from_env(SECURED)).connection_pool.connection_kwargs
    cluster = redis_client(Settings.from_env({**SECURED, "STREAMREC_REDIS_CLUSTER": "true"}))
    assert isinstance(cluster, LazyRedisCluster)
    for option in ("username", "password", "ssl_ca_certs", "socket_connect_timeout", "socket_timeout"):
        assert cluster._options[option] == plain[option], option
    assert cluster._url == SECURED["STREAMREC_REDIS_URL"]


def test_cluster_client_needs_no_cluster_until_used_and_then_fails_as_a_redis_error():
    """A worker starts while the cluster is down, and its write fails with an error it retries on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nobody answers there
    settings = Settings.from_env({"STREAMREC_REDIS_CLUSTER": "true",
                                  "STREAMREC_REDIS_URL": f"redis://127.0.0.1:{port}/0"})  # fmt: skip
    client = redis_client(settings)  # builds nothing yet
    with pytest.raises(redis_errors()):
        write_lists(client, RedisKeys(), ["u1"], lambda u: [("i1", 1.0)], None, "m.1", 0.0, "d")
    with pytest.raises(redis_errors()):  # and again: a failed build is retried, not cached
        client.get("rec:u1")
    client.close()
