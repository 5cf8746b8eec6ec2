"""The foundation against the real broker and Redis: topics, publisher, reader, CLI, local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from streamrec import localstack
from streamrec.schemas.admin import admin_client, create_topics
from streamrec.schemas.codec import decode, encode
from streamrec.schemas.events import (
    Click,
    DeadLetter,
    EnrichRequest,
    Item,
    ItemEmbedding,
    ItemTags,
    Rating,
    RecommendationList,
)
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.peek import read_topic
from streamrec.schemas.publisher import DeliveryError, Publisher, route
from streamrec.schemas.reader import RecsReader
from streamrec.schemas.topics import Topics

TS = 1_700_000_000.0


def sample_records() -> list:
    item = Item(item="i1", title="Heat", text="a heist thriller", attributes={"genre": "crime"}, ts=TS)
    return [
        Click(user="u1", item="i1", ts=TS),
        Rating(user="u1", item="i1", rating=4.5, ts=TS),
        item,
        EnrichRequest(item="i1", content_hash=item.content_hash(), title="Heat",
                      text="a heist thriller", attributes={"genre": "crime"}, ts=TS),
        ItemEmbedding(item="i1", model="minilm", content_hash=item.content_hash(),
                      vector=(0.5, -0.25, 0.125), ts=TS),
        ItemTags(item="i1", model="minilm", content_hash=item.content_hash(),
                 tags=(("heist", 0.9), ("crime", 0.7)), ts=TS),
        DeadLetter(topic="events.clicks", key=b"u1", value=b"\xff\x00junk", reason="payload: bad", ts=TS),
    ]  # fmt: skip


def test_every_topic_round_trips_a_record(topics, stack):
    records = sample_records()
    with Publisher(stack.kafka_bootstrap, topics) as pub:
        for record in records:
            pub.publish(record)
    assert {route(r, topics)[0] for r in records} == {s.name for s in topics.specs()}
    for record in records:
        topic, key = route(record, topics)
        got = list(read_topic(stack.kafka_bootstrap, topic))
        assert got == [(key, encode(record))], topic
        assert decode(got[0][1]) == record


def test_creating_topics_twice_is_harmless(stack, prefix):
    admin = admin_client(stack.kafka_bootstrap)
    t = Topics(prefix=prefix)
    first = create_topics(admin, t, partitions=2, replication=1)
    second = create_topics(admin, t, partitions=2, replication=1)
    assert all(r.created for r in first)
    assert not any(r.created for r in second)
    assert all(r.partitions == 2 for r in second)
    compacted = {r.spec.name for r in second if r.spec.compacted}
    assert compacted == {t.items, t.embeddings, t.tags}


def test_user_events_keep_their_order_on_one_partition(topics, stack):
    with Publisher(stack.kafka_bootstrap, topics) as pub:
        for i in range(50):
            pub.publish(Click(user="same-user", item=f"i{i}", ts=TS + i))
    got = [decode(v) for _, v in read_topic(stack.kafka_bootstrap, topics.clicks)]
    assert [c.item for c in got] == [f"i{i}" for i in range(50)]


def test_delivery_failures_reach_the_caller(stack, prefix):
    # no such topic and the broker does not auto-create: every record must come back as a failure
    pub = Publisher(stack.kafka_bootstrap, Topics(prefix=prefix + "missing."),
                    config={"message.timeout.ms": 2000})  # fmt: skip
    pub.publish(Click(user="u1", item="i1", ts=TS))
    pub.publish(Click(user="u2", item="i1", ts=TS))
    with pytest.raises(DeliveryError) as info:
        pub.flush(timeout_s=10)
    assert len(info.value.failures) + info.value.pending == 2
    assert "not delivered" in str(info.value)


def test_reader_serves_personal_then_fallback_lists(redis_client, prefix):
    keys = RedisKeys(prefix=prefix)
    reader = RecsReader(redis_client, keys)
    assert reader.get("u1").list is None
    fallback = RecommendationList(user="__global__", items=(("i9", 3.0), ("i8", 2.0)),
                                  model_version="pop-1", generated_at=TS, config_digest="abc")  # fmt: skip
    redis_client.set(keys.fallback(), encode(fallback), ex=60)
    got = reader.get("u1")
    assert not got.personal and got.items == [("i9", 3.0), ("i8", 2.0)]
    mine = RecommendationList(user="u1", items=(("i1", 0.9),), model_version="mf-3",
                              generated_at=TS, config_digest="abc")  # fmt: skip
    redis_client.set(keys.recs("u1"), encode(mine), ex=60)
    got = reader.get("u1")
    assert got.personal and got.list == mine


def _cli(args, prefix, stdin=None, settings=None):
    env = {**os.environ, "STREAMREC_TOPIC_PREFIX": prefix, "STREAMREC_REDIS_PREFIX": prefix}
    return subprocess.run([sys.executable, "-m", "streamrec", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip


def test_publish_cli_reports_bad_lines_and_delivers_the_good_ones(topics, stack, prefix):
    lines = [
        json.dumps({"type": "click", "user": "u1", "item": "i1", "ts": TS}),
        "{not json",
        json.dumps({"type": "rating", "user": "u1", "item": "i2", "rating": 11, "ts": TS}),
        json.dumps({"type": "rating", "user": "u2", "item": "i2", "rating": 4}),  # ts: now
        json.dumps({"type": "click", "user": "", "item": "i3", "ts": TS}),
        json.dumps({"type": "item", "item": "i2", "title": "Ronin", "text": "car chases"}),
    ]
    result = _cli(["publish", "--quiet"], prefix, stdin="\n".join(lines) + "\n")
    assert result.returncode == 1, result.stderr  # some lines were rejected: say so in the exit code
    assert "published 3, rejected 3" in result.stdout
    assert "rejected line 2: not valid JSON" in result.stderr
    assert "rejected line 3: rating:" in result.stderr
    assert "rejected line 5: user:" in result.stderr
    clicks = [decode(v) for _, v in read_topic(stack.kafka_bootstrap, topics.clicks)]
    ratings = [decode(v) for _, v in read_topic(stack.kafka_bootstrap, topics.ratings)]
    items = [decode(v) for _, v in read_topic(stack.kafka_bootstrap, topics.items)]
    assert [c.user for c in clicks] == ["u1"]
    assert [(r.user, r.rating) for r in ratings] == [("u2", 4.0)]
    assert abs(ratings[0].ts - time.time()) < 120
    assert [i.title for i in items] == ["Ronin"]


def test_publish_cli_reads_csv_files(topics, stack, prefix, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating,ts\nu1,i1,3.5,1700000000\nu1,i2,x,1700000001\n")
    result = _cli(["publish", "--quiet", "--type", "rating", str(path)], prefix)
    assert "published 1, rejected 1" in result.stdout, result.stderr
    assert "rejected line 3: bad cell" in result.stderr


def test_recs_cli_prints_a_list(redis_client, stack, prefix):
    keys = RedisKeys(prefix=prefix)
    lst = RecommendationList(user="u7", items=(("i3", 0.75), ("i4", 0.5)), model_version="mf-1",
                             generated_at=time.time(), config_digest="d")  # fmt: skip
    redis_client.set(keys.recs("u7"), encode(lst), ex=60)
    result = _cli(["recs", "u7", "--json"], prefix)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["personal"] and out["items"] == [["i3", 0.75], ["i4", 0.5]]
    assert _cli(["recs", "nobody"], prefix).returncode == 1


def test_up_is_idempotent_and_status_reports_versions(stack):
    first = localstack.status(stack)
    again = localstack.up(stack)
    assert [s.running for s in again] == [True, True]
    assert [(s.pid, s.version) for s in again] == [(s.pid, s.version) for s in first]
    kafka = next(s for s in again if s.name == "kafka")
    redis = next(s for s in again if s.name == "redis")
    print(f"Kafka {kafka.version}, Redis {redis.version}")
    assert redis.version[0].isdigit()
    if kafka.managed:
        assert kafka.version.startswith("4.")
