"""PairCounts against the dict of dicts it replaced: the same counts bit for bit, the same cuts
(ties to the earlier inserted), whatever the interleaving of additions, reads, cuts and loads."""

from __future__ import annotations

import random

import numpy as np

from streamrec.streams.paircounts import PairCounts


class DictCounts:
    """The reference: a dict per row in insertion order, totals as Python floats."""

    def __init__(self):
        self.succ, self.out, self.inn, self.touched = {}, {}, {}, set()

    def add(self, a_rows, b, w):
        for a in a_rows:
            d = self.succ.setdefault(a, {})
            d[b] = d.get(b, 0.0) + w if b in d else w
            self.out[a] = self.out.get(a, 0.0) + w
        self.inn[b] = self.inn.get(b, 0.0) + w * len(a_rows)
        self.touched.update(a_rows)

    def cut(self, limit, cap):
        for a in sorted(self.touched):
            d = self.succ.get(a)
            if d is not None and len(d) > limit:
                keys, vals = list(d), np.array(list(d.values()))
                keep = np.sort(np.argsort(-vals, kind="stable")[:cap])
                self.succ[a] = {keys[i]: d[keys[i]] for i in keep.tolist()}
        self.touched = set()


def same(pc: PairCounts, ref: DictCounts, n: int) -> None:
    rows, lens, bs, vals = pc.entries()
    got, start = {}, 0
    for r, k in zip(rows.tolist(), lens.tolist()):
        got[r] = list(zip(bs[start : start + k].tolist(), vals[start : start + k].tolist()))
        start += k
    assert got == {a: list(d.items()) for a, d in ref.succ.items() if d}  # order and bits
    # what a checkpoint streams: the same rows, lengths and entries, a block of rows at a time
    live_rows, live_lens = pc.live_rows()
    assert live_rows.tolist() == rows.tolist() and live_lens.tolist() == lens.tolist()
    blocks = list(pc.entry_blocks(block=7))
    assert all(len(a) and a.min() // 7 == a.max() // 7 for a, _, _ in blocks)
    a_all = np.concatenate([a for a, _, _ in blocks]) if blocks else np.zeros(0, np.int64)
    assert a_all.tolist() == np.repeat(rows, lens).tolist()
    assert [x for _, b, _ in blocks for x in b.tolist()] == bs.tolist()
    assert [x for _, _, v in blocks for x in v.tolist()] == vals.tolist()
    assert pc.out[:n].tolist() == [ref.out.get(a, 0.0) for a in range(n)]
    assert pc.inn[:n].tolist() == [ref.inn.get(b, 0.0) for b in range(n)]
    for a in range(n):
        _, b, v = pc.rows([a])
        assert dict(zip(b.tolist(), v.tolist())) == ref.succ.get(a, {}) and pc.row_len(a) == len(ref.succ.get(a, {}))


def test_random_interleavings_match_the_dicts():
    rnd = random.Random(7)
    n = 40
    for trial in range(6):
        pc, ref = PairCounts(), DictCounts()
        pc._SIDE_MIN, pc._QUEUE_MIN = 8, 16  # merges and queue folds happen often
        for step in range(3000):
            b = int(rnd.paretovariate(1.2)) % n
            a_rows = rnd.sample(range(n), rnd.randrange(1, 8))
            w = rnd.choice([1.0, 0.5, rnd.random()])  # equal weights: ties at the cuts
            pc.add(a_rows, b, w)
            ref.add(a_rows, b, w)
            if step % 50 == 49:
                assert pc.cut(limit=6, cap=3) >= 0
                ref.cut(limit=6, cap=3)
            if step % 333 == 0:  # a read folds everything
                a = rnd.randrange(n)
                assert pc.get(a, b) == ref.succ.get(a, {}).get(b, 0.0)
            if trial % 2 and step % 700 == 699:  # a checkpoint and a restore in between
                back = PairCounts()
                back.load(*pc.entries(), pc.out, pc.inn, np.flatnonzero(pc.touched))
                pc = back
        same(pc, ref, n)


def test_dead_entries_come_back_as_new_ones():
    pc = PairCounts()
    for b, w in [(1, 1.0), (2, 3.0), (3, 2.0)]:
        pc.add([0], b, w)
    assert pc.cut(limit=2, cap=2) == 1 and pc.get(0, 1) == 0.0
    pc.add([0], 1, 5.0)  # cut, then added again: a fresh count at the end of the insertion order
    rows, lens, bs, vals = pc.entries()
    assert bs.tolist() == [2, 3, 1] and vals.tolist() == [3.0, 2.0, 5.0] and pc.row_len(0) == 3


def test_scale_multiplies_counts_and_totals():
    pc = PairCounts()
    pc.add([0, 1], 2, 4.0)
    pc.scale(0.25)
    assert pc.get(0, 2) == pc.get(1, 2) == 1.0 and pc.out[:2].tolist() == [1.0, 1.0] and pc.inn[2] == 2.0


def test_key_groups_match_numpy_unique_whether_or_not_the_keys_pack_into_63_bits():
    from streamrec.streams.pairruns import key_groups

    rng = np.random.default_rng(1)
    for bits in (8, 31):  # 8: one packed sort; 31: rows, columns and positions need 62+ bits
        a, b = rng.integers(0, 1 << bits, 5000), rng.integers(0, 1 << bits, 5000)
        a[1000:2000], b[1000:2000] = a[:1000], b[:1000]  # repeated pairs
        uk, first, counts, order = key_groups(a, b)
        ref, ref_first, inv, ref_counts = np.unique((a << 32) | b, return_index=True, return_inverse=True,
                                                    return_counts=True)  # fmt: skip
        assert uk.tolist() == ref.tolist() and first.tolist() == ref_first.tolist()
        assert counts.tolist() == ref_counts.tolist()
        assert order.tolist() == np.argsort(inv, kind="stable").tolist()
