"""The stream worker against the real broker and Redis, run as a real process (so it can be killed)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections import Counter

from workerkit import (
    GROUPS,
    REFRESH_S,
    TS,
    group_of,
    learned_counts,
    publish,
    read_list,
    start_worker,
    stop,
    taste_events,
    wait_for,
    wait_for_lists,
)

from streamrec.schemas.codec import decode
from streamrec.schemas.events import Click, DeadLetter, Item, RecommendationList
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.peek import read_topic
from streamrec.settings import Settings
from streamrec.streams.refresh import config_digest
from streamrec.streams.worker import MODEL_NAME

def test_lists_follow_tastes_and_skip_seen_items(worker_env, stack, topics, prefix, redis_client):
    events = taste_events(n_users=24, per_user=25)
    worker = start_worker(worker_env)
    try:
        t0 = time.monotonic()
        publish(stack, topics, events)
        users = sorted({e.user for e in events})
        lists = wait_for_lists(redis_client, prefix, users, worker)
        print(f"every list written {time.monotonic() - t0:.1f}s after publishing started")
    finally:
        stop(worker)
    seen = {}
    for e in events:
        seen.setdefault(e.user, set()).add(e.item)
    chance = 1 / GROUPS
    for user, lst in lists.items():
        top = [item for item, _ in lst.items[:10]]
        assert len(top) == 10
        own = sum(group_of(i) == int(user[1:]) % GROUPS for i in top) / len(top)
        assert own >= 3 * chance, f"{user}: only {own:.0%} of the top 10 match their taste"
        assert not set(i for i, _ in lst.items) & seen[user], f"{user}: seen items listed"
        assert lst.model_version and lst.config_digest and lst.generated_at > TS
        assert redis_client.ttl(RedisKeys(prefix=prefix).recs(user)) > 0


def test_blend_weights_setting_reaches_the_lists(worker_env, stack, topics, prefix, redis_client):
    """STREAMREC_BLEND_WEIGHTS with popularity alone: every list is the trending order minus what
    the user saw, whatever their taste, and the lists name a configuration of their own."""
    events = taste_events(n_users=12, per_user=20, seed=3)
    env = {**worker_env, "STREAMREC_BLEND_WEIGHTS": "cooccur=0, mf=0, popularity=1"}
    worker = start_worker(env)
    try:
        publish(stack, topics, events)
        users = sorted({e.user for e in events})
        lists = wait_for_lists(redis_client, prefix, users, worker)
    finally:
        stop(worker)
    counts = Counter(e.item for e in events)
    seen: dict[str, set[str]] = {}
    for e in events:
        seen.setdefault(e.user, set()).add(e.item)
    for user, lst in lists.items():
        top = [item for item, _ in lst.items[:10]]
        listed = [counts[i] for i in top]
        assert listed == sorted(listed, reverse=True), f"{user}: not in popularity order: {listed}"
        rest = [counts[i] for i in counts if i not in seen[user] and i not in top]
        assert min(listed) >= max(rest), f"{user}: a more popular unseen item was left out"
    settings = Settings.from_env(env)
    version = {"model": MODEL_NAME, "k": settings.top_k, "negatives": settings.negatives,
               "seed": settings.seed}  # fmt: skip
    weighted = config_digest({**version, "weights": [["cooccur", 0.0], ["mf", 0.0], ["popularity", 1.0]]})
    assert {lst.config_digest for lst in lists.values()} == {weighted} != {config_digest(version)}


def test_a_deleted_item_disappears_from_every_list(worker_env, stack, topics, prefix, redis_client):
    events = taste_events(n_users=8, per_user=10)
    star = Item(item="i0_star", title="The star", text="loved by group 0", ts=TS)
    fans = [Click(user=f"fan{j}", item=i, ts=TS) for j in range(6) for i in ("i0_1", "i0_star")]
    lover = [Click(user="u0x", item="i0_1", ts=TS)]  # co-clicked i0_1: i0_star should be top
    worker = start_worker(worker_env)
    try:
        publish(stack, topics, [star, *events, *fans, *lover])
        wait_for(lambda: (lst := read_list(redis_client, prefix, "u0x"))
                 and "i0_star" in [i for i, _ in lst.items], 60, "i0_star in u0x's list", worker)
        deleted_at = time.time()
        publish(stack, topics, [Item(item="i0_star", ts=TS + 1, deleted=True),
                                Click(user="u0x", item="i0_2", ts=TS + 1)])  # fmt: skip

        def gone():
            lst = read_list(redis_client, prefix, "u0x")
            return lst.generated_at > deleted_at and "i0_star" not in [i for i, _ in lst.items]

        wait_for(gone, 2 * REFRESH_S + 10, "i0_star gone from u0x's refreshed list", worker)
        time.sleep(2 * REFRESH_S + 0.5)  # a full refresh of every list touched since
    finally:
        stop(worker)
    raw_fallback = redis_client.get(RedisKeys(prefix=prefix).fallback())
    for key in redis_client.scan_iter(f"{prefix}rec:*"):
        lst = decode(redis_client.get(key), RecommendationList)
        if lst.generated_at > deleted_at:
            assert "i0_star" not in [i for i, _ in lst.items], key
    assert "i0_star" not in [i for i, _ in decode(raw_fallback, RecommendationList).items]


def test_poisoned_messages_are_dead_lettered_and_the_stream_goes_on(
    worker_env, stack, topics, prefix, redis_client
):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    producer.produce(topics.clicks, key=b"u1", value=b"\x93not-a-record")
    producer.produce(topics.clicks, key=b"u1", value=json.dumps({"user": "u1"}).encode())
    producer.flush(10)
    publish(stack, topics, [Click(user="u1", item="i0_1", ts=TS), Click(user="u2", item="i0_1", ts=TS),
                            Click(user="u2", item="i0_2", ts=TS)])  # fmt: skip
    worker = start_worker(worker_env, "--burst")
    out = worker.communicate(timeout=120)
    assert worker.returncode == 0, out
    letters = [decode(v) for _, v in read_topic(stack.kafka_bootstrap, topics.deadletter)]
    assert len(letters) == 2 and all(isinstance(d, DeadLetter) for d in letters)
    assert {d.value for d in letters} == {b"\x93not-a-record", json.dumps({"user": "u1"}).encode()}
    assert all(d.topic == topics.clicks and d.key == b"u1" and d.reason for d in letters)
    assert learned_counts(worker_env) == {"u1": 1, "u2": 2}
    assert [i for i, _ in read_list(redis_client, prefix, "u1").items][:1] == ["i0_2"]


def test_kill_9_mid_stream_loses_and_double_counts_nothing(worker_env, stack, topics, prefix, redis_client):
    events = taste_events(n_users=30, per_user=200, seed=3)  # 6000 events
    expected = Counter(e.user for e in events)
    first, rest = events[:3000], events[3000:]
    publish(stack, topics, first)
    worker = start_worker(worker_env)
    try:
        # let it learn and checkpoint at least once, keep publishing, then kill it without warning
        wait_for(lambda: (c := learned_counts(worker_env)) and sum(c.values()) > 0, 60,
                 "a first checkpoint", worker)  # fmt: skip
        publish(stack, topics, rest[:1500])
        time.sleep(0.3)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    before = sum((learned_counts(worker_env) or {}).values())
    assert before < len(events), "the worker should have been killed mid-stream"
    publish(stack, topics, rest[1500:])
    restarted = start_worker(worker_env)
    try:
        wait_for(lambda: learned_counts(worker_env) == dict(expected), 90,
                 "the restarted worker to have learned every event exactly once", restarted)  # fmt: skip
        expected.update(["u0", "u29"])
        # lists resume: new activity is served within two refresh intervals
        t_restart = time.time()
        publish(stack, topics, [Click(user=u, item="i0_0", ts=TS) for u in ("u0", "u29")])
        wait_for(lambda: all((lst := read_list(redis_client, prefix, u)) and lst.generated_at > t_restart
                             for u in ("u0", "u29")), 2 * REFRESH_S + 5, "fresh lists", restarted)  # fmt: skip
    finally:
        stop(restarted)
    assert learned_counts(worker_env) == dict(expected)  # the graceful stop checkpointed the rest
    print(f"checkpoint had {before} of {len(events)} events when killed; all learned after restart")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_outage_does_not_stop_learning(worker_env, stack, topics, prefix, tmp_path):
    import redis

    port = _free_port()
    env = {**worker_env, "STREAMREC_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    events = taste_events(n_users=6, per_user=20)
    worker = start_worker(env)
    server = None
    try:
        publish(stack, topics, events)
        wait_for(lambda: (c := learned_counts(env)) and sum(c.values()) == len(events), 60,
                 "every event learned while Redis is down", worker)  # fmt: skip
        assert worker.poll() is None, "the worker must survive a Redis outage"
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                                  stdout=subprocess.DEVNULL)  # fmt: skip
        client = redis.Redis(port=port)
        wait_for(lambda: all(client.exists(RedisKeys(prefix=prefix).recs(f"u{u}")) for u in range(6)),
                 45, "lists written once Redis is back", worker)  # fmt: skip
    finally:
        log = stop(worker)
        if server:
            server.terminate()
            server.wait()
    assert "Redis unavailable" in log


def test_new_or_changed_items_are_queued_for_enrichment_once(worker_env, stack, topics):
    from streamrec.schemas.events import EnrichRequest

    heat = Item(item="i1", title="Heat", text="a heist thriller", ts=TS)
    publish(stack, topics, [heat, Item(item="i2", title="Ronin", text="car chases", ts=TS)])
    first = start_worker(worker_env, "--burst")
    assert first.wait(120) == 0, stop(first)
    # unchanged i1 again (nothing to do), i2 with new text (re-enrich), a new item i3
    publish(stack, topics, [heat, Item(item="i2", title="Ronin", text="car chases in Paris", ts=TS),
                            Item(item="i3", title="Alien", text="space horror", ts=TS)])  # fmt: skip
    second = start_worker(worker_env, "--burst")  # restarts from the first one's checkpoint
    assert second.wait(120) == 0, stop(second)
    requests = [decode(v, EnrichRequest) for _, v in read_topic(stack.kafka_bootstrap, topics.enrich)]
    assert sorted((r.item, r.text) for r in requests) == [
        ("i1", "a heist thriller"), ("i2", "car chases"), ("i2", "car chases in Paris"),
        ("i3", "space horror"),
    ]
    assert all(r.content_hash for r in requests)


def test_debounced_early_refresh_beats_the_minute_pass(worker_env, stack, topics, prefix, redis_client):
    env = {**worker_env, "STREAMREC_REFRESH_INTERVAL_S": "60", "STREAMREC_EARLY_REFRESH_S": "1"}
    worker = start_worker(env)
    try:
        publish(stack, topics, taste_events(n_users=4, per_user=10))
        wait_for(lambda: all(read_list(redis_client, prefix, f"u{u}") for u in range(4)), 30,
                 "the early refresh of every user's list", worker)  # fmt: skip
        sent = time.time()
        publish(stack, topics, [Click(user="u1", item="i1_39", ts=TS)])
        wait_for(lambda: read_list(redis_client, prefix, "u1").generated_at >= sent, 15,
                 "u1's list refreshed seconds (not a minute) after the click", worker)  # fmt: skip
        print(f"u1's list refreshed {time.time() - sent:.1f}s after the click")
    finally:
        stop(worker)


def test_metrics_and_health_endpoint(worker_env, stack, topics):
    import urllib.request

    port = _free_port()
    worker = start_worker({**worker_env, "STREAMREC_METRICS_PORT": str(port)})
    events = taste_events(n_users=5, per_user=8)
    try:
        publish(stack, topics, events)

        def scrape():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                return ""

        text = wait_for(lambda: (t := scrape()) and f'streamrec_learned_total{{worker="streams"}} {len(events)}.0' in t
                        and t, 30, "the learned counter to reach every event", worker)  # fmt: skip
        assert "streamrec_refresh_duration_seconds_count" in text
        assert 'streamrec_consumer_lag{worker="streams"}' in text
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert health.status == 200
    finally:
        stop(worker)


def test_live_quality_is_exported_scored_against_the_lists_written(worker_env, stack, topics, prefix,
                                                                   redis_client):  # fmt: skip
    """The worker scores each event of a user with history against the list it wrote for them:
    the hits it reports are the events whose item was in the top 10 read from Redis just before."""
    import re
    import urllib.request

    port = _free_port()
    worker = start_worker({**worker_env, "STREAMREC_METRICS_PORT": str(port)})
    first = taste_events(n_users=6, per_user=10, seed=4)
    users = sorted({e.user for e in first})
    try:
        publish(stack, topics, first)
        lists = wait_for_lists(redis_client, prefix, users, worker)
        # the second wave: for each user, one item from their list's top 10 and one from outside it
        top = {u: [i for i, _ in lists[u].items[:10]] for u in users}
        second = [Click(user=u, item=i, ts=TS + 100) for u in users for i in (top[u][0], "never-listed")]
        publish(stack, topics, second)

        def scrape():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                return ""

        pattern = r'streamrec_quality_evaluated\{digest="(\w+)",window="total",worker="streams"\} (\S+)'
        learned = f'streamrec_learned_total{{worker="streams"}} {len(first) + len(second)}.0'
        # (events learned before this worker was assigned its partitions are not its to score)
        wait_for(lambda: learned in (t := scrape()) and sum(float(v) for _, v in re.findall(pattern, t)) >= len(second),
                 30, "the second wave scored", worker)  # fmt: skip
        text = scrape()
        stats = wait_for(lambda: (h := redis_client.hgetall(RedisKeys(prefix=prefix).stats(worker_env["STREAMREC_GROUP_ID"])))
                         and b"quality_hr@10" in h and h, 30, "the quality fields in the stats hash", worker)  # fmt: skip
    finally:
        stop(worker)
    # the first wave was scored against the global list (no personal list yet): at most a few hits;
    # the second against the users' own lists: exactly one hit per user
    hits = re.findall(r'streamrec_quality_hr10\{digest="(\w+)",window="total",worker="streams"\} (\S+)', text)
    evaluated = dict(re.findall(pattern, text))
    total_hits = sum(float(hr) * float(evaluated[d]) for d, hr in hits)
    assert len(users) <= round(total_hits) <= len(users) + len(first)
    assert 'streamrec_blend_weight{signal="cooccur",worker="streams"}' in text
    assert json.loads(stats[b"quality"])["total"] and float(stats[b"quality_coverage"]) <= 1.0
