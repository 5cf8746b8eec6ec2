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
machines. Plain pickling also works (the contract test uses it), but runtime candidate sources
registered with :meth:`Recommender.add_source` are code, not state, and are not saved either way.

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

from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Hashable, Sequence

import numpy as np

from streamrec.streams.candidates import RankPass
from streamrec.streams.content import ContentConfig, ContentModel, unit
from streamrec.streams.cooccur import CooccurConfig, Cooccurrence, Popularity, PopularityConfig
from streamrec.streams.model import MFConfig, OnlineMF
from streamrec.streams.ranking import (
    CONTENT_WEIGHTS,
    DEFAULT_WEIGHTS,
    BlendLearner,
    BlendWeights,
    LearnedBlendConfig,
    Signal,
    rank,
    rank_learned,
)
from streamrec.streams.similar import blend
from streamrec.streams.snapshot import pack_ids, pack_rows, unpack_ids, unpack_rows
from streamrec.streams.state import FORMAT, ItemIndex, RatingPolicy, dumps, grow, loads
from streamrec.streams.transitions import TransitionConfig, Transitions

#: the snapshot document's format (``to_bytes`` checkpoints are ``FORMAT``, still readable)
SNAPSHOT_FORMAT = 2

#: an extra candidate source: (user, recommender) -> a Signal named after its weight, or None
Source = Callable[[Hashable, "Recommender"], "Signal | None"]


@dataclass(frozen=True, slots=True)
class RecommenderConfig:
    mf: MFConfig = field(default_factory=MFConfig)
    cooccur: CooccurConfig = field(default_factory=CooccurConfig)
    popularity: PopularityConfig = field(default_factory=PopularityConfig)
    #: ordered transitions a -> b within a user's recent window (streams/transitions.py)
    transitions: TransitionConfig = field(default_factory=TransitionConfig)
    #: blend weights; the default also weighs the content signals (``DEFAULT_WEIGHTS``)
    weights: BlendWeights = field(default_factory=lambda: DEFAULT_WEIGHTS)
    #: how embeddings and tags become signals
    content: ContentConfig = field(default_factory=ContentConfig)
    #: learn the blend weights online from the users' picks (off by default)
    learn_blend: LearnedBlendConfig = field(default_factory=LearnedBlendConfig)
    #: how ratings are learned; applies to every part (it replaces the parts' own policies)
    ratings: RatingPolicy = field(default_factory=RatingPolicy)
    #: candidates nominated per source before blending
    n_cooccur: int = 200
    n_transitions: int = 200
    n_mf: int = 200
    n_popular: int = 100
    #: list length when ``recommend``/``fallback`` are called without ``k``
    k: int = 50
    #: items remembered as seen per user (never recommended to them again); past it the oldest is
    #: forgotten and may come back. Bounds memory and checkpoint size per heavy user.
    max_seen: int = 10_000

    @classmethod
    def from_dict(cls, d: dict) -> RecommenderConfig:
        """Inverse of ``dataclasses.asdict`` (lists back to tuples where the fields want them)."""
        d = dict(d)
        ratings = RatingPolicy(**d["ratings"])
        d["ratings"] = ratings
        d["mf"] = MFConfig(**{**d["mf"], "ratings": RatingPolicy(**d["mf"]["ratings"])})
        d["cooccur"] = CooccurConfig(**{**d["cooccur"], "ratings": RatingPolicy(**d["cooccur"]["ratings"])})
        pop = d["popularity"]
        d["popularity"] = PopularityConfig(**{**pop, "ratings": RatingPolicy(**pop["ratings"])})
        d["transitions"] = TransitionConfig.from_dict(d.get("transitions"))
        w = {**CONTENT_WEIGHTS, **d["weights"]}  # checkpoints from before content lack them
        w["extra"] = tuple((str(k), float(v)) for k, v in w["extra"])
        d["weights"] = BlendWeights(**w)
        d["content"] = ContentConfig.from_dict(d.get("content"))
        d["learn_blend"] = LearnedBlendConfig(**d.get("learn_blend", {}))
        return cls(**d)


class Recommender:
    """MF + co-occurrence + popularity + content + seen/deleted filtering behind one small API."""

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

    # -- partitioned state (see streams/partitioned.py): a user's record, item-side deltas ---------

    def user_record(self, user: Hashable) -> dict | None:
        """Everything the model holds about ``user`` (items by id), to move it to another worker."""
        seen = self._seen.get(user)
        if seen is None:
            return None
        items = self.index.items
        mf, trans = self.mf.user_state(user), self.transitions.user_state(user)
        return {"seen": [items[r] for r in seen], "n": self._learned.get(user, 0),
                "mf": mf, "hist": [items[r] for r in self.cooccur.history_rows(user)],
                "content": self.content.user_state(user),
                "trans": None if trans is None else [[items[r] for r in trans[0]], trans[1]]}  # fmt: skip

    def load_user_record(self, user: Hashable, record: dict) -> None:
        add = self.index.add
        self._seen[user] = dict.fromkeys(add(i) for i in record["seen"])
        self._learned[user] = int(record["n"])
        if record["mf"] is not None:
            self.mf.set_user_state(user, *record["mf"])
        self.cooccur.set_history(user, [add(i) for i in record["hist"]])
        if record["content"] is not None:
            self.content.set_user_state(user, record["content"])
        if record.get("trans") is not None:
            self.transitions.set_user_state(user, [add(i) for i in record["trans"][0]], record["trans"][1])
        self._dirty.add(user)

    def retain_users(self, keep) -> None:
        """Forget every user for whom ``keep(user)`` is false (their partition moved away)."""
        self._seen = {u: s for u, s in self._seen.items() if keep(u)}
        self._learned = {u: n for u, n in self._learned.items() if u in self._seen}
        self._dirty = {u for u in self._dirty if u in self._seen}
        self.mf.retain_users(keep)
        self.cooccur.retain_users(keep)
        self.content.retain_users(keep)
        self.transitions.retain_users(keep)

    @property
    def n_users(self) -> int:
        return len(self._seen)

    def seen_users(self) -> list[Hashable]:
        """Every user the model holds."""
        return list(self._seen)

    def track_item_deltas(self) -> None:
        """Item-side learning is applied here at once and also kept for :meth:`take_item_delta`,
        which the other workers apply through :meth:`add_item_delta` (each event counted once by
        every worker: immediately by its learner, from the delta log by the others)."""
        self.mf.track_deltas()
        self.cooccur.track_deltas()
        self.popularity.track_deltas()
        self.transitions.track_deltas()

    def take_item_delta(self) -> dict | None:
        """The item-side change learned since the last call, with items by id; ``None``: none.
        Flat arrays of positions into ``items`` (cheap to decode on every worker)."""
        rows, change = self.mf.take_delta()
        pairs, pops = self.cooccur.take_delta(), self.popularity.take_delta()
        trans = self.transitions.take_delta()
        if not len(rows) and not pairs and not pops and not trans:
            return None
        used: dict[int, int] = {}
        ref = used.setdefault
        refs = lambda rs: np.fromiter((ref(r, len(used)) for r in rs), np.int32)  # noqa: E731
        return {"mf_rows": refs(rows.tolist()), "mf": change,
                "pj": refs(j for j, _ in pairs), "plen": np.fromiter((len(w) for _, w in pairs), np.int32),
                "ph": refs(h for _, w in pairs for h in w),
                "pop_rows": refs(r for r, _ in pops),
                "pop_ts": np.asarray([np.nan if t is None else t for _, t in pops], np.float64),
                "ta": refs(a for a_rows, _, _ in trans for a in a_rows),
                "tlen": np.fromiter((len(a_rows) for a_rows, _, _ in trans), np.int32),
                "tb": refs(b for _, b, _ in trans), "tts": np.asarray([t for _, _, t in trans], np.float64),
                "items": [self.index.items[r] for r in used]}  # fmt: skip

    def add_item_delta(self, delta: dict) -> None:
        """Apply another worker's delta of :meth:`take_item_delta`."""
        rows = self.index.add_many(delta["items"])
        if len(delta["mf_rows"]):
            self.mf.add_delta(rows[delta["mf_rows"]], delta["mf"])
        self.cooccur.add_delta(rows[delta["pj"]].tolist(), delta["plen"].tolist(), rows[delta["ph"]].tolist())
        ts = delta["pop_ts"]
        self.popularity.add_delta(rows[delta["pop_rows"]].tolist(),
                                  [None if t != t else t for t in ts.tolist()])  # fmt: skip
        if "tb" in delta and len(delta["tb"]):
            a_rows, start, entries = rows[delta["ta"]].tolist(), 0, []
            for n, b, t in zip(delta["tlen"].tolist(), rows[delta["tb"]].tolist(), delta["tts"].tolist()):
                entries.append((a_rows[start : start + n], b, t))
                start += n
            self.transitions.add_delta(entries)

    # -- state ----------------------------------------------------------------------------------

    def to_state(self) -> dict:
        return {
            "config": asdict(self.config),
            "items": list(self.index.items),
            "available": self.allowed(),
            "mf": self.mf.to_state(with_index=False),
            "cooccur": self.cooccur.to_state(with_index=False),
            "popularity": self.popularity.to_state(with_index=False),
            "transitions": self.transitions.to_state(with_index=False),
            "seen": {u: list(s) for u, s in self._seen.items()},
            "learned": self._learned,
            "content": self.content.to_state(),
            "blend": self.blend.to_state() if self.blend is not None else None,
        }

    @classmethod
    def from_state(cls, state: dict) -> Recommender:
        self = cls(RecommenderConfig.from_dict(state["config"]))
        self.index = index = ItemIndex(state["items"])
        self.mf = OnlineMF.from_state(state["mf"], index)
        self.cooccur = Cooccurrence.from_state(state["cooccur"], index)
        self.popularity = Popularity.from_state(state["popularity"], index)
        if state.get("transitions") is not None:  # checkpoints from before transitions have none
            self.transitions = Transitions.from_state(state["transitions"], index)
        else:
            self.transitions = Transitions(self.config.transitions, index)
        self._available = grow(state["available"].copy(), 16, fill=True)
        self._seen = {u: dict.fromkeys(rows) for u, rows in state["seen"].items()}
        self._learned = dict(state["learned"])
        self.content = ContentModel.from_state(state.get("content"), self.config.content, index)
        if self.blend is not None:
            self.blend = BlendLearner.from_state(state.get("blend"), self.config.learn_blend)
        return self

    def to_bytes(self) -> bytes:
        return dumps({"kind": self.KIND, "format": FORMAT, "state": self.to_state()})

    @classmethod
    def from_bytes(cls, data: bytes) -> Recommender:
        doc = loads(data)
        if doc.get("kind") != cls.KIND or doc.get("format") != FORMAT:
            raise ValueError(f"not a {cls.KIND} checkpoint (format {FORMAT})")
        return cls.from_state(doc["state"])

    # -- snapshots: checkpoint format 2 (see streams/snapshot.py), whole or by changed users ------

    def snapshot(self, delta: bool = False, with_users: bool = True) -> dict:
        """The state as a snapshot document: whole, or with ``delta`` only what changed since
        :meth:`checkpointed`: the users learned from, the items added, and the item rows whose
        neighbours, transitions, factors, counts or embeddings changed (a delta is applied on top
        of the snapshots before it; :attr:`needs_full` says when one cannot describe the change)."""
        if delta and self._need_full:
            raise ValueError("a full snapshot is needed (embeddings were reset)")
        users = sorted(self._dirty, key=self.mf.users.__getitem__) if delta else None
        if not with_users:  # the item side alone (partitioned state: for workers with no checkpoint)
            users = []
        ids = list(self._seen) if users is None else [u for u in users if u in self._seen]
        learned = self._learned
        first = min(self._ck_items, len(self.index)) if delta else 0  # ids of the items added since
        return {
            "kind": self.KIND, "format": SNAPSHOT_FORMAT, "delta": delta,
            "config": asdict(self.config), "items": pack_ids(self.index.items[first:]), "items_from": first,
            "available": self.allowed(),
            "mf": self.mf.items_state(changed_only=delta), "cooccur": self.cooccur.items_state(changed_only=delta),
            "popularity": self.popularity.items_state(changed_only=delta),
            "transitions": self.transitions.items_state(changed_only=delta),
            "content": self.content.items_state(changed_only=delta),
            "blend": self.blend.to_state() if self.blend is not None else None,
            "users": {"ids": pack_ids(ids), "seen": pack_rows([self._seen[u] for u in ids]),
                      "learned": np.fromiter((learned.get(u, 0) for u in ids), np.int64, len(ids)),
                      "mf": self.mf.users_state(users), "cooccur": self.cooccur.users_state(users),
                      "transitions": self.transitions.users_state(users),
                      "content": self.content.users_state(users)},
        }  # fmt: skip

    @property
    def needs_full(self) -> bool:
        return self._need_full

    @property
    def n_changed_users(self) -> int:
        """Users learned from since the last :meth:`checkpointed`."""
        return len(self._dirty)

    def checkpointed(self) -> None:
        """The last :meth:`snapshot` is durable: count changes from here."""
        self._dirty = set()
        self._need_full = False
        self.content.checkpointed()
        for part in (self.mf, self.cooccur, self.popularity, self.transitions):
            part.checkpointed()
        self._ck_items = len(self.index)

    @classmethod
    def from_checkpoint(cls, model) -> Recommender:
        """The model of a loaded checkpoint: format-2 snapshots (``base`` and ``deltas``) or
        format-1 bytes (:meth:`from_bytes`)."""
        if isinstance(model, (bytes, bytearray)):
            return cls.from_bytes(model)
        return cls.from_snapshots(model.base, model.deltas)

    @classmethod
    def from_snapshots(cls, base: dict, deltas: Sequence[dict] = ()) -> Recommender:
        """The model a full snapshot and the deltas after it describe."""
        if base.get("kind") != cls.KIND or base.get("format") != SNAPSHOT_FORMAT or base.get("delta"):
            raise ValueError(f"not a full {cls.KIND} snapshot (format {SNAPSHOT_FORMAT})")
        self = cls(RecommenderConfig.from_dict(base["config"]))
        for doc in (base, *deltas):
            self._load(doc)
        self.checkpointed()  # the model is what the checkpoint holds: later deltas count from it
        return self

    def load_snapshot(self, doc: dict) -> None:
        """Apply a snapshot document on top of this model (a fresh one: the state it describes)."""
        self._load(doc)

    def _load(self, doc: dict) -> None:
        if doc.get("kind") != self.KIND or doc.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"not a {self.KIND} snapshot (format {SNAPSHOT_FORMAT})")
        self.config = cfg = RecommenderConfig.from_dict(doc["config"])
        first = doc.get("items_from", 0)  # a delta names the items added since the snapshot before
        if first > len(self.index):
            raise ValueError(f"a snapshot starting at item {first} on a model of {len(self.index)} items")
        for item in unpack_ids(doc["items"])[len(self.index) - first :]:
            self.index.add(item)
        self._available = grow(doc["available"], 16, fill=True)
        self.mf.load_items(doc["mf"])
        self.cooccur.load_items(doc["cooccur"])
        if isinstance(doc["popularity"]["counts"], dict):  # a delta's changed counts
            self.popularity.load_items(doc["popularity"])
        else:
            self.popularity = Popularity.from_state(doc["popularity"], self.index)
        if "transitions" in doc:  # snapshots from before transitions have none
            self.transitions.load_items(doc["transitions"])
        self.content.load_items(doc["content"])
        if self.blend is not None:
            self.blend = BlendLearner.from_state(doc.get("blend"), cfg.learn_blend)
        u = doc["users"]
        for user, rows, n in zip(unpack_ids(u["ids"]), unpack_rows(u["seen"]), u["learned"].tolist()):
            self._seen[user] = dict.fromkeys(rows)
            self._learned[user] = n
        self.mf.load_users(u["mf"])
        self.cooccur.load_users(u["cooccur"])
        if "transitions" in u:
            self.transitions.load_users(u["transitions"])
        self.content.load_users(u["content"])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["sources"] = {}  # code, not state
        return state
