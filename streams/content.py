"""LLM-derived signals inside the recommender: item embeddings and tags, user content profiles.

The LLM workers are precomputed feature encoders: they publish one ``ItemEmbedding`` (a sentence
embedding of the item's text) and one ``ItemTags`` record per item, asynchronously. The cheap
online model learned on every event (the CRM: MF, co-occurrence, popularity) stays the backbone;
this module turns the enrichment into four more :class:`~streamrec.streams.ranking.Signal` s that
the ranker blends by name (filter-then-rerank: every signal nominates candidates, all of them are
read at every candidate):

``embedding``
    cosine of the user's content profile to every item with an embedding: one float32 mat-vec.
    The profile is the decayed mean of the (unit) embeddings of the items the user interacted with,
    ``profile_half_life`` embedded events long. Under a ``threshold``/``explicit`` rating policy a
    rating below the threshold adds its item with ``negative_weight`` (default 0: not counted, so a
    disliked item never pulls the profile towards itself; a negative value pushes the profile away,
    which also pushes away from the good items that resemble it, hence not the default).
``fresh``
    the cold items (fewer than ``fresh_max_interactions`` interactions, first seen at most
    ``fresh_horizon_s`` ago) ranked by the same cosine, *lifted* against the user's own cosine
    distribution (:func:`lift`): 0 at the mean over all embedded items, 1 at the user's best match.
    This is ZESRec-style zero-shot cold start: a just-published item with no interaction at all
    reaches the users whose history reads like its text, and nobody else (a lift, not a max
    normalisation, so the best of a badly matching lot does not become 1).
``recent``
    what the user is doing right now: each item's similarity to the user's last ``recent_items``
    (default 2) embedded items, cosines clipped at 0 and sharpened (``** recent_power``), the
    older one weighing ``recent_decay``. The profile above is a mean over several items and
    blurs a session's thread (a sequel, the same director, the same decade); this keeps it. Cost:
    one more mat-vec per recent item at refresh time, nothing per event.
``tags``
    the user's decayed tag profile (sum of the tag scores of the items interacted with, half life
    ``tag_half_life`` tagged events, at most ``max_user_tags`` kept) against each item's tags,
    weighted by idf and divided by the item's tag norm; a few candidates, mostly a reranking score.
    Kept by :class:`~streamrec.streams.tagprofile.TagModel`.

Items without an embedding (or without tags) get the candidates' mean value for that signal
(``missing="mean"``), so enrichment that has not arrived yet neither helps nor hurts an item. With
no embeddings and no tags at all there are no content signals, and the recommender's lists are
exactly the CRM's: LLM workers being down never breaks or degrades the online model.

The dense score vectors below (:meth:`ContentModel.signals`) are the reference ranking; the worker
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

Quality, prequential HR@10 on synthetic data (300 users, 2000 items in 10 topics, 30k events; 20% of
the items published halfway through with all-MiniLM-L6-v2 embeddings of their texts, fresh horizon
30 minutes of a 17-hour stream; measured before the MovieLens tuning of the weights): overall 0.095
for the CRM alone and 0.095 with the then default weights (synthetic clicks follow popularity
*within* a topic, which the CRM already finds, so content cannot add much there), but on clicks of
the newly published items while still cold 0.004 -> 0.047, with 99.7% of the cold items shown on the
user's own topics. Without a horizon the never-popular long tail counts as cold forever and takes
list slots (HR 0.042 at fresh weight 1).

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
from streamrec.streams.ranking import Signal, best_k
from streamrec.streams.snapshot import pack_ids, unpack_ids
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
    #: inverted lists scanned per query (recall against speed) and lists in all (0: ~sqrt(items))
    index_nprobe: int = 16
    index_nlist: int = 0
    #: build the index in a thread (the worker: learning goes on meanwhile) or in place
    index_background: bool = False

    @classmethod
    def from_dict(cls, d: dict | None) -> ContentConfig:
        return cls(**(d or {}))


def lift(cos: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``cos`` on the scale of ``reference``: 0 at its mean, 1 at its maximum (clipped to [0, 1]).

    >>> lift(np.array([0.9, 0.5, 0.1]), np.array([0.9, 0.5, 0.1, 0.1])).round(3).tolist()
    [1.0, 0.2, 0.0]
    """
    if not len(reference):
        return np.zeros(len(cos))
    mu, top = float(reference.mean()), float(reference.max())
    if top <= mu:
        return np.where(cos >= top, 1.0, 0.0)
    return np.clip((cos - mu) / (top - mu), 0.0, 1.0)


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


class ContentModel:
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
                                background=cfg.index_background)

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
        self.ann = ContentIndex(self.config.index_min_items, self.config.index_nprobe, self.config.index_nlist,
                                background=self.config.index_background)

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
        out = np.zeros(len(rows), dtype=bool)
        inside = rows < len(self._has)
        out[inside] = self._has[rows[inside]]
        return out

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Embeddings of ``rows`` (zero where none), ``len(rows) x dim`` float32."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and rows.max() >= len(self._E):  # rows the index knows, no arrays yet
            return self._E.take(rows, axis=0, mode="clip") * self.has_embedding(rows)[:, None]
        return self._E[rows]  # rows without an embedding are zero rows

    def vector_sum(self, mask: np.ndarray) -> np.ndarray:
        """Sum of the embeddings of the rows where ``mask`` (over the first rows) is true."""
        m = min(len(mask), self._m())
        return mask[:m].astype(np.float32) @ self._E[:m]

    def exact_scores(self, queries: np.ndarray) -> np.ndarray:
        """Inner products of ``queries`` (``q x dim``) with every row's embedding: ``q x rows``."""
        return np.atleast_2d(queries) @ self._E[: self._m()].T

    def item_scores(self, row: int) -> np.ndarray | None:
        """Cosine of item ``row``'s embedding to every item row (``-inf``: no embedding), for the
        similar-item lists; ``None`` when ``row`` has no embedding."""
        e = self.embedding(row)
        return None if e is None else self._over_rows(self._E[: self._m()] @ e)

    def scores(self, user: Hashable, history: Sequence[int] = ()) -> np.ndarray | None:
        """Cosine of ``user``'s profile to every item row (``-inf``: no embedding).

        ``None`` when the user has no profile."""
        q = self.profile(user, history)
        return None if q is None else self._over_rows(self._E[: self._m()] @ q)

    def _m(self) -> int:
        """Rows that have per-item arrays (the index may already know newer items)."""
        return min(len(self.index), len(self._has))

    def _over_rows(self, values: np.ndarray) -> np.ndarray:
        """``values`` of the first ``_m()`` rows as a vector over every row, ``-inf`` wherever
        there is no embedding."""
        m = len(values)
        out = np.full(len(self.index), -np.inf)
        out[:m] = np.where(self._has[:m], values, -np.inf)
        return out

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

    def _similarities(self, user: Hashable, history: Sequence[int]):
        """``(profile cosine, recent-item similarity)`` over every row (``-inf``: no embedding),
        each ``None`` when there is nothing to compare with. One mat-vec per query vector: for
        a handful of queries OpenBLAS runs separate mat-vecs faster than one skinny product."""
        q = self.profile(user, history)
        recent = self.recent_rows(history)
        if q is None and not recent:
            return None, None
        cfg = self.config
        E = self._E[: self._m()]
        cos = None if q is None else self._over_rows(E @ q)
        near = None
        if recent:
            acc = np.zeros(len(E), dtype=np.float32)
            for r, row in enumerate(recent):
                sim = np.maximum(E @ self._E[row], np.float32(0.0))
                acc += np.float32(cfg.recent_decay**r) * sim**cfg.recent_power
            near = self._over_rows(acc)
        return cos, near

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

    def tag_scores(self, user: Hashable) -> np.ndarray | None:
        """The user's tag affinity to every item row (see :class:`TagModel`)."""
        return self.tags.scores(user, len(self.index))

    def signals(
        self,
        user: Hashable,
        allowed: np.ndarray,
        interactions: np.ndarray,
        history: Sequence[int] = (),
        now: float | None = None,
    ) -> list[Signal]:
        """The content signals for ``user`` (none without a profile or when disabled).

        ``allowed``: rows that may be recommended; ``interactions``: per-row interaction counts
        (what makes an item cold); ``history``: the user's recent rows, oldest first, for the
        ``recent`` signal (and a profile when none was learned yet); ``now``: the stream's time,
        for the fresh horizon.
        """
        cfg = self.config
        if not cfg.enabled:
            return []
        out = []
        cos, near = self._similarities(user, history) if self.n_embedded else (None, None)
        if cos is not None:
            out.append(Signal("embedding", cos, cfg.n_embedding, "minmax", missing="mean"))
            ref = cos[np.isfinite(cos) & allowed]
            cold = self.cold(interactions, now) & allowed
            if cold.any() and len(ref):
                fresh = np.full(len(cos), -np.inf)
                fresh[cold] = lift(cos[cold], ref)
                out.append(Signal("fresh", fresh, cfg.n_fresh, "raw"))
        if near is not None:
            out.append(Signal("recent", near, cfg.n_recent, "max", missing="mean"))
        if self.tags:
            tags = self.tag_scores(user)
            if tags is not None:
                out.append(Signal("tags", tags, cfg.n_tags, "max", missing="mean"))
        return out

    # -- state ----------------------------------------------------------------------------------

    # -- snapshots: profile rows apart from the item side; embeddings by changed row --------------

    # -- partitioned state: one user's profile at a time ---------------------------------------------

    def user_state(self, user: Hashable) -> dict | None:
        u = self.users.get(user)
        tags = self.tags.user_state(user)
        if u is None and tags is None:
            return None
        P = self._P[u].copy() if u is not None and self.dim else None
        return {"P": P, "n": int(self._pn[u]) if u is not None else 0, "tags": tags}

    def set_user_state(self, user: Hashable, state: dict) -> None:
        if state["P"] is not None and self.dim:
            u = self._profile_row(user)
            self._P[u] = state["P"]
            self._pn[u] = state["n"]
            self.ann.user_changed(u)
        if state["tags"] is not None:
            self.tags.set_user_state(user, *state["tags"])

    def retain_users(self, keep) -> None:
        """Drop the profiles of users for whom ``keep(user)`` is false (rows compacted)."""
        kept = [(user, u) for user, u in self.users.items() if keep(user)]
        rows = np.asarray([u for _, u in kept], dtype=np.int64)
        self._P, self._pn = grow(self._P[rows], 16), grow(self._pn[rows], 16)
        self.users = {user: k for k, (user, _) in enumerate(kept)}
        self._user_ids = [user for user, _ in kept]
        self.ann.users_moved()
        self.tags.retain_users(keep)

    def users_state(self, users: list[Hashable] | None = None) -> dict:
        if users is None:
            nu = len(self.users)
            ids, r = list(self._user_ids), slice(0, nu)
        else:
            rows = sorted(u for u in map(self.users.get, users) if u is not None)
            ids, r = [self._user_ids[u] for u in rows], np.asarray(rows, dtype=np.int64)
        return {"ids": pack_ids(ids), "P": self._P[r] if self.dim else None, "pn": self._pn[r],
                "tags": self.tags.users_state(users)}  # fmt: skip

    def load_users(self, state: dict) -> None:
        ids = unpack_ids(state["ids"])
        rows = np.empty(len(ids), dtype=np.int64)
        for k, user in enumerate(ids):
            u = self.users.get(user)
            if u is None:
                u = self.users[user] = len(self.users)
                self._user_ids.append(user)
            rows[k] = u
        n = len(self.users)
        if self.dim:
            if self._P.shape[1] != self.dim:
                self._P = np.zeros((max(16, n), self.dim), dtype=np.float32)
            self._P = grow(self._P, n)
            self._P[rows] = state["P"].reshape(-1, self.dim)
        self._pn = grow(self._pn, n)
        self._pn[rows] = state["pn"]
        self.tags.load_users(state["tags"])

    def items_state(self, changed_only: bool = False) -> dict:
        """The item side; with ``changed_only`` only the embeddings set since :meth:`checkpointed`."""
        n = len(self.index)
        self._rows(n)
        E: dict | None = None
        if self.dim:
            if changed_only:
                rows = np.asarray(sorted(self._E_changed), dtype=np.int64)
                E = {"rows": rows, "vals": self._E[rows]}
            else:
                E = {"all": self._E[:n]}
        return {"dim": self.dim, "E": E, "has": self._has[:n], "born": self._born[:n], "now": self.now,
                "tags": self.tags.items_state()}  # fmt: skip

    def load_items(self, state: dict) -> None:
        self.dim = dim = state["dim"]
        n = len(state["has"])
        self._has = grow(state["has"], 16)
        self._born = grow(state["born"], 16, fill=np.nan)
        self.now = state["now"]
        self.n_embedded = int(self._has.sum())
        if dim:
            E = state["E"]
            if "all" in E:
                self._E = grow(E["all"].reshape(-1, dim), len(self._has))
            else:
                if self._E.shape[1] != dim:
                    self._E = np.zeros((len(self._has), dim), dtype=np.float32)
                self._E = grow(self._E, max(n, len(self._has)))
                self._E[E["rows"]] = E["vals"].reshape(-1, dim)
            if self._P.shape[1] != dim:
                self._P = np.zeros((max(16, len(self._pn)), dim), dtype=np.float32)
        else:
            self._E = np.zeros((len(self._has), 0), dtype=np.float32)
        self.tags.load_items(state["tags"], len(self._has))

    def checkpointed(self) -> None:
        """A snapshot was made durable: changes are counted from here."""
        self._E_changed = set()

    def to_state(self) -> dict:
        n = len(self.index)
        self._rows(n)
        nu = len(self.users)
        return {
            "dim": self.dim,
            "E": self._E[:n] if self.dim else None,
            "has": self._has[:n], "born": self._born[:n], "now": self.now,
            "users": list(self.users),
            "P": self._P[:nu] if self.dim else None, "pn": self._pn[:nu],
            **self.tags.to_state(),
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict | None, config: ContentConfig, index: ItemIndex) -> ContentModel:
        self = cls(config, index)
        if not state:  # a checkpoint from before content existed
            return self
        self.dim = dim = state["dim"]
        self._has = grow(state["has"].copy(), 16)
        self._born = grow(state["born"].copy(), 16, fill=np.nan)
        self.now = state["now"]
        self.n_embedded = int(self._has.sum())
        if dim:
            self._E = grow(state["E"].reshape(-1, dim).copy(), len(self._has))
            self._P = grow(state["P"].reshape(-1, dim).copy(), 16)
        else:
            self._E = np.zeros((len(self._has), 0), dtype=np.float32)
        for u in state["users"]:
            self.users[u] = len(self.users)
        self._user_ids = list(state["users"])
        self._pn = grow(state["pn"].copy(), len(self._P))
        self.tags.load_state(state, len(self._has))
        return self
