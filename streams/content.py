"""LLM-derived signals inside the recommender: item embeddings and tags, user content profiles.

The LLM workers are precomputed feature encoders: they publish one ``ItemEmbedding`` (a sentence
embedding of the item's text) and one ``ItemTags`` record per item, asynchronously. The cheap
online model learned on every event (the CRM: MF, co-occurrence, popularity) stays the backbone;
this model turns the enrichment into four more :class:`~streamrec.streams.ranking.Signal` s that
the ranker blends by name (filter-then-rerank: every signal nominates candidates, all of them are
read at every candidate): ``embedding`` (the user's profile against every item), ``fresh`` (cold items lifted against the
user's own cosine distribution: zero-shot cold start), ``recent`` (the user's last few embedded
items) and ``tags`` (the user's tag profile against each item's tags); what each means, its
settings and the quality measured are in :mod:`streamrec.streams.contentsignals`, which computes
them as dense reference vectors. This module keeps the embeddings and the profiles and what a
ranking pass reads; the checkpointed state is cut in :mod:`streamrec.streams.contentstate`.

Items without an embedding (or without tags) get the candidates' mean value for that signal
(``missing="mean"``), so enrichment that has not arrived yet neither helps nor hurts an item. With
no embeddings and no tags at all there are no content signals, and the recommender's lists are
exactly the CRM's: LLM workers being down never breaks or degrades the online model.

The dense score vectors (:meth:`ContentModel.signals`) are the reference ranking; the worker
ranks through :mod:`streamrec.streams.candidates`, which reads the same signals at candidates only
(nominated by :class:`~streamrec.streams.contentindex.ContentIndex` on a large catalogue) and gives
the same lists when nothing is left out of the nomination.

Per event the cost is at most one decay-and-add on the user's profile (skipped when the item has no
embedding) and a few dict updates for its tags; all scoring happens at refresh time.

Measured (2-core box under load, ``OPENBLAS_NUM_THREADS=1``; 10k items, 384 dimensions, 40k synthetic
events): learning 36.7 us/event for the CRM alone, 38.7 with embeddings, 46.8 with embeddings and 5
tags per item (``ContentModel.learn`` alone: 2.4 us, 3.5 with tags); ``recommend`` p50 0.52 ms per
user for the CRM alone, 1.24 ms with embeddings, 1.76 ms with embeddings and tags (the mat-vec
itself: 0.35 ms). With BLAS threads fighting other processes for two cores the mat-vec took up to
10 ms: pin ``OPENBLAS_NUM_THREADS=1`` in the stream worker.

>>> cm = ContentModel(ContentConfig(profile_half_life=1.0))
>>> for item, vec in [("a", [1.0, 0.0]), ("b", [0.0, 2.0]), ("c", [1.0, 0.1])]:
...     cm.set_embedding(cm.index.add(item), vec)
>>> cm.learn("ann", cm.index.rows["a"])
>>> cm.scores("ann").round(3).tolist()           # cosine to every embedded item
[1.0, 0.0, 0.995]
>>> cm.set_embedding(cm.index.add("d"), [1.0, 0.0, 0.0])
Traceback (most recent call last):
ValueError: embedding has dimension 3, but this recommender's embeddings have dimension 2
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

from streamrec.streams.contentindex import ContentIndex
from streamrec.streams.contentsignals import ContentSignals, lift  # noqa: F401 (lift: imported from here)
from streamrec.streams.contentstate import ContentState
from streamrec.streams.ranking import best_k
from streamrec.streams.state import ItemIndex, grow
from streamrec.streams.tagprofile import TagModel


@dataclass(frozen=True, slots=True)
class ContentConfig:
    """How embeddings and tags become signals (weights: ``BlendWeights.embedding/fresh/tags``)."""

    #: False: embeddings and tags are still stored and checkpointed, but produce no signals
    enabled: bool = True
    #: the user profile halves an interaction's say after this many further embedded interactions
    profile_half_life: float = 5.0  # tuned on the first half of the MovieLens stream (20 -> 5)
    #: weight of a below-threshold rating in the profiles (0: not counted; < 0: pushed away)
    negative_weight: float = 0.0
    #: candidates nominated by embedding similarity
    n_embedding: int = 100
    #: an item with fewer interactions than this is cold ("fresh"); interactions are counted as
    #: co-occurrence counts them (times the item entered some user's recent history)
    fresh_max_interactions: int = 3
    #: ... and only while it was first seen at most this long ago (0: no limit); without a horizon
    #: the never-popular long tail counts as cold forever and crowds out the really new items
    fresh_horizon_s: float = 86400.0
    #: cold candidates nominated per user
    n_fresh: int = 10
    #: "recent": similarity to the user's last ``recent_items`` embedded items, the r-th most
    #: recent weighing ``recent_decay ** r``, each cosine clipped at 0 and raised to
    #: ``recent_power`` (sharp: only close neighbours count); 0 items: no such signal
    recent_items: int = 2
    recent_decay: float = 0.5
    recent_power: float = 3.0
    #: candidates nominated by recent-item similarity
    n_recent: int = 50
    #: tag profile half life (tagged interactions) and size
    tag_half_life: float = 20.0
    max_user_tags: int = 64
    #: candidates nominated by tag affinity (0: a reranking score only)
    n_tags: int = 20
    #: candidates come from an approximate nearest-neighbour index (faiss IVF-Flat, see
    #: :mod:`streamrec.streams.vectorindex`) once this many items have embeddings (0: never);
    #: below it every embedded item is scored exactly (as cheap on a small catalogue, no recall loss)
    index_min_items: int = 20_000
    #: inverted lists scanned per query (recall against speed) and lists in all (0: ~sqrt(items));
    #: at 100k items 8 of 1024 lists cost 0.19 ms a profile against 0.32 for 16, recall@50 0.999
    index_nprobe: int = 8
    #: ... and for the neighbours of the user's recent items (an item's neighbourhood is tight)
    index_recent_nprobe: int = 2
    index_nlist: int = 0
    #: build the index in a thread (the worker: learning goes on meanwhile) or in place
    index_background: bool = False

    @classmethod
    def from_dict(cls, d: dict | None) -> ContentConfig:
        return cls(**(d or {}))



def unit(vector, dim: int | None = None) -> np.ndarray:
    """``vector`` as a float32 unit vector; ``ValueError`` for a wrong dimension, zero or non-finite.

    >>> unit([3.0, 4.0]).tolist()
    [0.6000000238418579, 0.800000011920929]
    >>> unit([0.0, 0.0])
    Traceback (most recent call last):
    ValueError: embedding must be a non-zero finite vector
    """
    v = np.asarray(vector, dtype=np.float64)
    if v.ndim != 1 or not len(v):
        raise ValueError(f"embedding must be a non-empty 1-d vector, got shape {v.shape}")
    if dim is not None and len(v) != dim:
        raise ValueError(
            f"embedding has dimension {len(v)}, but this recommender's embeddings have dimension {dim}"
        )
    norm = float(np.sqrt(v.dot(v)))
    if not math.isfinite(norm) or norm == 0.0:
        raise ValueError("embedding must be a non-zero finite vector")
    return (v / norm).astype(np.float32)


class ContentModel(ContentSignals, ContentState):
    """Embedding matrix and tags aligned with the shared :class:`ItemIndex`, plus user profiles."""

    def __init__(self, config: ContentConfig | None = None, index: ItemIndex | None = None):
        self.config = cfg = config or ContentConfig()
        self.index = index if index is not None else ItemIndex()
        self.dim: int | None = None
        self._E = np.zeros((16, 0), dtype=np.float32)  # unit embeddings, row per item
        self._has = np.zeros(16, dtype=bool)  # row has an embedding
        self._born = np.full(16, np.nan)  # when the row was first seen (catalogue or enrichment)
        self.now: float | None = None  # latest enrichment / catalogue / event time seen
        self.n_embedded = 0
        # user profiles: a float32 row per user with at least one embedded interaction
        self.users: dict[Hashable, int] = {}
        self._user_ids: list[Hashable] = []  # by profile row
        self._E_changed: set[int] = set()  # embedding rows set since the last snapshot
        self._P = np.zeros((16, 0), dtype=np.float32)
        self._pn = np.zeros(16, dtype=np.int64)  # embedded interactions per user
        self._decay = np.float32(0.5 ** (1.0 / cfg.profile_half_life))
        self.tags = TagModel(cfg.tag_half_life, cfg.max_user_tags)
        self.ann = ContentIndex(cfg.index_min_items, cfg.index_nprobe, cfg.index_nlist,
                                background=cfg.index_background, neighbours_nprobe=cfg.index_recent_nprobe)

    # -- enrichment -----------------------------------------------------------------------------

    @property
    def has_embeddings(self) -> bool:
        return self.n_embedded > 0

    @property
    def has_tags(self) -> bool:
        return bool(self.tags)

    @property
    def tag_ids(self) -> dict[str, int]:
        return self.tags.tag_ids

    @property
    def live(self) -> bool:
        """Whether events need to update profiles (some enrichment exists)."""
        return self.n_embedded > 0 or bool(self.tags)

    def _rows(self, n: int) -> None:
        """Per-item arrays with at least ``n`` rows."""
        if n > len(self._has):
            self._has = grow(self._has, n)
            self._E = grow(self._E, n)
            self._born = grow(self._born, n, fill=np.nan)

    def saw(self, row: int, ts: float | None) -> None:
        """A catalogue record or enrichment for ``row`` at ``ts``: remember when it first appeared."""
        self._rows(row + 1)
        if ts is not None:
            if math.isnan(self._born[row]):
                self._born[row] = ts
            if self.now is None or ts > self.now:
                self.now = ts

    def set_embedding(self, row: int, vector, ts: float | None = None) -> None:
        v = unit(vector, self.dim)
        if self.dim is None:
            self.dim = len(v)
            self._E = np.zeros((max(16, len(self._has)), self.dim), dtype=np.float32)
            self._P = np.zeros((max(16, len(self._pn)), self.dim), dtype=np.float32)
        self._rows(max(row + 1, len(self.index)))
        self.saw(row, ts)
        self._E[row] = v
        self._E_changed.add(row)
        self.ann.item_changed(row, v)
        if not self._has[row]:
            self._has[row] = True
            self.n_embedded += 1

    def reset_embeddings(self) -> None:
        """Forget every embedding and embedding profile (e.g. the embedding model was replaced by
        one of another dimension); the next vector fixes the dimension again. Tags stay."""
        self.dim = None
        self._E = np.zeros((len(self._has), 0), dtype=np.float32)
        self._has[:] = False
        self.n_embedded = 0
        self.users = {}
        self._user_ids = []
        self._P = np.zeros((16, 0), dtype=np.float32)
        self._pn = np.zeros(16, dtype=np.int64)
        cfg = self.config
        self.ann = ContentIndex(cfg.index_min_items, cfg.index_nprobe, cfg.index_nlist,
                                background=cfg.index_background, neighbours_nprobe=cfg.index_recent_nprobe)

    def embedding(self, row: int | None) -> np.ndarray | None:
        if row is None or row >= len(self._has) or not self._has[row]:
            return None
        return self._E[row].copy()

    def set_tags(self, row: int, tags: Sequence[tuple[str, float]], ts: float | None = None) -> None:
        """Replace ``row``'s tags (an empty list removes them)."""
        self._rows(max(row + 1, len(self.index)))
        self.saw(row, ts)
        self.tags.set_tags(row, tags)

    def tags_of(self, row: int | None) -> list[tuple[str, float]]:
        return self.tags.tags_of(row)

    # -- events ---------------------------------------------------------------------------------

    def _profile_row(self, user: Hashable) -> int:
        """``user``'s profile row, a new one (zeroed) for a user without a profile."""
        u = self.users.get(user)
        if u is None:
            u = self.users[user] = len(self.users)
            self._user_ids.append(user)
            if u >= len(self._P):
                self._P, self._pn = grow(self._P, u + 1), grow(self._pn, u + 1)
        return u

    def learn(self, user: Hashable, row: int, weight: float = 1.0) -> None:
        """``user`` interacted with ``row``: fold its embedding and tags into the user's profiles."""
        if row < len(self._has) and self._has[row]:
            u = self._profile_row(user)
            p = self._P[u]
            p *= self._decay
            if weight == 1.0:
                p += self._E[row]
            else:
                p += np.float32(weight) * self._E[row]
            self._pn[u] += 1
            self.ann.user_changed(u)
        self.tags.learn(user, row, weight)

    # -- scoring --------------------------------------------------------------------------------

    def n_profile(self, user: Hashable) -> int:
        """Embedded interactions folded into ``user``'s profile."""
        u = self.users.get(user)
        return 0 if u is None else int(self._pn[u])

    def profile(self, user: Hashable, history: Sequence[int] = ()) -> np.ndarray | None:
        """The user's unit content profile; from ``history`` (rows, oldest first) when no
        embedded interaction was learned yet (the embeddings arrived after the events)."""
        u = self.users.get(user)
        p = None
        if u is not None:
            p = self._P[u]
        elif history and self.n_embedded:
            rows = np.asarray(history, dtype=np.int64)
            rows = rows[rows < len(self._has)]
            rows = rows[self._has[rows]]
            if len(rows):
                w = self._decay ** np.arange(len(rows) - 1, -1, -1, dtype=np.float32)
                p = w @ self._E[rows]
        if p is None:
            return None
        norm = float(np.sqrt(p.dot(p)))
        return p / np.float32(norm) if norm > 0 and math.isfinite(norm) else None

    def users_near(self, row: int, n: int) -> list[Hashable]:
        """The ``n`` users whose content profiles are closest to item ``row`` (best first).

        Used when a new item's embedding arrives, so the users it suits get a fresh list without
        waiting for their next event (zero-shot cold start). Exact cosine over the users in the
        item's nearest profile buckets once the index exists (see :class:`ContentIndex`), over
        every user before.
        """
        if n <= 0 or not self.users or row >= len(self._has) or not self._has[row]:
            return []
        nu = len(self.users)
        cand = self.ann.users_near(self._E[row], nu)
        P = self._P[:nu] if cand is None else self._P[cand]
        norms = np.sqrt(np.einsum("ij,ij->i", P, P))
        cos = (P @ self._E[row]) / np.where(norms > 0, norms, np.inf)
        best = best_k(cos, min(n, len(cos)))
        best = best[cos[best] > 0]
        rows = best if cand is None else cand[best]
        ids = self._user_ids
        return [ids[int(u)] for u in rows]

    # -- what a ranking pass reads (see :mod:`streamrec.streams.candidates`) ----------------------

    def prepare(self) -> None:
        """Once per pass: build or refresh the nearest-neighbour index and the user buckets."""
        m = self._m()
        self.ann.prepare(self._E[:m], self._has[:m], self._P[: len(self.users)], self.n_embedded)

    def embedded_rows(self) -> np.ndarray:
        return np.flatnonzero(self._has[: self._m()])

    def has_embedding(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows) or rows.max() < len(self._has):  # one gather (a ranking pass's every read)
            return self._has[rows]
        out = np.zeros(len(rows), dtype=bool)
        inside = rows < len(self._has)
        out[inside] = self._has[rows[inside]]
        return out

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Embeddings of ``rows`` (zero where none), ``len(rows) x dim`` float32."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and rows.max() >= len(self._E):  # rows the index knows, no arrays yet
            return self._E.take(rows, axis=0, mode="clip") * self.has_embedding(rows)[:, None]
        # rows without an embedding are zero rows; ``take`` gathers rows faster than fancy indexing
        # (135 against 194 µs for 520 random 384-d rows of 100k, the same values)
        return self._E.take(rows, axis=0)

    def vector_sum(self, mask: np.ndarray) -> np.ndarray:
        """Sum of the embeddings of the rows where ``mask`` (over the first rows) is true."""
        m = min(len(mask), self._m())
        return mask[:m].astype(np.float32) @ self._E[:m]

    def exact_scores(self, queries: np.ndarray) -> np.ndarray:
        """Inner products of ``queries`` (``q x dim``) with every row's embedding: ``q x rows``."""
        return np.atleast_2d(queries) @ self._E[: self._m()].T

    def _m(self) -> int:
        """Rows that have per-item arrays (the index may already know newer items)."""
        return min(len(self.index), len(self._has))

    def recent_rows(self, history: Sequence[int]) -> list[int]:
        """The last ``recent_items`` embedded rows of ``history`` (oldest first), most recent first."""
        out: list[int] = []
        want = self.config.recent_items
        for r in reversed(history):
            if len(out) >= want:
                break
            if r < len(self._has) and self._has[r]:
                out.append(r)
        return out

    def cold(self, interactions: np.ndarray, now: float | None = None) -> np.ndarray:
        """Mask of embedded rows that are cold: fewer than ``fresh_max_interactions``
        ``interactions`` (per row; missing rows count 0), first seen at most ``fresh_horizon_s``
        before ``now`` (default: the latest enrichment or catalogue time seen)."""
        n = len(self.index)
        m = min(n, len(self._has))
        mask = np.zeros(n, dtype=bool)
        counts = np.zeros(m)
        k = min(m, len(interactions))
        counts[:k] = interactions[:k]
        mask[:m] = self._has[:m] & (counts < self.config.fresh_max_interactions)
        horizon = self.config.fresh_horizon_s
        now = self.now if now is None else now
        if horizon and now is not None:
            born = self._born[:m]
            mask[:m] &= ~(born < now - horizon)  # unknown birth (nan) counts as recent
        return mask
