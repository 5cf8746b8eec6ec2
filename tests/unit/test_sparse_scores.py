"""The ranking pass's co-occurrence and transitions reads against straightforward references:
the same rows and, where the reference adds in the same order, the same bits."""

from __future__ import annotations

import random

import numpy as np
import pytest

from streamrec.streams.cooccur import CooccurConfig, Cooccurrence
from streamrec.streams.paircounts import PairCounts
from streamrec.streams.pairruns import RowSums
from streamrec.streams.transitions import TransitionConfig, Transitions


def test_row_sums_match_unique_and_bincount_bit_for_bit():
    rng = np.random.default_rng(3)
    sums = RowSums()
    for n in [1, 2, 7, 400, 5000]:
        for top in [3, 1000, 200_000]:  # the scratch grows, and is reused with stale slots
            keys = rng.integers(0, top, n)
            w = rng.random(n) * 10.0 ** rng.integers(-8, 8, n)  # magnitudes that make order matter
            rows, s = sums(keys, w)
            ref_rows, inv = np.unique(keys, return_inverse=True)
            ref = np.bincount(inv, weights=w, minlength=len(ref_rows))
            assert rows.dtype == ref_rows.dtype and np.array_equal(rows, ref_rows)
            assert s.tobytes() == ref.tobytes()


def test_few_rows_read_like_many(monkeypatch):
    rnd = random.Random(5)
    pc = PairCounts()
    pc._SIDE_MIN = 8  # entries in both parts
    for _ in range(2000):
        pc.add(rnd.sample(range(60), rnd.randrange(1, 6)), rnd.randrange(60), rnd.choice([1.0, 0.5]))
        if rnd.random() < 0.01:
            pc.cut(limit=6, cap=3)  # dead entries
    for _ in range(50):
        a = [rnd.randrange(70) for _ in range(rnd.randrange(0, 12))]  # rows past the end, repeats
        few = pc.rows(a)
        monkeypatch.setattr(PairCounts, "_FEW_ROWS", -1)
        many = pc.rows(a)
        monkeypatch.undo()
        for x, y in zip(few, many):
            assert x.dtype == y.dtype and np.array_equal(x, y)


def clicks(seed: int, n_users: int = 40, n_items: int = 60, n: int = 3000):
    rnd = random.Random(seed)
    t = 0.0
    for _ in range(n):
        t += rnd.choice([0.0, 1.0, 7.0])
        yield f"u{rnd.randrange(n_users)}", f"i{int(rnd.paretovariate(1.1)) % n_items}", t


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_cooccurrence_sparse_scores_are_the_dense_ones(alpha):
    co = Cooccurrence(CooccurConfig(pair_window=5, history=12, max_neighbours=6, sweep_every=50, alpha=alpha))
    for user, item, _ in clicks(1):
        co.learn_click(user, item)
    assert co.sparse_scores("nobody") is None
    checked = 0
    for u in range(40):
        dense = co.scores_for(f"u{u}")
        if dense is None:
            continue
        rows, s = co.sparse_scores(f"u{u}")
        assert np.array_equal(rows, np.flatnonzero(dense))  # every count is positive
        assert s.tobytes() == dense[rows].tobytes()  # the same sums in the same order
        checked += 1
    assert checked > 30


def reference_transitions(tr: Transitions, user: str) -> dict[str, float]:
    """The module doc's formula, a pair at a time, from decayed counts read back one by one."""
    win, items, a = tr.window(user)[::-1], tr.index.items, tr.config.alpha  # most recent first
    out = {h: sum(tr.count(h, x) for x in items) for h in win}
    score = {}
    for b in items:
        terms = [tr.config.decay**r * tr.count(h, b) / out[h] ** (1 - a) for r, h in enumerate(win)]
        if any(terms):
            score[b] = sum(terms) / sum(tr.count(x, b) for x in items) ** a
    return score


def test_transitions_sparse_scores_follow_the_formula():
    # no cuts: then the totals are the sums of the counts read back
    tr = Transitions(TransitionConfig(window=4, half_life_s=50.0, max_successors=1000))
    for user, item, ts in clicks(2, n=800):
        tr.learn_click(user, item, ts)
    assert tr.sparse_scores("nobody") is None
    checked = 0
    for u in range(40):
        sp = tr.sparse_scores(f"u{u}")
        if sp is None:
            continue
        rows, s = sp
        ref = reference_transitions(tr, f"u{u}")
        got = {tr.index.items[r]: v for r, v in zip(rows.tolist(), s.tolist())}
        assert np.all(np.diff(rows) > 0) and got.keys() == ref.keys()
        for b, v in ref.items():
            assert got[b] == pytest.approx(v, rel=1e-9)
        checked += 1
    assert checked > 30


def test_transitions_sparse_scores_sum_in_the_window_order():
    """Bit for bit what ``np.unique`` + ``bincount`` over the rows read gives (the lists depend on
    the order of the additions), with cuts and both parts of the counts in play."""
    tr = Transitions(TransitionConfig(window=6, half_life_s=20.0, max_successors=4, sweep_every=30))
    for user, item, ts in clicks(4):
        tr.learn_click(user, item, ts)
    state = tr.items_state()
    out, inn = state["out"], state["in"]
    for u in range(40):
        win = tr.user_state(f"u{u}")
        if win is None:
            continue
        hist = win[0][::-1]
        rows, s = tr.sparse_scores(f"u{u}")
        b, v, w = [], [], 1.0
        for h in hist:  # one row at a time, most recent first
            _, bh, vh = tr_pairs(tr).rows([h])
            b.append(bh)
            v.append(vh * (w / float(out[h]) ** (1 - tr.config.alpha)))
            w *= tr.config.decay
        ref_rows, inv = np.unique(np.concatenate(b), return_inverse=True)
        ref = np.bincount(inv, weights=np.concatenate(v)) / np.sqrt(inn[ref_rows])
        assert np.array_equal(rows, ref_rows) and s.tobytes() == ref.tobytes()


def tr_pairs(tr: Transitions) -> PairCounts:
    return tr._pairs


def same_lists(many, users, one) -> None:
    assert len(many) == len(users)
    for got, user in zip(many, users):
        ref = one(user)
        assert (got is None) == (ref is None)
        if ref is not None:
            assert got[0].dtype == ref[0].dtype and np.array_equal(got[0], ref[0])
            assert got[1].tobytes() == ref[1].tobytes()


def test_a_chunk_of_users_scores_as_each_alone():
    co = Cooccurrence(CooccurConfig(pair_window=5, history=12, max_neighbours=6, sweep_every=50))
    tr = Transitions(TransitionConfig(window=6, half_life_s=20.0, max_successors=4, sweep_every=30))
    for user, item, ts in clicks(6):
        co.learn_click(user, item)
        tr.learn_click(user, item, ts)
    users = [f"u{u}" for u in range(45)] + ["u3", "nobody"]  # strangers, repeats
    for model in (co, tr):
        same_lists(model.sparse_scores_many(users), users, model.sparse_scores)
        same_lists(model.sparse_scores_many(users[:3]), users[:3], model.sparse_scores)  # few rows
        assert model.sparse_scores_many([]) == [] and model.sparse_scores_many(["nobody"]) == [None]
