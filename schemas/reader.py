"""The reading client applications use to fetch a user's recommendation list from Redis.

A convenience, not a requirement: a list is one msgpack value at ``rec:{user}``, readable with any
Redis client. Users without a personal list get the global fallback (popular / trending) list.

Works with a plain Redis client and with a Redis Cluster client alike: the user's key and the
global fallback key are read as two GETs in one non-transactional pipeline, not one MGET. On a
cluster the two keys hash to different slots, where a multi-key MGET fails with CROSSSLOT (and the
fallback key cannot share a hash tag with every user's key); a cluster client splits the pipeline
by node instead, and a plain Redis still answers both GETs in one round trip.
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
        """The user's own list, or else the global fallback list (one round trip on a plain Redis;
        a pipeline of two GETs rather than an MGET, so it also works on a cluster)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.recs(user))
        pipe.get(self.keys.fallback())
        personal, fallback = pipe.execute()
        if personal is not None:
            return Recommendations(user, True, decode(personal, RecommendationList))
        if fallback is not None:
            return Recommendations(user, False, decode(fallback, RecommendationList))
        return Recommendations(user, False, None)
