"""One contract for every model wrapper the stream worker may hold.

Each wrapper learns from clicks and ratings, answers ``recommend(user, k)``, and survives both
pickling and its own msgpack checkpoint (``to_bytes``/``from_bytes``) with identical behaviour,
including what it learns *after* the restore (RNG states travel with the checkpoint). The same
seed and events give the same output, and unknown users and items never raise nor surface items
nobody has seen.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from streamrec.streams.cooccur import CooccurConfig, Cooccurrence
from streamrec.streams.model import MFConfig, OnlineMF
from streamrec.streams.popularity import Popularity
from streamrec.streams.blendlearner import LearnedBlendConfig
from streamrec.streams.recommender import Recommender, RecommenderConfig
from streamrec.synth import SynthConfig, generate

DATA = generate(SynthConfig(n_users=25, n_items=150, n_topics=5, n_events=1600, seed=21))
FIRST, LATER = DATA.events[:1200], DATA.events[1200:]
USERS = sorted(DATA.user_topics) + ["ghost"]

WRAPPERS = {
    "mf": lambda: OnlineMF(MFConfig(n_factors=8, n_negatives=3, seed=13)),
    "mf-popularity-negatives": lambda: OnlineMF(MFConfig(negatives="popularity", negative_pool=40, seed=13)),
    "cooccur": lambda: Cooccurrence(CooccurConfig(max_neighbours=8, sweep_every=50)),
    "popularity": lambda: Popularity(),
    "recommender": lambda: Recommender(seed=13),
    "recommender-content": lambda: with_content(Recommender(seed=13)),
    "recommender-learned-blend": lambda: with_content(
        Recommender(RecommenderConfig(learn_blend=LearnedBlendConfig(enabled=True, warmup=20)), seed=13)
    ),
}


def with_content(rec: Recommender) -> Recommender:
    """Embeddings (4 of 5 items) and tags (every other item), as the LLM workers would send."""
    rng = np.random.default_rng(3)
    names = sorted(set(DATA.item_topic.values()))
    for k, item in enumerate(DATA.items):
        topic = DATA.item_topic[item["item"]]
        if k % 5:
            v = np.eye(8)[names.index(topic)] + 0.3 * rng.normal(size=8)
            rec.set_embedding(item["item"], v, item["ts"])
        if k % 2:
            rec.set_tags(item["item"], [(topic, 0.9), (item["text"].split()[0], 0.4)], item["ts"])
    return rec


def feed(model, events) -> None:
    for e in events:
        if e["type"] == "click":
            model.learn_click(e["user"], e["item"], e["ts"])
        else:
            model.learn_rating(e["user"], e["item"], e["rating"], e["ts"])


def lists(model) -> dict:
    return {user: model.recommend(user, 20) for user in USERS}


@pytest.fixture(params=sorted(WRAPPERS))
def make(request):
    return WRAPPERS[request.param]


@pytest.fixture
def trained(make):
    model = make()
    if isinstance(model, Recommender):
        for item in DATA.items:
            model.upsert_item(item["item"], item["ts"])
        model.delete_item("i3")
    feed(model, FIRST)
    return model


def restored_pickle(model):
    return pickle.loads(pickle.dumps(model))


def restored_bytes(model):
    blob = model.to_bytes()
    assert isinstance(blob, bytes) and b"pickle" not in blob
    return type(model).from_bytes(blob)


@pytest.mark.parametrize("restore", [restored_pickle, restored_bytes], ids=["pickle", "bytes"])
def test_round_trip_gives_identical_lists_now_and_after_more_learning(trained, restore):
    copy = restore(trained)
    assert lists(copy) == lists(trained)
    feed(trained, LATER)
    feed(copy, LATER)
    assert lists(copy) == lists(trained)
    assert restore(copy).to_bytes() == trained.to_bytes()


def test_same_seed_same_events_same_output(make):
    a, b = make(), make()
    feed(a, DATA.events)
    feed(b, DATA.events)
    assert lists(a) == lists(b)
    assert a.to_bytes() == b.to_bytes()


def test_unknown_users_and_items_are_handled(trained):
    known = {e["item"] for e in FIRST} | {i["item"] for i in DATA.items}
    ghost = trained.recommend("ghost", 20)
    if isinstance(trained, (OnlineMF, Cooccurrence)):
        assert ghost == []
    elif isinstance(trained, Recommender):
        assert ghost == trained.fallback(20) and ghost
    else:
        assert ghost == trained.top(20)
    for user in USERS:
        assert {item for item, _ in trained.recommend(user, 20)} <= known
    # one event on a never-seen item from a never-seen user: no exception, lists still sane
    trained.learn_click("newcomer", "brand-new-item", DATA.events[-1]["ts"])
    trained.learn_rating("newcomer2", "another-new-item", 4.0, None)
    for user in ("newcomer", "newcomer2", "ghost"):
        out = trained.recommend(user, 5)
        assert len(out) <= 5 and all(isinstance(s, float) for _, s in out)


def test_empty_model_round_trips_and_answers(make):
    model = make()
    assert model.recommend("anyone", 5) == []
    assert type(model).from_bytes(model.to_bytes()).recommend("anyone", 5) == []
    assert restored_pickle(model).recommend("anyone", 5) == []
