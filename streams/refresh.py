"""The refresh: turn the model's current view of active users into lists in Redis.

Lists are computed by the caller-supplied ``recommend`` function and written in pipelined batches,
each key with its TTL, the model version, the generation time and a digest of the configuration
that produced it (so a reader can tell lists of different configurations apart). Writing is
idempotent: a list rewritten after a crash simply replaces the previous one.

Each command in a batch touches one key (SET with its TTL, or DEL of a list that has no personal
signal any more), and the pipeline is not a MULTI/EXEC transaction: nothing needs two keys to change
together, since every list is a single value. So the same batches run on a Redis Cluster, whose
client splits a pipeline by node, and on a plain Redis each batch stays one round trip. If a
cluster node fails mid-batch, the caller keeps the users owed and rewrites them all later.

>>> build_list("u1", [("i1", 0.9), ("i2", 0.5)], "mf.7", 1.7e9, "abc").items
(('i1', 0.9), ('i2', 0.5))
>>> config_digest({"k": 50, "weights": [1, 2]})
'5a02bd6f2077'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable

from streamrec.schemas.codec import encode
from streamrec.schemas.events import RecommendationList
from streamrec.schemas.keys import GLOBAL_USER, RedisKeys

BATCH = 500


def config_digest(config: dict) -> str:
    """A short stable digest of a JSON-able configuration."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def build_list(
    user: str, items: Iterable[tuple[str, float]], model_version: str, now: float, digest: str
) -> RecommendationList:
    return RecommendationList(
        user=user,
        items=tuple((str(i), float(s)) for i, s in items),
        model_version=model_version,
        generated_at=now,
        config_digest=digest,
    )


def write_lists(
    client,
    keys: RedisKeys,
    users: Iterable[str],
    recommend: Callable[[str], list[tuple[str, float]]],
    fallback: list[tuple[str, float]] | None,
    model_version: str,
    now: float,
    digest: str,
) -> int:
    """Compute and write the lists of ``users`` (and the global list); return how many were written.

    Raises the Redis client's error when Redis is unreachable; nothing is half-reported: the caller
    keeps the users pending and retries.
    """
    written = 0
    pipe = client.pipeline(transaction=False)
    if fallback is not None:
        lst = build_list(GLOBAL_USER, fallback, model_version, now, digest)
        pipe.set(keys.fallback(), encode(lst), ex=keys.fallback_ttl_s)
    for user in users:
        items = recommend(user)
        if not items:  # no personal signal: the reader serves the global list
            pipe.delete(keys.recs(user))
        else:
            lst = build_list(user, items, model_version, now, digest)
            pipe.set(keys.recs(user), encode(lst), ex=keys.recs_ttl_s)
            written += 1
        if len(pipe) >= BATCH:
            pipe.execute()
    if len(pipe):
        pipe.execute()
    return written
