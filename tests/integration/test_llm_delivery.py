"""An LLM worker whose outputs the broker refuses stays up, says so, and delivers exactly once later.

Against the real broker: the dead-letter topic takes 4,000 bytes at most, so the dead letter of an
oversized request (a 20 kB value, cut to its first 32 KiB: all of it) is refused, while the
embeddings of the same batch (about 1.7 kB each) are written into the same transaction. The
worker must not commit that transaction (the embeddings would be visible and the dead letter
lost) nor exit: it drops the transaction (aborted: its records are seen only by
``read_uncommitted`` readers), retries with backoff, and reports it in the log, the
``output_failures`` metric, ``/healthz`` and ``--health``. Once the topic's limit is raised it
delivers every output exactly once, in the same process.

The long suite (``FAULT_SUITE=long``) also stops and starts the broker under the worker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from streamrec.schemas.admin import admin_client, create_topics
from streamrec.schemas.codec import decode, encode
from streamrec.schemas.events import DeadLetter, EnrichRequest, Item
from streamrec.schemas.peek import read_topic
from streamrec.schemas.publisher import Publisher
from streamrec.schemas.topics import Topics

TS = 1_700_000_000.0
GOOD = 9
BAD_SIZE = 20_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _limit(bootstrap: str, topic: str, max_bytes: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry("max.message.bytes", str(max_bytes), incremental_operation=AlterConfigOpType.SET)
    for future in admin.incremental_alter_configs([ConfigResource("topic", topic, incremental_configs=[entry])]).values():
        future.result(30)


def _beat(path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait(cond, timeout_s: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited ({proc.returncode}) waiting for {what}: {proc.stdout.read()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}: {proc.communicate()[0][-3000:]}")


def test_refused_outputs_are_retried_in_process_reported_and_delivered_exactly_once(stack, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = Topics(prefix=prefix)
    # one partition: the refused dead letter and the embeddings share one transaction
    create_topics(admin_client(stack.kafka_bootstrap), topics, partitions=1, replication=1)
    _limit(stack.kafka_bootstrap, topics.deadletter, 4_000)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    reqs = [EnrichRequest.for_item(Item(f"i{n}", f"Title {n}", f"Plot number {n}.", ts=TS), ts=TS)
            for n in range(GOOD)]  # fmt: skip
    values = [encode(r) for r in reqs]
    values.insert(2, b"\x00" * BAD_SIZE)  # malformed and large: its dead letter carries it whole
    for value in values:
        producer.produce(topics.enrich, key=b"k", value=value)
    assert producer.flush(30) == 0
    port = _free_port()
    env = {**os.environ, "STREAMREC_TOPIC_PREFIX": prefix, "STREAMREC_REDIS_PREFIX": prefix,
           "STREAMREC_ENRICH_GROUP_ID": f"{prefix}enrich", "STREAMREC_STATE_DIR": str(tmp_path),
           "STREAMREC_EMBED_DEVICE": "cpu", "STREAMREC_EMBED_BATCH_SIZE": "4",
           "STREAMREC_ENRICH_RETRY_MIN_S": "0.2", "STREAMREC_ENRICH_RETRY_MAX_S": "1",
           "STREAMREC_METRICS_PORT": str(port)}  # fmt: skip
    health = tmp_path / "workers" / "embed" / "health.json"
    proc = subprocess.Popen([sys.executable, "-m", "streamrec", "worker", "embed"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        beat = _wait(lambda: (b := _beat(health)).get("output_failures", 0) >= 3 and b, 180,
                     "three failed deliveries in the heartbeat", proc)  # fmt: skip
        assert beat["degraded"] and beat["pid"] == proc.pid
        assert "MessageSizeTooLarge" in beat["output_error"] and f"{topics.enrich}[0]@2" in beat["output_error"]
        checked = subprocess.run([sys.executable, "-m", "streamrec", "worker", "embed", "--health"], env=env,
                                 capture_output=True, text=True)  # fmt: skip
        assert checked.returncode == 1 and checked.stdout.startswith("degraded"), checked.stdout
        live = subprocess.run([sys.executable, "-m", "streamrec", "worker", "embed", "--health", "--live"],
                              env=env, capture_output=True, text=True)  # fmt: skip
        assert live.returncode == 0, live.stdout  # alive: a liveness probe must not restart it
        status, _ = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503
        _, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        failures = [line for line in metrics.splitlines() if line.startswith("streamrec_output_failures_total")]
        assert failures and float(failures[0].split()[-1]) >= 1, failures
        # nothing of the refused batch is committed meanwhile, nor of any batch after it (a
        # batch before it, of i0 and i1 only, may be)
        early = Counter(k for k, _ in read_topic(stack.kafka_bootstrap, topics.embeddings, timeout_s=5))
        assert set(early) <= {b"i0", b"i1"} and all(n == 1 for n in early.values()), early
        assert list(read_topic(stack.kafka_bootstrap, topics.deadletter, timeout_s=5)) == []

        _limit(stack.kafka_bootstrap, topics.deadletter, 1_000_000)
        _wait(lambda: not _beat(health).get("degraded", True), 60, "the outputs delivered", proc)
        assert _beat(health)["pid"] == proc.pid, "the same process delivers them"
        status, _ = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        _wait(lambda: _beat(health).get("processed") == GOOD, 60, "every request processed", proc)
        time.sleep(1.0)  # an idle worker commits at once; anything repeated would show up now
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert "outputs not delivered" in out and "STREAMREC_SKIP_MESSAGES" in out and "delivered again" in out, out[-3000:]
    committed = Counter(k for k, _ in read_topic(stack.kafka_bootstrap, topics.embeddings))
    assert committed == Counter({r.item.encode(): 1 for r in reqs}), committed
    letters = [decode(v, DeadLetter) for _, v in read_topic(stack.kafka_bootstrap, topics.deadletter)]
    assert [(d.topic, d.partition, d.offset, d.size) for d in letters] == [(topics.enrich, 0, 2, BAD_SIZE)]
    everything = list(read_topic(stack.kafka_bootstrap, topics.embeddings, config={"isolation.level": "read_uncommitted"}))
    assert len(everything) > GOOD, "the refused batch's embeddings were written, then aborted"


@pytest.mark.long  # restarts the shared stack: FAULT_SUITE=long only (tests/conftest.py)
def test_a_broker_stop_and_start_under_the_embedding_worker_costs_no_output_and_repeats_none(stack, tmp_path):
    """The broker goes away while requests are in flight and comes back: the worker stays up,
    reports itself degraded meanwhile, and afterwards every request has exactly one committed
    embedding. (Its output goes to a file: a full pipe would stop the process, not the broker.)"""
    from streamrec import localstack

    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = Topics(prefix=prefix)
    create_topics(admin_client(stack.kafka_bootstrap), topics, partitions=3, replication=1)
    n = 200

    def publish(lo: int, hi: int) -> None:
        with Publisher(stack.kafka_bootstrap, topics) as pub:
            for i in range(lo, hi):
                pub.publish(EnrichRequest.for_item(Item(f"i{i}", f"T{i}", f"Text number {i}.", ts=TS), ts=TS))

    publish(0, 100)
    env = {**os.environ, "STREAMREC_TOPIC_PREFIX": prefix, "STREAMREC_REDIS_PREFIX": prefix,
           "STREAMREC_ENRICH_GROUP_ID": f"{prefix}enrich", "STREAMREC_STATE_DIR": str(tmp_path),
           "STREAMREC_EMBED_DEVICE": "cpu", "STREAMREC_EMBED_BATCH_SIZE": "8",
           "STREAMREC_ENRICH_RETRY_MAX_S": "2", "STREAMREC_ENRICH_DELIVERY_TIMEOUT_S": "5",
           "STREAMREC_ENRICH_COMMIT_INTERVAL_S": "2"}  # fmt: skip
    health = tmp_path / "workers" / "embed" / "health.json"
    with open(tmp_path / "worker.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamrec", "worker", "embed"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        _wait(lambda: _beat(health).get("processed", 0) >= 100, 180, "the first requests", proc)
        publish(100, 150)  # in flight when the broker goes
        stopped = localstack.down(stack)
        assert any("kafka" in s for s in stopped), "the long suite needs a stack `streamrec up` started"
        beat = _wait(lambda: (b := _beat(health)).get("degraded") and b, 60, "degraded while down", proc)
        assert beat["pid"] == proc.pid and beat["output_failures"] >= 1
        localstack.up(stack)
        publish(150, n)
        _wait(lambda: (b := _beat(health)).get("processed", 0) >= n and not b.get("degraded"), 180,
              "every request processed and delivered after the restart", proc)  # fmt: skip
        assert _beat(health)["pid"] == proc.pid
        time.sleep(4.0)  # past the commit interval: committed and idle
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(90)
    out = (tmp_path / "worker.log").read_text()
    assert proc.returncode == 0, out[-3000:]
    # the broker went away during a delivery (produced again) or a commit (awaited)
    assert "outputs not delivered" in out or "is not acknowledged after" in out, out[-3000:]
    assert "delivered again" in out, out[-3000:]
    # the client library's own complaints, hundreds a second while the broker is away, are kept
    # to one of each kind per 30 s
    client_lines = [line for line in out.splitlines() if " aiokafka" in line]
    assert len(client_lines) < 60, "\n".join(client_lines[:80])
    committed = Counter(k for k, _ in read_topic(stack.kafka_bootstrap, topics.embeddings))
    assert committed == Counter({f"i{i}".encode(): 1 for i in range(n)}), (
        f"missing {n - len(committed)}, repeated {sum(v > 1 for v in committed.values())}")
