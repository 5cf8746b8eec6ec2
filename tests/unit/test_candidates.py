"""The batched, indexed ranking pass against the dense per-user ranking it replaces.

With no index (a small catalogue) the pass must give the dense lists exactly (same items, same
order, scores equal to rounding); with an index that scans every inverted list it must too; with a
partial scan it may differ only where a nomination did, which ``recall_at_50`` measures.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamrec.streams.content import ContentConfig
from streamrec.streams.ranking import Signal
from streamrec.streams.recommender import Recommender, RecommenderConfig
from streamrec.synth import SynthConfig, generate, topics

SYNTH = generate(SynthConfig(n_users=60, n_items=600, n_topics=8, n_events=5000, seed=4))
NAMES = topics(8)
USERS = sorted(SYNTH.user_topics) + ["ghost"]


def build(content: ContentConfig, tags: bool = True, deleted: int = 7) -> Recommender:
    rec = Recommender(RecommenderConfig(content=content), seed=3)
    rng = np.random.default_rng(0)
    half = len(SYNTH.items) // 2
    for k, item in enumerate(SYNTH.items[:half]):  # the rest arrive during the stream: cold items
        _item(rec, k, item, rng, tags)
    events = SYNTH.events
    for e in events[: len(events) // 2]:
        rec.learn_event(e)
    for k, item in enumerate(SYNTH.items[half:], start=half):
        _item(rec, k, item, rng, tags, ts=events[len(events) // 2]["ts"])
    for e in events[len(events) // 2 :]:
        rec.learn_event(e)
    for item in SYNTH.items[::deleted]:
        rec.delete_item(item["item"])
    return rec


def _item(rec, k, item, rng, tags, ts=None):
    topic = item["attributes"]["topic"]
    rec.learn_event({**item, "ts": ts if ts is not None else item["ts"]})
    v = np.zeros(16)
    v[NAMES.index(topic)] = 1.0
    if k % 6:
        rec.set_embedding(item["item"], v + 0.6 * rng.normal(size=16) / 4, ts or item["ts"])
    if tags and k % 3:
        rec.set_tags(item["item"], [(topic, 1.0), (f"t{k % 17}", 0.5)], ts or item["ts"])


def items(lst):
    return [i for i, _ in lst]


def assert_same(got, want):
    for g, w in zip(got, want, strict=True):
        assert items(g) == items(w)
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=1e-5, atol=1e-6)


CONTENT = ContentConfig(fresh_horizon_s=0.0, index_min_items=0)


@pytest.mark.parametrize("tags", [False, True])
def test_pass_without_index_gives_the_dense_lists(tags):
    rec = build(CONTENT, tags=tags)
    assert not rec.content.ann.built
    assert_same(rec.recommend_many(USERS, 30), [rec.recommend_dense(u, 30) for u in USERS])
    signals = {s.name for s in rec.signals(USERS[0])}
    assert {"cooccur", "mf", "embedding", "fresh", "recent", "popularity"} <= signals


def test_pass_without_content_and_with_a_runtime_source_gives_the_dense_lists():
    rec = Recommender(seed=2)
    for e in SYNTH.events:
        rec.learn_event(e)
    rec.set_weights(extra=(("mine", 0.7),))
    rec.add_source("mine", lambda user, r: None if user == "ghost" else
                   Signal("mine", np.arange(len(r.index), dtype=float), 5))  # fmt: skip
    assert_same(rec.recommend_many(USERS, 20), [rec.recommend_dense(u, 20) for u in USERS])
    assert rec.recommend("ghost", 5) == rec.fallback(5)


def test_index_scanning_every_list_gives_the_exact_lists_and_a_partial_scan_high_recall():
    full = dataclasses.replace(CONTENT, index_min_items=50, index_nlist=8, index_nprobe=8, index_recent_nprobe=8)
    rec = build(full)
    exact = rec.recommend_many(USERS, 50, exact=True)
    got = rec.recommend_many(USERS, 50)
    assert rec.content.ann.built
    assert_same(got, exact)
    assert_same(exact, [rec.recommend_dense(u, 50) for u in USERS])
    for scan in ({"index_nprobe": 2, "index_recent_nprobe": 2}, {"index_recent_nprobe": 1}):
        partial = build(dataclasses.replace(full, **scan))
        got = partial.recommend_many(USERS, 50)
        recall = np.mean([len(set(items(g)) & set(items(w))) / max(1, len(w)) for g, w in zip(got, exact)])
        assert 0.8 <= recall < 1.0 + 1e-9, scan


def test_index_follows_new_changed_and_deleted_embeddings():
    rec = build(dataclasses.replace(CONTENT, index_min_items=50, index_nlist=8, index_nprobe=8, index_recent_nprobe=8))
    user = USERS[0]
    rec.recommend(user)  # builds the index
    rec.set_embedding("new-one", rec.content.profile(user, rec.cooccur.history_rows(user)), ts=None)
    lists = rec.recommend_many([user], 50)[0]
    assert "new-one" in items(lists)
    assert_same([lists], [rec.recommend_dense(user, 50)])
    rec.delete_item("new-one")
    assert "new-one" not in items(rec.recommend(user, 50))


def test_users_near_from_buckets_matches_the_exhaustive_scan():
    rec = build(dataclasses.replace(CONTENT, index_min_items=50, index_nlist=8))
    item = SYNTH.items[1]["item"]
    exhaustive = rec.users_near(item, 10)
    rec.content.ann.users_nprobe = 8  # every bucket
    rec.recommend(USERS[0])  # a pass: builds the index and the buckets
    assert rec.content.ann.built
    assert rec.users_near(item, 10) == exhaustive
    rec.content.ann.users_nprobe = 2
    near = rec.users_near(item, 10)
    assert len(set(near) & set(exhaustive)) >= 7


def test_a_background_index_build_keeps_passes_exact_until_it_is_installed():
    cfg = dataclasses.replace(CONTENT, index_min_items=50, index_nlist=8, index_nprobe=8, index_recent_nprobe=8,
                              index_background=True)
    rec = build(cfg)
    first = rec.recommend_many(USERS, 50)  # starts the build; this pass nominates exhaustively
    assert_same(first, [rec.recommend_dense(u, 50) for u in USERS])
    rec.content.ann.wait()
    assert not rec.content.ann.built  # installed by the next pass, not behind its back
    second = rec.recommend_many(USERS, 50)
    assert rec.content.ann.built
    assert_same(second, first)


@pytest.mark.parametrize("kind", ["normal", "float32", "sorted", "reversed", "ties", "nan"])
def test_top_superset_holds_every_one_of_the_t_largest(kind):
    from streamrec.streams.nominate import top_superset

    rng = np.random.default_rng(7)
    v = rng.normal(size=50_000)
    if kind == "float32":
        v = v.astype(np.float32)
    elif kind == "sorted":
        v = np.sort(v)  # a strided sample sees only a trend
    elif kind == "reversed":
        v = np.sort(v)[::-1].copy()
    elif kind == "ties":
        v = np.round(v, 1)
    elif kind == "nan":
        v[rng.choice(len(v), 40_000, replace=False)] = np.nan  # falls back to the full selection
    for t in (1, 37, 250, 1_500):
        got = top_superset(v, t)
        assert np.all(np.diff(got) > 0) and len(got) >= t
        finite = np.where(np.isnan(v), -np.inf, v)
        kth = np.sort(finite)[-t]
        assert np.all(np.isin(np.flatnonzero(finite > kth), got))  # every strictly better value
        assert len(got) < 20 * t or kind in ("ties", "nan")


@pytest.mark.parametrize("bias", [True, False])
def test_block_supersets_are_top_superset_of_the_whole_product_to_the_bit(bias):
    """The pass selects MF's supersets block by block of items: the same positions and products
    as :func:`top_superset` over the whole chunk's product, or ``None`` where that falls back."""
    from streamrec.streams.nominate import block_supersets, top_superset

    rng = np.random.default_rng(11)
    P = rng.normal(size=(64, 16)).astype(np.float32)
    QT = np.ascontiguousarray(rng.normal(size=(16, 60_000)).astype(np.float32))
    b = rng.normal(size=60_000).astype(np.float32) if bias else None
    ts = rng.integers(150, 400, 64).tolist()
    ts[5] = 5_000  # too many for the sample (60,000 < 32 t): the caller's whole row
    S = P @ QT
    B = S if b is None else S + b
    for block in (1_000, 4_096, 60_000):
        got = block_supersets(P, QT, b, ts, block)
        assert got[5] is None
        for i, t in enumerate(ts):
            if i != 5:
                pos = top_superset(B[i], t)
                assert np.array_equal(got[i][0], pos) and np.array_equal(got[i][1], S[i][pos])


def test_union_sorted_is_np_unique_of_the_concatenation():
    from streamrec.streams.nominate import union_sorted

    rng = np.random.default_rng(3)
    for sizes in ([], [0], [1], [5, 0, 3], [200, 200, 100, 10], [1, 1, 1]):
        parts = [rng.integers(0, 50, n) for n in sizes]
        want = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        got = union_sorted(parts)
        assert got.tolist() == want.tolist() and got.dtype == np.int64
    part = np.array([3, 1, 2])
    union_sorted([part])
    assert part.tolist() == [3, 1, 2]  # a caller's array is never sorted in place


def test_mf_nominees_from_the_float32_proxy_are_those_of_the_exact_scores():
    """The pass picks MF's superset on products plus item biases in float32 and its nominees by
    the float64 sums: with MF alone weighed, its lists are the dense ranking's."""
    from streamrec.streams.model import MFConfig

    cfg = RecommenderConfig(mf=MFConfig(biased=True), content=CONTENT, n_mf=10, n_cooccur=0, n_transitions=0,
                            n_popular=0)  # fmt: skip
    rec = Recommender(cfg, seed=3)
    for e in SYNTH.events:
        rec.learn_event(e)
    assert rec.mf.item_biases(rec.mf.factor_rows()) is not None  # the biased model: a proxy is used
    lists = rec.recommend_many(USERS, 10)  # MF's nominees are the only candidates
    assert_same(lists, [rec.recommend_dense(u, 10) for u in USERS])
    assert all(len(x) == 10 for x in lists)


def test_neighbour_searches_from_the_kept_lists_match_full_searches_as_embeddings_change():
    rec = build(dataclasses.replace(CONTENT, index_min_items=50, index_nlist=8, index_recent_nprobe=2))
    rec.recommend(USERS[0])  # builds the index
    cm = rec.content
    ann = cm.ann
    rows = cm.embedded_rows()[:40]

    def same(k: int = 30):
        V = cm.vectors(rows)
        kept, full = ann.neighbours(V, k, rows=rows), ann.neighbours(V, k)
        np.testing.assert_array_equal(kept, full)
        return kept

    before = same()
    moved = SYNTH.items[int(rows[3])]["item"]
    assert rec.index.get(moved) == rows[3]
    rec.set_embedding(moved, -cm.vectors(rows[3:4])[0], ts=None)  # its kept lists are the old vector's
    after = same()  # before the next pass re-adds it: searched in full
    assert not np.array_equal(after[3], before[3])
    rec.recommend(USERS[0])  # the pass re-adds it with its new lists
    same()


def test_best_set_is_the_set_best_k_picks_ties_included():
    from streamrec.streams.nominate import best_set
    from streamrec.streams.ranking import best_k

    rng = np.random.default_rng(11)
    for _ in range(500):
        m, k = int(rng.integers(1, 300)), int(rng.integers(0, 320))
        v = np.round(rng.normal(size=m), int(rng.integers(0, 3)))  # 0 decimals: many ties at the cut
        got = best_set(v, k)
        assert got.tolist() == sorted(best_k(v, k).tolist())


def test_dense_lookup_reads_like_lookup_and_clears_only_what_it_set():
    from streamrec.streams.nominate import DenseLookup, lookup

    rng = np.random.default_rng(5)
    d = DenseLookup(1_000, -np.inf)
    for _ in range(20):
        rows = np.sort(rng.choice(1_000, int(rng.integers(0, 300)), replace=False))
        vals = rng.normal(size=len(rows))
        cand = np.sort(rng.choice(1_000, 400, replace=False))
        assert d.lookup(rows, vals)(cand).tolist() == lookup(rows, vals, -np.inf)(cand).tolist()
        d.clear()
        assert np.all(d.lookup(rows[:0], vals[:0])(np.arange(1_000)) == -np.inf)  # nothing left over


def test_probe_reuses_its_previous_read_and_matches_a_fresh_product():
    from streamrec.streams.candidates import _Probe

    rec = build(CONTENT)
    cm = rec.content
    past = len(rec.index) + 3  # a row the model has no arrays for yet: no embedding
    W = np.random.default_rng(5).normal(size=(16, 3)).astype(np.float32)
    probe = _Probe(cm, W)
    first = np.array([1, 5, 6, 40])
    probe.at(first)
    rows = np.array([0, 1, 5, 6, 7, 40, 41, past])
    sims, has = probe.at(rows)
    np.testing.assert_allclose(sims, cm.vectors(rows) @ W, rtol=1e-5, atol=1e-6)
    assert has.tolist() == cm.has_embedding(rows).tolist()
    assert not has[-1] and has.any() and not has.all()  # every sixth item has no embedding
    assert not sims[~has].any()  # zero rows there (the signals read them as no opinion)
    assert probe.at(rows)[0] is sims  # the same rows again: no second read
    assert cm.has_embedding(np.zeros(0, dtype=np.int64)).tolist() == []
