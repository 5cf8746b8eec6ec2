"""`streamrec serve`'s read lane and deleted-set copy against the real Redis: one GET on a held
connection that survives a dropped connection; a copy that reloads when the worker bumps
``deleted:version``, and that requests stop trusting when it cannot be refreshed."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from streamrec.schemas.keys import RedisKeys
from streamrec.serve_state import DeletedMirror, ReadLane


def test_lane_reads_and_recovers_from_a_killed_connection(stack, redis_client, prefix):
    key = f"{prefix}lane"
    redis_client.set(key, b"v1", ex=60)

    async def scenario():
        name = f"{prefix}lane".replace(":", "_").replace(".", "_")
        client = aioredis.Redis.from_url(stack.redis_url, client_name=name)
        lane = ReadLane(client)
        try:
            assert await lane.get(key) == b"v1"
            assert await lane.get(f"{prefix}missing") is None
            (held,) = [c["id"] for c in redis_client.client_list() if c["name"] == name]
            redis_client.client_kill_filter(_id=held)  # the lane's connection, from outside
            with pytest.raises(Exception):
                await lane.get(key)  # the held connection is gone: an error, and it is dropped
            redis_client.set(key, b"v2", ex=60)
            assert await lane.get(key) == b"v2"  # a new connection from the pool
        finally:
            await lane.close()
            await client.aclose()

    asyncio.run(scenario())


def test_deleted_copy_follows_the_version_and_falls_back_to_redis(stack, redis_client, prefix):
    keys = RedisKeys(prefix=prefix)
    redis_client.sadd(keys.deleted(), "i1")
    redis_client.expire(keys.deleted(), 60)
    redis_client.incr(keys.deleted_version())
    redis_client.expire(keys.deleted_version(), 60)

    async def scenario():
        client = aioredis.Redis.from_url(stack.redis_url)
        mirror = DeletedMirror(keys, interval_s=1.0, full_every=1000)
        try:
            await mirror.refresh(client, now=100.0)
            assert mirror.items == {"i1"}
            assert await mirror.flags(client, ["i1", "i2"], now=100.5) == [True, False]
            # a write without a version bump is not seen by the copy (the worker always bumps) ...
            redis_client.sadd(keys.deleted(), "i2")
            await mirror.refresh(client, now=101.0)
            assert mirror.items == {"i1"}
            # ... a bump reloads it
            redis_client.incr(keys.deleted_version())
            await mirror.refresh(client, now=102.0)
            assert mirror.items == {"i1", "i2"}
            # a copy not refreshed for a while is not trusted: requests ask Redis
            redis_client.srem(keys.deleted(), "i1")
            assert await mirror.flags(client, ["i1", "i2"], now=102.5) == [True, True]  # the copy
            assert await mirror.flags(client, ["i1", "i2"], now=200.0) == [False, True]  # Redis
        finally:
            await client.aclose()

    asyncio.run(scenario())
