"""streamrec on a Redis Cluster (``STREAMREC_REDIS_CLUSTER``): the stream worker writes lists into
it, the reader, the CLI and the embedding cache read them, credentials work; and on a plain Redis the
reads stay one round trip.

The cluster is a real one-node Redis Cluster (a Redis server in cluster mode owning all 16384
slots), started by this module: one node is enough, since a cluster rejects a multi-key command
over keys in different slots even when one node owns them all.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from redis.cluster import RedisCluster

from workerkit import publish, start_worker, stop, taste_events, wait_for

from streamrec import localstack
from streamrec.connect import LazyRedisCluster, redis_client
from streamrec.schemas.codec import encode
from streamrec.schemas.events import RecommendationList
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.reader import RecsReader
from streamrec.settings import Settings
from streamrec.streams.refresh import BATCH, write_lists
from streamrec.workers.embed import EmbeddingCache

TS = 1_700_000_000.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_node_cluster(node: redis.Redis, proc: subprocess.Popen, log: Path, timeout_s: float = 20):
    """Give the node every slot and wait until the cluster says it is ok."""
    deadline = time.monotonic() + timeout_s
    slots_added = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-2000:] if log.exists() else "(no log)"
            pytest.fail(f"cluster-mode Redis exited ({proc.returncode}); log:\n{tail}")
        try:
            if not slots_added:
                node.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
                slots_added = True
            if node.cluster("info").get("cluster_state") == "ok":
                return
        except redis.ConnectionError:  # not listening yet
            pass
        time.sleep(0.1)
    pytest.fail(f"one-node Redis Cluster not ready after {timeout_s}s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A RedisCluster client on a fresh one-node cluster; the node is stopped afterwards."""
    home = tmp_path_factory.mktemp("redis-cluster")
    port, bus_port = _free_port(), _free_port()  # the bus port defaults to port + 10000: may be taken
    proc = subprocess.Popen(
        [localstack._redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port),
         "--dir", str(home), "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
         "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no",
         "--protected-mode", "no", "--daemonize", "no", "--logfile", str(home / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    node = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        _one_node_cluster(node, proc, home / "redis.log")
        client = RedisCluster(host="127.0.0.1", port=port)
        yield client, node
        client.close()
    finally:
        node.close()
        proc.terminate()
        proc.wait(timeout=10)


def _lists(keys: RedisKeys, user: str):
    mine = RecommendationList(user=user, items=(("i1", 0.9),), model_version="mf-3",
                              generated_at=TS, config_digest="abc")  # fmt: skip
    fallback = RecommendationList(user="__global__", items=(("i9", 3.0), ("i8", 2.0)),
                                  model_version="pop-1", generated_at=TS, config_digest="abc")  # fmt: skip
    return mine, fallback


def test_a_list_and_the_fallback_are_in_different_slots_so_mget_fails_on_a_cluster(cluster):
    """Why the reader does not use MGET: the cluster rejects it for these two keys."""
    client, node = cluster
    keys = RedisKeys(prefix="c1.")
    assert client.keyslot(keys.recs("u1")) != client.keyslot(keys.fallback())
    with pytest.raises(redis.ResponseError, match="same slot"):
        node.mget([keys.recs("u1"), keys.fallback()])  # sent as is: the server answers CROSSSLOT


def test_reader_serves_personal_then_fallback_lists_on_a_cluster(cluster):
    client, _ = cluster
    keys = RedisKeys(prefix="c2.")
    reader = RecsReader(client, keys)
    assert reader.get("u1").list is None
    mine, fallback = _lists(keys, "u1")
    client.set(keys.fallback(), encode(fallback), ex=60)
    got = reader.get("u1")
    assert not got.personal and got.list == fallback
    client.set(keys.recs("u1"), encode(mine), ex=60)
    got = reader.get("u1")
    assert got.personal and got.list == mine


def test_embedding_cache_reads_and_writes_a_batch_on_a_cluster(cluster):
    client, _ = cluster
    cache = EmbeddingCache(client, RedisKeys(prefix="c3."), "fake", dim=2)
    vectors = {f"h{i}": np.array([i, -i], dtype=np.float32) for i in range(20)}  # many slots
    assert len({client.keyslot(cache.keys.embedding("fake", h)) for h in vectors}) > 1
    cache.put_many(vectors)
    found = cache.get_many([*vectors, "missing"])
    assert cache.failures == 0 and cache.ok
    assert set(found) == set(vectors)
    assert all(np.array_equal(found[h], v) for h, v in vectors.items())


# ---------------------------------------------------------------- streamrec pointed at the cluster


def _cluster_env(cluster, **extra) -> dict[str, str]:
    """``STREAMREC_*`` variables that point streamrec at the cluster (its node's URL)."""
    _, node = cluster
    port = node.connection_pool.connection_kwargs["port"]
    return {"STREAMREC_REDIS_URL": f"redis://127.0.0.1:{port}/0", "STREAMREC_REDIS_CLUSTER": "true",
            **extra}  # fmt: skip


def test_the_list_writer_writes_into_the_cluster_and_the_reader_reads_the_lists_back(cluster):
    settings = Settings.from_env(_cluster_env(cluster, STREAMREC_REDIS_PREFIX="c4."))
    client = redis_client(settings)
    assert isinstance(client, LazyRedisCluster)
    keys = RedisKeys(prefix=settings.redis_prefix)
    users = [f"u{i}" for i in range(BATCH + 100)]  # more than one batch, over many slots
    assert len({client.keyslot(keys.recs(u)) for u in users}) > 100
    client.set(keys.recs("gone"), b"stale", ex=60)  # a user whose personal signal is gone: deleted

    def recommend(user):
        return [] if user == "gone" else [(f"i{user}", 1.0), ("i0", 0.5)]

    written = write_lists(client, keys, [*users, "gone"], recommend, [("pop", 9.0)], "mf.1", TS, "d")
    assert written == len(users)
    reader = RecsReader(client, keys)
    for user in users:
        got = reader.get(user)
        assert got.personal and got.items == [(f"i{user}", 1.0), ("i0", 0.5)], user
        assert got.list.model_version == "mf.1" and 0 < client.ttl(keys.recs(user)) <= keys.recs_ttl_s
    got = reader.get("gone")
    assert not got.personal and got.items == [("pop", 9.0)]
    assert 0 < client.ttl(keys.fallback()) <= keys.fallback_ttl_s
    client.close()


def test_the_stream_worker_serves_lists_from_the_cluster(cluster, worker_env, stack, topics, prefix):
    """The real worker process, configured for the cluster: lists and its stats hash land there.

    One node owning every slot would also serve a plain client, so the node's count of CLUSTER SLOTS
    calls (what a cluster client asks first) shows that the worker did build a cluster client."""
    client, node = cluster

    def slot_map_requests() -> int:
        return node.info("commandstats").get("cmdstat_cluster|slots", {}).get("calls", 0)

    asked = slot_map_requests()
    events = taste_events(n_users=8, per_user=10)
    users = sorted({e.user for e in events})
    reader = RecsReader(client, RedisKeys(prefix=prefix))
    worker = start_worker({**worker_env, **_cluster_env(cluster)})
    try:
        publish(stack, topics, events)
        wait_for(lambda: all(reader.get(u).personal for u in users), 60, "every list in the cluster",
                 proc=worker)  # fmt: skip
        wait_for(lambda: client.hgetall(RedisKeys(prefix=prefix).stats(worker_env["STREAMREC_GROUP_ID"])),
                 10, "the worker's stats hash", proc=worker)  # fmt: skip
    finally:
        out = stop(worker)
    assert "Redis unavailable" not in out, out
    assert slot_map_requests() > asked
    assert all(len(reader.get(u).items) >= 10 for u in users)


def _recs_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamrec", "recs", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60)  # fmt: skip


def test_recs_cli_reads_from_the_cluster(cluster):
    client, _ = cluster
    keys = RedisKeys(prefix="c5.")
    mine, _ = _lists(keys, "u1")
    client.set(keys.recs("u1"), encode(mine), ex=60)
    result = _recs_cli(_cluster_env(cluster, STREAMREC_REDIS_PREFIX="c5."), "u1", "--json")
    assert result.returncode == 0, result.stderr
    assert '"personal": true' in result.stdout and '"i1"' in result.stdout


def test_cluster_client_logs_in_as_an_acl_user_and_wrong_credentials_fail_clearly(cluster):
    client, node = cluster
    node.acl_setuser("c6app", enabled=True, passwords=["+c6pass"], keys=["*"], commands=["+@all"])
    try:
        env = _cluster_env(cluster, STREAMREC_REDIS_PREFIX="c6.", STREAMREC_REDIS_USERNAME="c6app")
        right = redis_client(Settings.from_env({**env, "STREAMREC_REDIS_PASSWORD": "c6pass"}))
        assert RecsReader(right, RedisKeys(prefix="c6.")).get("u1").list is None
        assert right.acl_whoami() in (b"c6app", "c6app")  # the cluster client decodes this one
        right.close()
        wrong = _recs_cli({**env, "STREAMREC_REDIS_PASSWORD": "nope"}, "u1")
        assert wrong.returncode == 2 and "refused the credentials" in wrong.stderr, wrong.stderr
        assert "nope" not in wrong.stderr
    finally:
        node.acl_deluser("c6app")


# ---------------------------------------------------------------- one round trip on a plain Redis


class CountingConnection(redis.Connection):
    """A real connection that counts the times it writes to the server (one per round trip)."""

    writes = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.writes += 1
        return super().send_packed_command(command, check_health)


@pytest.fixture
def counting_client(stack):
    pool = redis.ConnectionPool.from_url(stack.redis_url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    client.ping()  # connect (and handshake) first, so only the reads below are counted
    yield client
    client.close()


def test_reader_takes_one_round_trip_on_a_plain_redis(counting_client, prefix):
    """One GET for a user who has a list; the global list is read only for one who has none."""
    keys = RedisKeys(prefix=prefix)
    reader = RecsReader(counting_client, keys)
    mine, fallback = _lists(keys, "u1")
    counting_client.set(keys.fallback(), encode(fallback), ex=60)
    counting_client.set(keys.recs("u1"), encode(mine), ex=60)
    for user, personal, trips in (("u1", True, 1), ("u2", False, 2)):
        CountingConnection.writes = 0
        got = reader.get(user)
        assert CountingConnection.writes == trips and got.personal is personal


def test_embedding_cache_reads_a_batch_in_one_round_trip_on_a_plain_redis(counting_client, prefix):
    cache = EmbeddingCache(counting_client, RedisKeys(prefix=prefix), "fake", dim=2)
    cache.put_many({f"h{i}": np.array([i, i], dtype=np.float32) for i in range(10)})
    CountingConnection.writes = 0
    found = cache.get_many([f"h{i}" for i in range(12)])
    assert CountingConnection.writes == 1 and len(found) == 10


def test_the_http_api_serves_from_a_cluster(cluster, stack):
    """``streamrec serve`` with ``STREAMREC_REDIS_CLUSTER=true``: the list, the deleted set's copy
    (another slot) and /healthz's global list (another slot again) all read through the cluster."""
    from starlette.testclient import TestClient

    from streamrec.serve import create_app

    client, node = cluster
    keys = RedisKeys(prefix="c9.")
    mine = RecommendationList(user="u1", items=(("i1", 0.9), ("i2", 0.8), ("i3", 0.7)), model_version="mf-3",
                              generated_at=time.time(), config_digest="abc")  # fmt: skip
    _, fallback = _lists(keys, "u1")
    fresh = RecommendationList("__global__", fallback.items, "pop-1", time.time(), "abc")
    client.set(keys.recs("u1"), encode(mine), ex=60)
    client.set(keys.fallback(), encode(fresh), ex=60)
    client.sadd(keys.deleted(), "i2")
    client.expire(keys.deleted(), 60)
    client.incr(keys.deleted_version())
    client.expire(keys.deleted_version(), 60)
    port = node.connection_pool.connection_kwargs["port"]
    settings = stack.replace(redis_url=f"redis://127.0.0.1:{port}/0", redis_cluster=True, redis_prefix="c9.")
    with TestClient(create_app(settings)) as api:
        body = api.get("/recommend/u1").json()
        assert body["personal"] and [x["item"] for x in body["items"]] == ["i1", "i3"]
        time.sleep(1.5)  # the copy of the deleted set has been refreshed meanwhile
        assert [x["item"] for x in api.get("/recommend/u1").json()["items"]] == ["i1", "i3"]
        health = api.get("/healthz")
        assert health.status_code == 200 and health.json()["model_version"] == "pop-1", health.text
        assert health.json()["deleted_copy_age_s"] is not None
