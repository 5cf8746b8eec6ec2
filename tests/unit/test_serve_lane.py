"""The choice of `streamrec serve`'s read lane (no services: the lanes connect on first use)."""

from __future__ import annotations

import asyncio

from streamrec.serve_lane import RespLane, handshake, open_lane
from streamrec.serve_state import ReadLane
from streamrec.settings import Settings


def test_open_lane_takes_resp_for_plain_urls_and_redis_py_otherwise():
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")
    plain = open_lane(Settings.from_env({"STREAMREC_REDIS_URL": "redis://h:7000/3",
                                         "STREAMREC_REDIS_PASSWORD": "pw"}), client)  # fmt: skip
    assert isinstance(plain, RespLane) and (plain.host, plain.port) == ("h", 7000)
    assert plain.setup == handshake(None, "pw", 3, None)  # the password of the settings, the URL's database
    in_url = open_lane(Settings.from_env({"STREAMREC_REDIS_URL": "redis://app:url-pw@h:7000/0",
                                          "STREAMREC_REDIS_PASSWORD": "pw"}), client)  # fmt: skip
    assert in_url.setup == handshake("app", "url-pw", 0, None)  # the URL's, as redis-py's from_url takes
    for other in ({"STREAMREC_REDIS_URL": "rediss://h:7000/0"}, {"STREAMREC_REDIS_URL": "unix:///tmp/r.sock"},
                  {"STREAMREC_REDIS_URL": "redis://h:7000/0", "STREAMREC_REDIS_CLUSTER": "true"}):
        assert isinstance(open_lane(Settings.from_env(other), client), ReadLane), other  # redis-py's own
    asyncio.run(client.aclose())
