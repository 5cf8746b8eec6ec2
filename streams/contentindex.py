"""The content model's indexes: item embeddings in a nearest-neighbour index, users in buckets.

Why: a dense pass over every embedding per user (three mat-vecs over the whole catalogue) and a
scan of every user profile per new item do not scale past a few tens of thousands of rows. Here
the item embeddings live in a faiss IVF-Flat index (:class:`~streamrec.streams.vectorindex.
VectorIndex`) that *nominates* candidates; the caller scores the nominees exactly from its own
matrix, so the index changes which items are looked at, never their scores. The same coarse
centroids bucket the user profiles: a new item's closest users are searched in the few buckets
nearest to it (:meth:`ContentIndex.users_near`), not among all users.

Bookkeeping is once per pass (:meth:`ContentIndex.prepare`), never per event: an embedding that
arrives or changes is queued and enters the index at the next pass (its own scores are exact at
once, and it is a candidate through every other signal meanwhile); a user whose profile moved keeps
their bucket until the next pass, and a brand-new user is searched exhaustively until then.

>>> rng = np.random.default_rng(1)
>>> E = rng.normal(size=(300, 8)).astype(np.float32); E /= np.linalg.norm(E, axis=1, keepdims=True)
>>> ci = ContentIndex(min_items=100, nprobe=8, nlist=4, users_nprobe=4)
>>> ci.prepare(E, np.ones(300, bool), E[:50] * 2, 300)    # 50 users, profiles = items 0..49
>>> ci.built, sorted(ci.users_near(E[7], 50).tolist()) == list(range(50))  # every bucket probed
(True, True)
"""

from __future__ import annotations

import threading

import numpy as np

from streamrec.streams.vectorindex import VectorIndex


def user_buckets(P: np.ndarray, index: VectorIndex, per_bucket: int = 1000, seed: int = 0):
    """Centroids for the user buckets, as a faiss flat inner-product index: k-means on a sample of
    the (unit) profiles, about ``per_bucket`` users each, so buckets are balanced over the users
    (the item index's centroids follow the items, and users crowd into the few nearest their
    topic: a cold-start lookup then scanned tens of thousands of them)."""
    import faiss

    nu, dim = P.shape
    k = int(max(1, min(index.index.nlist, nu // per_bucket)))
    rng = np.random.default_rng(seed)
    sample = np.ascontiguousarray(P[np.sort(rng.choice(nu, min(nu, 32 * k), replace=False))], dtype=np.float32)
    norms = np.linalg.norm(sample, axis=1, keepdims=True)
    sample = sample[norms[:, 0] > 0] / norms[norms[:, 0] > 0]
    quantizer = faiss.IndexFlatIP(dim)
    if k <= 1 or len(sample) < 2 * k:
        quantizer.add(index.centroids)  # too few users to train on: the item centroids
        return quantizer
    km = faiss.Kmeans(dim, k, niter=10, seed=seed, spherical=True, max_points_per_centroid=32,
                      min_points_per_centroid=1, verbose=False)  # fmt: skip
    km.train(sample)
    quantizer.add(km.centroids)
    return quantizer


class ContentIndex:
    """Item IVF index (built at ``min_items`` embeddings, retrained when they double) + user buckets."""

    def __init__(self, min_items: int = 20_000, nprobe: int = 8, nlist: int = 0, users_nprobe: int = 8,
                 background: bool = False, neighbours_nprobe: int = 2):  # fmt: skip
        self.min_items, self.nprobe, self.nlist, self.users_nprobe = min_items, nprobe, nlist, users_nprobe
        #: lists scanned for an item's own neighbours (:meth:`neighbours`)
        self.neighbours_nprobe = neighbours_nprobe
        self.items: VectorIndex | None = None
        self._in = np.zeros(0, dtype=bool)  # row is in the item index
        self._pending: dict[int, np.ndarray] = {}  # rows whose vector arrived or changed
        # user buckets: nearest centroid per profile row, as CSR (order, starts)
        self._bucket = np.zeros(0, dtype=np.int64)
        self._dirty = np.zeros(0, dtype=bool)
        self._order = np.zeros(0, dtype=np.int64)
        self._starts = np.zeros(1, dtype=np.int64)
        self._n_bucketed = 0
        self._n_dirty = 0
        self._users_q = None  # faiss flat index of the user buckets' centroids
        self._users_q_n = 0  # users it was trained for
        #: build a new index in a thread (the worker); False builds it in place (tests, benches)
        self.background = background
        self._building: threading.Thread | None = None
        self._next = None

    def __getstate__(self) -> dict:
        """Pickled without the index (rebuilt at the next pass): it is derived, not state."""
        state = dict(self.__dict__)
        state.update(items=None, _building=None, _next=None, _n_bucketed=0, _pending={}, _users_q=None)
        return state

    @property
    def built(self) -> bool:
        return self.items is not None

    def wait(self) -> None:
        """Block until a background build is done (it is installed at the next pass)."""
        if self._building is not None:
            self._building.join()

    def set_nprobe(self, nprobe: int) -> None:
        """Inverted lists scanned per item query from now on (recall against speed)."""
        self.nprobe = nprobe
        if self.items is not None:
            self.items.nprobe = nprobe
            self.items.index.nprobe = min(nprobe, self.items.index.nlist)

    def item_changed(self, row: int, vector: np.ndarray) -> None:
        if self._building is not None:
            self._next_pending[row] = vector
        if self.items is not None:
            self._pending[row] = vector
            self.items.unassign(np.array([row]))  # its kept lists are the old vector's

    def users_moved(self) -> None:
        """Profile rows were renumbered: every user is bucketed afresh at the next prepare."""
        self._n_bucketed, self._n_dirty = 0, 0
        self._dirty = np.zeros(0, dtype=bool)

    def user_changed(self, u: int) -> None:
        if u < len(self._dirty) and not self._dirty[u]:
            self._dirty[u] = True
            self._n_dirty += 1
        if self._building is not None and u < len(self._next_dirty):
            self._next_dirty[u] = True

    def prepare(self, E: np.ndarray, has: np.ndarray, P: np.ndarray, n_embedded: int) -> None:
        """Build, retrain or update the item index and rebucket moved users (``P``: every profile)."""
        if not self.min_items or n_embedded < self.min_items:
            return
        if self._building is not None:
            if self._building.is_alive():
                return  # passes nominate exactly (or from the old index) until it is done
            self._install()
        if self.items is None or n_embedded >= 2 * self.items.n_built:
            self._start_build(E, has, P)
            if not self.background:
                self._building.join()
                self._install()
            else:
                return
        elif self._pending:
            rows = np.fromiter(self._pending, np.int64, len(self._pending))
            if len(self._in) < len(has):
                self._in = np.concatenate([self._in, np.zeros(len(has) - len(self._in), bool)])
            old = rows[self._in[rows]]
            if len(old):
                self.items.remove(old)
            self.items.add(np.stack(list(self._pending.values())), rows)
            self._in[rows] = True
            self._pending = {}
        self._rebucket(P)

    def _start_build(self, E: np.ndarray, has: np.ndarray, P: np.ndarray) -> None:
        """Train and fill a new index from a copy of the vectors and bucket every user profile, in
        a thread: faiss releases the GIL, so learning goes on meanwhile (at 100k items and a
        million users this is a minute or two of one core). Profiles that change meanwhile are
        marked and rebucketed later; ``P`` (a view) keeps the rows it was given alive."""
        rows = np.flatnonzero(has)
        index = VectorIndex(E.shape[1], self.nlist or None, self.nprobe, assign_width=self.neighbours_nprobe)
        self._next = (index, has.copy(), None)
        self._next_pending: dict[int, np.ndarray] = {}  # vectors set while it is built
        self._next_dirty = np.zeros(len(P), dtype=bool)  # profiles moved while it is built
        self._building = threading.Thread(target=self._build, args=(index, E[rows], rows, P), daemon=True,
                                          name="streamrec-index-build")  # fmt: skip
        self._building.start()

    def _build(self, index: VectorIndex, vectors: np.ndarray, rows: np.ndarray, P: np.ndarray) -> None:
        index.build(vectors, rows)
        if not len(P):
            return
        quantizer = user_buckets(P, index)
        nu = len(P)
        bucket = np.empty(nu, dtype=np.int64)
        for start in range(0, nu, 65_536):
            bucket[start : start + 65_536] = quantizer.search(P[start : start + 65_536], 1)[1][:, 0]
        order = np.argsort(bucket, kind="stable")
        starts = np.searchsorted(bucket[order], np.arange(quantizer.ntotal + 1))
        self._next = (self._next[0], self._next[1], (quantizer, bucket, order, starts))

    def _install(self) -> None:
        index, has, buckets = self._next
        self._building = self._next = None
        if index.index is None:  # the build failed: try again at the next pass
            return
        self.items, self._in = index, has
        self._pending = self._next_pending
        self._n_bucketed = 0  # new centroids: every user is bucketed again (below, or by the build)
        if buckets is not None:
            self._users_q, self._bucket, self._order, self._starts = buckets
            self._users_q_n = len(self._bucket)
            self._n_bucketed = len(self._bucket)
            self._dirty = self._next_dirty
            self._n_dirty = int(self._dirty.sum())

    def _rebucket(self, P: np.ndarray) -> None:
        """Bucket new users and those whose profile moved, once enough did (a full re-sort of the
        buckets costs ~0.1 s at a million users: not for every early refresh); until then a moved
        user is found in their old bucket and a new one by the exhaustive tail."""
        nu = len(P)
        changed = nu - self._n_bucketed + self._n_dirty
        if not nu or (self._n_bucketed and changed < max(1000, 0.02 * nu)):
            return
        if not self._n_bucketed or self._users_q is None or nu >= 4 * self._users_q_n:
            self._users_q, self._users_q_n = user_buckets(P, self.items), nu  # (re)trained as users grow
            self._n_bucketed = 0
        bucket = np.full(nu, -1, dtype=np.int64)
        keep = min(self._n_bucketed, len(self._bucket))
        bucket[:keep] = self._bucket[:keep]
        dirty = np.zeros(nu, dtype=bool)
        dirty[: len(self._dirty)] = self._dirty[:nu]
        dirty[keep:] = True
        todo = np.flatnonzero(dirty)
        for start in range(0, len(todo), 65_536):  # bounded scratch memory
            chunk = todo[start : start + 65_536]
            bucket[chunk] = self._users_q.search(P[chunk], 1)[1][:, 0]
        order = np.argsort(bucket, kind="stable")
        self._bucket, self._order = bucket, order
        self._starts = np.searchsorted(bucket[order], np.arange(self._users_q.ntotal + 1))
        self._dirty = np.zeros(nu, dtype=bool)
        self._n_bucketed, self._n_dirty = nu, 0

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Rows nominated for each query (``len(queries) x k``, ``-1`` padded); needs :attr:`built`."""
        return self.items.search(queries, k)[0]

    def neighbours(self, vectors: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        """:meth:`search` for the vectors of items (the ``recent`` signal): an item's neighbourhood
        is tight (the item's own list and the few next to it), unlike a profile's (a mean over a
        user's items), so fewer lists are scanned (``neighbours_nprobe``; at 100k items 2 of 1024
        lists kept ``recall_at_50`` at 0.999, as 4 did, see ``streamrec bench scale``). Given the
        items' ``rows``, the lists kept from adding them are scanned without the coarse search."""
        if rows is None:
            return self.items.search(vectors, k, nprobe=self.neighbours_nprobe)[0]
        return self.items.search_rows(vectors, rows, k, nprobe=self.neighbours_nprobe)[0]

    def search_scored(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` with the inner products (best first)."""
        return self.items.search(queries, k)

    def users_near(self, vector: np.ndarray, n_users: int) -> np.ndarray | None:
        """Profile rows to score for an item ``vector``: its nearest buckets' users plus those not
        bucketed yet; ``None`` when there is no index (then every user is scored)."""
        if self.items is None or not self._n_bucketed:
            return None
        q = np.ascontiguousarray(np.atleast_2d(vector), dtype=np.float32)
        probes = self._users_q.search(q, min(self.users_nprobe, self._users_q.ntotal))[1][0]
        starts, order = self._starts, self._order
        parts = [order[starts[b] : starts[b + 1]] for b in probes.tolist() if b >= 0]
        if n_users > self._n_bucketed:
            parts.append(np.arange(self._n_bucketed, n_users))
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
