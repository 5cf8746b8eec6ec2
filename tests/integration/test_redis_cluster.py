"""Reading lists and embeddings from Redis: one round trip on a plain Redis, and no CROSSSLOT on a
Redis Cluster.

The cluster is a real one-node Redis Cluster (a Redis server in cluster mode owning all 16384
slots), started by this module: one node is enough, since a cluster rejects a multi-key command
over keys in different slots even when one node owns them all.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from redis.cluster import RedisCluster

from streamrec import localstack
from streamrec.schemas.codec import encode
from streamrec.schemas.events import RecommendationList
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.reader import RecsReader
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
    keys = RedisKeys(prefix=prefix)
    reader = RecsReader(counting_client, keys)
    mine, fallback = _lists(keys, "u1")
    counting_client.set(keys.fallback(), encode(fallback), ex=60)
    counting_client.set(keys.recs("u1"), encode(mine), ex=60)
    for user, personal in (("u1", True), ("u2", False)):
        CountingConnection.writes = 0
        got = reader.get(user)
        assert CountingConnection.writes == 1 and got.personal is personal


def test_embedding_cache_reads_a_batch_in_one_round_trip_on_a_plain_redis(counting_client, prefix):
    cache = EmbeddingCache(counting_client, RedisKeys(prefix=prefix), "fake", dim=2)
    cache.put_many({f"h{i}": np.array([i, i], dtype=np.float32) for i in range(10)})
    CountingConnection.writes = 0
    found = cache.get_many([f"h{i}" for i in range(12)])
    assert CountingConnection.writes == 1 and len(found) == 10
