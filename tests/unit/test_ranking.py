"""Blending and filtering, and the Recommender facade's lists on synthetic data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamrec.streams.model import MFConfig, RatingPolicy
from streamrec.streams.ranking import BlendWeights, Signal, best_k, candidates, normalise, rank, top_n
from streamrec.streams.recommender import Recommender, RecommenderConfig
from streamrec.synth import SynthConfig, generate

INF = np.inf


# -- pure ranking --------------------------------------------------------------------------------


def test_normalise_handles_missing_and_constant_values():
    assert normalise(np.array([-INF, np.nan]), "max").tolist() == [0.0, 0.0]
    assert normalise(np.array([0.0, 0.0]), "max").tolist() == [0.0, 0.0]
    assert normalise(np.array([3.0, 3.0, -INF]), "minmax").tolist() == [1.0, 1.0, 0.0]
    assert normalise(np.array([-2.0, 0.0, 2.0]), "minmax").tolist() == [0.0, 0.5, 1.0]


def test_top_n_respects_mask_positivity_and_ties():
    s = np.array([1.0, 5.0, 5.0, 0.0, -INF, 3.0])
    allowed = np.array([True, True, False, True, True, True])
    assert top_n(s, 3, allowed).tolist() == [1, 5, 0]
    assert top_n(s, 10, positive=True).tolist() == [1, 2, 5, 0]
    assert top_n(s, 0).tolist() == []
    assert best_k(np.array([2.0, 2.0, 2.0]), 2).tolist() == [0, 1]


def test_rank_filters_blends_and_breaks_ties_by_row():
    n = 6
    allowed = np.ones(n, dtype=bool)
    allowed[0] = False
    co = Signal("cooccur", np.array([9.0, 4.0, 2.0, 0.0, 0.0, 0.0]), n_candidates=3)
    mf = Signal("mf", np.array([5.0, -1.0, 1.0, 3.0, -INF, 0.0]), n_candidates=2, normalise="minmax")
    rows, scores = rank([co, mf], BlendWeights(cooccur=1.0, mf=0.0), allowed, k=10)
    assert 0 not in rows.tolist()
    assert rows[:2].tolist() == [1, 2] and scores[0] == pytest.approx(1.0)
    rows, _ = rank([co, mf], BlendWeights(cooccur=0.1, mf=1.0), allowed, k=2)
    assert rows.tolist() == [3, 2]  # MF now decides
    rows, scores = rank([co, mf], BlendWeights(), allowed, k=1)
    assert len(rows) == len(scores) == 1
    assert rank([], BlendWeights(), allowed, k=5)[0].tolist() == []
    assert rank([co], BlendWeights(), allowed, k=0)[0].tolist() == []


def test_extra_signals_blend_by_name_and_short_vectors_are_padded():
    allowed = np.ones(5, dtype=bool)
    co = Signal("cooccur", np.array([1.0, 0.9]), n_candidates=5)  # shorter than the catalogue
    fresh = Signal.sparse("fresh", [4], [1.0], 5, n_candidates=5)
    rows, _ = rank([co, fresh], BlendWeights(extra=(("fresh", 2.0),)), allowed, k=3)
    assert rows.tolist() == [4, 0, 1]
    rows, scores = rank([co, fresh], BlendWeights(), allowed, k=3)  # unknown name: weight 0
    assert rows.tolist() == [0, 1, 4] and scores[-1] == 0.0
    assert candidates([co, fresh], allowed).tolist() == [0, 1, 4]
    with pytest.raises(ValueError):
        Signal("x", np.zeros(2), normalise="zscore")
    with pytest.raises(dataclasses.FrozenInstanceError):
        BlendWeights().mf = 2.0  # type: ignore[misc]


# -- the facade on synthetic data ----------------------------------------------------------------


@pytest.fixture(scope="module")
def synth():
    return generate(SynthConfig(n_users=60, n_items=400, n_topics=8, n_events=4000, seed=11))


@pytest.fixture(scope="module")
def trained(synth):
    rec = Recommender(seed=5)
    for record in synth.records():
        rec.learn_event(record)
    return rec


def test_lists_are_dominated_by_the_users_topics(synth, trained):
    hits = slots = chance = 0.0
    for user, topics in synth.user_topics.items():
        good = synth.items_of(topics)
        top = [item for item, _ in trained.recommend(user, k=10)]
        assert len(top) == 10
        hits += sum(item in good for item in top)
        slots += len(top)
        chance += len(top) * len(good) / len(synth.item_topic)
    assert hits / slots >= 3 * chance / slots  # in practice ~0.95 against ~0.19 by chance
    assert hits / slots >= 0.8


def test_seen_items_are_never_recommended(synth, trained):
    for user in synth.user_topics:
        seen = trained.seen(user)
        assert seen and not seen & {item for item, _ in trained.recommend(user, k=50)}


def test_deleted_items_are_never_recommended_until_upserted(synth):
    rec = Recommender(seed=5)
    for record in synth.records():
        rec.learn_event(record)
    user = next(iter(synth.user_topics))
    first = [item for item, _ in rec.recommend(user, k=10)]
    popular = [item for item, _ in rec.fallback(k=5)]
    for item in first[:5] + popular:
        rec.delete_item(item)
    rec.learn_event({"type": "item", "item": first[5], "deleted": True})
    gone = set(first[:6] + popular)
    for u in synth.user_topics:
        assert not gone & {item for item, _ in rec.recommend(u, k=50)}
    assert not gone & {item for item, _ in rec.fallback(k=50)}
    assert not rec.is_available(first[0]) and rec.is_available("never-heard-of")
    rec.upsert_item(first[0])
    assert first[0] in [item for item, _ in rec.recommend(user, k=50)]
    rec.delete_item("never-heard-of")  # unknown ids are fine, and stay deleted when they show up
    rec.learn_click("someone", "never-heard-of", ts=1e12)
    assert "never-heard-of" not in [item for item, _ in rec.fallback(k=1000)]


def test_fallback_is_popularity_and_serves_unknown_users(trained):
    fb = trained.fallback(k=20)
    assert fb == trained.popularity.top(20)
    assert trained.recommend("a-user-nobody-knows", k=20) == fb
    assert trained.recommend("a-user-nobody-knows") == trained.fallback()  # default k
    scores = [s for _, s in fb]
    assert scores == sorted(scores, reverse=True)


def test_n_learned_counts_every_event_once(synth, trained):
    expected: dict[str, int] = {}
    for e in synth.events:
        expected[e["user"]] = expected.get(e["user"], 0) + 1
    assert {u: trained.n_learned(u) for u in expected} == expected
    assert trained.n_events == len(synth.events) and trained.n_learned("ghost") == 0


def test_extra_source_hook_adds_candidates(trained, synth):
    rec = Recommender.from_bytes(trained.to_bytes())
    user = next(iter(synth.user_topics))
    rec.upsert_item("brand-new")  # a fresh item nobody interacted with
    row = rec.index.rows["brand-new"]

    def fresh(u, r):
        return Signal.sparse("fresh", [row], [1.0], len(r.index), n_candidates=10)

    rec.add_source("fresh", fresh)
    assert "brand-new" not in [i for i, _ in rec.recommend(user, k=10)]  # weight 0 by default
    rec.config = dataclasses.replace(rec.config, weights=BlendWeights(extra=(("fresh", 5.0),)))
    assert rec.recommend(user, k=10)[0][0] == "brand-new"


def test_threshold_policy_keeps_low_ratings_out_of_counts():
    rec = Recommender(RecommenderConfig(ratings=RatingPolicy("threshold", 3.5), mf=MFConfig(n_negatives=1)))
    rec.learn_rating("u", "bad", 1.0, ts=0.0)
    rec.learn_rating("u", "good", 5.0, ts=0.0)
    assert rec.n_learned("u") == 2 and rec.seen("u") == {"bad", "good"}
    assert [i for i, _ in rec.fallback()] == ["good"]
    assert rec.cooccur.history("u") == ["good"]
    assert rec.mf.config.ratings == rec.config.ratings == rec.cooccur.config.ratings


@pytest.mark.parametrize("how", ["max", "minmax", "raw"])
def test_normalise_without_missing_values_equals_the_masked_path(how):
    rng = np.random.default_rng(3)
    for v in (rng.normal(size=300), np.abs(rng.normal(size=300)), np.zeros(5), np.full(4, 2.0),
              rng.normal(size=50).astype(np.float32)):  # fmt: skip
        masked = normalise(np.append(v, np.array([-np.inf], v.dtype)), how)  # the general path
        got = normalise(v, how)
        assert got.dtype == np.float64
        assert np.array_equal(got, masked[:-1])
    assert normalise(np.zeros(0), how).tolist() == []
