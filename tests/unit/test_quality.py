"""The live prequential metrics (streams/quality.py) against the replay's own (bench/replay_metrics.py):
fed the same lists and events, they must give the same HR@10, NDCG@10, cold HR@10 and coverage."""

from __future__ import annotations

import random

import pytest

from streamrec.bench.replay_metrics import Prequential
from streamrec.streams.quality import LiveQuality, quality_fields


def _random_stream(seed: int, n: int = 3000):
    rnd = random.Random(seed)
    users = [f"u{i}" for i in range(40)]
    items = [f"i{i}" for i in range(120)]
    for t in range(n):
        if rnd.random() < 0.1:  # a refresh of some users' lists (sometimes an empty one)
            for user in rnd.sample(users, 5):
                top = rnd.sample(items, 12) if rnd.random() > 0.1 else []
                yield "list", user, top, float(t)
            yield "list", None, rnd.sample(items, 10), float(t)
        yield "event", rnd.choice(users), rnd.choice(items + ["not-in-catalogue"]), float(t)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_live_metrics_equal_the_replay_metrics_on_the_same_stream(seed):
    catalogue = {f"i{i}" for i in range(120)}
    live, replay = LiveQuality(window=10**9), Prequential(len(catalogue))
    lists, global_list, learned = {}, None, set()
    for kind, user, payload, ts in _random_stream(seed):
        if kind == "list":
            live.published(user, payload, "d")
            if user is None:
                global_list = (payload, ts)
            elif payload:
                lists[user] = (payload, ts)
            else:
                lists.pop(user, None)
            continue
        current = lists.get(user) or global_list
        replay.event(user, payload, ts, *(current if current else (None, None)))
        live.event(user, payload, had_history=user in learned)
        learned.add(user)
    a, b = live.overall("total", catalogue=catalogue), replay.result(sorted(catalogue))
    assert a["evaluated"] == b["evaluated"] > 1000
    for key in ("hr@10", "ndcg@10", "cold_hr@10", "coverage"):
        assert a[key] == pytest.approx(b[key]), key
    assert 0 < a["coverage"] <= 1.0


def test_window_forgets_old_events_and_digests_are_apart():
    q = LiveQuality(window=3)
    q.published(None, ["a"], "old")
    for _ in range(3):
        q.event("u", "a", True)  # hits under "old"
    q.published(None, ["b"], "new")
    for _ in range(3):
        q.event("u", "a", True)  # misses under "new"
    assert set(q.summary("window")) == {"new"}
    assert q.summary("window")["new"]["hr@10"] == 0.0
    total = q.summary("total")
    assert total["old"]["hr@10"] == 1.0 and total["new"]["hr@10"] == 0.0
    assert q.overall("total")["evaluated"] == 6 and q.overall("window")["evaluated"] == 3


def test_coverage_counts_only_catalogued_items_and_never_exceeds_one():
    q = LiveQuality()
    q.published(None, ["a", "x", "y", "z"], "d")
    q.event("u", "a", True)
    assert q.overall("total", catalogue={"a", "b"})["coverage"] == 0.5
    assert q.overall("total", catalogue_size=2)["coverage"] == 1.0


def test_state_round_trip_keeps_totals_window_and_lists():
    q = LiveQuality(window=5)
    q.published("u", ["a", "b"], "d")
    q.published(None, ["c"], "d")
    for item in "abcab":
        q.event("u", item, True)
    r = LiveQuality.from_state(q.to_state(), window=5)
    assert r.summary("total") == q.summary("total") and r.summary("window") == q.summary("window")
    r.event("u", "a", True)
    q.event("u", "a", True)
    assert r.summary("window") == q.summary("window")


def test_stats_hash_fields_are_flat_for_the_served_digest():
    f = quality_fields({"window": {"d": {"hr@10": 0.2, "evaluated": 9}}, "total": {}}, "d")
    assert f["quality_hr@10"] == 0.2 and f["quality_evaluated"] == 9 and f["quality_digest"] == "d"
    assert all(isinstance(v, (int, float, str)) for v in f.values())
