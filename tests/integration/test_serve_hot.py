"""`GET /recommend/{user}` answered before routing (`streamrec.serve_asgi.Api`) against the real
Redis: the same status, body and headers as the Starlette route gives for the same request
(personal list, fallback minus seen, deleted and excluded items, paging, category filter, a bad
parameter), HEAD and other paths still routed, and every request counted in the metrics."""

from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient

from streamrec.schemas.codec import encode
from streamrec.schemas.events import Item, RecommendationList, SeenItems
from streamrec.schemas.keys import RedisKeys
from streamrec.serve import create_app

TS = 1_700_000_000.0


@pytest.fixture
def lists(redis_client, prefix):
    keys = RedisKeys(prefix=prefix)
    now = time.time()
    mine = RecommendationList("u1", tuple((f"i{j}", 10.0 - j) for j in range(10)), "m.1", now, "d")
    pop = RecommendationList("__global__", tuple((f"i{j}", 5.0 - j / 10) for j in range(20)), "m.1", now, "d")
    redis_client.set(keys.recs("u1"), encode(mine), ex=60)
    redis_client.set(keys.fallback(), encode(pop), ex=60)
    redis_client.set(keys.seen("u2"), encode(SeenItems("u2", ("i0", "i2"), TS)), ex=60)
    for j in range(20):
        attrs = {"category": "film" if j % 2 else "book"}
        redis_client.set(keys.item(f"i{j}"), encode(Item(f"i{j}", f"T{j}", attributes=attrs, ts=TS)), ex=60)
    redis_client.sadd(keys.deleted(), "i3")
    redis_client.expire(keys.deleted(), 60)
    redis_client.incr(keys.deleted_version())
    redis_client.expire(keys.deleted_version(), 60)
    return keys


def test_hot_path_answers_as_the_route_does(stack, prefix, lists):
    app = create_app(stack.replace(topic_prefix=prefix, redis_prefix=prefix))
    hot = app.hot_recommend
    paths = ["/recommend/u1", "/recommend/u1?n=3&offset=2", "/recommend/u1?exclude=i1,i4",
             "/recommend/u1?category=film", "/recommend/u2?n=5", "/recommend/nobody?n=4",
             "/recommend/u1?n=0", "/recommend/u1?limit=5"]  # fmt: skip
    with TestClient(app) as client:
        time.sleep(0.2)  # the deleted set's copy loaded (else each request asks Redis: same answers)
        answers = {}
        for routed in (False, True):
            app.hot_recommend = None if routed else hot
            for path in paths:
                r = client.get(path)
                answers.setdefault(path, []).append((r.status_code, r.content, r.headers["content-type"],
                                                     r.headers["content-length"]))  # fmt: skip
        app.hot_recommend = hot
        for path, (fast, routed) in answers.items():
            assert fast == routed, path
        body = client.get("/recommend/u1").json()
        assert body["personal"] and [e["item"] for e in body["items"]] == ["i0", "i1", "i2", "i4", "i5", "i6",
                                                                           "i7", "i8", "i9"]  # fmt: skip
        fallback = client.get("/recommend/u2?n=5").json()
        assert not fallback["personal"] and [e["item"] for e in fallback["items"]] == ["i1", "i4", "i5", "i6", "i7"]
        assert [e["item"] for e in client.get("/recommend/u1?category=film").json()["items"]] == ["i1", "i5",
                                                                                                 "i7", "i9"]  # fmt: skip
        bad = client.get("/recommend/u1?n=0")
        assert bad.status_code == 400 and bad.json()["field"] == "n"
        head = client.head("/recommend/u1")  # routed: Starlette answers HEAD for a GET route
        assert head.status_code == 200 and head.content == b""
        assert client.get("/recommend/u1/more").status_code == 404
        assert client.get("/recommend/").status_code == 404
        metrics = client.get("/metrics").text
    count = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                if line.startswith('streamrec_serve_requests_total{route="recommend"'))  # fmt: skip
    assert count == 2 * len(paths) + 4 + 1  # both ways, the four checks above, the HEAD
