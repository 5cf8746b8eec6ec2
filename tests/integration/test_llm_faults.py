"""kill -9 of the LLM workers at random moments mid-batch, against the real broker and Redis.

Each worker kind is started, killed with SIGKILL at a random moment while it works through a
backlog, restarted, and so on; a last ``--burst`` run finishes the backlog. Then every record on
``items.embeddings`` and ``items.tags`` is counted per key, read as consumers must read them
(``isolation.level=read_committed``): each request yields exactly one of each. Each restart's time
back to work (consumer start to its first batch of records in hand, from the worker's heartbeat)
is checked against the 5 s target: a restart that waited out a session timeout would take 10 s or
more. The batch's compute time is not part of it (on a loaded machine one batch of the model on
CPU can take seconds by itself); the first batch done is reported beside it.

The normal suite kills each worker once over a small backlog (about a minute: each start loads
the model); the full run, 5 kills each over a larger backlog, is ``FAULT_KILLS=5
pytest -s`` on this file.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from streamrec.schemas.admin import admin_client, create_topics
from streamrec.schemas.events import EnrichRequest, Item
from streamrec.schemas.peek import read_topic
from streamrec.schemas.publisher import Publisher
from streamrec.schemas.topics import Topics

KILLS = int(os.environ.get("FAULT_KILLS", "1"))
ITEMS = 100 * (KILLS + 1)
RESUME_TARGET_S = 5.0
TS = 1_700_000_000.0
WORDS = ("desert planet rebel empire detective thief chef bakery shark balloon linguist alien "
         "station freighter spice family restaurant tent summer town orbit truck").split()  # fmt: skip


def requests(n: int, seed: int = 7) -> list[EnrichRequest]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(12)) + f" number {i}."
        out.append(EnrichRequest.for_item(Item(f"i{i}", f"Title {i}", text, ts=TS), ts=TS))
    return out


def beat(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def wait_first_output(proc: subprocess.Popen, health: Path, timeout_s: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = beat(health)
        if body.get("pid") == proc.pid and "first_output" in body:
            return body
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}: {proc.stdout.read()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the worker produced nothing in time")


def worker(env: dict, kind: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamrec", "worker", kind, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def kill_and_restart(env: dict, kind: str, health: Path, rng: random.Random) -> list[dict]:
    """KILLS runs killed at a random moment after their first batch, then a --burst run."""
    runs = []
    for _ in range(KILLS):
        proc = worker(env, kind)
        body = wait_first_output(proc, health)
        time.sleep(rng.uniform(0.0, 1.5))  # some moment inside a batch, or between two
        assert proc.poll() is None, proc.stdout.read()
        proc.kill()
        proc.communicate(timeout=30)
        runs.append(body)
    proc = worker(env, kind, "--burst")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    runs.append(beat(health))
    return runs


@pytest.fixture(scope="module")
def faulted(stack, tmp_path_factory):
    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = Topics(prefix=prefix)
    create_topics(admin_client(stack.kafka_bootstrap), topics, partitions=3, replication=1)
    state = tmp_path_factory.mktemp("faults")
    env = {**os.environ, "STREAMREC_TOPIC_PREFIX": prefix, "STREAMREC_REDIS_PREFIX": prefix,
           "STREAMREC_ENRICH_GROUP_ID": f"{prefix}enrich", "STREAMREC_EMBED_BATCH_SIZE": "16",
           "STREAMREC_STATE_DIR": str(state), "STREAMREC_LOG_LEVEL": "WARNING",
           "STREAMREC_EMBED_DEVICE": "cpu",
           # commit every 3 s rather than after each batch: the open transactions then hold
           # records most of the time, so the kills hit them (the worst case for the guarantee)
           "STREAMREC_ENRICH_COMMIT_INTERVAL_S": "3.0"}  # fmt: skip
    reqs = requests(ITEMS)
    with Publisher(stack.kafka_bootstrap, topics) as pub:
        for r in reqs:
            pub.publish(r)
    rng = random.Random()
    runs = {kind: kill_and_restart(env, kind, state / "workers" / kind / "health.json", rng)
            for kind in ("embed", "tag")}  # fmt: skip
    uncommitted = {"isolation.level": "read_uncommitted"}
    counts = {}
    for kind, topic in (("embed", topics.embeddings), ("tag", topics.tags)):
        committed = Counter(k for k, _ in read_topic(stack.kafka_bootstrap, topic))
        everything = Counter(k for k, _ in read_topic(stack.kafka_bootstrap, topic, config=uncommitted))
        counts[kind] = (committed, everything)
    for kind, rs in runs.items():
        resumes = [round(r["first_batch"] - r["consumer_start"], 2) for r in rs[:-1]]
        done = [round(r["first_output"] - r["consumer_start"], 2) for r in rs[:-1]]
        aborted = sum(counts[kind][1].values()) - sum(counts[kind][0].values())
        print(f"\n{kind}: {ITEMS} requests, {KILLS} kill -9s; restart to first batch in hand (s): {resumes}, done: {done}; "
              f"records in aborted transactions: {aborted}")  # fmt: skip
    return {"keys": {r.item.encode() for r in reqs}, "runs": runs, "counts": counts}


@pytest.mark.parametrize("kind", ["embed", "tag"])
def test_each_request_yields_exactly_one_committed_record_across_kills(faulted, kind):
    committed, _ = faulted["counts"][kind]
    assert set(committed) == faulted["keys"]
    repeats = {k: n for k, n in committed.items() if n > 1}
    assert repeats == {}, f"{len(repeats)} keys repeated, e.g. {list(repeats.items())[:5]}"


@pytest.mark.parametrize("kind", ["embed", "tag"])
def test_a_restarted_worker_is_back_at_work_within_five_seconds(faulted, kind):
    runs = faulted["runs"][kind]
    assert len(runs) == KILLS + 1
    for r in runs[:-1]:
        assert r["first_batch"] - r["consumer_start"] < RESUME_TARGET_S, r
        assert r["first_output"] >= r["first_batch"], r
