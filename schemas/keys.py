"""The Redis key layout, defined once.

Readers need nothing but a Redis client and msgpack: a personal list lives at ``rec:{user}``, the
global fallback at ``rec:__global__``, cached LLM embeddings at ``emb:{model}:{content_hash}``.
Every key streamrec writes has a TTL (see :class:`RedisKeys`).

On a Redis Cluster these names are used unchanged. No key carries a hash tag, so users' lists spread
over every slot; nothing needs them together, since streamrec never changes two keys atomically (no
MULTI/EXEC, no multi-key commands: reads and writes are pipelines of one-key commands). The braces in
``rec:{user}`` are notation for the user id, not a hash tag.

>>> keys = RedisKeys()
>>> keys.recs("u42")
'rec:u42'
>>> keys.fallback()
'rec:__global__'
>>> RedisKeys(prefix="shop1:").embedding("minilm", "ab12")
'shop1:emb:minilm:ab12'
"""

from __future__ import annotations

from dataclasses import dataclass

GLOBAL_USER = "__global__"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str = ""
    #: personal lists expire a day after their last refresh; inactive users fall back to the global list
    recs_ttl_s: int = 86_400
    #: the global list is rewritten every refresh; a week keeps readers served through a long outage
    fallback_ttl_s: int = 7 * 86_400
    #: embeddings are keyed by content hash, so they never go stale; the TTL only bounds memory
    embedding_ttl_s: int = 30 * 86_400

    def recs(self, user: str) -> str:
        return f"{self.prefix}rec:{user}"

    def fallback(self) -> str:
        return self.recs(GLOBAL_USER)

    def stats(self, group: str) -> str:
        """A hash of the stream workers' counters (learned, dead letters, last refresh)."""
        return f"{self.prefix}stats:{group}"

    def embedding(self, model: str, content_hash: str) -> str:
        return f"{self.prefix}emb:{model}:{content_hash}"
