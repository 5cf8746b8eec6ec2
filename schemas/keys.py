"""The Redis key layout, defined once.

Readers need nothing but a Redis client and msgpack: a personal list lives at ``rec:{user}``, the
global fallback at ``rec:__global__``, an item's similar items at ``sim:{item}``, its catalogue
record (attributes for filters, or a delete) at ``item:{item}``, a user's recent items at
``seen:{user}``, the set of deleted items at ``deleted``, cached LLM embeddings at ``emb:{model}:{content_hash}``.
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
>>> keys.similar("i9"), keys.item("i9"), keys.seen("u42")
('sim:i9', 'item:i9', 'seen:u42')
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
    #: similar-item lists are rewritten when an item's neighbourhood changes; a quiet item keeps its
    #: list a week
    similar_ttl_s: int = 7 * 86_400
    #: an item's catalogue record (attributes, deleted) lives as long as the seen lists that may name it
    item_ttl_s: int = 30 * 86_400
    #: a user's seen items outlive their personal list (a day), so the fallback can still leave them out
    seen_ttl_s: int = 30 * 86_400

    def recs(self, user: str) -> str:
        return f"{self.prefix}rec:{user}"

    def fallback(self) -> str:
        return self.recs(GLOBAL_USER)

    def stats(self, group: str) -> str:
        """A hash of the stream workers' counters (learned, dead letters, last refresh)."""
        return f"{self.prefix}stats:{group}"

    def embedding(self, model: str, content_hash: str) -> str:
        return f"{self.prefix}emb:{model}:{content_hash}"

    def similar(self, item: str) -> str:
        return f"{self.prefix}sim:{item}"

    def item(self, item: str) -> str:
        """The item's catalogue record (attributes for filters; ``deleted`` for a deleted item)."""
        return f"{self.prefix}item:{item}"

    def seen(self, user: str) -> str:
        return f"{self.prefix}seen:{user}"

    def deleted(self) -> str:
        """A Redis set of the deleted items: one SMISMEMBER lets a reader drop deleted items from
        lists written before the delete (one key, so one command whatever the list's length)."""
        return f"{self.prefix}deleted"

    def deleted_version(self) -> str:
        """A counter the stream worker bumps whenever it writes to :meth:`deleted`, so a reader that
        mirrors the set (``streamrec serve``) reloads it only when it changed; TTL ``item_ttl_s``."""
        return f"{self.prefix}deleted:version"
