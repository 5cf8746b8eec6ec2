"""The one object the stream worker talks to: learn from events, answer top-K, checkpoint.

:class:`Recommender` owns the online MF, the co-occurrence counts, the decayed popularity, each
user's seen set and the deleted items, and the LLM-derived content (item embeddings and tags fed
back from the enrichment workers with :meth:`Recommender.set_embedding` / :meth:`Recommender.set_tags`,
see :mod:`streamrec.streams.content`), all on one shared :class:`ItemIndex` so their score vectors
line up row for row. It does no I/O: the worker decodes events, calls ``learn_*``, and once a
minute calls :meth:`Recommender.recommend` for the active users and :meth:`Recommender.to_bytes`
for the checkpoint it stores next to the committed offsets. ``n_learned`` counts the events
learned per user so tests (and the worker's own checks) can prove that a restart neither loses nor
double counts an event.

Checkpoints are msgpack with raw numpy buffers (``model.dumps``), never pickle: they cross
machines (:mod:`streamrec.streams.recommenderstate`; the configuration is
:mod:`streamrec.streams.recommenderconfig`, a user's record and the item deltas between
partitioned workers :mod:`streamrec.streams.partitionstate`). Plain pickling also works (the
contract test uses it), but runtime candidate sources registered with
:meth:`Recommender.add_source` are code, not state, and are not saved either way.

>>> rec = Recommender(seed=7)
>>> for user, item in [("ann", "a"), ("ann", "b"), ("bob", "a"), ("bob", "b"), ("cat", "a")]:
...     rec.learn_click(user, item, ts=0.0)
>>> [item for item, _ in rec.recommend("cat", k=1)]   # people who took "a" also took "b"
['b']
>>> rec.recommend("nobody", k=2) == rec.fallback(k=2)
True
>>> rec.delete_item("b"); [item for item, _ in rec.recommend("cat", k=5)]
[]

An item with an embedding and no interaction at all reaches the users whose history resembles it:

>>> rec.set_embedding("a", [1.0, 0.0]); rec.set_embedding("b", [0.0, 1.0])
>>> rec.learn_click("dan", "a", ts=1.0)
>>> rec.set_embedding("c", [0.9, 0.1]); rec.set_embedding("d", [0.1, 0.9])
>>> [item for item, _ in rec.recommend("dan", k=1)]
['c']
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Hashable, Sequence

import numpy as np

from streamrec.streams.candidates import RankPass
from streamrec.streams.content import ContentModel, unit
from streamrec.streams.cooccur import Cooccurrence
from streamrec.streams.popularity import Popularity
from streamrec.streams.model import OnlineMF
from streamrec.streams.partitionstate import PartitionState
from streamrec.streams.blendlearner import BlendLearner, rank_learned
from streamrec.streams.ranking import Signal, rank
from streamrec.streams.recommenderconfig import RecommenderConfig
from streamrec.streams.recommenderstate import SNAPSHOT_FORMAT, RecommenderState
from streamrec.streams.similar import blend
from streamrec.streams.state import ItemIndex, grow
from streamrec.streams.transitions import Transitions

__all__ = ["Recommender", "RecommenderConfig", "SNAPSHOT_FORMAT", "Source"]

#: an extra candidate source: (user, recommender) -> a Signal named after its weight, or None
Source = Callable[[Hashable, "Recommender"], "Signal | None"]


class Recommender(RecommenderState, PartitionState):
    """MF + co-occurrence + popularity + content + seen/deleted filtering behind one small API
    (checkpoints: :class:`RecommenderState`; partitioned state: :class:`PartitionState`)."""

    KIND = "Recommender"

    def __init__(self, config: RecommenderConfig | None = None, seed: int | None = None):
        cfg = config or RecommenderConfig()
        if seed is not None:
            cfg = replace(cfg, mf=replace(cfg.mf, seed=seed))
        pol = cfg.ratings
        cfg = replace(
            cfg,
            mf=replace(cfg.mf, ratings=pol),
            cooccur=replace(cfg.cooccur, ratings=pol),
            popularity=replace(cfg.popularity, ratings=pol),
            transitions=replace(cfg.transitions, ratings=pol),
        )
        self.config = cfg
        self.index = ItemIndex()
        self.mf = OnlineMF(cfg.mf, self.index)
        self.cooccur = Cooccurrence(cfg.cooccur, self.index)
        self.popularity = Popularity(cfg.popularity, self.index)
        self.transitions = Transitions(cfg.transitions, self.index)
        self.content = ContentModel(cfg.content, self.index)
        self.blend = BlendLearner(cfg.learn_blend) if cfg.learn_blend.enabled else None
        self._available = np.ones(16, dtype=bool)
        #: user -> rows seen, an insertion-ordered set (a dict) bounded by ``config.max_seen``
        self._seen: dict[Hashable, dict[int, None]] = {}
        self._learned: dict[Hashable, int] = {}
        self._dirty: set[Hashable] = set()  # users learned from since the last snapshot
        self._need_full = False  # a change no delta describes (embeddings reset)
        self._ck_items = 0  # items in the index at the last checkpoint
        self.sources: dict[str, Source] = {}

    # -- events ---------------------------------------------------------------------------------

    def _saw(self, user: Hashable, row: int) -> None:
        seen = self._seen.get(user)
        if seen is None:
            seen = self._seen[user] = {}
        elif row in seen:
            del seen[row]  # most recent last: the oldest is forgotten first
        seen[row] = None
        if len(seen) > self.config.max_seen:
            del seen[next(iter(seen))]
        self._learned[user] = self._learned.get(user, 0) + 1
        self._dirty.add(user)

    def learn_click(self, user: Hashable, item: Hashable, ts: float | None = None) -> None:
        """Implicit positive: MF step plus sampled negatives, co-occurrence, popularity."""
        row = self.index.add(item)
        self.mf.learn_positive_row(user, row)
        self.cooccur.add_row(user, row)
        self.popularity.add_row(row, ts)
        if self.config.transitions.enabled:
            self.transitions.learn(user, row, ts)
        self._saw(user, row)
        if self.content.live:
            self.content.learn(user, row)
        if self.blend is not None:
            self.blend.learn(user, row)

    def learn_rating(self, user: Hashable, item: Hashable, rating: float, ts: float | None = None) -> None:
        """Explicit feedback, learned as the configured :class:`RatingPolicy` says."""
        row = self.index.add(item)
        self.mf.learn_rating_row(user, row, rating)
        positive = self.config.ratings.positive(rating)
        if positive:
            self.cooccur.add_row(user, row)
            self.popularity.add_row(row, ts)
            if self.config.transitions.enabled:
                self.transitions.learn(user, row, ts)
        self._saw(user, row)
        if self.content.live:
            weight = 1.0 if positive else self.config.content.negative_weight
            if weight:
                self.content.learn(user, row, weight)
        if positive and self.blend is not None:
            self.blend.learn(user, row)

    def learn_event(self, record: dict) -> None:
        """Dispatch one decoded record (the synth / JSON-lines shape) to the method above.

        ``item`` records upsert (or delete, when they carry a truthy ``deleted``); other types are
        ignored, so callers can pass a mixed stream.
        """
        kind = record.get("type")
        if kind == "click":
            self.learn_click(record["user"], record["item"], record.get("ts"))
        elif kind == "rating":
            self.learn_rating(record["user"], record["item"], float(record["rating"]), record.get("ts"))
        elif kind == "item":
            if record.get("deleted"):
                self.delete_item(record["item"])
            else:
                self.upsert_item(record["item"], record.get("ts"))

    def _set_available(self, item: Hashable, value: bool) -> None:
        row = self.index.add(item)
        if row >= len(self._available):
            self._available = grow(self._available, len(self.index), fill=True)
        self._available[row] = value

    def upsert_item(self, item: Hashable, ts: float | None = None) -> None:
        """A catalogue item exists (again): it may be recommended."""
        self._set_available(item, True)
        self.content.saw(self.index.rows[item], ts)

    def delete_item(self, item: Hashable) -> None:
        """Never recommend ``item`` until it is upserted again (unknown ids are remembered too)."""
        self._set_available(item, False)

    # -- content (the LLM workers' ItemEmbedding / ItemTags records) ---------------------------------

    def set_embedding(self, item: Hashable, vector, ts: float | None = None) -> None:
        """Store or replace ``item``'s embedding (kept L2-normalised, float32).

        The item becomes a known row, recommendable unless deleted, even before any interaction.
        The first vector fixes the dimension; another dimension (or a zero or non-finite vector)
        raises ``ValueError`` and changes nothing.
        """
        vector = unit(vector, self.content.dim)  # validate before the item becomes a row
        self.content.set_embedding(self.index.add(item), vector, ts)

    def users_near(self, item: Hashable, n: int) -> list[Hashable]:
        """Users whose content profile is closest to ``item``'s embedding (for cold-start refreshes)."""
        row = self.index.rows.get(item)
        return [] if row is None else self.content.users_near(row, n)

    def reset_embeddings(self) -> None:
        """Forget all embeddings and content profiles, e.g. before switching the embedding model."""
        self.content.reset_embeddings()
        self._need_full = True

    def set_tags(self, item: Hashable, tags: Sequence[tuple[str, float]], ts: float | None = None) -> None:
        """Replace ``item``'s tags, ``(tag, score)`` pairs (non-positive scores dropped; [] clears)."""
        self.content.set_tags(self.index.add(item), tags, ts)

    def embedding_of(self, item: Hashable) -> np.ndarray | None:
        """A copy of ``item``'s stored (unit, float32) embedding, or ``None``."""
        return self.content.embedding(self.index.get(item))

    def tags_of(self, item: Hashable) -> list[tuple[str, float]]:
        """``item``'s stored tags, scores scaled to unit L2 norm."""
        return self.content.tags_of(self.index.get(item))

    @property
    def has_content(self) -> bool:
        """Whether any item has an embedding."""
        return self.content.has_embeddings

    def is_available(self, item: Hashable) -> bool:
        row = self.index.get(item)
        return row is None or row >= len(self._available) or bool(self._available[row])

    # -- reading --------------------------------------------------------------------------------

    def n_learned(self, user: Hashable) -> int:
        """Events learned for ``user`` (clicks and ratings, each counted once)."""
        return self._learned.get(user, 0)

    @property
    def n_events(self) -> int:
        return sum(self._learned.values())

    def seen(self, user: Hashable) -> set[Hashable]:
        return {self.index.items[r] for r in self._seen.get(user, ())}

    def seen_items(self, user: Hashable, limit: int) -> list[Hashable]:
        """At most ``limit`` of the user's seen items, the recent history first (what the serving
        fallback leaves out of the global list)."""
        recent = list(reversed(self.cooccur.history(user)))[:limit]
        if len(recent) < limit:
            have = set(recent)
            recent += [i for i in self.seen(user) if i not in have][: limit - len(recent)]
        return recent

    def similar_items(self, item: Hashable, k: int | None = None) -> list[tuple[Hashable, float]]:
        """Items like ``item``: its co-occurrence and embedding neighbours blended with the
        ``cooccur`` and ``embedding`` weights (:func:`streamrec.streams.similar.blend`); never
        ``item`` itself nor a deleted item; empty for an unknown item or one without neighbours."""
        k = self.config.k if k is None else k
        row = self.index.get(item)
        if row is None or k <= 0:
            return []
        n, w = len(self.index), self.config.weights
        co = np.zeros(n)
        for other, score in self.cooccur.neighbours(item, max(3 * k, 50)):
            co[self.index.rows[other]] = score
        rows = blend(co, self.content.item_scores(row), self.allowed(), row, k, w.of("cooccur"), w.of("embedding"))
        return [(self.index.items[r], s) for r, s in rows]

    def allowed(self, user: Hashable | None = None) -> np.ndarray:
        """Boolean mask over item rows: available and, for ``user``, not yet seen."""
        n = len(self.index)
        if len(self._available) < n:
            self._available = grow(self._available, n, fill=True)
        mask = self._available[:n].copy()
        seen = self._seen.get(user) if user is not None else None
        if seen:
            mask[np.fromiter(seen, np.int64, len(seen))] = False
        return mask

    def set_weights(self, **weights: float) -> None:
        """Replace some blend weights, e.g. ``set_weights(popularity=0.3)``. Weights only shape the
        ranking, so this is safe on a model restored from a checkpoint (the worker applies
        ``STREAMREC_BLEND_WEIGHTS`` this way); an unknown name raises ``TypeError``."""
        self.config = replace(self.config, weights=replace(self.config.weights, **weights))

    def add_source(self, name: str, source: Source) -> None:
        """Register an extra candidate source, weighed by ``weights.extra`` under the Signal's name
        (never by a named field: a source called "fresh" weighs 0 until ``extra`` says otherwise)."""
        self.sources[name] = source

    def signals(self, user: Hashable, allowed: np.ndarray | None = None) -> list[Signal]:
        """Every signal for ``user``; empty when there is nothing personal to go on.

        ``allowed`` (default ``self.allowed(user)``) only shapes the content signals' references.
        """
        cfg = self.config
        out = []
        co = self.cooccur.scores_for(user)
        if co is not None:
            out.append(Signal("cooccur", co, cfg.n_cooccur, "max"))
        tr = self.transitions.scores_for(user) if cfg.transitions.enabled else None
        if tr is not None:
            out.append(Signal("transitions", tr, cfg.n_transitions, "max"))
        mf = self.mf.scores_for(user)
        if mf is not None:
            out.append(Signal("mf", mf, cfg.n_mf, "minmax"))
        for source in self.sources.values():
            sig = source(user, self)
            if sig is not None:
                out.append(sig if sig.source else replace(sig, source=True))
        if out and self.content.live:
            if allowed is None:
                allowed = self.allowed(user)
            out += self.content.signals(user, allowed, self.cooccur.interactions, self._history(user),
                                        self.event_time)  # fmt: skip
        if out:
            out.append(Signal("popularity", self.popularity.scores(), cfg.n_popular, "max"))
        return out

    def _history(self, user: Hashable) -> list[int]:
        return self.cooccur.history_rows(user)

    @property
    def event_time(self) -> float | None:
        """The stream's time: the latest event, catalogue or enrichment time seen."""
        times = [t for t in (self.popularity.now, self.content.now) if t is not None]
        return max(times) if times else None

    def seen_rows(self, user: Hashable) -> np.ndarray:
        """The item rows ``user`` interacted with (never recommended to them again)."""
        seen = self._seen.get(user)
        return np.fromiter(seen, np.int64, len(seen)) if seen else np.zeros(0, dtype=np.int64)

    def recommend(self, user: Hashable, k: int | None = None) -> list[tuple[Hashable, float]]:
        """Top-``k`` (item, blended score), never a seen or deleted item; else the fallback."""
        return self.recommend_many([user], k)[0]

    def recommend_many(self, users: Sequence[Hashable], k: int | None = None, exact: bool = False,
                       ranker=None) -> list[list[tuple[Hashable, float]]]:  # fmt: skip
        """:meth:`recommend` for many users in one pass (see :mod:`streamrec.streams.candidates`):
        per-pass work once, batched products, candidates from the nearest-neighbour index once the
        catalogue is large; ``exact`` nominates by exhaustive products (the recall reference)."""
        k = self.config.k if k is None else k
        if self.blend is not None:  # the learned blend remembers per-user dense candidate sets
            return [self.recommend_dense(u, k) for u in users]
        return self.ranking_pass(exact, ranker).lists(list(users), k)

    def ranking_pass(self, exact: bool = False, ranker=None) -> RankPass:
        """A pass to rank many users with (``.lists(users, k)``); it stays valid while learning
        goes on (the worker interleaves one with its consume loop)."""
        return RankPass(self, exact=exact, ranker=ranker)

    def available_rows(self, rows: np.ndarray) -> np.ndarray:
        """Which item ``rows`` may be recommended now (not deleted)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and int(rows.max()) < len(self._available):
            return self._available.take(rows)
        out = np.ones(len(rows), dtype=bool)
        inside = rows < len(self._available)
        out[inside] = self._available[rows[inside]]
        return out

    def recommend_dense(self, user: Hashable, k: int | None = None) -> list[tuple[Hashable, float]]:
        """The dense ranking of :meth:`signals` (a score vector per signal over every row)."""
        k = self.config.k if k is None else k
        allowed = self.allowed(user)
        signals = self.signals(user, allowed)
        if not signals:
            return self.fallback(k)
        if self.blend is None:
            rows, scores = rank(signals, self.config.weights, allowed, k)
        else:
            rows, scores = rank_learned(signals, self.config.weights, allowed, k, self.blend, user)
        items = self.index.items
        return [(items[r], s) for r, s in zip(rows.tolist(), scores.tolist())]

    def fallback(self, k: int | None = None) -> list[tuple[Hashable, float]]:
        """The global trending list (decayed popularity) over available items."""
        return self.popularity.top(self.config.k if k is None else k, allowed=self.allowed())


    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["sources"] = {}  # code, not state
        return state
