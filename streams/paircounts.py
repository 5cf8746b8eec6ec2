"""Sparse ``(a, b)`` counts in compact arrays, learned through an append buffer.

Why: ordered transitions add about ten pairs per event. As a dict of dicts each pair cost a Python
dict update (and a float object), most of the transitions' learning cost and tens of bytes per
entry. Here the per-event path only appends to four lists (:meth:`PairCounts.add`); :meth:`fold`
applies the buffer with a few numpy passes, before any read and whenever the owner needs the
state (its sweeps, checkpoints). The result is bit for bit the dict's: every addition is applied
in the order it was made (``np.add.at`` is unbuffered and sequential, and the pairs of one entry
reach it in the order they were added), and each entry keeps the
sequence number of its first insertion, so a row's entries can be replayed in the dict's
insertion order (what a cut's ties are broken by, and what a checkpoint writes).

Layout (the sorted runs and their numpy helpers: :mod:`~streamrec.streams.pairruns`): entries
live in two sorted arrays of keys ``a << 32 | b`` with values, sequence numbers
and a live flag: the main part and a small side part that new keys are inserted into (a copy of
the side, not of everything); the side is merged into the main part once it outgrows a quarter
of it, so an insertion costs amortised O(1) copies. :meth:`cut` marks entries dead rather than
moving arrays (a dead key added again is a new entry, as in a dict); merges drop them. Beside
the entries: the totals leaving each ``a`` (``out``) and entering each ``b`` (``inn``) of all
that was added (cut entries included), and the live entries per row.

>>> pc = PairCounts()
>>> pc.add([0, 2], 1, 1.0); pc.add([0], 1, 0.5); pc.add([1], 0, 2.0)
>>> pc.rows([0])[1].tolist(), pc.rows([0])[2].tolist(), pc.get(1, 0), pc.get(2, 0)
([1], [1.5], 2.0, 0.0)
>>> pc.out[:3].tolist(), pc.inn[:3].tolist(), pc.row_len(0)
([1.5, 2.0, 1.0], [2.0, 2.5, 0.0], 1)
"""

from __future__ import annotations

import math

import numpy as np

from streamrec.streams.pairruns import LOW, SHIFT, SortedRun, find_sorted, grow_1d, key_groups, merged, run_ranks


class PairCounts:
    """Sparse non-negative counts ``C[a, b]`` with row and column totals (see the module doc)."""

    #: the side part is merged into the main one once it outgrows sqrt(2 * main * new keys per
    #: insertion): what balances copying the side at each insertion against copying the main
    #: part at each merge (an insertion of a few keys per read keeps a small side)
    _SIDE_MIN = 1024
    #: fold the queue at a cut once it holds more pairs than this or than the entries: each cut
    #: scans the whole queue, so a long one costs more than the larger folds it saves (1 << 14
    #: took 15% fewer instructions than 1 << 18 over 60,000 MovieLens ratings)
    _QUEUE_MIN = 1 << 14

    def __init__(self) -> None:
        self._main, self._side = SortedRun(), SortedRun()
        self._seq = 0  # sequence number of the next new entry
        self._new_avg = 0.0  # keys inserted per insertion, a moving average
        self.out = np.zeros(0)  # total added per a
        self.inn = np.zeros(0)  # total added per b
        self._len = np.zeros(0, np.int64)  # live entries per a (pairs still queued not counted)
        self.touched = np.zeros(0, bool)  # rows given a pair since the last cut()
        # the per-event buffer: flat a rows; per group one b, its size and its weight
        self._pa: list[int] = []
        self._pb: list[int] = []
        self._pn: list[int] = []
        self._pw: list[float] = []
        # sealed pairs not yet in the entries, in the order added (the totals have them): the
        # first _qn of growable arrays; ``done``: applied already (the queue of a row folded early)
        self._qa, self._qb, self._qw = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        self._qdone, self._qn = np.zeros(0, bool), 0
        self._queued = np.zeros(0, np.int64)  # queued pairs not yet applied, per a row

    # -- adding ---------------------------------------------------------------------------------

    def add(self, a_rows: list[int], b: int, w: float) -> None:
        """Add ``w`` to ``C[a, b]`` for each ``a`` of ``a_rows`` (distinct, non-empty): the per-event
        path, four list appends; the arrays change at the next :meth:`fold`."""
        self._pa.extend(a_rows)
        self._pb.append(b)
        self._pn.append(len(a_rows))
        self._pw.append(w)

    def add_pairs(self, a_rows: list[int], b_rows: list[int], w: float) -> None:
        """Add ``w`` to ``C[a_rows[i], b_rows[i]]`` for each ``i``."""
        self._pa.extend(a_rows)
        self._pb.extend(b_rows)
        self._pn.extend([1] * len(b_rows))
        self._pw.extend([w] * len(b_rows))

    def _seal(self) -> None:
        """The per-event buffer into the queue, as arrays; the totals take it at once."""
        if not self._pb:
            return
        a = np.array(self._pa, np.int64)
        bg, ng, wg = np.array(self._pb, np.int64), np.array(self._pn, np.int64), np.array(self._pw)
        self._pa, self._pb, self._pn, self._pw = [], [], [], []
        self._rows(int(max(a.max(), bg.max())) + 1)
        w = np.repeat(wg, ng)
        np.add.at(self.out, a, w)
        np.add.at(self.inn, bg, wg * ng)
        np.add.at(self._queued, a, 1)
        self.touched[a] = True
        q, m = self._qn, len(a)
        if q + m > len(self._qa):
            cap = max(2 * len(self._qa), q + m, 1024)
            self._qa, self._qb = grow_1d(self._qa, cap), grow_1d(self._qb, cap)
            self._qw, self._qdone = grow_1d(self._qw, cap), grow_1d(self._qdone, cap)
        self._qa[q : q + m], self._qb[q : q + m], self._qw[q : q + m] = a, np.repeat(bg, ng), w
        self._qdone[q : q + m] = False
        self._qn = q + m

    def _rows(self, n: int) -> None:
        """Room for rows below ``n`` in the per-row arrays (all of one length)."""
        if n > len(self.out):
            n = max(n, 2 * len(self.out), 16)
            self.out, self.inn, self._len = grow_1d(self.out, n), grow_1d(self.inn, n), grow_1d(self._len, n)
            self.touched, self._queued = grow_1d(self.touched, n), grow_1d(self._queued, n)

    def fold(self) -> None:
        """Apply everything added, in the order it was added."""
        self._seal()
        q = self._qn
        if q:
            todo = ~self._qdone[:q]
            self._apply(self._qa[:q][todo], self._qb[:q][todo], self._qw[:q][todo])
            self._qn = 0
            self._queued[:] = 0

    def _fold_rows(self, rows: np.ndarray) -> None:
        """Apply the queued pairs of ``rows`` only (a row's entries depend on its own pairs alone)."""
        q = self._qn
        mark = np.zeros(len(self._queued), bool)
        mark[rows] = True
        sel = np.flatnonzero(mark[self._qa[:q]] & ~self._qdone[:q])
        if len(sel):
            self._apply(self._qa[sel], self._qb[sel], self._qw[sel])
            self._qdone[sel] = True
        self._queued[rows] = 0

    def _apply(self, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> None:
        """Add ``w[i]`` to entry ``(a[i], b[i])`` for each ``i`` in order (the totals have them)."""
        # look the distinct keys up, sorted (sorted needles keep the binary searches in cache)
        uk, first, counts, order = key_groups(a, b)
        main, side = self._main, self._side
        pm, in_main = find_sorted(main.k, uk)
        ps, in_side = find_sorted(side.k, uk)
        in_side &= ~in_main
        fresh = ~(in_main | in_side)  # new keys, and dead ones added again: new entries
        fresh[in_main] = ~main.live[pm[in_main]]
        fresh[in_side] = ~side.live[ps[in_side]]
        if fresh.any():
            fk, ff = uk[fresh], first[fresh]
            at = np.zeros(len(a), bool)  # sequence numbers in order of first addition
            at[ff] = True
            seq = self._seq + np.cumsum(at)[ff] - 1
            self._seq += len(fk)
            np.add.at(self._len, fk >> SHIFT, 1)
            for part, pos, there in ((main, pm, in_main), (side, ps, in_side)):
                p = pos[fresh & there]
                part.live[p], part.v[p], part.s[p] = True, 0.0, seq[there[fresh]]
            absent = ~(in_main | in_side)
            side.insert(uk[absent], seq[absent[fresh]])
            self._new_avg += 0.1 * (int(absent.sum()) - self._new_avg)
            ps, in_side = find_sorted(side.k, uk)
            in_side &= ~in_main
        w = w[order]  # pairs grouped by entry, within one in the order added
        for part, pos, there in ((main, pm, in_main), (side, ps, in_side)):
            sel = np.repeat(there, counts)
            np.add.at(part.v, np.repeat(pos, counts)[sel], w[sel])
        if len(side.k) > max(self._SIDE_MIN, math.sqrt(2.0 * len(main.k) * self._new_avg)):
            self._merge()

    def _merge(self) -> None:
        """The side part into the main one, dead entries dropped."""
        m, s = self._main, self._side
        ml, sl = m.live, s.live
        self._main = SortedRun(*merged(m.k[ml], s.k[sl], (m.v[ml], s.v[sl]), (m.s[ml], s.s[sl])))
        self._side = SortedRun()

    def scale(self, f: float) -> None:
        """Multiply every count and total by ``f`` (a fold of the owner's decay scale)."""
        self.fold()
        for part in (self._main, self._side):
            part.v *= f
        self.out *= f
        self.inn *= f

    # -- reading (each folds the buffer first) ---------------------------------------------------

    def rows(self, a_rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The live entries of the rows ``a_rows``, row after row (within a row in no particular
        order): ``(index into a_rows, b rows, counts)``.

        >>> pc = PairCounts(); pc.add([0, 1], 2, 1.0); pc.add([1], 0, 0.5)
        >>> [x.tolist() for x in pc.rows([1, 5, 0])]
        [[0, 0, 2], [0, 2, 2], [0.5, 1.0, 1.0]]
        """
        self.fold()
        if len(a_rows) <= self._FEW_ROWS:
            return self._few_rows(a_rows)
        a = np.asarray(a_rows, np.int64)
        got = []
        for part in (self._main, self._side):
            pos, tag = part.gather(a)
            if len(pos):
                got.append((tag, part.k[pos] & LOW, part.v[pos]))
        if not got:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        if len(got) == 1:
            return got[0]
        tag, b, v = (np.concatenate(x) for x in zip(*got))
        order = np.argsort(tag, kind="stable")
        return tag[order], b[order], v[order]

    #: up to this many rows :meth:`rows` slices each row out of each part (a user's window, about
    #: ten rows: three times cheaper than gathering positions with numpy passes over them all)
    _FEW_ROWS = 32

    def _few_rows(self, a_rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`rows` by slices: per row the main part's entries, then the side's (the order
        the stable sort by row gives there)."""
        tags, lens, ks, vs, lives = [], [], [], [], []
        parts = [(p.ptr(), p) for p in (self._main, self._side) if len(p.k)]
        for i, r in enumerate(a_rows):
            r = int(r)
            for ptr, part in parts:
                if r + 1 < len(ptr):
                    lo, hi = int(ptr[r]), int(ptr[r + 1])
                    if hi > lo:
                        tags.append(i)
                        lens.append(hi - lo)
                        ks.append(part.k[lo:hi])
                        vs.append(part.v[lo:hi])
                        lives.append(part.live[lo:hi])
        if not tags:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        tag = np.repeat(np.asarray(tags, np.int64), lens)
        k, v, live = np.concatenate(ks), np.concatenate(vs), np.concatenate(lives)
        if not live.all():
            tag, k, v = tag[live], k[live], v[live]
        return tag, k & LOW, v

    def get(self, a: int, b: int) -> float:
        self.fold()
        key = np.int64(a) << SHIFT | np.int64(b)
        for part in (self._main, self._side):
            pos = int(np.searchsorted(part.k, key))
            if pos < len(part.k) and part.k[pos] == key and part.live[pos]:
                return float(part.v[pos])
        return 0.0

    def row_len(self, a: int) -> int:
        self.fold()
        return int(self._len[a]) if a < len(self._len) else 0

    def __len__(self) -> int:
        """Live entries."""
        self.fold()
        return int(self._len.sum())

    # -- keeping rows bounded ---------------------------------------------------------------------

    def cut(self, limit: int, cap: int) -> int:
        """Cut every touched row with more than ``limit`` entries back to its ``cap`` largest
        (ties: the earlier inserted first, as a stable sort over a dict would); clear the touched
        rows; return how many rows were cut.

        >>> pc = PairCounts()
        >>> for b, w in [(1, 1.0), (2, 3.0), (3, 1.0), (4, 2.0)]: pc.add([0], b, w)
        >>> pc.cut(limit=3, cap=2), sorted(pc.rows([0])[1].tolist()), pc.row_len(0)
        (1, [2, 4], 2)
        """
        self._seal()
        # a row whose entries plus queued pairs stay within the limit cannot need a cut: only
        # the others are folded now (the rest waits for a read, or for the queue to grow)
        maybe = np.flatnonzero(self.touched & (self._len + self._queued > limit))
        if len(maybe):
            self._fold_rows(maybe)
        rows = maybe[self._len[maybe] > limit]
        if len(rows):
            tags, vals, seqs, where = [], [], [], []
            for part in (self._main, self._side):
                pos, tag = part.gather(rows)
                where.append((part, pos))
                tags.append(tag)
                vals.append(part.v[pos])
                seqs.append(part.s[pos])
            t, v = np.concatenate(tags), np.concatenate(vals)
            order = np.lexsort((np.concatenate(seqs), -v, t))  # row by row, largest first, ties: earlier
            drop = np.zeros(len(v), bool)
            drop[order[run_ranks(t[order]) >= cap]] = True
            start = 0
            for part, pos in where:
                gone = pos[drop[start : start + len(pos)]]
                part.live[gone], part.v[gone] = False, 0.0
                start += len(pos)
            self._len[rows] = np.minimum(self._len[rows], cap)
        self.touched[:] = False
        if self._qn > max(self._QUEUE_MIN, len(self._main.k)):
            self.fold()
        return len(rows)

    # -- state ------------------------------------------------------------------------------------

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The live entries as ``(rows, lens, b rows, counts)``: rows ascending, each row's
        entries in insertion order (:meth:`entry_blocks` joined).

        >>> pc = PairCounts(); pc.add([3], 9, 1.0); pc.add([3], 2, 1.0); pc.add([1], 5, 2.0)
        >>> [x.tolist() for x in pc.entries()]
        [[1, 3], [1, 2], [5, 9, 2], [2.0, 1.0, 1.0]]
        """
        rows, lens = self.live_rows()
        blocks = list(self.entry_blocks())
        if not blocks:
            return rows, lens, np.zeros(0, np.int64), np.zeros(0)
        return rows, lens, np.concatenate([b for _, b, _ in blocks]), np.concatenate([v for _, _, v in blocks])

    def entry_blocks(self, block: int = 4096):
        """:meth:`entries` a block of ``block`` rows at a time: ``(a rows, b rows, counts)`` of
        each entry, the same entries in the same order, never all of them at once.

        Why: a checkpoint streams the entries to the file; :meth:`entries` of millions of them
        held seven times their bytes in copies and sort scratch (546 MB at 100k users with 30
        events each, against 78 MB written). A part's keys are sorted, so a block of rows is a
        slice of each part, found by bisection.

        >>> pc = PairCounts(); pc.add([3], 9, 1.0); pc.add([3], 2, 1.0); pc.add([1], 5, 2.0)
        >>> [[x.tolist() for x in blk] for blk in pc.entry_blocks(block=2)]
        [[[1], [5], [2.0]], [[3, 3], [9, 2], [1.0, 1.0]]]
        """
        self.fold()
        n = len(self._len)
        for r0 in range(0, n, block):
            bounds = np.array([r0, min(n, r0 + block)], np.int64) << SHIFT
            ks, vs, ss = [], [], []
            for part in (self._main, self._side):
                lo, hi = np.searchsorted(part.k, bounds).tolist()
                live = part.live[lo:hi]
                ks.append(part.k[lo:hi][live])
                vs.append(part.v[lo:hi][live])
                ss.append(part.s[lo:hi][live])
            k, v, s = np.concatenate(ks), np.concatenate(vs), np.concatenate(ss)
            if len(k):
                a = k >> SHIFT
                order = np.lexsort((s, a))
                yield a[order], k[order] & LOW, v[order]

    def live_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows with live entries, ascending, and how many each has (:meth:`entries`' first
        two arrays, from the per-row counts)."""
        self.fold()
        rows = np.flatnonzero(self._len > 0)
        return rows, self._len[rows]

    def load(self, rows, lens, bs, vals, out, inn, touched=()) -> None:
        """Replace everything by ``entries()``-shaped arrays and the totals."""
        rows, lens = np.asarray(rows, np.int64), np.asarray(lens, np.int64)
        touched = np.asarray(touched, np.int64)
        k = (np.repeat(rows, lens) << SHIFT) | np.asarray(bs, np.int64)
        order = np.argsort(k, kind="stable")
        seq = np.arange(len(k), dtype=np.int64)  # a row's entries come in insertion order
        self.__init__()
        self._main = SortedRun(k[order], np.asarray(vals, np.float64)[order], seq[order])
        self._seq = len(k)
        self._rows(max(len(out), len(inn), int(rows.max()) + 1 if len(rows) else 0,
                       int(touched.max()) + 1 if len(touched) else 0))  # fmt: skip
        self.out[: len(out)], self.inn[: len(inn)] = out, inn
        self._len[rows] = lens
        self.touched[touched] = True
