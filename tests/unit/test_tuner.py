"""The self-tuning blend (streams/tuner.py): it promotes a weighting only on a significant win on
the stream, switches a harmful signal off, leaves a good weighting alone, and survives a restart."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import numpy as np

from streamrec.streams.ranking import BlendWeights, Signal
from streamrec.streams.state import ItemIndex
from streamrec.streams.tuner import Tuner, TunerConfig

N = 200


@dataclass
class Config:
    weights: BlendWeights
    k: int = 50


@dataclass
class Model:
    """The recommender's public face the tuner uses, over two signals: ``cooccur`` ranks the next
    item well, ``embedding`` is noise (or, with ``helpful``, better still)."""

    weights: BlendWeights
    helpful: bool = False
    index: ItemIndex = field(default_factory=lambda: ItemIndex([f"i{i}" for i in range(N)]))
    rnd: random.Random = field(default_factory=lambda: random.Random(5))
    next_item: int = 0

    @property
    def config(self):
        return Config(self.weights)

    def allowed(self, user):
        return np.ones(N, dtype=bool)

    def signals(self, user, allowed):
        r = np.random.default_rng(self.rnd.randrange(10**9))
        co = r.random(N)
        co[self.next_item] += 0.6  # the next item is near the top of cooccur, not always in the top 10
        emb = r.random(N)
        if self.helpful:
            emb[self.next_item] += 0.9
        return [Signal("cooccur", co, 50, "max"), Signal("embedding", emb, 50, "max")]

    def fallback(self, k):
        return []

    def set_weights(self, **w):
        self.weights = replace(self.weights, **w)


def _run(model: Model, tuner: Tuner, events: int) -> float:
    hits = 0
    for t in range(events):
        model.next_item = model.rnd.randrange(N)
        top = [item for item, _ in tuner.recommend(model, "u", 10)]
        hits += f"i{model.next_item}" in top
        tuner.observe(model, "u", f"i{model.next_item}")
    return hits / events


def test_a_harmful_signal_is_switched_off():
    model = Model(BlendWeights(cooccur=1.0, embedding=1.0))
    tuner = Tuner.for_model(model, TunerConfig(start_off=(), learned=False, min_events=200))
    _run(model, tuner, 3000)
    assert tuner.promotions, "no promotion despite a noise signal weighing as much as the good one"
    assert tuner.weights["embedding"] < 0.5 * tuner.weights["cooccur"]
    assert model.weights.embedding == tuner.weights["embedding"]  # served through set_weights
    assert all(p["events"] >= 200 for p in tuner.promotions)


def test_a_helpful_signal_is_switched_on_from_the_crm_start():
    model = Model(BlendWeights(cooccur=1.0, embedding=0.9), helpful=True)
    tuner = Tuner.for_model(model, TunerConfig(learned=False, min_events=200))
    assert tuner.weights["embedding"] == 0.0  # content off until the stream says otherwise
    _run(model, tuner, 3000)
    assert tuner.weights["embedding"] > 0
    assert tuner.promotions[0]["arm"] == "embedding=0.25"


def test_no_promotion_without_a_difference():
    model = Model(BlendWeights(cooccur=1.0, embedding=0.0))
    # cooccur alone, and embedding noise may not be switched on: every challenger is no better
    tuner = Tuner.for_model(model, TunerConfig(start_off=(), learned=False, min_events=200, on_weight=1.0))
    _run(model, tuner, 2000)
    assert [p["arm"] for p in tuner.promotions if "embedding" in p["arm"]] == []


def test_state_round_trip_with_the_river_learner():
    model = Model(BlendWeights(cooccur=1.0, embedding=1.0))
    tuner = Tuner.for_model(model, TunerConfig(start_off=(), min_events=100))
    _run(model, tuner, 600)
    assert tuner.learner is not None and tuner.learner.n > 0
    back = Tuner.from_state(tuner.to_state())
    assert back.weights == tuner.weights and back.promotions == tuner.promotions
    assert back.learner.coef == tuner.learner.coef and back.learner.n == tuner.learner.n
    assert back.learner.bias == tuner.learner.bias


def test_a_crm_without_content_tunes_only_its_own_signals():
    from streamrec.streams.content import ContentConfig
    from streamrec.streams.recommender import Recommender, RecommenderConfig

    crm = Recommender(replace(RecommenderConfig(), content=ContentConfig(enabled=False)))
    tuner = Tuner.for_model(crm, TunerConfig(learned=False))
    assert set(tuner.weights) == {"cooccur", "mf", "popularity", "transitions"}
    assert tuner.weights["transitions"] == 0.0  # off until the stream shows an order
    names = {a.name for a in tuner.arms}
    assert "transitions=0.25" in names and not any(n.split("*")[0].split("=")[0] in
                                                    ("embedding", "fresh", "recent", "tags") for n in names)
    full = Tuner.for_model(Recommender(RecommenderConfig()), TunerConfig(learned=False))
    assert {"embedding=0.25", "transitions=0.25", "fresh*0.5"} <= {a.name for a in full.arms}

