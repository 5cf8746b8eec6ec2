"""The reading client applications use to fetch a user's recommendation list from Redis.

A convenience, not a requirement: a list is one msgpack value at ``rec:{user}``, readable with any
Redis client. Users without a personal list get the global fallback (popular / trending) list.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamrec.schemas.codec import decode
from streamrec.schemas.events import RecommendationList
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
        """The user's own list, or else the global fallback list (one round trip)."""
        personal, fallback = self.client.mget([self.keys.recs(user), self.keys.fallback()])
        if personal is not None:
            return Recommendations(user, True, decode(personal, RecommendationList))
        if fallback is not None:
            return Recommendations(user, False, decode(fallback, RecommendationList))
        return Recommendations(user, False, None)
