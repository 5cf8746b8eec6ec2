"""An approximate nearest-neighbour index over unit vectors keyed by row: faiss IVF-Flat.

Why IVF-Flat (faiss) and not HNSW or usearch: measured on 100k synthetic 384-d unit vectors with a
topic/subtopic structure (one core, ``OPENBLAS_NUM_THREADS=1``), top-100 by inner product:

=====================================  ========  ===========  =========
index                                  build s   ms / query   recall
=====================================  ========  ===========  =========
exact, batched numpy product + top-k   0         1.2 - 5.3    1.000
faiss IVF-Flat, 1024 lists, nprobe 16  21        0.28         1.000
faiss IVF-Flat, 1024 lists, nprobe 8   21        0.19         0.980
faiss HNSW M=32, efSearch 512          22        0.70         0.954
usearch HNSW M=32, expansion 256       26        1.79         0.685
=====================================  ========  ===========  =========

IVF keeps every vector exactly (no graph to repair), so an item whose embedding changes is removed
and re-added at its new list, and exact scores are read from the caller's own matrix anyway: the
index only *nominates*. Its coarse centroids also bucket the user profiles for
:meth:`~streamrec.streams.content.ContentModel.users_near` (one query scans a few buckets, not every
user). Below ``min_items`` vectors there is no index at all and callers score exactly: on a small
catalogue the dense product is as cheap and has no recall loss.

>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 8)).astype(np.float32); X /= np.linalg.norm(X, axis=1, keepdims=True)
>>> ix = VectorIndex(8, nlist=4, nprobe=4)
>>> ix.build(X, np.arange(400))
>>> rows, _ = ix.search(X[:2], 3)
>>> rows[:, 0].tolist()                  # every vector is its own nearest neighbour
[0, 1]
>>> ix.remove(np.array([0])); int(ix.search(X[:1], 1)[0][0, 0]) != 0
True
"""

from __future__ import annotations

import math

import numpy as np

try:
    import faiss

    faiss.omp_set_num_threads(1)  # the worker's one-core semantics (like OPENBLAS_NUM_THREADS=1)
except ImportError:  # pragma: no cover - faiss-cpu is a core dependency
    faiss = None


def default_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: about ``4 sqrt(n)``, a power of two, 16..4096 (1024 lists
    at 100k items scanned 16 at a time: recall 1.000 at 0.28 ms, 256 lists: 0.92 ms).

    >>> default_nlist(100_000), default_nlist(1_000), default_nlist(10**9)
    (1024, 128, 4096)
    """
    return int(min(4096, max(16, 2 ** round(math.log2(4.0 * math.sqrt(max(1, n)))))))


#: query batches at least this large find their inverted lists by one BLAS product (:func:`coarse_lists`)
BLAS_MIN_QUERIES = 8


def coarse_lists(queries: np.ndarray, centroids_t: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, lists)``: each query's ``nprobe`` best centroids by inner product, best first
    (``centroids_t``: ``dim x nlist``); both C-contiguous, as ``search_preassigned`` reads them.

    Why not the flat quantizer's own search: for a batch (a ranking chunk of 64 profiles) one
    matrix product and a partial sort per row cost half as much, and select the same lists.

    >>> C = np.eye(4, dtype=np.float32)
    >>> s, l = coarse_lists(np.array([[0.1, 0.9, 0.0, 0.5]], dtype=np.float32), C.T.copy(), 2)
    >>> l.tolist(), s.astype(float).round(2).tolist()
    ([[1, 3]], [[0.9, 0.5]])
    >>> rng = np.random.default_rng(0)                  # the flat quantizer's own answer
    >>> C, Q = rng.normal(size=(64, 8)).astype(np.float32), rng.normal(size=(20, 8)).astype(np.float32)
    >>> flat = faiss.IndexFlatIP(8); flat.add(C)
    >>> s, l = coarse_lists(Q, C.T.copy(), 5); s2, l2 = flat.search(Q, 5)
    >>> bool((l == l2).all()), bool(np.allclose(s, s2, atol=1e-5))
    (True, True)
    """
    S = queries @ centroids_t
    nprobe = min(nprobe, S.shape[1])
    part = np.argpartition(-S, nprobe - 1, axis=1)[:, :nprobe] if nprobe < S.shape[1] else np.argsort(-S, axis=1)
    d = np.take_along_axis(S, part, 1)
    order = np.argsort(-d, axis=1, kind="stable")
    lists = np.ascontiguousarray(np.take_along_axis(part, order, 1), dtype=np.int64)
    return np.ascontiguousarray(np.take_along_axis(d, order, 1)), lists


class VectorIndex:
    """faiss ``IndexIVFFlat`` (inner product) with int64 row ids; ``search`` pads with ``-1``."""

    def __init__(self, dim: int, nlist: int | None = None, nprobe: int = 16, seed: int = 0, assign_width: int = 0):
        if faiss is None:  # pragma: no cover
            raise RuntimeError("the vector index needs faiss-cpu (a core dependency of streamrec)")
        self.dim, self.nlist, self.nprobe, self.seed = dim, nlist, nprobe, seed
        self.index = None
        self._CT: np.ndarray | None = None  # the coarse centroids, transposed (dim x nlist)
        self.n_built = 0  # vectors at the last (re)build: grow well past it and it is retrained
        #: the nearest ``assign_width`` lists of every added vector, by row (``-1``: not known), kept
        #: from adding it: :meth:`search_rows` then skips the coarse quantizer for a member's vector
        self.assign_width = assign_width
        self._assign = np.full((0, max(1, assign_width)), -1, dtype=np.int64)
        self._assign_d = np.zeros((0, max(1, assign_width)), dtype=np.float32)

    @property
    def built(self) -> bool:
        return self.index is not None

    def build(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Train the coarse quantizer on (a sample of) ``vectors`` and add them all under ``rows``."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        nlist = self.nlist or default_nlist(len(x))
        nlist = max(1, min(nlist, len(x)))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = self.seed
        index.cp.min_points_per_centroid = 1
        index.cp.max_points_per_centroid = 20  # train on a sample of 20 per list: seconds, not minutes
        index.verbose = False
        index.train(x)
        index.nprobe = min(self.nprobe, nlist)
        self.index, self.n_built, self._quantizer = index, len(x), quantizer
        self._CT = None
        self._assign = np.full((0, self._assign.shape[1]), -1, dtype=np.int64)
        self._assign_d = np.zeros((0, self._assign.shape[1]), dtype=np.float32)
        self.add(x, rows)

    def add(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Add ``vectors`` under ``rows``; with ``assign_width``, one coarse search gives both the
        list each vector goes to (the nearest) and the lists kept for :meth:`search_rows`."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(rows, dtype=np.int64)
        if not self.assign_width or not len(ids):
            self.index.add_with_ids(x, ids)
            return
        width = self._assign.shape[1]
        dist, lists = self._quantizer.search(x, min(width, self.index.nlist))
        nearest = np.ascontiguousarray(lists[:, 0])
        self.index.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(nearest))
        top = int(ids.max()) + 1
        if top > len(self._assign):
            grow = max(top, 2 * len(self._assign)) - len(self._assign)
            self._assign = np.concatenate([self._assign, np.full((grow, width), -1, dtype=np.int64)])
            self._assign_d = np.concatenate([self._assign_d, np.zeros((grow, width), dtype=np.float32)])
        self._assign[ids] = -1
        self._assign[ids, : lists.shape[1]] = lists
        self._assign_d[ids, : lists.shape[1]] = dist

    def remove(self, rows: np.ndarray) -> None:
        self.index.remove_ids(np.ascontiguousarray(rows, dtype=np.int64))
        self.unassign(rows)

    def unassign(self, rows: np.ndarray) -> None:
        """Forget the kept lists of ``rows`` (their vectors changed): searched in full again."""
        rows = np.asarray(rows, dtype=np.int64)
        self._assign[rows[rows < len(self._assign)]] = -1

    def search_rows(self, vectors: np.ndarray, rows: np.ndarray, k: int, nprobe: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """:meth:`search` for ``vectors`` that are the indexed vectors of ``rows`` (an item's own
        neighbours): the lists they were assigned when added are scanned (``search_preassigned``),
        so the coarse quantizer (1,024 inner products and a selection per query at 100k items, two
        thirds of such a search) runs only for rows whose lists are not known. Same answer as
        :meth:`search`.

        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(400, 8)).astype(np.float32); X /= np.linalg.norm(X, axis=1, keepdims=True)
        >>> ix = VectorIndex(8, nlist=8, nprobe=2, assign_width=2)
        >>> ix.build(X, np.arange(400))
        >>> ix.unassign(np.array([5]))         # e.g. its vector changed: its lists are searched again
        >>> got, want = ix.search_rows(X[3:7], np.arange(3, 7), 10), ix.search(X[3:7], 10)
        >>> bool((got[0] == want[0]).all() and (got[1] == want[1]).all())
        True
        """
        nprobe = max(1, min(self.nprobe if nprobe is None else nprobe, self.index.nlist))
        q = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        if nprobe > self._assign.shape[1] or not self.assign_width:
            return self.search(q, k, nprobe)
        n = len(q)
        lists = np.full((n, nprobe), -1, dtype=np.int64)
        dist = np.zeros((n, nprobe), dtype=np.float32)
        inside = rows < len(self._assign)
        lists[inside] = self._assign[rows[inside], :nprobe]
        dist[inside] = self._assign_d[rows[inside], :nprobe]
        miss = lists[:, 0] < 0
        if miss.any():
            dist[miss], lists[miss] = self._quantizer.search(q[miss], nprobe)
        return self._scan(q, k, lists, dist)

    def _scan(self, q: np.ndarray, k: int, lists: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, scores)`` of queries ``q`` whose inverted lists are already chosen (``lists``,
        ``len(q) x nprobe``, best first, with their centroid scores ``dist``): faiss
        ``search_preassigned`` scans only those."""
        n, nprobe = lists.shape
        scores = np.empty((n, k), dtype=np.float32)
        labels = np.empty((n, k), dtype=np.int64)
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        self.index.search_preassigned_c(n, faiss.swig_ptr(q), k, faiss.swig_ptr(lists), faiss.swig_ptr(dist),
                                        faiss.swig_ptr(scores), faiss.swig_ptr(labels), False, params)  # fmt: skip
        return labels, scores

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, scores)``, each ``len(queries) x k``, best first; missing hits are row ``-1``.
        ``nprobe``: inverted lists scanned for these queries (default: the index's).

        A batch of at least :data:`BLAS_MIN_QUERIES` finds its lists with one BLAS product
        (:func:`coarse_lists`) and scans them with ``search_preassigned``: the same lists and the
        same answer as faiss's own coarse search, which cost 0.04 of a profile's 0.19-0.26 ms at
        100k items (the product and selection: 0.018).

        >>> rng = np.random.default_rng(2)
        >>> X = rng.normal(size=(500, 8)).astype(np.float32); X /= np.linalg.norm(X, axis=1, keepdims=True)
        >>> ix = VectorIndex(8, nlist=16, nprobe=3)
        >>> ix.build(X, np.arange(500))
        >>> rows, scores = ix.search(X[:20], 10)          # a batch: lists by one product
        >>> s2, r2 = ix.index.search(X[:20], 10)          # faiss's own coarse search
        >>> bool((rows == r2).all() and (scores == s2).all())
        True
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        probe = max(1, min(self.index.nprobe if nprobe is None else nprobe, self.index.nlist))
        if len(q) >= BLAS_MIN_QUERIES and k > 0:
            if self._CT is None:  # the centroids are fixed once trained
                self._CT = np.ascontiguousarray(self.centroids.T)
            dist, lists = coarse_lists(q, self._CT, probe)
            return self._scan(q, k, lists, dist)
        if nprobe is None:
            scores, rows = self.index.search(q, k)
        else:
            scores, rows = self.index.search(q, k, params=faiss.SearchParametersIVF(nprobe=probe))
        return rows, scores

    @property
    def centroids(self) -> np.ndarray:
        return self._quantizer.reconstruct_n(0, self.index.nlist)

    def buckets(self, vectors: np.ndarray, n: int = 1) -> np.ndarray:
        """The ``n`` nearest coarse centroids of each vector (``len(vectors) x n``)."""
        q = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        return self._quantizer.search(q, min(n, self.index.nlist))[1]
