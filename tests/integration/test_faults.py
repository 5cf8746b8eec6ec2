"""The fault suite: workers killed with ``kill -9`` at random moments, poison and oversized messages,
corrupted checkpoints, Redis and broker restarts, against the real broker and Redis. Every test
asserts exact counts: per-user learned events, and every side output (exactly once where the README
promises it, exactly once per dedupe key where it promises at-least-once with a key).

The short version runs in ``make test``. ``FAULT_SUITE=long`` runs more events and more kills, and
restarts the broker and Redis of the stack (which must then be one ``streamrec up`` started):

    FAULT_SUITE=long pytest tests/integration/test_faults.py
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from workerkit import (
    TS,
    learned_counts,
    publish,
    read_list,
    start_worker,
    stop,
    taste_events,
    wait_for,
)

from streamrec.schemas.codec import decode
from streamrec.schemas.deadletters import VALUE_MAX
from streamrec.schemas.events import DeadLetter, EnrichRequest, Item, ItemEmbedding, ItemTags
from streamrec.schemas.peek import read_topic
from streamrec.schemas.publisher import Publisher

LONG = os.environ.get("FAULT_SUITE") == "long"
KILLS = 8 if LONG else 3
OVERSIZED = 999_950  # a legal value for a producer at librdkafka's defaults


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _records(stack, topic: str) -> list:
    return [decode(v) for _, v in read_topic(stack.kafka_bootstrap, topic)]


def _poison(stack, topics) -> list[tuple[str, bytes | None, bytes | None]]:
    """One message of each bad kind the stream worker must dead-letter (and go on)."""
    from confluent_kafka import Producer

    bad = [
        (topics.clicks, b"u0", b"\x93not-a-record"),
        (topics.clicks, b"u1", b'{"type": "click", "user": "u1"}'),
        (topics.clicks, b"u2", b'{"type": "click", "user": "someone-else", "item": "i0_1", "ts": 1.7e9}'),
        (topics.clicks, b"u3", b"\x00" * OVERSIZED),
        (topics.ratings, b"u4", None),
        (topics.items, b"\xff\xfe", None),  # a tombstone whose key is no item id (compacted: keyed)
        (topics.embeddings, b"i0_1", b'{"type": "item_embedding"}'),
    ]  # fmt: skip
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for topic, key, value in bad:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
    return bad


def _catalogue(groups: int = 4, per_group: int = 40) -> list[Item]:
    return [Item(item=f"i{g}_{j}", title=f"Film {g}-{j}", text=f"a story of kind {g}, number {j}", ts=TS)
            for g in range(groups) for j in range(per_group)]  # fmt: skip


def test_stream_worker_through_kill_9s_poison_and_a_corrupt_checkpoint_learns_and_emits_exactly_once(
    worker_env, stack, topics, prefix, redis_client
):
    rng = random.Random(11)
    # checkpoints every 3 s, side outputs committed every 0.5 s: most kills fall between the two,
    # where a replay must not produce again what a committed transaction already holds
    worker_env = {**worker_env, "STREAMREC_REFRESH_INTERVAL_S": "3"}
    events = taste_events(n_users=24, per_user=250 if LONG else 60, seed=7)
    items = _catalogue()
    changed = [Item(i.item, i.title, i.text + " (restored cut)", ts=TS) for i in items[::8]]
    unchanged = items[1::10]  # republished as they are: nothing to enrich
    expected_requests = Counter((i.item, i.content_hash()) for i in [*items, *changed])
    # the records, in order, cut into one chunk per worker life
    stream = [*items, *events[: len(events) // 2], *changed, *unchanged, *events[len(events) // 2 :]]
    cuts = sorted(rng.sample(range(1, len(stream)), KILLS))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    poison, corrupted, logs = [], False, []
    for life, chunk in enumerate(chunks[:-1]):
        publish(stack, topics, chunk)
        if life == 1:
            poison = _poison(stack, topics)
        worker = start_worker(worker_env)
        store_dir = worker_env["STREAMREC_CHECKPOINT_DIR"]
        prev = os.path.join(store_dir, "checkpoint.prev")
        if life == 0:  # killed once its first requests are committed, before they are checkpointed
            wait_for(lambda: _records(stack, topics.enrich), 60, "committed requests", worker)
        elif life == 1:  # this life runs until two checkpoints exist, then its newest gets torn
            wait_for(lambda: os.path.exists(prev), 60, "a second checkpoint", worker)
            time.sleep(rng.uniform(0.0, 3.0))
        else:  # kill at a random moment: sometimes before the first checkpoint, sometimes after
            time.sleep(rng.uniform(0.5, 4.0))
        _kill(worker)
        logs.append(worker.stderr.read())
        if life == 1:
            with open(os.path.join(store_dir, "checkpoint"), "r+b") as f:  # newest: torn mid-file
                f.seek(100)
                f.write(b"\xff" * 64)
            corrupted = True
    publish(stack, topics, chunks[-1])
    final = start_worker(worker_env, "--burst")
    out, err = final.communicate(timeout=300)
    logs.append(err)
    assert final.returncode == 0, err[-3000:]
    assert corrupted and "checkpoint fallback" in "".join(logs), "the corrupt checkpoint was not seen"

    assert learned_counts(worker_env) == dict(Counter(e.user for e in events))
    requests = [r for r in _records(stack, topics.enrich) if isinstance(r, EnrichRequest)]
    assert Counter((r.item, r.content_hash) for r in requests) == expected_requests  # each once
    letters = [d for d in _records(stack, topics.deadletter) if isinstance(d, DeadLetter)]
    assert len(letters) == len(poison), " ".join(f"{d.topic[12:]}:{d.size}" for d in letters)
    assert len({(d.topic, d.partition, d.offset) for d in letters}) == len(poison)
    (big,) = [d for d in letters if d.size == OVERSIZED]
    assert big.truncated and len(big.value) == VALUE_MAX and big.topic == topics.clicks
    assert all(d.reason for d in letters)
    print(f"{len(chunks) - 1} kill -9s, {len(events)} events, {len(requests)} enrichment requests, "
          f"{len(letters)} dead letters: all exact")


def test_a_worker_with_no_usable_checkpoint_says_how_to_recover_and_recovers(worker_env, stack, topics):
    # every checkpoint full (no deltas), so that there are two chains to break
    worker_env = {**worker_env, "STREAMREC_CHECKPOINT_FULL_EVERY": "1"}
    events = taste_events(n_users=3, per_user=4)
    publish(stack, topics, events)
    for _ in range(2):  # two checkpoints: the newest and the previous one
        assert start_worker(worker_env, "--burst").wait(120) == 0
    store_dir = worker_env["STREAMREC_CHECKPOINT_DIR"]
    for name in ("checkpoint", "checkpoint.prev"):
        with open(os.path.join(store_dir, name), "r+b") as f:
            f.write(b"garbage!")
    broken = start_worker(worker_env, "--burst")
    out, err = broken.communicate(timeout=120)
    lines = (out + err).strip().splitlines()
    assert broken.returncode == 2 and len(lines) == 1, lines
    assert "checkpoint.prev" in lines[0] and "--reset-state" in lines[0]
    reset = start_worker(worker_env, "--burst", "--reset-state")
    out, err = reset.communicate(timeout=120)
    assert reset.returncode == 0, err
    assert "fresh start" in err and "set aside" in out
    assert learned_counts(worker_env) == dict(Counter(e.user for e in events))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_server(port: int, directory) -> subprocess.Popen:
    return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL)  # fmt: skip


def test_a_redis_restart_mid_stream_costs_no_event_and_lists_come_back(worker_env, stack, topics,
                                                                       prefix, tmp_path):  # fmt: skip
    import redis

    port = _free_port()
    env = {**worker_env, "STREAMREC_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    events = taste_events(n_users=8, per_user=40, seed=2)
    server = _redis_server(port, tmp_path)
    worker = start_worker(env)
    try:
        client = redis.Redis(port=port)
        publish(stack, topics, events[:160])
        wait_for(lambda: read_list(client, prefix, "u0"), 60, "a first list", worker)
        server.terminate()
        server.wait()
        publish(stack, topics, events[160:])
        wait_for(lambda: sum((learned_counts(env) or {}).values()) == len(events), 60,
                 "every event learned while Redis is down", worker)  # fmt: skip
        restarted_at = time.time()
        server = _redis_server(port, tmp_path)
        wait_for(lambda: all((lst := read_list(client, prefix, f"u{u}")) and lst.generated_at > restarted_at
                             for u in range(8)), 60, "every list rewritten after the restart", worker)  # fmt: skip
    finally:
        log = stop(worker)
        server.terminate()
        server.wait()
    assert worker.returncode == 0, log[-2000:]
    assert "Redis unavailable" in log
    assert learned_counts(env) == dict(Counter(e.user for e in events))


def _llm_env(stack, prefix, tmp_path) -> dict:
    return {**os.environ, "STREAMREC_TOPIC_PREFIX": prefix, "STREAMREC_REDIS_PREFIX": prefix,
            "STREAMREC_ENRICH_GROUP_ID": f"{prefix}enrich", "STREAMREC_STATE_DIR": str(tmp_path),
            "STREAMREC_EMBED_BATCH_SIZE": "4", "STREAMREC_EMBED_BATCH_WAIT_S": "0.05",
            "STREAMREC_LOG_LEVEL": "WARNING"}  # fmt: skip


def _llm(env: dict, kind: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamrec", "worker", kind, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_llm_workers_killed_mid_batch_give_every_request_its_outputs_once_per_key(stack, topics,
                                                                                 prefix, tmp_path):  # fmt: skip
    from confluent_kafka import Producer

    rng = random.Random(5)
    env = _llm_env(stack, prefix, tmp_path)
    items = _catalogue(groups=4, per_group=40 if LONG else 12)
    with Publisher(stack.kafka_bootstrap, topics) as pub:
        for item in items:
            pub.publish(EnrichRequest.for_item(item, ts=TS))
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    producer.produce(topics.enrich, key=b"bad1", value=b"\x93junk")
    producer.produce(topics.enrich, key=b"bad2", value=b"\x01" * OVERSIZED)
    assert producer.flush(30) == 0
    expected = {(i.item, i.content_hash()) for i in items}
    outputs = {"embed": (topics.embeddings, ItemEmbedding), "tag": (topics.tags, ItemTags)}
    for kind, (topic, cls) in outputs.items():
        for _ in range(KILLS):  # kill -9 mid-batch: once it has produced some, not all
            worker = _llm(env, kind)
            try:
                wait_for(lambda: 0 < len(_records(stack, topic)) or None, 120, f"{kind} output",
                         worker)  # fmt: skip
                time.sleep(rng.uniform(0.0, 1.0))
            finally:
                _kill(worker)
        final = _llm(env, kind, "--burst", "--max-seconds", "240")
        out, err = final.communicate(timeout=300)
        assert final.returncode == 0, err[-3000:]
        records = [r for r in _records(stack, topic) if isinstance(r, cls)]
        keys = Counter((r.item, r.content_hash) for r in records)
        assert set(keys) == expected, f"{kind}: missing {sorted(expected - set(keys))[:5]}"
        print(f"{kind}: {len(records)} records for {len(expected)} requests "
              f"({len(records) - len(expected)} repeats, each with the same dedupe key)")
    letters = [d for d in _records(stack, topics.deadletter) if isinstance(d, DeadLetter)]
    origins = Counter((d.topic, d.partition, d.offset) for d in letters)
    assert len(origins) == 2, origins  # only the embedding worker dead-letters; repeats share a key
    (big,) = {(d.size, d.truncated, len(d.value)) for d in letters if d.key == b"bad2"}
    assert big == (OVERSIZED, True, VALUE_MAX)


@pytest.mark.long  # restarts the shared stack: FAULT_SUITE=long only (tests/conftest.py)
def test_a_broker_and_redis_restart_mid_stream_costs_no_event(worker_env, stack, topics, prefix):
    from streamrec import localstack

    events = taste_events(n_users=10, per_user=100, seed=4)
    worker = start_worker(worker_env)
    try:
        publish(stack, topics, events[:500])
        wait_for(lambda: sum((learned_counts(worker_env) or {}).values()) >= 500, 90, "half learned",
                 worker)  # fmt: skip
        stopped = localstack.down(stack)
        assert any("kafka" in s for s in stopped), "the long suite needs a stack `streamrec up` started"
        time.sleep(5)
        localstack.up(stack)
        publish(stack, topics, events[500:])
        wait_for(lambda: learned_counts(worker_env) == dict(Counter(e.user for e in events)), 180,
                 "every event learned exactly once after the restart", worker)  # fmt: skip
    finally:
        log = stop(worker)
    assert worker.returncode == 0, log[-3000:]


def test_a_dead_letter_the_broker_refuses_is_retried_reported_and_skipped_as_documented(
    worker_env, stack, topics
):
    """Even a truncated dead letter can be refused (here the dead-letter topic takes 20 kB at
    most): the worker keeps learning, retries with backoff, reports it in its log and health, and
    holds its checkpoint back; the operator names the message in STREAMREC_SKIP_MESSAGES."""
    import json
    import re

    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    limit = ConfigEntry("max.message.bytes", "20000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", topics.deadletter, incremental_configs=[limit])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    events = taste_events(n_users=4, per_user=10, seed=9)
    publish(stack, topics, events[:20])
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    producer.produce(topics.clicks, key=b"u0", value=b"\x00" * 100_000)  # its dead letter: ~100 kB
    assert producer.flush(30) == 0
    publish(stack, topics, events[20:])
    worker = start_worker(worker_env)
    health = os.path.join(worker_env["STREAMREC_CHECKPOINT_DIR"], "health.json")
    try:
        wait_for(lambda: os.path.exists(health) and json.loads(Path(health).read_text())["output_failures"] >= 2,
                 60, "failed, retried commits in the heartbeat", worker)  # fmt: skip
        assert worker.poll() is None, "the worker must keep running"
    finally:
        log = stop(worker)
    assert "not committed" in log and "STREAMREC_SKIP_MESSAGES" in log, log[-3000:]
    assert learned_counts(worker_env) in (None, {}), "no checkpoint may cover the undelivered letter"
    topic, partition, offset = re.search(r"record for (\S+)\[(\d+)\]@(\d+)", log).groups()
    assert topic == topics.clicks
    env = {**worker_env, "STREAMREC_SKIP_MESSAGES": f"{topic}:{partition}:{offset}"}
    skipping = start_worker(env, "--burst")
    out, err = skipping.communicate(timeout=120)
    assert skipping.returncode == 0 and "skipped 1" in out, err[-3000:]
    assert learned_counts(env) == dict(Counter(e.user for e in events))
    assert _records(stack, topics.deadletter) == []
