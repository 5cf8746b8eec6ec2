"""The embedding worker: ``items.enrich`` in, ``items.embeddings`` out, through a Redis cache.

Run by ``streamrec worker embed [--burst]`` as a faust agent (see :mod:`.agents` for the batching,
the transactions and restarts, :mod:`.common` for dead-lettering). Each batch of requests is
embedded like this::

    text of each request (title, text, attribute values)   ── keyed by its content hash
    ─► one pipelined GET of emb:{model}:{hash} per distinct hash of the batch (hits skip the model)
    ─► one encoder call for the misses ─► one pipelined SET ... EX of the new vectors
    ─► ItemEmbedding(item, model, content_hash, vector, ts) per request, keyed by item

This worker is the one that dead-letters malformed requests: the tag worker reads the same
requests in its own consumer group and only skips and counts them, so each bad request reaches the
dead-letter topic exactly once (see :mod:`.common`).

Why cache by content hash: items are re-published whenever anything about them changes (and
replayed after a crash), but their text rarely does; the same content is embedded once, whatever
the item id, request count or worker instance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np

from streamrec.schemas.events import EnrichRequest, ItemEmbedding
from streamrec.schemas.keys import RedisKeys
from streamrec.settings import Settings
from streamrec.workers.common import EnrichWorker, WorkerError, request_text

log = logging.getLogger("streamrec.workers.embed")


def load_encoder(settings: Settings):
    """The encoder the settings ask for (imports torch: only the LLM workers call this)."""
    import torch

    from streamrec.workers.encoder import Encoder

    if settings.embed_device == "cuda" and not torch.cuda.is_available():
        raise WorkerError("STREAMREC_EMBED_DEVICE=cuda, but torch sees no CUDA device")
    return Encoder(settings.embed_model, device=settings.embed_device,
                   max_tokens=settings.embed_max_tokens, batch_size=settings.embed_batch_size)  # fmt: skip


def pack_vector(vector) -> bytes:
    """The cache value: little-endian float32 bytes, 4 bytes a dimension, readable from any language.

    >>> v = unpack_vector(pack_vector([0.5, -1.0]), dim=2)
    >>> v.tolist(), v.dtype.name
    ([0.5, -1.0], 'float32')
    >>> unpack_vector(b"\\x00" * 12, dim=2) is None  # wrong size: a miss, never a wrong vector
    True
    """
    return np.asarray(vector, dtype="<f4").tobytes()


def unpack_vector(raw: bytes | None, dim: int) -> np.ndarray | None:
    if raw is None or len(raw) != 4 * dim:
        return None
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return vector if np.isfinite(vector).all() else None


class EmbeddingCache:
    """Embeddings in Redis at ``emb:{model}:{content_hash}``; one pipeline of GETs and one of SETs
    per batch.

    Reads are GETs in a non-transactional pipeline rather than one MGET: on a Redis Cluster the
    keys of a batch hash to different slots, where MGET fails with CROSSSLOT; a cluster client
    splits the pipeline by node, and a plain Redis answers it in one round trip, like the MGET.

    Redis is an optimisation here, not a dependency: when it is down the worker embeds without it,
    says so once per retry period, and tries again with a growing back-off.
    """

    def __init__(self, client, keys: RedisKeys, model: str, dim: int, clock=time.monotonic):
        self.redis = client
        self.keys, self.model, self.dim, self.clock = keys, model, dim, clock
        self.ttl_s = keys.embedding_ttl_s
        self.failures = 0
        self._retry_at = 0.0
        self._backoff = 0.0

    @property
    def ok(self) -> bool:
        return self._backoff == 0.0

    def _call(self, fn):
        from streamrec.connect import redis_errors

        if self.clock() < self._retry_at:
            return None
        try:
            result = fn()
        except redis_errors() as exc:
            self.failures += 1
            self._backoff = min(30.0, max(1.0, self._backoff * 2))
            self._retry_at = self.clock() + self._backoff
            log.warning("Redis unavailable (%s); embedding without the cache, retrying in %.0fs",
                        exc, self._backoff)  # fmt: skip
            return None
        self._backoff = 0.0
        return result

    def get_many(self, hashes: list[str]) -> dict[str, np.ndarray]:
        if not hashes:
            return {}

        def read():
            pipe = self.redis.pipeline(transaction=False)
            for h in hashes:
                pipe.get(self.keys.embedding(self.model, h))
            return pipe.execute()

        raw = self._call(read)
        found = {}
        for h, value in zip(hashes, raw or ()):
            vector = unpack_vector(value, self.dim)
            if vector is not None:
                found[h] = vector
        return found

    def put_many(self, vectors: Mapping[str, np.ndarray]) -> None:
        if not vectors:
            return

        def write():
            pipe = self.redis.pipeline(transaction=False)
            for h, v in vectors.items():
                pipe.set(self.keys.embedding(self.model, h), pack_vector(v), ex=self.ttl_s)
            pipe.execute()

        self._call(write)


def cache_for(settings: Settings, model: str, dim: int) -> EmbeddingCache:
    """The cache of a worker: fail fast (no client-side retries) when Redis is away, since the
    worker does fine without it and retries on its own schedule."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from streamrec.connect import redis_client

    client = redis_client(settings, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    return EmbeddingCache(client, RedisKeys(prefix=settings.redis_prefix), model, dim)


def embed_cached(encoder, cache: EmbeddingCache | None, texts: Mapping[str, str], stats) -> dict:
    """``content_hash -> vector`` for ``texts`` (hash -> text): cached ones from Redis, the rest
    through the model in one call, then written back. Each hash reaches the model at most once."""
    hashes = list(texts)
    found = cache.get_many(hashes) if cache is not None else {}
    missing = [h for h in hashes if h not in found]
    stats.cache_hits += len(found)
    if missing:
        vectors = encoder.encode([texts[h] for h in missing])
        fresh = dict(zip(missing, vectors))
        if cache is not None:
            cache.put_many(fresh)
        found.update(fresh)
        stats.embedded += len(missing)
    return found


def distinct_texts(requests: list[EnrichRequest]) -> dict[str, str]:
    """``content_hash -> text`` for a batch, each hash once (first request wins; equal hashes
    mean equal content).

    >>> from streamrec.schemas.events import Item
    >>> a = EnrichRequest.for_item(Item("i1", "Dune", "Sand.", ts=1.0), ts=1.0)
    >>> b = EnrichRequest.for_item(Item("i2", "Dune", "Sand.", ts=1.0), ts=2.0)
    >>> list(distinct_texts([a, b]).values())
    ['Dune. Sand']
    """
    texts: dict[str, str] = {}
    for req in requests:
        if req.content_hash not in texts:
            texts[req.content_hash] = request_text(req)
    return texts


class EmbedWorker(EnrichWorker):
    """Consumes with group ``{enrich_group_id}-embed``; see the module docstring."""

    name = "embed"
    owns_dead_letters = True  # the one LLM worker kind that dead-letters malformed requests

    def __init__(self, settings: Settings, encoder=None):
        super().__init__(settings)
        self.encoder = encoder if encoder is not None else load_encoder(settings)
        self.cache = cache_for(settings, self.encoder.name, self.encoder.dim)
        self._calls_at_start = self.encoder.calls

    @property
    def output_topics(self) -> list[str]:
        return [self.topics.embeddings, self.topics.deadletter]

    def handle(self, requests: list[EnrichRequest], now: float) -> list[ItemEmbedding]:
        vectors = embed_cached(self.encoder, self.cache, distinct_texts(requests), self.stats)
        self.stats.model_calls = self.encoder.calls - self._calls_at_start
        self.stats.redis_failures = self.cache.failures
        model = self.encoder.name
        return [ItemEmbedding(r.item, model, r.content_hash, vectors[r.content_hash], now)
                for r in requests]  # fmt: skip

    def extra_health(self) -> dict:
        return {"model": self.encoder.name, "device": self.encoder.device, "redis_ok": self.cache.ok}


def run(settings: Settings, burst: bool = False, max_seconds: float | None = None) -> str:
    """Run the worker (``streamrec worker embed``); the summary line it ends with."""
    from streamrec.workers import agents

    worker = EmbedWorker(settings)
    stats = agents.run(worker, burst=burst, max_seconds=max_seconds)
    return f"embed worker ({worker.encoder.name} on {worker.encoder.device}): {stats.line()}"
