"""LLM-derived signals inside the Recommender: embeddings, fresh items, tags, checkpoints.

Embeddings here are fake and tiny (a topic's one-hot direction plus noise, 16 dimensions), the
shape of what the embedding worker publishes for the synthetic texts, whose words come from their
topic's vocabulary. No torch: these tests are pure and fast.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from streamrec.streams.content import ContentConfig
from streamrec.streams.model import RatingPolicy
from streamrec.streams.blendlearner import LearnedBlendConfig
from streamrec.streams.ranking import DEFAULT_WEIGHTS, BlendWeights
from streamrec.streams.recommender import Recommender, RecommenderConfig
from streamrec.synth import GENERIC, SynthConfig, generate, topics

SYNTH = generate(SynthConfig(n_users=60, n_items=400, n_topics=8, n_events=4000, seed=11))
NAMES = topics(8)
DIM = 16
#: the stream spans ~8000 s; an hour keeps the catalogue (born before the events) out of "fresh"
CONTENT = ContentConfig(fresh_horizon_s=3600.0)
LAST_TS = SYNTH.events[-1]["ts"]


def vec(topic: str, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.zeros(DIM)
    v[NAMES.index(topic)] = 1.0
    return v + noise * rng.normal(size=DIM) / np.sqrt(DIM)


def item_tags(item: dict) -> list[tuple[str, float]]:
    """What the tag worker might say: the topic, and two of the text's topic words."""
    words = [w for w in dict.fromkeys(item["text"].split()) if w not in GENERIC]
    return [(item["attributes"]["topic"], 1.0)] + [(w, 0.5) for w in words[:2]]


def build(
    content: bool = True, tags: bool = False, config: RecommenderConfig | None = None
) -> Recommender:
    rec = Recommender(config or RecommenderConfig(content=CONTENT), seed=5)
    for k, item in enumerate(SYNTH.items):
        rec.learn_event(item)
        if content:
            rec.set_embedding(item["item"], vec(item["attributes"]["topic"], seed=k), item["ts"])
        if tags:
            rec.set_tags(item["item"], item_tags(item), item["ts"])
    for event in SYNTH.events:
        rec.learn_event(event)
    return rec


def top(rec: Recommender, user, k: int = 50) -> list:
    return [item for item, _ in rec.recommend(user, k)]


@pytest.fixture(scope="module")
def trained() -> Recommender:
    return build(tags=True)


def copy(rec: Recommender) -> Recommender:
    return Recommender.from_bytes(rec.to_bytes())


# -- (1) zero-shot cold start ----------------------------------------------------------------------


def test_brand_new_item_reaches_users_of_its_topic_and_nobody_else(trained):
    rec = copy(trained)
    rec.set_embedding("brand-new", vec("jazz", noise=0.0), ts=LAST_TS)
    assert rec.index.get("brand-new") is not None and rec.is_available("brand-new")
    assert not any("brand-new" in rec.seen(u) for u in SYNTH.user_topics)  # zero interactions
    jazz_only = [u for u, t in SYNTH.user_topics.items() if t == ("jazz",)]
    with_jazz = [u for u, t in SYNTH.user_topics.items() if "jazz" in t]
    others = [u for u, t in SYNTH.user_topics.items() if "jazz" not in t]
    assert jazz_only and others
    for user in jazz_only:
        assert "brand-new" in top(rec, user, 20)
    reached = sum("brand-new" in top(rec, user) for user in with_jazz)
    assert reached >= 0.75 * len(with_jazz)
    for user in others:
        assert "brand-new" not in top(rec, user)


def test_without_content_the_new_item_is_invisible_and_old_items_are_not_fresh(trained):
    rec = copy(trained)
    rec.upsert_item("brand-new", ts=LAST_TS)  # catalogue only, no embedding yet
    user = next(u for u, t in SYNTH.user_topics.items() if t == ("jazz",))
    assert "brand-new" not in top(rec, user)
    names = [s.name for s in rec.signals(user)]
    assert "embedding" in names and "fresh" not in names  # every catalogue item is past the horizon
    rec.set_embedding("brand-new", vec("jazz", noise=0.0), ts=LAST_TS)
    assert "fresh" in [s.name for s in rec.signals(user)]
    assert "brand-new" in top(rec, user, 20)


# -- (2) reranking by embedding similarity ----------------------------------------------------------


def test_embedding_similarity_orders_items_when_crm_signals_are_tied():
    rec = Recommender(seed=1)
    for k in range(6):
        rec.set_embedding(f"a{k}", vec("jazz", seed=k), ts=0.0)
        rec.set_embedding(f"b{k}", vec("rock", seed=10 + k), ts=0.0)
    rec.learn_click("ann", "a0", ts=1.0)  # nothing else was ever clicked: CRM has no preference
    out = top(rec, "ann")
    assert set(out) == {f"a{k}" for k in range(1, 6)} | {f"b{k}" for k in range(6)}
    assert {i[0] for i in out[:5]} == {"a"}  # every jazz item above every rock item
    # the same with only the similarity signal weighing anything
    only_similarity = BlendWeights(cooccur=0, mf=0, popularity=0, embedding=1)
    rec.config = dataclasses.replace(rec.config, weights=only_similarity)
    assert {i[0] for i in top(rec, "ann")[:5]} == {"a"}


def test_profile_is_built_from_history_when_embeddings_arrive_after_the_events():
    rec = Recommender(seed=1)
    rec.learn_click("ann", "a0", ts=1.0)
    rec.learn_click("bob", "b0", ts=2.0)
    for k in range(4):
        rec.set_embedding(f"a{k}", vec("jazz", seed=k), ts=3.0)
        rec.set_embedding(f"b{k}", vec("rock", seed=10 + k), ts=3.0)
    assert rec.content.n_profile("ann") == 0
    assert {i[0] for i in top(rec, "ann")[:3]} == {"a"}
    assert {i[0] for i in top(rec, "bob")[:3]} == {"b"}


# -- (3) no content: exactly the CRM -----------------------------------------------------------------


def test_without_content_the_lists_equal_a_content_less_recommender():
    plain = build(content=False)  # default config: content weights on, but nothing arrived
    # the CRM weights (transitions included: a count signal, not content)
    crm_only = RecommenderConfig(weights=BlendWeights(transitions=DEFAULT_WEIGHTS.transitions),
                                 content=ContentConfig(enabled=False))
    crm = build(content=False, config=crm_only)
    assert not plain.has_content and not plain.content.live
    for user in list(SYNTH.user_topics)[:20] + ["ghost"]:
        assert plain.recommend(user, 30) == crm.recommend(user, 30)
        assert [s.name for s in plain.signals(user)] == [s.name for s in crm.signals(user)]
    # content stored but disabled is the CRM too
    off = build(config=RecommenderConfig(content=ContentConfig(enabled=False)))
    assert off.has_content
    for user in list(SYNTH.user_topics)[:10]:
        assert off.recommend(user, 30) == crm.recommend(user, 30)


# -- (4) validation ---------------------------------------------------------------------------------


def test_wrong_dimension_and_degenerate_vectors_raise_and_change_nothing():
    rec = Recommender()
    rec.set_embedding("a", np.ones(4), ts=0.0)
    n = len(rec.index)
    with pytest.raises(ValueError, match=r"dimension 3.*dimension 4"):
        rec.set_embedding("b", [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-zero finite"):
        rec.set_embedding("c", np.zeros(4))
    with pytest.raises(ValueError, match="non-zero finite"):
        rec.set_embedding("c", [1.0, np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match="1-d"):
        rec.set_embedding("c", np.ones((2, 2)))
    assert len(rec.index) == n and rec.embedding_of("b") is None
    e = rec.embedding_of("a")
    assert e.dtype == np.float32 and np.allclose(e, 0.5) and rec.has_content
    e[:] = 0  # a copy: the stored one is untouched
    assert np.allclose(rec.embedding_of("a"), 0.5)
    rec.set_embedding("a", [0.0, 3.0, 0.0, 4.0])  # replace
    assert np.allclose(rec.embedding_of("a"), [0, 0.6, 0, 0.8])
    assert rec.content.n_embedded == 1
    rec.reset_embeddings()  # a new embedding model: start over with its dimension
    assert not rec.has_content and rec.embedding_of("a") is None
    rec.set_embedding("b", [1.0, 2.0, 3.0])
    assert rec.content.dim == 3 and rec.has_content


# -- (5) checkpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("restore", ["bytes", "pickle"])
def test_checkpoint_round_trip_keeps_content_profiles_and_tags(trained, restore):
    rec = copy(trained)
    rec.set_embedding("brand-new", vec("jazz", noise=0.0), ts=LAST_TS)
    blob = rec.to_bytes()
    assert b"pickle" not in blob
    back = Recommender.from_bytes(blob) if restore == "bytes" else pickle.loads(pickle.dumps(rec))
    users = list(SYNTH.user_topics)[:15]
    assert {u: back.recommend(u, 30) for u in users} == {u: rec.recommend(u, 30) for u in users}
    assert np.array_equal(back.embedding_of("brand-new"), rec.embedding_of("brand-new"))
    assert back.tags_of("i0") == rec.tags_of("i0") and rec.tags_of("i0")
    assert back.content.n_profile(users[0]) == rec.content.n_profile(users[0]) > 0
    for r in (rec, back):  # both keep learning the same way
        r.learn_click(users[0], "brand-new", ts=LAST_TS + 1)
        r.set_tags("brand-new", [("jazz", 1.0)], ts=LAST_TS + 2)
    assert {u: back.recommend(u, 30) for u in users} == {u: rec.recommend(u, 30) for u in users}
    assert Recommender.from_bytes(back.to_bytes()).to_bytes() == rec.to_bytes()


def test_checkpoints_from_before_content_still_load():
    from streamrec.streams.state import FORMAT, dumps, loads

    rec = build(content=False)
    doc = loads(rec.to_bytes())
    config = doc["state"]["config"]
    del doc["state"]["content"], config["content"], config["learn_blend"]
    for name in ("embedding", "fresh", "tags"):
        del config["weights"][name]
    old = Recommender.from_bytes(dumps({"kind": "Recommender", "format": FORMAT, "state": doc["state"]}))
    assert old.config.weights == DEFAULT_WEIGHTS and old.config.content == ContentConfig()
    user = next(iter(SYNTH.user_topics))
    assert old.recommend(user, 20) == rec.recommend(user, 20)


# -- (6) filtering ------------------------------------------------------------------------------------


def test_deleted_and_seen_items_never_come_back_through_content(trained):
    rec = copy(trained)
    rec.set_embedding("brand-new", vec("jazz", noise=0.0), ts=LAST_TS)
    jazz = [u for u, t in SYNTH.user_topics.items() if "jazz" in t]
    rec.delete_item("brand-new")
    rec.set_embedding("brand-new", vec("jazz", noise=0.0), ts=LAST_TS + 1)  # re-enriched: still deleted
    rec.set_tags("brand-new", [("jazz", 1.0)], ts=LAST_TS + 1)
    assert not rec.is_available("brand-new")
    deleted = top(rec, jazz[0], 10)[:3]
    for item in deleted:
        rec.delete_item(item)
    rec.set_embedding("ghost-item", vec("jazz", noise=0.0), ts=LAST_TS)
    rec.delete_item("ghost-item")
    for user in SYNTH.user_topics:
        out = set(top(rec, user))
        assert not out & ({"brand-new", "ghost-item"} | set(deleted))
        assert not out & rec.seen(user)
    rec.upsert_item("brand-new", ts=LAST_TS + 2)
    assert "brand-new" in top(rec, next(u for u in jazz if SYNTH.user_topics[u] == ("jazz",)), 20)


# -- (7) tags -----------------------------------------------------------------------------------------


def test_tag_affinity_moves_items_with_the_users_tags_up():
    # a tiny catalogue: MF's random initial factors would outweigh the default tag weight
    rec = Recommender(RecommenderConfig(weights=dataclasses.replace(DEFAULT_WEIGHTS, tags=1.0)), seed=1)
    for k in range(5):
        rec.set_tags(f"s{k}", [("saxophone", 1.0), ("live", 0.3)], ts=0.0)
        rec.set_tags(f"g{k}", [("guitar", 1.0), ("live", 0.3)], ts=0.0)
    for k in range(3):
        rec.learn_click("ann", f"s{k}", ts=1.0)
    rec.set_tags("new-sax", [("saxophone", 0.9)], ts=2.0)
    rec.set_tags("new-guitar", [("guitar", 0.9)], ts=2.0)
    out = top(rec, "ann")
    assert set(out[:3]) == {"s3", "s4", "new-sax"}  # the guitar items come after, if at all
    assert all(out.index(g) > 2 for g in out if g.startswith(("g", "new-g")))
    assert not rec.has_content and rec.content.has_tags
    assert rec.tags_of("new-sax") == [("saxophone", 1.0)]
    rec.set_tags("new-sax", [])
    assert rec.tags_of("new-sax") == [] and "saxophone" in rec.content.tag_ids


def test_tags_on_synthetic_data_rank_topic_items_higher(trained):
    user = next(u for u, t in SYNTH.user_topics.items() if t == ("jazz",))
    tags_only = copy(trained)
    tags_only.config = dataclasses.replace(
        tags_only.config, weights=BlendWeights(cooccur=0, mf=0, popularity=0, tags=1.0)
    )
    out = top(tags_only, user, 20)
    assert len(out) == 20 and all(SYNTH.item_topic[i] == "jazz" for i in out)
    # and the new item with the user's tags beats the same item with other tags
    for tag in ("jazz", "rock"):
        rec = copy(trained)
        rec.set_tags("tagged", [(tag, 1.0)], ts=LAST_TS)
        rec.upsert_item("tagged", ts=LAST_TS)
        rank = top(rec, user, 1000).index("tagged") if "tagged" in top(rec, user, 1000) else 10**6
        if tag == "jazz":
            jazz_rank = rank
        else:
            assert jazz_rank < rank


# -- profile learning -----------------------------------------------------------------------------------


def test_low_ratings_do_not_count_by_default_and_push_away_when_configured():
    for weight, expected in [(0.0, 1), (-0.5, 2)]:
        cfg = RecommenderConfig(
            ratings=RatingPolicy("threshold", 3.5), content=ContentConfig(negative_weight=weight)
        )
        rec = Recommender(cfg, seed=1)
        rec.set_embedding("a", [1.0, 0.0])
        rec.set_embedding("b", [0.0, 1.0])
        rec.set_embedding("c", [0.7, 0.7])
        rec.learn_rating("ann", "a", 5.0)
        rec.learn_rating("ann", "b", 1.0)
        assert rec.content.n_profile("ann") == expected
        cos = rec.content.scores("ann")
        d = 0.5 ** (1 / ContentConfig().profile_half_life)  # "a" decayed once, then "b" at -0.5
        expected_cos = 1.0 if weight == 0 else d / np.hypot(d, 0.5)
        assert cos[rec.index.rows["a"]] == pytest.approx(expected_cos, abs=1e-5)
    assert rec.content.n_profile("ghost") == 0 and rec.content.scores("ghost") is None


def test_profile_decays_by_half_life_in_embedded_events():
    rec = Recommender(RecommenderConfig(content=ContentConfig(profile_half_life=1.0)))
    rec.set_embedding("a", [1.0, 0.0])
    rec.set_embedding("b", [0.0, 1.0])
    rec.learn_click("ann", "a")
    rec.learn_click("ann", "no-embedding")  # skipped: no embedding, no decay
    rec.learn_click("ann", "b")
    p = rec.content._P[rec.content.users["ann"]]
    assert p.tolist() == pytest.approx([0.5, 1.0])


# -- learning the blend online (off by default) ----------------------------------------------------------


def test_learned_blend_is_off_by_default_and_learns_from_picks_when_on(trained):
    assert trained.blend is None and not RecommenderConfig().learn_blend.enabled
    cfg = RecommenderConfig(content=CONTENT, learn_blend=LearnedBlendConfig(enabled=True, warmup=50))
    rec = Recommender(cfg, seed=5)
    for k, item in enumerate(SYNTH.items):
        rec.learn_event(item)
        rec.set_embedding(item["item"], vec(item["attributes"]["topic"], seed=k), item["ts"])
    for n, event in enumerate(SYNTH.events):
        if n % 4 == 0:
            rec.recommend(event["user"], 10)  # what a refresh would have computed
        rec.learn_event(event)
    learner = rec.blend
    assert learner.n > 50 and set(learner.coef) >= {"cooccur", "mf", "embedding", "popularity"}
    assert learner.coef["cooccur"] > 0  # co-occurrence separates the picks from other candidates
    names = ("cooccur", "mf", "embedding", "popularity")
    mixed = learner.weights(names, (False,) * 4, rec.config.weights)
    assert mixed.sum() == pytest.approx(sum(rec.config.weights.of(n) for n in names))
    back = Recommender.from_bytes(rec.to_bytes())
    users = list(SYNTH.user_topics)[:10]
    assert {u: back.recommend(u, 20) for u in users} == {u: rec.recommend(u, 20) for u in users}
    assert back.blend.coef == learner.coef


def test_recent_signal_follows_the_last_items_not_the_profile():
    """A user with a long history on one topic who just took two items of another: the profile
    still points at the old topic, the ``recent`` signal at the new one."""
    rec = Recommender(RecommenderConfig(content=ContentConfig(profile_half_life=50.0)), seed=1)
    old, new = NAMES[0], NAMES[1]
    for k in range(40):
        rec.set_embedding(f"{old}-{k}", vec(old, seed=k))
        rec.set_embedding(f"{new}-{k}", vec(new, seed=100 + k))
    for k in range(20):
        rec.learn_click("ann", f"{old}-{k}", ts=float(k))
    rec.learn_click("ann", f"{new}-0", ts=30.0)
    rec.learn_click("ann", f"{new}-1", ts=31.0)
    signals = {s.name: s for s in rec.signals("ann")}
    rows = rec.index.rows
    unseen_new = [rows[f"{new}-{k}"] for k in range(2, 40)]
    unseen_old = [rows[f"{old}-{k}"] for k in range(20, 40)]
    near, cos = signals["recent"].scores, signals["embedding"].scores
    assert np.min(near[unseen_new]) > np.max(near[unseen_old])
    assert np.mean(cos[unseen_old]) > np.mean(cos[unseen_new])  # the profile lags behind
    # the two queries come out of one product, equal to the profile's own scoring
    assert np.allclose(cos, rec.content.scores("ann"), atol=1e-6)


def test_recent_signal_weights_the_last_item_most_and_can_be_switched_off():
    cm_cfg = ContentConfig(recent_items=2, recent_decay=0.5, recent_power=1.0)
    rec = Recommender(RecommenderConfig(content=cm_cfg), seed=1)
    for item, v in [("a", [1.0, 0.0, 0.0]), ("b", [0.0, 1.0, 0.0]), ("x", [0.6, 0.8, 0.0]),
                    ("z", [0.0, 0.0, 1.0])]:  # fmt: skip
        rec.set_embedding(item, v)
    rec.learn_click("ann", "a", ts=0.0)
    rec.learn_click("ann", "b", ts=1.0)
    near = {s.name: s for s in rec.signals("ann")}["recent"].scores
    rows = rec.index.rows
    # x: 0.8 to the last item (b) + 0.5 * 0.6 to the one before (a); z: orthogonal to both
    assert near[rows["x"]] == pytest.approx(0.8 + 0.5 * 0.6, abs=1e-6)
    assert near[rows["z"]] == 0.0
    off = Recommender(RecommenderConfig(content=dataclasses.replace(cm_cfg, recent_items=0)), seed=1)
    for item in ("a", "b", "x"):
        off.set_embedding(item, rec.embedding_of(item))
    off.learn_click("ann", "a", ts=0.0)
    assert "recent" not in {s.name for s in off.signals("ann")}
