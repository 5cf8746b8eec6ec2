"""`streamrec serve`'s RESP lane against the real Redis: GETs on one held connection with the
configured user, password, database and name; requests in flight together answered in order (a
cancelled one leaves nothing behind); a killed connection and a Redis that stops answering end in
an error and a fresh connection, not a hang or a reply given to the wrong request."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from streamrec.serve_lane import RespLane
from streamrec.settings import Settings


def _address(settings: Settings) -> tuple[str, int]:
    from redis.connection import parse_url

    url = parse_url(settings.redis_url)
    return url.get("host", "127.0.0.1"), int(url.get("port", 6379))


def _held(redis_client, name: str) -> list[dict]:
    return [c for c in redis_client.client_list() if c["name"] == name]


def test_lane_reads_in_order_and_survives_cancels_and_killed_connections(stack, redis_client, prefix):
    host, port = _address(stack)
    name = f"{prefix}lane".replace(".", "_")
    for i in range(50):
        redis_client.set(f"{prefix}k{i}", f"v{i}".encode(), ex=60)

    async def scenario():
        lane = RespLane(host, port, client_name=name)
        try:
            assert await lane.get(f"{prefix}k1") == b"v1"
            assert await lane.get(f"{prefix}missing") is None
            # fifty requests in flight on the one connection, each answered with its own value
            got = await asyncio.gather(*(lane.get(f"{prefix}k{i}") for i in range(50)))
            assert got == [f"v{i}".encode() for i in range(50)]
            assert len(_held(redis_client, name)) == 1 and lane.connects == 1
            # a request cancelled while in flight: its reply is dropped, the next one gets its own
            task = asyncio.create_task(lane.get(f"{prefix}k2"))
            await asyncio.sleep(0)
            task.cancel()
            assert await lane.get(f"{prefix}k3") == b"v3"
            # a wrong-type key is an error reply, raised as redis-py raises it; the lane goes on
            redis_client.sadd(f"{prefix}set", "x")
            redis_client.expire(f"{prefix}set", 60)
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await lane.get(f"{prefix}set")
            assert await lane.get(f"{prefix}k4") == b"v4"
            # the connection killed from outside: an error, then a new connection
            (held,) = _held(redis_client, name)
            redis_client.client_kill_filter(_id=held["id"])
            await asyncio.sleep(0.05)
            try:
                assert await lane.get(f"{prefix}k5") == b"v5"  # the loss was seen before the send
            except ConnectionError:
                assert await lane.get(f"{prefix}k5") == b"v5"  # ... or by this request
            assert lane.connects == 2
        finally:
            await lane.close()

    asyncio.run(scenario())


def test_lane_times_out_when_redis_stops_answering_then_reconnects(stack, redis_client, prefix):
    host, port = _address(stack)
    redis_client.set(f"{prefix}k", b"v", ex=60)

    async def scenario():
        lane = RespLane(host, port, timeout_s=0.3)
        try:
            assert await lane.get(f"{prefix}k") == b"v"
            redis_client.client_pause(1500)  # Redis holds every client's commands for 1.5 s
            t0 = time.monotonic()
            with pytest.raises(TimeoutError, match="did not answer within 0.3 s"):
                await lane.get(f"{prefix}k")
            assert time.monotonic() - t0 < 1.2  # the lane's timeout ended the wait, not the pause
            await asyncio.sleep(1.5)
            assert await lane.get(f"{prefix}k") == b"v"
            assert lane.connects == 2
        finally:
            redis_client.client_unpause()
            await lane.close()

    asyncio.run(scenario())


def test_lane_authenticates_selects_the_database_and_names_a_refusal(stack, redis_client, prefix):
    host, port = _address(stack)
    user, password = f"{prefix}user".replace(".", "_"), "lane-secret-1"
    redis_client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    db1 = redis_client.connection_pool.connection_kwargs.get("db", 0) + 1
    import redis

    other = redis.Redis(host=host, port=port, db=db1)
    other.set(f"{prefix}k", b"in-db1", ex=60)

    async def scenario():
        lane = RespLane(host, port, username=user, password=password, db=db1)
        wrong = RespLane(host, port, username=user, password="not-it")
        try:
            assert await lane.get(f"{prefix}k") == b"in-db1"
            with pytest.raises(ConnectionError, match="refused the connection set-up: .*WRONGPASS"):
                await wrong.get(f"{prefix}k")
        finally:
            await lane.close()
            await wrong.close()

    try:
        asyncio.run(scenario())
    finally:
        redis_client.acl_deluser(user)
        other.delete(f"{prefix}k")
        other.close()

