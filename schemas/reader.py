"""The reading client applications use to fetch a user's recommendation list from Redis.

A convenience, not a requirement: a list is one msgpack value at ``rec:{user}``, readable with any
Redis client. Users without a personal list get the global fallback (popular / trending) list.

Works with a plain Redis client and with a Redis Cluster client alike: every read is a GET of one
key (never an MGET, which fails with CROSSSLOT on a cluster, where a user's key and the global key
hash to different slots). :meth:`RecsReader.get` reads the user's own key first and the global
one only when the personal list is missing: one round trip for a user who has a list (the common
case, and as fast as a bare GET), two for a user who has none.

:meth:`RecsReader.similar` reads an item's similar items (``sim:{item}``), and
:meth:`RecsReader.seen` a user's recent items (``seen:{user}``), which a fallback list for that
user should leave out (``streamrec serve`` does).
"""

from __future__ import annotations

from dataclasses import dataclass

from streamrec.schemas.codec import decode
from streamrec.schemas.events import RecommendationList, SeenItems, SimilarItems
from streamrec.schemas.keys import RedisKeys


@dataclass(frozen=True, slots=True)
class Recommendations:
    """A list as served: ``personal`` is False when it is the global fallback."""

    user: str
    personal: bool
    list: RecommendationList | None  # None: neither a personal nor a global list exists yet

    @property
    def items(self) -> list[tuple[str, float]]:
        return list(self.list.items) if self.list else []


class RecsReader:
    """Read lists from Redis: ``RecsReader(redis.Redis.from_url(url)).get("u42")``."""

    def __init__(self, client, keys: RedisKeys = RedisKeys()):
        self.client = client
        self.keys = keys

    @classmethod
    def from_url(cls, url: str, keys: RedisKeys = RedisKeys(), **kwargs) -> RecsReader:
        import redis

        return cls(redis.Redis.from_url(url, **kwargs), keys)

    def get(self, user: str) -> Recommendations:
        """The user's own list, or else the global fallback list (read only when needed)."""
        personal = self.client.get(self.keys.recs(user))
        if personal is not None:
            return Recommendations(user, True, decode(personal, RecommendationList))
        fallback = self.client.get(self.keys.fallback())
        if fallback is not None:
            return Recommendations(user, False, decode(fallback, RecommendationList))
        return Recommendations(user, False, None)

    def similar(self, item: str) -> SimilarItems | None:
        """The item's similar-item list, or ``None`` when it has none (unknown, deleted, no
        neighbours yet)."""
        raw = self.client.get(self.keys.similar(item))
        return None if raw is None else decode(raw, SimilarItems)

    def seen(self, user: str) -> tuple[str, ...]:
        """The user's most recent items as the stream worker last wrote them (empty if none)."""
        raw = self.client.get(self.keys.seen(user))
        return () if raw is None else decode(raw, SeenItems).items
