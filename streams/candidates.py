"""A ranking pass: many users' lists at once, candidates from indexes, exact scores at the candidates.

Why: ranking one user used to mean a dense score vector over the whole catalogue per signal (three
mat-vecs over every embedding, an MF product, popularity and masks rebuilt per user). At 50k items
with embeddings that was 21-38 ms a list, bound by memory bandwidth. Here each signal only
*nominates* its best allowed rows and can be *read* exactly at any row, and
:func:`rank_nominated` blends exactly as :func:`~streamrec.streams.ranking.rank` does over the union
of the nominees, so a list differs from the dense one only where a nomination did:

- **co-occurrence** and **tags**: sparse already (the neighbour and postings lists of the history);
- **MF**: one batched product of a chunk of users with the item factors (16 wide, cheap) and, for
  a biased MF, one batched add of the item biases (a float32 proxy), a block of items at a time
  (:func:`block_supersets`); each user's nominees from a superset of the proxy found by a sampled
  threshold (:func:`top_superset`'s), not a selection over the whole catalogue (that selection
  cost more than the product), picked by the exact scores;
- **embedding** and **recent**: the faiss IVF index of :mod:`streamrec.streams.contentindex` once
  the catalogue is large (exact products below ``ContentConfig.index_min_items``), batched per chunk;
  a recent item's neighbours are searched once per pass and in fewer lists than a profile's
  (8 lists of 1024 for a profile, 2 for an item at 100k items: ``recall_at_50`` 0.999);
- **fresh**: the cold rows are found once per pass and scored exactly (one small product per
  chunk); the lift's reference (the user's mean and best cosine over every allowed embedded item) is
  exact for the mean (the sum of the embeddings, minus the seen ones) and the best nominee's for the
  maximum;
- **popularity**, the availability mask and the cold set: once per pass, not per user; a user's
  seen rows are cleared in the pass's mask and restored after, so a user costs ``O(seen)`` there.

``exact=True`` nominates by exhaustive products instead: the reference the index is measured
against (``recall_at_50`` in ``streamrec bench scale``); a recommender with no index (small
catalogue) gives the same lists either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Hashable

import numpy as np

from streamrec.streams.gcpause import collection_paused
from streamrec.streams.nominate import (DenseLookup, Nominated, below, block_supersets, feature_columns, hit_rows,
                                        lift_scalar, nominate, rank_nominated, top_superset, union_sorted)  # fmt: skip
from streamrec.streams.ranking import top_n

if TYPE_CHECKING:  # pragma: no cover
    from streamrec.streams.recommender import Recommender

#: users ranked together (batched products); bounded scratch memory per chunk
CHUNK = 64
#: popularity: the pass keeps this many more than ``n_popular`` to filter each user's seen rows
POP_SLACK = 256
#: index searches ask for this many more rows than nominated (seen and deleted rows are dropped)
SEARCH_SLACK = 32
#: a recent item's neighbour search asks for this many more still (beyond the seen rows of its
#: chunk's users; a fixed 64 read more rows for the same lists at 100k items)
NEAR_SLACK = 16
#: MF: the superset keeps this many more rows than needed (the float32 proxy's rounding)
MF_MARGIN = 8
#: rows ranked beyond ``k``, in case items were deleted while a long (interleaved) pass runs
GONE_SLACK = 4


#: ``(user, signals, cand, X, k) -> (rows, scores)``: blends the candidates ``cand`` (sorted rows)
#: from ``X``, the signals' normalised values there (one column each), best first
Ranker = Callable[[Hashable, list, np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]
rows_none = np.zeros(0, dtype=np.int64)


class _Probe:
    """One user's content query vectors (columns) read at candidate rows (sorted, as every caller
    here passes them), one gather per rows; rows the previous read had (the recent items'
    neighbours nominated from, then the candidates, which share their nominees) are not gathered
    again, they are copied from it. The products keep their shape (a gather of the new rows times
    every column): BLAS rounds a row's product differently with other rows around it (measured), and
    a pass's lists stay the same to the last bit."""

    def __init__(self, content, W: np.ndarray):
        self.content, self.W = content, np.ascontiguousarray(W, dtype=np.float32)
        self._rows: np.ndarray | None = None

    def at(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if rows is self._rows:
            return self._out
        prev = self._rows
        if prev is None or not len(prev) or not len(rows):
            out = (self.content.vectors(rows) @ self.W, self.content.has_embedding(rows))
        else:
            pos = np.searchsorted(prev, rows)
            np.minimum(pos, len(prev) - 1, out=pos)
            new = np.flatnonzero(prev[pos] != rows)
            sims = self._out[0][pos]  # the new rows' are overwritten below
            if len(new):
                sims[new] = self.content.vectors(rows[new]) @ self.W
            out = (sims, self.content.has_embedding(rows))
        self._rows, self._out = rows, out
        return out


class RankPass:
    """What every list of one pass shares; :meth:`lists` ranks users in chunks."""

    def __init__(self, rec: Recommender, exact: bool = False, ranker: Ranker | None = None):
        cfg = rec.config
        self.rec, self.cfg, self.exact = rec, cfg, exact
        #: who blends the nominees (the self-tuning blend's served weighting), else the model's weights
        self.ranker = ranker
        self.n = n = len(rec.index)
        self.available = rec.allowed()
        self.allowed = self.available.copy()  # seen rows cleared per user, restored after
        self.pop = rec.popularity.scores()
        self.pop_top = top_n(self.pop, cfg.n_popular + POP_SLACK, self.available, positive=True)
        self.pop_all = len(self.pop_top) < cfg.n_popular + POP_SLACK  # every positive row is in it
        mf_rows = rec.mf.factor_rows()
        self.mf_rows = mf_rows[self.available[mf_rows]]
        # float32 for the nominating product and top-k (half the bytes); exact scores are float64.
        # Transposed and contiguous (factors x rows): the chunk's product reads it in the layout
        # the kernel streams (0.084 against 0.116 ms a user at 100k rows, the same products)
        self.mf_QT = np.ascontiguousarray(rec.mf.item_factors(self.mf_rows).T, dtype=np.float32)
        self.mf_bi = rec.mf.item_biases(self.mf_rows)
        #: the biases in float32, added to a chunk's products in one call: a proxy to select from
        self.mf_bi32 = None if self.mf_bi is None else self.mf_bi.astype(np.float32)
        cm = rec.content
        self.content_on = cm.live and cm.config.enabled
        self.emb = self.content_on and cm.has_embeddings
        self.index = None
        if self.emb:
            cm.prepare()
            if not exact and cm.ann.built:
                self.index = cm.ann
            self.has_emb = cm.has_embedding(np.arange(n))
            self.emb_ok = self.has_emb & self.available
            self.emb_sum = cm.vector_sum(self.emb_ok).astype(np.float64)
            self.emb_count = int(self.emb_ok.sum())
            cold = cm.cold(rec.cooccur.interactions, rec.event_time) & self.available
            self.cold_rows = np.flatnonzero(cold)
            self.cold_E = cm.vectors(self.cold_rows)
            self.is_cold = cold
        self._decay: dict[int, np.ndarray] = {}  # the recent signal's weights, by its item count
        self._fallback: dict[int, list] = {}
        #: the sparse signals' values of the user being ranked, spread over every row (reset per user)
        self._dense: dict[str, DenseLookup] = {}
        self._near: dict[int, np.ndarray] = {}  # recent row -> its neighbours, sorted (per pass)
        self._near_k: dict[int, int] = {}  # ... and how many were asked for

    def fallback(self, k: int) -> list[tuple[Hashable, float]]:
        if k not in self._fallback:
            self._fallback[k] = self.rec.fallback(k)
        return self._fallback[k]

    def lists(self, users: list[Hashable], k: int) -> list[list[tuple[Hashable, float]]]:
        """Each user's top ``k`` (item, score), the fallback for a user with no personal signal.

        The pass may outlive the state it was set up from (the worker interleaves it with
        learning): rows added since are left to the next pass, deletions are honoured at once."""
        out: list = []
        with collection_paused():  # a full collection walks the whole model (see gcpause)
            for start in range(0, len(users), CHUNK):
                out.extend(self._chunk(users[start : start + CHUNK], k))
        return out

    def _chunk(self, users: list[Hashable], k: int) -> list:
        rec, cfg = self.rec, self.cfg
        mf = rec.mf
        urows = [mf.user_row(u) for u in users]
        known = [j for j, r in enumerate(urows) if r is not None]
        hists = [rec.cooccur.history_rows(u) for u in users]
        n = self.n  # rows that arrived after the pass began are left to the next pass
        seens = [(r[r < n] if len(r) and r.max() >= n else r) for r in (rec.seen_rows(u) for u in users)]
        mf_scores = {}
        if known and len(self.mf_rows) and cfg.n_mf > 0:
            Pu = mf.user_factors(np.array([urows[j] for j in known])).astype(np.float32)
            ts = [cfg.n_mf + len(seens[j]) + MF_MARGIN for j in known]
            sets = block_supersets(Pu, self.mf_QT, self.mf_bi32, ts)
            if any(got is None for got in sets):  # the sample let too few through: the whole rows
                S = Pu @ self.mf_QT
                B = S if self.mf_bi32 is None else S + self.mf_bi32
                sets = [got if got is not None else (pos := top_superset(B[i], ts[i]), S[i][pos])
                        for i, got in enumerate(sets)]  # fmt: skip
            mf_scores = dict(zip(known, sets))
        pre = self._content_batch(users, hists, seens) if self.emb else None
        # the chunk's co-occurrence and transition reads in one pass each (same rows and bits as
        # one call a user: one sort and one bincount for the chunk, not one a user)
        co_all = rec.cooccur.sparse_scores_many(users)
        tr_all = rec.transitions.sparse_scores_many(users) if cfg.transitions.enabled else [None] * len(users)
        items = rec.index.items
        out = []
        for j, user in enumerate(users):
            seen = seens[j]
            self.allowed[seen] = False
            try:
                sigs = self._signals(user, j, urows[j], mf_scores.get(j), seen, pre, co_all[j], tr_all[j])
                if not sigs:
                    out.append(self.fallback(k))
                    continue
                if self.ranker is None:
                    rows, scores = rank_nominated(sigs, cfg.weights, k + GONE_SLACK)
                else:
                    cand = union_sorted([g.rows for g in sigs if len(g.rows)])
                    rows, scores = self.ranker(user, sigs, cand, feature_columns(sigs, cand), k + GONE_SLACK)
                live = rec.available_rows(rows)  # deleted since the pass began: never listed
                if live.all():
                    rows, scores = rows[:k], scores[:k]
                else:
                    rows, scores = rows[live][:k], scores[live][:k]
                out.append(list(zip(map(items.__getitem__, rows.tolist()), scores.tolist())))
            finally:
                self.allowed[seen] = self.available[seen]
                for d in self._dense.values():
                    d.clear()
        return out

    def _lookup(self, name: str, rows: np.ndarray, vals: np.ndarray, default: float) -> Callable:
        """``lookup(rows, vals, default)`` of the user being ranked, read from a dense array."""
        d = self._dense.get(name)
        if d is None:
            d = self._dense[name] = DenseLookup(self.n, default)
        return d.lookup(rows, vals)

    # -- content queries, batched per chunk -----------------------------------------------------

    def _content_batch(self, users, hists, seens) -> dict:
        cm, cc = self.rec.content, self.cfg.content
        profiles = [cm.profile(u, h) for u, h in zip(users, hists)]
        recents = [cm.recent_rows(h) for h in hists]
        slack = SEARCH_SLACK + min(400, max((len(s) for s in seens), default=0))
        pre: dict = {"profiles": profiles, "recents": recents}
        have = [j for j, p in enumerate(profiles) if p is not None]
        if have:
            Qp = np.stack([profiles[j] for j in have])
            pre["cold"] = dict(zip(have, (Qp @ self.cold_E.T).astype(np.float64))) if len(self.cold_rows) else {}
            if self.index is None:
                pre["cos"] = dict(zip(have, cm.exact_scores(Qp)))
            else:
                hits, scores = self.index.search_scored(Qp, cc.n_embedding + slack)
                pre["nom"] = dict(zip(have, zip(hits, scores)))
        rec_rows = sorted({r for rr in recents for r in rr})
        if rec_rows and self.index is None:
            V = cm.vectors(np.asarray(rec_rows, dtype=np.int64))
            pre["near"] = dict(zip(rec_rows, cm.exact_scores(V)))
        elif rec_rows:  # the same recent items recur across users (popular ones): once per pass
            want = cc.n_recent + slack + NEAR_SLACK  # a list searched for lighter users is too short
            todo = [r for r in rec_rows if self._near_k.get(r, 0) < want]
            if todo:
                todo_rows = np.asarray(todo, dtype=np.int64)
                found = self.index.neighbours(cm.vectors(todo_rows), want, rows=todo_rows)
                self._near.update(zip(todo, (union_sorted([hit_rows(h)]) for h in found)))  # sorted rows
                self._near_k.update(dict.fromkeys(todo, want))
            pre["near_nom"] = self._near
        return pre

    # -- one user ---------------------------------------------------------------------------------

    def _signals(self, user, j: int, urow, mf_row, seen: np.ndarray, pre, co, tr) -> list[Nominated]:
        """The user's signals; ``co`` and ``tr``: its co-occurrence and transition scores
        (``sparse_scores``, read for the chunk), ``None`` without any."""
        rec, cfg = self.rec, self.cfg
        allowed = self.allowed
        sigs: list[Nominated] = []
        if co is not None:
            rows, vals = below(*co, self.n)
            sigs.append(Nominated("cooccur", nominate(rows, vals, cfg.n_cooccur, allowed, True),
                                  self._lookup("cooccur", rows, vals, 0.0)))  # fmt: skip
        if tr is not None:
            rows, vals = below(*tr, self.n)
            sigs.append(Nominated("transitions", nominate(rows, vals, cfg.n_transitions, allowed, True),
                                  self._lookup("transitions", rows, vals, 0.0)))  # fmt: skip
        if urow is not None:
            mf = rec.mf
            if mf_row is not None and cfg.n_mf > 0:
                # the superset was chosen on the float32 proxy (product + item bias, the chunk's
                # blocks), with a margin for its rounding; the nominees by the exact sums
                pos, prod = mf_row
                s = prod if self.mf_bi is None else prod + (self.mf_bi[pos] + mf.user_bias(urow))
                noms = nominate(self.mf_rows[pos], s, cfg.n_mf, allowed, False)
            else:
                noms = np.zeros(0, dtype=np.int64)
            sigs.append(Nominated("mf", noms, lambda c, u=urow: mf.score_rows(u, c), "minmax"))
        for source in rec.sources.values():
            sig = source(user, rec)
            if sig is not None:
                dense = sig.dense(self.n)
                noms = (top_n(dense, sig.n_candidates, allowed, positive=sig.normalise != "minmax")
                        if sig.n_candidates > 0 else np.zeros(0, dtype=np.int64))  # fmt: skip
                sigs.append(Nominated(sig.name, noms, lambda c, d=dense: d[c], sig.normalise, sig.missing, True))
        if sigs and self.content_on:
            if pre is not None:
                sigs += self._content(j, seen, pre)
            sigs += self._tags(user)
        if sigs:
            sigs.append(Nominated("popularity", self._popular(), lambda c: self.pop[c]))
        return sigs

    def _popular(self) -> np.ndarray:
        n_pop, top = self.cfg.n_popular, self.pop_top
        got = top[self.allowed[top]][:n_pop]
        if len(got) < n_pop and not self.pop_all:  # a user who saw most of the trending rows
            got = top_n(self.pop, n_pop, self.allowed, positive=True)
        return got

    def _content(self, j: int, seen: np.ndarray, pre: dict) -> list[Nominated]:
        cm, cc, allowed = self.rec.content, self.cfg.content, self.allowed
        out: list[Nominated] = []
        q = pre["profiles"][j]
        recent = pre["recents"][j]
        probe = None
        if q is not None or recent:  # the query columns: the profile, then the recent items
            Wt = np.empty((int(q is not None) + len(recent), cm.dim), dtype=np.float32)
            if q is not None:
                Wt[0] = q
            if recent:
                Wt[int(q is not None) :] = cm.vectors(np.asarray(recent, dtype=np.int64))
            probe = _Probe(cm, Wt.T)
        if q is not None:

            def cos_at(c: np.ndarray) -> np.ndarray:
                sims, has = probe.at(c)
                v = sims[:, 0].astype(np.float64)
                v[~has] = -np.inf
                return v

            if self.index is None:
                dense = np.full(self.n, -np.inf)
                row = pre["cos"][j]
                m = len(row)
                dense[:m] = np.where(self.has_emb[:m], row, -np.inf)
                noms = top_n(dense, cc.n_embedding, allowed)
                ref = dense[np.isfinite(dense) & allowed]
                count = len(ref)
                mu, top = (float(ref.mean()), float(ref.max())) if count else (0.0, 0.0)
            else:
                hits, scores = pre["nom"][j]
                ok = hits >= 0
                hits, scores = hits[ok], scores[ok]
                ok = allowed[hits]
                noms, scores = hits[ok][: cc.n_embedding], scores[ok]
                seen_emb = seen[self.emb_ok[seen]]
                total = self.emb_sum - cm.vectors(seen_emb).sum(axis=0, dtype=np.float64)
                count = self.emb_count - len(seen_emb)
                mu = float(total @ q) / count if count else 0.0
                top = float(scores[0]) if len(scores) else -np.inf
            out.append(Nominated("embedding", noms, cos_at, "minmax", "mean"))
            if len(self.cold_rows) and count:
                if self.is_cold[seen].any():  # else every cold row is allowed (none was seen)
                    ok = allowed[self.cold_rows]
                    rows, cos = self.cold_rows[ok], pre["cold"][j][ok]
                else:
                    rows, cos = self.cold_rows, pre["cold"][j]
                if len(rows):
                    if self.index is not None:
                        top = max(top, float(cos.max()))
                    lifted = lift_scalar(cos, mu, top)
                    out.append(Nominated("fresh", nominate(rows, lifted, cc.n_fresh, allowed, True),
                                         self._lookup("fresh", rows, lifted, -np.inf), "raw"))  # fmt: skip
        if recent:
            w = self._decay.get(len(recent))
            if w is None:
                w = self._decay[len(recent)] = np.array([cc.recent_decay**r for r in range(len(recent))], np.float32)
            power, first = cc.recent_power, 0 if q is None else 1

            def near_at(c: np.ndarray) -> np.ndarray:
                sims, has = probe.at(c)
                sim = np.maximum(sims[:, first:], np.float32(0.0))
                acc = ((sim * sim * sim) if power == 3.0 else sim**power) @ w
                v = acc.astype(np.float64)
                v[~has] = -np.inf
                return v

            if self.index is None:
                m = len(pre["near"][recent[0]])
                acc = np.zeros(m, dtype=np.float32)
                for r, row in enumerate(recent):
                    sim = np.maximum(pre["near"][row], np.float32(0.0))
                    acc += np.float32(cc.recent_decay**r) * sim**power
                dense = np.full(self.n, -np.inf)
                dense[:m] = np.where(self.has_emb[:m], acc, -np.inf)
                noms = top_n(dense, cc.n_recent, allowed, positive=True)
            else:
                near = pre["near_nom"]
                hits = near[recent[0]] if len(recent) == 1 else union_sorted([near[r] for r in recent])
                hits = hits[allowed[hits]]
                noms = nominate(hits, near_at(hits), cc.n_recent, allowed, True)
            out.append(Nominated("recent", noms, near_at, "max", "mean"))
        return out

    def _tags(self, user) -> list[Nominated]:
        tags = self.rec.content.tags
        if not tags:
            return []
        sp = tags.sparse_scores(user)
        if sp is None:
            return []
        rows, vals = below(*sp, self.n)
        base = self._lookup("tags", rows, vals, 0.0)

        def at(c: np.ndarray) -> np.ndarray:
            v = base(c)
            v[~tags.tagged(c)] = -np.inf
            return v

        noms = nominate(rows, at(rows), self.cfg.content.n_tags, self.allowed, True)
        return [Nominated("tags", noms, at, "max", "mean")]

