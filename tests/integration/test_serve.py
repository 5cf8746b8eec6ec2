"""`streamrec serve` against the real Redis and Kafka, with a real stream worker writing what it
reads: events in over HTTP, lists, filters, fallback, similar items, deletes."""

from __future__ import annotations

import json
import time

import msgpack
import pytest
from starlette.testclient import TestClient
from workerkit import TS, group_of, start_worker, stop, taste_events, wait_for, wait_for_lists

from streamrec.schemas.codec import encode
from streamrec.schemas.events import Click, Item
from streamrec.schemas.keys import RedisKeys
from streamrec.serve import create_app


@pytest.fixture
def api(stack, topics, prefix):
    settings = stack.replace(topic_prefix=prefix, redis_prefix=prefix)
    with TestClient(create_app(settings)) as client:
        yield client


def post(api, record) -> dict:
    r = api.post("/events", content=json.dumps(record), headers={"content-type": "application/json"})
    assert r.status_code == 202, r.text
    return r.json()


def test_events_are_validated_and_published(api, topics):
    ok = post(api, {"type": "click", "v": 1, "user": "u1", "item": "i1", "ts": TS})
    assert ok["accepted"] == "click" and ok["topic"] == topics.clicks and ok["offset"] >= 0
    # msgpack bodies too, sniffed by the first byte
    r = api.post("/events", content=encode(Click("u1", "i2", TS)))
    assert r.status_code == 202, r.text
    for body, field in [
        ({"type": "click", "v": 1, "user": "u1", "ts": TS}, "item"),
        ({"type": "click", "v": 1, "user": "u1", "item": "i1", "ts": TS * 1000}, "ts"),
        ({"type": "recs", "v": 1}, "type"),  # not an input record
        ({"type": "rating", "v": 1, "user": "u1", "item": "i1", "rating": 9, "ts": TS}, "rating"),
    ]:
        r = api.post("/events", content=json.dumps(body))
        assert r.status_code == 400 and r.json()["field"] == field, r.text
    r = api.post("/events", content=b"{not json")
    assert r.status_code == 400 and r.json()["field"] == "<payload>" and "JSON" in r.json()["error"]
    r = api.post("/events", content=b"{" + b" " * (5 * 1024 * 1024) + b"}")
    assert r.status_code == 413 and r.json()["field"] == "<payload>"


def test_recommend_similar_filters_fallback_and_deletes(api, worker_env, redis_client, prefix):
    keys = RedisKeys(prefix=prefix)
    events = taste_events(n_users=12, per_user=20, seed=11)
    items = sorted({e.item for e in events})
    for i in items:  # the catalogue over HTTP: category = taste group
        post(api, {"type": "item", "v": 1, "item": i, "title": f"Film {i}",
                   "attributes": {"category": f"g{group_of(i)}"}, "ts": TS})  # fmt: skip
    for e in events:
        post(api, {"type": "click", "v": 1, "user": e.user, "item": e.item, "ts": e.ts})
    seen: dict[str, set[str]] = {}
    for e in events:
        seen.setdefault(e.user, set()).add(e.item)
    users = sorted(seen)
    worker = start_worker(worker_env, "--burst")
    try:
        wait_for_lists(redis_client, prefix, users, worker)
        wait_for(lambda: worker.poll() is not None, 60, "the burst worker to finish")
    finally:
        stop(worker)

    user = users[0]
    body = api.get(f"/recommend/{user}", params={"n": 8}).json()
    assert body["personal"] is True and len(body["items"]) == 8
    top = [x["item"] for x in body["items"]]
    assert not set(top) & seen[user]
    # paging and exclude
    page = api.get(f"/recommend/{user}", params={"n": 3, "offset": 2}).json()
    assert [x["item"] for x in page["items"]] == top[2:5]
    excl = api.get(f"/recommend/{user}", params=[("n", "8"), ("exclude", top[0]), ("exclude", top[1])]).json()
    assert [x["item"] for x in excl["items"]][:6] == top[2:8]
    # category filter: every item of the asked category, and only those
    other = f"g{(int(user[1:]) + 1) % 4}"
    cat = api.get(f"/recommend/{user}", params={"n": 5, "category": other}).json()
    assert cat["items"] and all(f"g{group_of(x['item'])}" == other for x in cat["items"])
    assert api.get(f"/recommend/{user}", params={"nn": 5}).status_code == 400

    # a delete reaches lists written before it: the worker rewrites no user list (no user event),
    # yet the API leaves the item out
    victim = top[0]
    post(api, {"type": "item", "v": 1, "item": victim, "deleted": True, "ts": TS + 1})
    worker = start_worker(worker_env, "--burst")
    try:
        wait_for(lambda: redis_client.sismember(keys.deleted(), victim), 60, "the delete in Redis", worker)
        wait_for(lambda: worker.poll() is not None, 60, "the burst worker to finish")
    finally:
        stop(worker)
    stored = msgpack.unpackb(redis_client.get(keys.recs(user)))
    # the worker rewrote the list of every holder of the item (deletes reach every list) ...
    assert victim not in [i for i, _ in stored["items"]]
    # ... and a list written before the delete (another worker's, one still to be rewritten) is
    # filtered by the API all the same
    stale = {**stored, "items": [[victim, 9.0], *stored["items"]]}
    redis_client.set(keys.recs(user), msgpack.packb(stale), ex=3600)
    assert int(redis_client.get(keys.deleted_version())) >= 1 and redis_client.ttl(keys.deleted_version()) > 0
    # the API's copy of the deleted set follows within STREAMREC_SERVE_DELETED_REFRESH_S (1 s)
    time.sleep(1.5)
    after = [x["item"] for x in api.get(f"/recommend/{user}", params={"n": 8}).json()["items"]]
    assert victim not in after and after == [i for i, _ in stored["items"]][:8]

    # no personal list (expired): the global list minus what the user saw
    redis_client.delete(keys.recs(user))
    fb = api.get(f"/recommend/{user}", params={"n": 20}).json()
    assert fb["personal"] is False and fb["items"]
    got = {x["item"] for x in fb["items"]}
    assert not got & seen[user] and victim not in got
    stranger = api.get("/recommend/nobody", params={"n": 5}).json()
    assert stranger["personal"] is False and len(stranger["items"]) == 5

    # similar items: never the item itself nor a deleted one; 404 for unknown and deleted items
    probe = top[1]
    sim = api.get(f"/similar/{probe}", params={"n": 5}).json()
    names = [x["item"] for x in sim["items"]]
    assert names and probe not in names and victim not in names
    assert sum(group_of(i) == group_of(probe) for i in names) >= 4
    assert api.get("/similar/unknown-item").status_code == 404
    assert api.get(f"/similar/{victim}").status_code == 404

    # health: Redis answers and the worker's global list is fresh; a stale one is a 503 naming it
    assert api.get("/livez").json() == {"status": "ok"}
    health = api.get("/healthz")
    fallback = msgpack.unpackb(redis_client.get(keys.fallback()))
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    assert health.json()["model_version"] == fallback["model_version"] and health.json()["age_s"] >= 0
    redis_client.set(keys.fallback(), msgpack.packb({**fallback, "generated_at": time.time() - 3600}), ex=60)
    stale_health = api.get("/healthz")
    assert stale_health.status_code == 503 and stale_health.json()["status"].startswith("stale"), stale_health.text
    redis_client.delete(keys.fallback())
    assert api.get("/healthz").json()["status"].startswith("no global list")
    assert api.get("/livez").status_code == 200
    # metrics, OpenAPI
    metrics = api.get("/metrics").text
    assert 'streamrec_serve_requests_total{route="recommend",status="200"}' in metrics
    assert "streamrec_serve_fallbacks_total 2.0" in metrics
    assert api.get("/openapi.json").json()["openapi"] == "3.1.0"
