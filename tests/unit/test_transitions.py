"""Ordered transitions: order and equal timestamps, decay from absolute time, additive item side,
checkpoints (incremental and whole), and the signal in the recommender's lists."""

from __future__ import annotations

import io
import math
import random
from dataclasses import replace

import numpy as np
import pytest

from streamrec.streams import snapshot
from streamrec.streams.candidates import RankPass
from streamrec.streams.model import RatingPolicy
from streamrec.streams.ranking import BlendWeights
from streamrec.streams.recommender import Recommender, RecommenderConfig
from streamrec.streams.transitions import TransitionConfig, Transitions

DAY = 86400.0


def roundtrip(doc):
    buf = io.BytesIO()
    n = snapshot.write(buf, doc)
    return snapshot.read(io.BytesIO(buf.getvalue()), n)


def stream(n_users=40, n_items=60, n_events=1500, seed=3):
    """Users walk a chain of items (i -> i+1 mostly), so the order carries the signal; some
    events share their user's previous timestamp."""
    rnd = random.Random(seed)
    pos = {f"u{u}": rnd.randrange(n_items) for u in range(n_users)}
    clock = {u: 0.0 for u in pos}
    out = []
    for _ in range(n_events):
        u = rnd.choice(list(pos))
        pos[u] = (pos[u] + (1 if rnd.random() < 0.8 else rnd.randrange(n_items))) % n_items
        clock[u] += 0.0 if rnd.random() < 0.1 else rnd.uniform(60.0, 3 * DAY)
        out.append((u, f"i{pos[u]}", clock[u]))
    return sorted(out, key=lambda e: e[2])


def test_order_and_equal_timestamps():
    tr = Transitions()
    tr.learn_click("u", "a", 10.0)
    tr.learn_click("u", "b", 10.0)  # the same second as a: no order, nothing counted
    tr.learn_click("u", "c", 11.0)
    assert tr.count("a", "b") == tr.count("b", "a") == 0.0
    assert tr.count("a", "c") == pytest.approx(1.0) and tr.count("b", "c") == pytest.approx(1.0)
    assert tr.count("c", "a") == 0.0
    tr.learn_click("u", "a", 12.0)  # a again: it moves to the end of the window, no a -> a
    assert tr.count("a", "a") == 0.0 and tr.window("u") == ["b", "c", "a"]
    assert tr.count("c", "a") == pytest.approx(1.0)


def test_window_bounds_the_pairs():
    tr = Transitions(TransitionConfig(window=2))
    for t, item in enumerate("abcd"):
        tr.learn_click("u", item, float(t))
    assert tr.count("a", "c") > 0 and tr.count("a", "d") == 0.0 and tr.count("b", "d") > 0
    assert tr.window("u") == ["c", "d"]


def test_a_late_event_takes_its_place_in_time():
    """An event older than the window's latest follows only the items before it, and the
    window stays in time order, so the oldest item leaves first."""
    tr = Transitions(TransitionConfig(window=3))
    for item, ts in [("a", 1.0), ("c", 3.0), ("b", 2.0)]:  # b arrives after c, but is older
        tr.learn_click("u", item, ts)
    assert tr.count("a", "b") == pytest.approx(1.0) and tr.count("c", "b") == 0.0
    assert tr.window("u") == ["a", "b", "c"]
    tr.learn_click("u", "d", 4.0)  # the window is full: a (the oldest) leaves, not c
    assert tr.window("u") == ["b", "c", "d"]
    assert all(tr.count(x, "d") == pytest.approx(1.0) for x in "abc")


def test_windows_checkpointed_in_arrival_order_load_in_time_order():
    tr = Transitions()
    a, b = tr.index.add("a"), tr.index.add("b")
    # u's window as a checkpoint from before the time-order rule kept it (b arrived first)
    state = roundtrip({"ids": snapshot.pack_ids(["u", "v"]), "rows": snapshot.pack_rows([[b, a], [a, b]]),
                       "times": np.array([2.0, 1.0, 1.0, 2.0])})  # fmt: skip
    tr.load_users(state)
    assert tr.window("u") == tr.window("v") == ["a", "b"]
    tr.set_user_state("w", [b, a], [2.0, 1.0])
    assert tr.window("w") == ["a", "b"]


def test_ratings_below_the_policy_are_not_transitions():
    tr = Transitions(TransitionConfig(ratings=RatingPolicy("threshold", 3.5)))
    tr.learn_rating("u", "a", 5.0, 1.0)
    tr.learn_rating("u", "b", 0.5, 2.0)
    tr.learn_rating("u", "c", 4.0, 3.0)
    assert tr.count("a", "b") == 0.0 and tr.count("a", "c") > 0 and tr.window("u") == ["a", "c"]


def test_decay_is_a_function_of_event_time_only():
    """The same pairs, in any order and on models whose references were folded at different
    times, give the same decayed counts: what lets workers exchange the item side as deltas."""
    cfg = TransitionConfig(half_life_s=DAY)
    pairs = [(random.Random(i).randrange(5), random.Random(i + 99).randrange(5), i * 3 * DAY) for i in range(40)]
    one, two = Transitions(cfg), Transitions(cfg)
    for t in (one, two):
        for k in range(5):
            t.index.add(f"x{k}")
    for a, b, ts in pairs:
        one.add_pairs([a], [b], ts)
    for a, b, ts in reversed(pairs):
        two.add_pairs(np.array([a]), np.array([b]), ts)
    now = pairs[-1][2]
    for a in range(5):
        for b in range(5):
            expect = sum(2.0 ** (-(now - ts) / DAY) for x, y, ts in pairs if (x, y) == (a, b))
            assert one.count(f"x{a}", f"x{b}") == pytest.approx(expect, rel=1e-9, abs=1e-300)
            assert two.count(f"x{a}", f"x{b}", now=now) == pytest.approx(expect, rel=1e-9, abs=1e-300)


def test_add_pairs_refuses_pairs_of_unequal_lengths():
    tr = Transitions()
    with pytest.raises(ValueError, match="2 a_rows but 1 b_rows"):
        tr.add_pairs([0, 1], [2], 1.0)


def test_sweep_keeps_the_strongest_successors():
    tr = Transitions(TransitionConfig(max_successors=2, sweep_every=1))
    rows = [tr.index.add(i) for i in "abcdef"]
    for b, times in zip(rows[1:], (5, 4, 3, 2, 1)):
        for _ in range(times):
            tr.add_pairs([rows[0]], [b], 0.0)
    assert [tr.count("a", x) > 0 for x in "bcdef"] == [True, True, False, False, False]


def test_scores_follow_the_order():
    tr = Transitions()
    for u, item, ts in stream():
        tr.learn_click(u, item, ts)
    tr.learn_click("new", "i10", 1e9)
    scores = dict(tr.recommend("new", k=60))
    assert "i11" in list(scores)[:3]
    assert scores["i11"] > 2 * scores.get("i9", 0.0)  # the chain's next item, far above the previous one
    rows, vals = tr.sparse_scores("new")
    assert np.all(np.diff(rows) > 0) and np.allclose(tr.scores_for("new")[rows], vals)


def test_incremental_and_whole_checkpoints_restore_the_same_model():
    events = stream()
    half = len(events) // 2
    tr = Transitions(TransitionConfig(sweep_every=50, max_successors=5))
    for u, item, ts in events[:half]:
        tr.learn_click(u, item, ts)
    base_users, base_items = roundtrip(tr.users_state()), roundtrip(tr.items_state())
    changed = sorted({u for u, _, _ in events[half:]})
    for u, item, ts in events[half:]:
        tr.learn_click(u, item, ts)
    delta_users, items = roundtrip(tr.users_state(changed)), roundtrip(tr.items_state())
    back = Transitions(tr.config, tr.index)
    back.load_users(base_users)
    back.load_items(base_items)
    back.load_users(delta_users)
    back.load_items(items)
    whole = Transitions.from_bytes(tr.to_bytes())
    users = sorted({u for u, _, _ in events})
    for model in (back, whole):
        for u in users:
            assert model.window(u) == tr.window(u)
            assert model.recommend(u, 10) == tr.recommend(u, 10)
    # and both go on learning alike
    for model in (tr, back, whole):
        model.learn_click("u1", "i3", events[-1][2] + 10.0)
    assert back.recommend("u1", 10) == tr.recommend("u1", 10) == whole.recommend("u1", 10)


def _learned(config: RecommenderConfig) -> Recommender:
    rec = Recommender(config, seed=1)
    for u, item, ts in stream():
        rec.learn_click(u, item, ts)
    return rec


def test_the_recommender_nominates_and_blends_transitions():
    cfg = RecommenderConfig()
    rec = _learned(cfg)
    names = [s.name for s in rec.signals("u1")]
    assert "transitions" in names
    sigs = RankPass(rec)._signals("u1", 0, rec.mf.user_row("u1"), None, rec.seen_rows("u1"), None,
                                  rec.cooccur.sparse_scores("u1"), rec.transitions.sparse_scores("u1"))
    assert "transitions" in [s.name for s in sigs]
    # the pass and the dense path agree with the signal in
    for u in ("u1", "u2", "u3"):
        assert [i for i, _ in rec.recommend(u, 10)] == [i for i, _ in rec.recommend_dense(u, 10)]
    # off: neither learned nor nominated, and the weight alone changes the lists
    off = _learned(replace(cfg, transitions=replace(cfg.transitions, enabled=False)))
    assert "transitions" not in [s.name for s in off.signals("u1")]
    assert off.transitions.window("u1") == []
    heavy = _learned(replace(cfg, weights=replace(cfg.weights, transitions=5.0)))
    assert any(heavy.recommend(u, 10) != rec.recommend(u, 10) for u in ("u1", "u2", "u3", "u4"))


def test_recommender_checkpoints_carry_transitions():
    rec = _learned(RecommenderConfig())
    for back in (Recommender.from_bytes(rec.to_bytes()), Recommender.from_snapshots(roundtrip(rec.snapshot()))):
        assert back.transitions.window("u1") == rec.transitions.window("u1")
        assert back.recommend("u1", 10) == rec.recommend("u1", 10)


def test_snapshots_from_before_transitions_still_load():
    rec = _learned(RecommenderConfig())
    doc = roundtrip(rec.snapshot())
    del doc["transitions"], doc["users"]["transitions"], doc["config"]["transitions"]
    del doc["config"]["weights"]["transitions"], doc["config"]["n_transitions"]
    back = Recommender.from_snapshots(doc)
    assert back.transitions.window("u1") == [] and back.config.weights.transitions == 0.0
    assert math.isfinite(back.recommend("u1", 5)[0][1])


def test_counts_decayed_past_float_range_score_nothing_and_no_nan():
    tr = Transitions(TransitionConfig(half_life_s=1.0))
    tr.learn_click("old", "a", 0.0)
    tr.learn_click("old", "b", 1.0)  # a -> b, then 5,000 half-lives pass
    tr.learn_click("new", "c", 5000.0)
    tr.learn_click("new", "d", 5001.0)  # c -> d: a fold of the scale underflows a -> b to 0
    tr.learn_click("u", "a", 5002.0)
    tr.learn_click("u", "c", 5003.0)
    rows, vals = tr.sparse_scores("u")
    assert np.all(np.isfinite(vals))
    assert [item for item, _ in tr.recommend("u", 5)] == ["d"]
