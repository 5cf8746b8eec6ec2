"""The embedding and tag workers against the real broker and Redis, run as real processes.

Each worker process loads the model (a few seconds), so each module-scoped fixture runs a worker
once in ``--burst`` mode over a mixed input, and the tests check different properties of that run.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from confluent_kafka import Producer

from streamrec.schemas.admin import admin_client, create_topics
from streamrec.schemas.codec import decode, encode
from streamrec.schemas.events import Click, DeadLetter, EnrichRequest, Item, ItemEmbedding, ItemTags
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.peek import read_topic
from streamrec.schemas.publisher import Publisher
from streamrec.schemas.topics import Topics
from streamrec.workers.embed import pack_vector

MODEL = "all-MiniLM-L6-v2"
TS = 1_700_000_000.0
PLOTS = [
    ("Star Wars", "A farm boy joins rebels to destroy the empire's battle station."),
    ("Dune", "A noble family fights for control of a desert planet and its spice."),
    ("Alien", "The crew of a space freighter is hunted by a deadly creature."),
    ("Heat", "A master thief and a relentless detective clash in Los Angeles."),
    ("Ratatouille", "A rat who dreams of becoming a chef cooks in a Paris restaurant."),
    ("The Bake Off", "Amateur bakers compete in a tent, making bread, cakes and pastries."),
    ("Jaws", "A giant shark terrorises a seaside town during the summer."),
    ("Up", "An old man ties balloons to his house and flies to South America."),
    ("Arrival", "A linguist tries to talk with aliens whose ships land across the world."),
]


def request(item: str, title: str, text: str, **attributes) -> EnrichRequest:
    return EnrichRequest.for_item(Item(item, title, text, attributes=attributes, ts=TS), ts=TS)


def fresh(stack, tmp_path_factory, name: str):
    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = Topics(prefix=prefix)
    create_topics(admin_client(stack.kafka_bootstrap), topics, partitions=3, replication=1)
    env = {**os.environ, "STREAMREC_TOPIC_PREFIX": prefix, "STREAMREC_REDIS_PREFIX": prefix,
           "STREAMREC_ENRICH_GROUP_ID": f"{prefix}enrich", "STREAMREC_EMBED_BATCH_SIZE": "4",
           "STREAMREC_STATE_DIR": str(tmp_path_factory.mktemp(name)), "STREAMREC_LOG_LEVEL": "WARNING",
           "STREAMREC_EMBED_DEVICE": "cpu"}  # fmt: skip
    return prefix, topics, env


def run_worker(env: dict, kind: str, *args: str, timeout_s: float = 180) -> str:
    proc = subprocess.run([sys.executable, "-m", "streamrec", "worker", kind, *args], env=env,
                          capture_output=True, text=True, timeout=timeout_s)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def stat(out: str, name: str) -> int:
    return int(re.search(rf"\b{name} (\d+)", out).group(1))


def publish_bad(stack, topics, good_key: bytes) -> dict[bytes, str]:
    """Malformed requests (value -> what the dead letter's reason should mention), produced first."""
    wrong_hash = encode(request("bad3", "Title", "Text"))[:-1]  # cut: invalid msgpack
    mismatch = request("bad4", "Title", "Text")
    mismatch = EnrichRequest("bad4", "0" * 32, mismatch.title, mismatch.text, {}, TS)
    bad = {
        b"\x93not-a-record": "<payload>",
        encode(Click(user="u1", item="i1", ts=TS)): "expected enrich",
        wrong_hash: "msgpack",
        encode(mismatch): "content_hash",
    }
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for value in bad:
        producer.produce(topics.enrich, key=good_key, value=value)  # same partition as a good one
    producer.flush(10)
    return bad


def read(stack, topic: str, cls):
    return [decode(v, cls) for _, v in read_topic(stack.kafka_bootstrap, topic)]


# ---------------------------------------------------------------- the embedding worker


@pytest.fixture(scope="module")
def embedded(stack, tmp_path_factory):
    import redis

    prefix, topics, env = fresh(stack, tmp_path_factory, "embed")
    good = [request(f"i{n}", title, text, genres=["film"]) for n, (title, text) in enumerate(PLOTS)]
    twin = request("i_twin", *PLOTS[0], genres=["film"])  # same content as i0: embedded once
    seeded = request("i_seeded", "Sentinel", "Never embedded: its vector is already cached.")
    sentinel = np.full(384, 0.05, dtype=np.float32)
    client = redis.Redis.from_url(stack.redis_url)
    client.set(RedisKeys(prefix=prefix).embedding(MODEL, seeded.content_hash), pack_vector(sentinel))
    bad = publish_bad(stack, topics, good_key=b"i0")
    with Publisher(stack.kafka_bootstrap, topics) as pub:
        for r in [*good, twin, seeded]:
            pub.publish(r)
    out = run_worker(env, "embed", "--burst")
    records = {e.item: e for e in read(stack, topics.embeddings, ItemEmbedding)}
    letters = read(stack, topics.deadletter, DeadLetter)
    yield SimpleNamespace(prefix=prefix, topics=topics, env=env, good=good, twin=twin, seeded=seeded,
                          sentinel=sentinel, bad=bad, out=out, records=records, letters=letters,
                          redis=client)  # fmt: skip
    client.close()


def test_every_request_gets_an_embedding_with_its_content_hash(embedded):
    requests = [*embedded.good, embedded.twin, embedded.seeded]
    assert set(embedded.records) == {r.item for r in requests}, embedded.out
    for r in requests:
        e = embedded.records[r.item]
        assert e.content_hash == r.content_hash and e.model == MODEL and len(e.vector) == 384
    for r in embedded.good:
        assert np.linalg.norm(embedded.records[r.item].vector) == pytest.approx(1.0, abs=1e-4)
    assert embedded.records["i_twin"].vector == embedded.records["i0"].vector


def test_related_items_get_closer_embeddings(embedded):
    v = {i: np.array(e.vector) for i, e in embedded.records.items()}
    star_wars, dune, bake_off = v["i0"], v["i1"], v["i5"]
    assert star_wars @ dune > star_wars @ bake_off


def test_a_cache_hit_skips_the_model(embedded):
    assert np.array_equal(np.array(embedded.records["i_seeded"].vector, dtype=np.float32), embedded.sentinel)
    # nine distinct plots (the twin shares i0's hash) went through the model; the seeded one did not
    assert stat(embedded.out, "embedded") == len(PLOTS), embedded.out
    # the seeded hash, plus the twin's when it came in a later batch than i0 (then i0's was cached)
    assert stat(embedded.out, "cache hits") in (1, 2)
    keys = RedisKeys(prefix=embedded.prefix)
    for r in embedded.good:
        key = keys.embedding(MODEL, r.content_hash)
        assert np.frombuffer(embedded.redis.get(key), "<f4").tolist() == list(embedded.records[r.item].vector)
        assert 0 < embedded.redis.ttl(key) <= keys.embedding_ttl_s


def test_malformed_requests_are_dead_lettered_and_the_rest_processed(embedded):
    assert {d.value for d in embedded.letters} == set(embedded.bad), embedded.out
    for d in embedded.letters:
        assert d.topic == embedded.topics.enrich and d.key == b"i0"
        assert embedded.bad[d.value] in d.reason, d.reason
    assert stat(embedded.out, "dead letters") == len(embedded.bad)
    assert stat(embedded.out, "malformed skipped") == 0  # the embedding worker owns dead-lettering
    assert "i0" in embedded.records  # published after the bad ones, on the same partition


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_restart_resumes_after_committed_offsets_and_survives_redis_down(embedded, stack):
    more = [request("i_new1", "Gravity", "Two astronauts are stranded in orbit."),
            request("i_new2", "Chef", "A cook quits his job and opens a food truck.")]  # fmt: skip
    with Publisher(stack.kafka_bootstrap, embedded.topics) as pub:
        for r in more:
            pub.publish(r)
    env = {**embedded.env, "STREAMREC_REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0"}
    out = run_worker(env, "embed", "--burst")
    assert stat(out, "processed") == 2 and stat(out, "dead letters") == 0, out  # nothing re-read
    assert stat(out, "embedded") == 2 and "Redis unavailable" in out
    records = {e.item: e for e in read(stack, embedded.topics.embeddings, ItemEmbedding)}
    assert {r.item: r.content_hash for r in more} == {r.item: records[r.item].content_hash for r in more}


def test_health_reports_the_last_run(embedded):
    proc = subprocess.run([sys.executable, "-m", "streamrec", "worker", "embed", "--health",
                           "--max-age", "600"], env=embedded.env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0 and "healthy" in proc.stdout and '"worker": "embed"' in proc.stdout


# ---------------------------------------------------------------- the tag worker


@pytest.fixture(scope="module")
def tagged(stack, tmp_path_factory):
    """The tag worker, then the embedding worker, over the same requests (as deployed: one consumer
    group each on ``items.enrich``), with the dead-letter topic read after each."""
    prefix, topics, env = fresh(stack, tmp_path_factory, "tag")
    env["STREAMREC_TAG_TOP_N"] = "6"
    good = [request(f"i{n}", title, text) for n, (title, text) in enumerate(PLOTS[:6])]
    bad = publish_bad(stack, topics, good_key=b"i1")
    with Publisher(stack.kafka_bootstrap, topics) as pub:
        for r in good:
            pub.publish(r)
    out = run_worker(env, "tag", "--burst")
    tags = {t.item: t for t in read(stack, topics.tags, ItemTags)}
    letters = read(stack, topics.deadletter, DeadLetter)
    embed_out = run_worker(env, "embed", "--burst")
    letters_after_both = read(stack, topics.deadletter, DeadLetter)
    return SimpleNamespace(good=good, bad=bad, out=out, tags=tags, letters=letters, topics=topics,
                           embed_out=embed_out, letters_after_both=letters_after_both)  # fmt: skip


def test_tags_are_produced_for_every_request(tagged):
    assert set(tagged.tags) == {r.item for r in tagged.good}, tagged.out
    for r in tagged.good:
        t = tagged.tags[r.item]
        assert t.content_hash == r.content_hash and t.model == MODEL
        assert 1 <= len(t.tags) <= 6 and all(0.0 <= s <= 1.0 for _, s in t.tags)
    names = {i: [n for n, _ in t.tags] for i, t in tagged.tags.items()}
    assert {"science fiction", "space opera", "aliens", "war"} & set(names["i0"]), names["i0"]
    assert {"cooking", "amateur bakers", "amateur bakers compete"} & set(names["i5"]), names["i5"]


def test_tag_worker_skips_and_counts_malformed_requests_and_goes_on(tagged):
    assert tagged.letters == [], tagged.out  # the embedding worker owns dead-lettering
    assert stat(tagged.out, "malformed skipped") == len(tagged.bad), tagged.out
    assert stat(tagged.out, "dead letters") == 0
    assert "i1" in tagged.tags  # published after the bad ones, on the same partition


def test_both_workers_dead_letter_each_malformed_request_exactly_once(tagged):
    values = Counter(d.value for d in tagged.letters_after_both)
    assert values == Counter(set(tagged.bad)), (tagged.out, tagged.embed_out)
    for d in tagged.letters_after_both:
        assert d.topic == tagged.topics.enrich and d.key == b"i1"
        assert tagged.bad[d.value] in d.reason, d.reason
    assert stat(tagged.embed_out, "dead letters") == len(tagged.bad)
    assert stat(tagged.embed_out, "malformed skipped") == 0
