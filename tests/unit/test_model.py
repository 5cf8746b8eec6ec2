"""The online models on their own: MF against River, co-occurrence counts, decayed popularity."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.streams.cooccur import CooccurConfig, Cooccurrence
from streamrec.streams.mf_river import bare_river_learn_rate
from streamrec.streams.model import (
    ItemIndex,
    MFConfig,
    OnlineMF,
    RatingPolicy,
    dumps,
    grow,
    loads,
)
from streamrec.streams.popularity import Popularity, PopularityConfig


def triples(n: int = 1500, users: int = 20, items: int = 60, seed: int = 0, explicit: bool = False):
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        y = rnd.choice([1.0, 2.0, 3.0, 4.0, 5.0]) if explicit else float(rnd.random() < 0.5)
        out.append((f"u{rnd.randrange(users)}", f"i{rnd.randrange(items)}", y))
    return out


def assert_matches_river(mf: OnlineMF, river_model) -> None:
    items = list(mf.index.items)
    assert set(items) == set(river_model.i_latents)
    assert set(mf.users) == set(river_model.u_latents)
    for user in mf.users:
        ours = mf.scores_for(user)
        theirs = np.array([river_model.predict_one(user, item) for item in items])
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
        assert mf.predict_one(user, items[0]) == pytest.approx(theirs[0], rel=1e-9, abs=1e-12)


# -- MF vs River ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, explicit",
    [
        (MFConfig(n_factors=8, lr=0.05, seed=3), False),
        (MFConfig(n_factors=5, lr=0.02, l2=0.01, clip_gradient=0.5, init_sigma=0.2, seed=4), True),
        (MFConfig(n_factors=6, biased=True, lr=0.02, bias_lr=0.01, seed=5), True),
        (MFConfig(n_factors=6, biased=True, l2=0.02, l2_bias=0.05, seed=6), False),
    ],
    ids=["funk", "funk-l2-clip", "biased", "biased-l2"],
)
def test_mf_learn_one_matches_river(config, explicit):
    mf, river_model = OnlineMF(config), config.river_model()
    for user, item, y in triples(explicit=explicit):
        mf.learn_one(user, item, y)
        river_model.learn_one(user, item, y)
    assert_matches_river(mf, river_model)


@pytest.mark.parametrize("negatives", ["uniform", "popularity"])
def test_mf_implicit_path_is_river_on_positive_plus_sampled_negatives(negatives):
    config = MFConfig(n_factors=8, n_negatives=3, negatives=negatives, negative_pool=50, seed=9)
    mf, river_model = OnlineMF(config), config.river_model()
    for user, item, _ in triples(800):
        negs = mf.learn_implicit(user, item)
        assert len(negs) <= 3 and item not in negs
        river_model.learn_one(user, item, 1.0)
        for neg in negs:
            river_model.learn_one(user, neg, 0.0)
    assert_matches_river(mf, river_model)


def test_mf_click_samples_the_configured_number_of_negatives_deterministically():
    a, b = OnlineMF(MFConfig(n_negatives=2, seed=1)), OnlineMF(MFConfig(n_negatives=2, seed=1))
    for k in range(30):
        a.index.add(f"i{k}")
        b.index.add(f"i{k}")
    seq_a = [a.learn_implicit("u", f"i{k % 30}") for k in range(50)]
    seq_b = [b.learn_implicit("u", f"i{k % 30}") for k in range(50)]
    assert seq_a == seq_b
    assert all(len(n) == 2 for n in seq_a)
    assert OnlineMF(MFConfig(n_negatives=0)).learn_implicit("u", "i") == []


def test_mf_unknown_user_and_unlearned_items_get_no_scores():
    mf = OnlineMF(MFConfig(n_factors=4, n_negatives=0))
    mf.learn_click("ann", "a")
    assert mf.scores_for("nobody") is None
    assert mf.recommend("nobody") == []
    assert mf.predict_one("nobody", "a") is None
    assert mf.predict_one("ann", "never") is None
    mf.index.add("catalogue-only")
    scores = mf.scores_for("ann")
    assert len(scores) == 2 and math.isfinite(scores[0]) and scores[1] == -np.inf
    assert [item for item, _ in mf.recommend("ann")] == ["a"]
    assert "nobody" not in mf.users  # scoring an unknown user created nothing


def test_mf_factor_matrix_grows_past_its_initial_capacity():
    mf = OnlineMF(MFConfig(n_factors=3, n_negatives=1, seed=2))
    for k in range(500):
        mf.learn_click(f"u{k % 37}", f"i{k}")
    assert len(mf.index) == 500 and mf.scores_for("u1").shape == (500,)
    assert np.isfinite(mf.scores_for("u1")).all()


def test_mf_rating_policies():
    explicit = OnlineMF(MFConfig(n_factors=4, ratings=RatingPolicy("explicit"), seed=1))
    ref = explicit.config.river_model()
    for user, item, y in triples(300, explicit=True):
        explicit.learn_rating(user, item, y)
        ref.learn_one(user, item, y)
    assert_matches_river(explicit, ref)

    cfg = MFConfig(n_factors=4, ratings=RatingPolicy("threshold", 3.5), n_negatives=2, seed=1)
    thr, ref = OnlineMF(cfg), cfg.river_model()
    thr.learn_rating("u", "low", 2.0)  # below threshold: one step towards 0, no negatives
    ref.learn_one("u", "low", 0.0)
    assert len(thr.index) == 1
    assert thr.predict_one("u", "low") == pytest.approx(ref.predict_one("u", "low"))
    thr.learn_rating("u", "high", 4.5)  # a positive: target 1 plus negatives
    assert thr.predict_one("u", "high") is not None
    with pytest.raises(ValueError):
        RatingPolicy("sometimes")


def test_bare_river_learn_rate_is_a_positive_rate():
    events = [{"type": "click", "user": u, "item": i, "ts": 0.0} for u, i, _ in triples(300)]
    events.append({"type": "item", "item": "i0"})  # not an interaction: ignored
    assert bare_river_learn_rate(events, MFConfig(n_factors=4)) > 0
    assert bare_river_learn_rate(iter(events), with_negatives=False) > 0


# -- codec ---------------------------------------------------------------------------------------


def test_codec_round_trips_arrays_and_refuses_object_dtypes():
    obj = {"f": np.arange(6.0).reshape(2, 3), "b": np.array([True, False]), "i": np.arange(3), 7: None}
    back = loads(dumps(obj))
    assert back["f"].shape == (2, 3) and back["f"].dtype == np.float64
    np.testing.assert_array_equal(back["f"], obj["f"])
    np.testing.assert_array_equal(back["b"], obj["b"])
    assert back[7] is None
    with pytest.raises(TypeError):
        dumps(np.array([object()], dtype=object))
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_grow_and_index():
    a = grow(np.ones(4), 9, fill=2.0)
    assert len(a) >= 9 and (a[:4] == 1).all() and (a[4:] == 2).all()
    ix = ItemIndex(["x", "y"])
    assert [ix.add("y"), ix.add("z")] == [1, 2] and ix.items == ["x", "y", "z"]
    assert pickle.loads(pickle.dumps(ix)).rows == ix.rows


# -- co-occurrence -------------------------------------------------------------------------------


def test_cooccurrence_counts_on_a_hand_example():
    co = Cooccurrence(CooccurConfig(pair_window=2, history=3))
    for user, item in [("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "b"), ("u2", "c"), ("u1", "b")]:
        co.learn_click(user, item)
    # u1: a, b, c -> (a,b) (b,c) (a,c); u2: b, c -> (b,c) again; u1 re-clicks b: counted once only
    assert co.count("a", "b") == co.count("b", "a") == 1
    assert co.count("b", "c") == co.count("c", "b") == 2
    assert co.count("a", "c") == 1
    assert co.count("a", "a") == 0 and co.count("a", "nope") == 0
    assert co.history("u1") == ["a", "c", "b"]  # the re-click moved b to the front
    co.learn_click("u1", "d")  # window of 2: d pairs with b and c, not a; history keeps 3
    assert co.count("d", "b") == co.count("d", "c") == 1 and co.count("d", "a") == 0
    assert co.history("u1") == ["c", "b", "d"]


def test_cooccurrence_scores_are_recency_weighted_cosine():
    co = Cooccurrence(CooccurConfig(recency_decay=0.5))
    for user, items in {"x": "ab", "y": "ac", "z": "ab", "me": "ba"}.items():
        for item in items:
            co.learn_click(user, item)
    row = co.index.rows
    s = co.scores_for("me")  # history b (older, weight .5), a (latest, weight 1)
    pop = {"a": 4, "b": 3, "c": 1}
    # from a (weight 1): count(a,b)=3, count(a,c)=1; from b (weight .5): count(b,a)=3
    assert s[row["b"]] == pytest.approx(1.0 * 3 / math.sqrt(pop["a"] * pop["b"]))
    assert s[row["c"]] == pytest.approx(1.0 * 1 / math.sqrt(pop["a"] * pop["c"]))
    assert s[row["a"]] == pytest.approx(0.5 * 3 / math.sqrt(pop["b"] * pop["a"]))
    assert [i for i, _ in co.recommend("me")] == ["c"]  # own history excluded
    assert co.scores_for("stranger") is None and co.recommend("stranger") == []
    assert [i for i, _ in co.neighbours("a")] == ["b", "c"]


def test_cooccurrence_memory_is_bounded():
    co = Cooccurrence(CooccurConfig(max_neighbours=5, sweep_every=10, pair_window=10))
    rnd = random.Random(0)
    for k in range(3000):
        co.learn_click(f"u{rnd.randrange(50)}", f"i{rnd.randrange(200)}")
    co.sweep()
    assert max(len(d) for d in co._nbrs.values()) <= 10


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 7)), max_size=60),
    st.integers(1, 4),
    st.integers(1, 5),
)
def test_cooccurrence_matches_a_brute_force_recount(events, pair_window, history):
    history = max(history, pair_window)
    co = Cooccurrence(CooccurConfig(pair_window=pair_window, history=history, max_neighbours=10**6))
    hist: dict[int, list[int]] = {}
    counts: dict[tuple[int, int], int] = {}
    for user, item in events:
        co.learn_click(user, item)
        h = hist.setdefault(user, [])
        if item in h:
            h.remove(item)
            h.append(item)
            continue
        for other in h[-pair_window:]:
            counts[other, item] = counts.get((other, item), 0) + 1
            counts[item, other] = counts.get((item, other), 0) + 1
        h.append(item)
        del h[:-history]
    for a in range(8):
        for b in range(8):
            assert co.count(a, b) == counts.get((a, b), 0)
    for user, h in hist.items():
        assert co.history(user) == h


# -- popularity ----------------------------------------------------------------------------------


def test_popularity_halves_per_half_life():
    pop = Popularity(PopularityConfig(half_life_s=100.0))
    pop.learn_click("u", "a", ts=0.0)
    pop.learn_click("u", "b", ts=100.0)
    pop.learn_click("v", "b", ts=200.0)
    scores = dict(pop.top(5))
    assert scores["a"] == pytest.approx(0.25)
    assert scores["b"] == pytest.approx(1.5)
    assert [i for i, _ in pop.top(1)] == ["b"] and pop.recommend("anyone", 1) == pop.top(1)


def test_popularity_survives_long_horizons_and_old_events():
    pop = Popularity(PopularityConfig(half_life_s=1.0))
    for t in range(0, 5000, 7):
        pop.learn_click("u", f"i{t % 3}", ts=float(t))
    s = pop.scores()
    assert np.isfinite(s).all() and s.max() == pytest.approx(1.0 / (1 - 2**-21), rel=1e-6)
    pop.learn_click("u", "late", ts=4000.0)  # out of order: ~1000 half-lives old, almost nothing
    assert dict(pop.top(10)).get("late", 0.0) < 1e-100


def test_popularity_threshold_policy_and_missing_ts():
    pop = Popularity(PopularityConfig(ratings=RatingPolicy("threshold", 4.0)))
    pop.learn_rating("u", "meh", 2.0, ts=10.0)
    pop.learn_rating("u", "good", 4.5, ts=10.0)
    pop.learn_click("u", "x")  # no ts: counted at the latest time seen
    assert [i for i, _ in pop.top(5)] == ["good", "x"]
    assert Popularity().top(3) == []
