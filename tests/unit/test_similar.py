"""Similar items and seen items: the model's public answers the serving keys are written from."""

from __future__ import annotations

from streamrec.streams.recommender import Recommender
from streamrec.streams.serving import ServingState
from streamrec.schemas.events import Item


def trained() -> Recommender:
    rec = Recommender(seed=3)
    # a and b go together; c goes with a once; d is alone
    for user, items in {"u1": "ab", "u2": "ab", "u3": "abc", "u4": "d"}.items():
        for i in items:
            rec.learn_click(user, i, ts=1.0)
    return rec


def test_cooccurrence_neighbours_come_first_and_never_the_item_itself():
    rec = trained()
    sims = rec.similar_items("a", k=5)
    assert [i for i, _ in sims][:2] == ["b", "c"]
    assert "a" not in dict(sims)
    assert all(s > 0 for _, s in sims)
    assert rec.similar_items("d", k=5) == []  # no neighbours
    assert rec.similar_items("unknown", k=5) == []


def test_deleted_items_are_never_similar():
    rec = trained()
    rec.delete_item("b")
    assert "b" not in dict(rec.similar_items("a", k=5))
    rec.upsert_item("b")
    assert "b" in dict(rec.similar_items("a", k=5))


def test_embedding_neighbours_reach_items_nobody_clicked():
    rec = trained()
    rec.set_embedding("a", [1.0, 0.0])
    rec.set_embedding("e", [0.95, 0.05])  # never clicked: found by content alone
    rec.set_embedding("f", [0.0, 1.0])  # orthogonal: not similar
    sims = dict(rec.similar_items("a", k=10))
    assert "e" in sims and "f" not in sims and "b" in sims
    assert [i for i, _ in rec.similar_items("e", k=1)] == ["a"]


def test_seen_items_recent_first_and_bounded():
    rec = Recommender(seed=1)
    for i in range(10):
        rec.learn_click("u", f"i{i}", ts=float(i + 1))
    assert rec.seen_items("u", 3) == ["i9", "i8", "i7"]
    assert set(rec.seen_items("u", 100)) == rec.seen("u")
    assert rec.seen_items("nobody", 5) == []


def test_serving_state_budget_keeps_the_rest_owed():
    state = ServingState(similar_k=5, budget=3, cycle_s=100.0)
    for i in "cdab":
        state.touched(i)
    # the cursor takes its share (half the budget) first, from row 0; touched items the rest
    assert state._due(trained(), now=0.0) == (["c", "d"], ["a"])
    # 50 s later half the catalogue is due again, within the cursor's share; a touched item the
    # cursor also visits is written once
    state.owed_similar.pop("c"), state.owed_similar.pop("d")
    assert state._due(trained(), now=50.0) == (["a", "b"], [])
    off = ServingState(similar_k=0)
    off.touched("a"), off.item(Item("x", "X", ts=1.0))
    assert not off.owed_similar and "x" in off.pending_items


def test_serving_state_off_buffers_nothing():
    off = ServingState(enabled=False)
    off.touched("a"), off.item(Item("x", "X", ts=1.0))
    assert not off.owed_similar and not off.pending_items and off.to_meta() == []
