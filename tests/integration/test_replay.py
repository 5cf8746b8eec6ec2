"""``bench replay`` against the real broker and Redis.

1. The Kafka path (topics, StreamWorker on a logical clock, lists read back from Redis) and the
   in-process mode agree on the same slice: same seed, same order, so the lists are the same; the
   stated tolerance is |delta HR@10| <= 0.005 (and the same for NDCG@10 and cold HR@10), and the
   number of evaluated events must be equal; beyond that the tests require what the design gives,
   identical results (the same hit at every evaluated event, the same exposure of every item). Synthetic data always (crm, and crm+llm with the real
   encoder); the first 3000 MovieLens ratings when the data is there (skipped otherwise: users of
   the project need not have MovieLens).
2. ``streamrec bench replay --dataset synthetic ...`` end to end in a subprocess: JSON with every
   required key, and the PNG plots.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamrec.bench.replay import REQUIRED_KEYS, enrichment_for, replay_in_process, replay_kafka
from streamrec.bench.replay_data import default_movielens_dir, load_movielens, load_synthetic

TOLERANCE = 0.005
ROOT = Path(__file__).resolve().parents[2]


def _agree(kafka, fast):
    """Within the stated tolerance, and (same seed, same order) in fact identical: the same hit
    at every evaluated event and the same items shown as often."""
    a, b = kafka.metrics, fast.metrics
    assert a["events"] == b["events"] and a["evaluated"] == b["evaluated"]
    for key in ("hr@10", "ndcg@10", "cold_hr@10"):
        assert abs(a[key] - b[key]) <= TOLERANCE, (key, a[key], b[key])
    assert (kafka.hits == fast.hits).all(), "within tolerance, but the per-event hits differ"
    assert (kafka.exposure == fast.exposure).all(), "within tolerance, but the exposures differ"
    assert a["freshness_mean_s"] == pytest.approx(b["freshness_mean_s"])
    # the worker's own live prequential metrics (streams/quality.py) measure what the replay does
    assert a["live_evaluated"] == a["evaluated"]
    for key in ("hr@10", "ndcg@10", "cold_hr@10", "coverage"):
        assert abs(a[f"live_{key}"] - a[key]) <= TOLERANCE, (key, a[f"live_{key}"], a[key])
    return abs(a["hr@10"] - b["hr@10"])


@pytest.fixture(scope="module")
def synthetic():
    return load_synthetic(n_users=60, n_items=300, n_events=3000, seed=11)


def test_kafka_path_and_in_process_agree_on_synthetic_data(stack, synthetic):
    kafka = replay_kafka(synthetic, "crm", 5.0, stack, progress=False)
    fast = replay_in_process(synthetic, "crm", 5.0, stack, progress=False)
    assert _agree(kafka, fast) == 0.0
    assert kafka.metrics["hits"] > 0 and kafka.metrics["refreshes"] == fast.metrics["refreshes"]


def test_kafka_path_with_llm_enrichment_agrees(stack, synthetic):
    enrichment = enrichment_for(synthetic, stack, progress=False)
    assert enrichment.vectors.shape == (300, 384) and enrichment.tags and any(enrichment.tags)
    kafka = replay_kafka(synthetic, "crm+llm", 5.0, stack, enrichment, progress=False)
    fast = replay_in_process(synthetic, "crm+llm", 5.0, stack, enrichment, progress=False)
    _agree(kafka, fast)
    assert kafka.metrics["hits"] > 0
    # the self-tuning blend (the crm+llm default) made the same choices on both paths
    assert kafka.metrics["tuner"]["weights"] == fast.metrics["tuner"]["weights"]
    assert kafka.metrics["tuner"]["promotions"] == fast.metrics["tuner"]["promotions"]


def test_kafka_path_and_in_process_agree_on_a_movielens_slice(stack):
    path = default_movielens_dir(ROOT)
    if not path.is_dir():
        pytest.skip(f"MovieLens not found at {path} (set STREAMREC_MOVIELENS_DIR to run this check)")
    data = load_movielens(path).head(3000)
    kafka = replay_kafka(data, "crm", 60.0, stack, progress=False)
    fast = replay_in_process(data, "crm", 60.0, stack, progress=False)
    _agree(kafka, fast)


def test_bench_replay_command_end_to_end(stack, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STREAMREC_MOVIELENS_DIR"}
    out = tmp_path / "out" / "replay.json"
    cmd = [sys.executable, "-m", "streamrec", "bench", "replay", "--dataset", "synthetic",
           "--synthetic-users", "40", "--synthetic-items", "200", "--synthetic-events", "1500",
           "--configs", "popularity,crm", "--refresh", "60,5", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| popularity | 60 s | kafka |" in proc.stdout and "| crm | 5 s | kafka |" in proc.stdout
    assert "crm @5s kafka" in proc.stderr and "ev/s]" in proc.stderr  # the tqdm bars
    doc = json.loads(out.read_text())
    assert doc["mode"] == "kafka" and len(doc["runs"]) == 4
    for run in doc["runs"]:
        missing = [k for k in REQUIRED_KEYS if k not in run]
        assert not missing, missing
        assert 0.0 <= run["hr@10"] <= 1.0 and 0.0 <= run["gini"] <= 1.0
    assert {r["refresh_interval_s"] for r in doc["runs"]} == {60.0, 5.0}
    for name in doc["plots"]:
        png = out.parent / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "replay_hr.png" in doc["plots"] and "replay_exposure.png" in doc["plots"]


def test_replay_from_the_deployments_own_topics(stack, topics, prefix):
    """``--from-topics``: what was published on the catalogue and event topics (3 partitions, clicks
    and ratings mixed, one item deleted, one undecodable message) is the dataset replayed."""
    from confluent_kafka import Producer

    from streamrec.bench.replay import replay_in_process
    from streamrec.bench.replay_events import load_topics
    from streamrec.connect import kafka_config
    from streamrec.schemas.events import Click, Item, Rating
    from streamrec.schemas.publisher import Publisher

    data = load_synthetic(n_users=20, n_items=60, n_events=600, seed=5)
    s = stack.replace(topic_prefix=prefix)
    gone = Item(item="gone", title="Gone", ts=data.items[0].ts)
    records = [*data.items, gone, Item(item="gone", deleted=True, ts=data.items[0].ts + 1)]
    events = [Click(e.user, e.item, e.ts) if i % 2 else Rating(e.user, e.item, 3.0, e.ts)
              for i, e in enumerate(data.events)]  # fmt: skip
    with Publisher.from_settings(s, topics) as pub:
        pub.publish_many(records)
        pub.publish_many(events)
    producer = Producer(kafka_config(s))
    producer.produce(topics.clicks, key=b"u1", value=b"\x00junk")
    producer.flush(10)
    replayed = load_topics(s)
    assert sorted(it.item for it in replayed.items) == sorted(it.item for it in data.items)
    assert len(replayed.events) == len(events) and replayed.kind == "mixed"
    assert replayed.meta["rejected"] == 1
    assert [e.ts for e in replayed.events] == sorted(e.ts for e in data.events)
    assert sum(e.rating is not None for e in replayed.events) == len(events) // 2
    r = replay_in_process(replayed, "crm", 5.0, stack, progress=False)
    assert r.metrics["evaluated"] > 500 and r.metrics["hits"] > 0
