"""The reading client applications use to fetch a user's recommendation list from Redis.

A convenience, not a requirement: a list is one msgpack value at ``rec:{user}``, readable with any
Redis client. Users without a personal list get the global fallback (popular / trending) list.

Works with a plain Redis client and with a Redis Cluster client alike: every read is a GET of one
key (never an MGET, which fails with CROSSSLOT on a cluster, where a user's key and the global key
hash to different slots). :meth:`RecsReader.get` reads the user's own key first and the global
one only when the personal list is missing: one round trip for a user who has a list (the common
case), two for a user who has none.

Why the reader keeps a connection: with redis-py 8 a ``client.get`` spends about as long in the
client as on the wire (taking a connection from the pool and giving it back under a lock,
checking it for unread data, the retry wrapper, its metrics hooks): 64 µs against 30 µs for the
same GET sent on a connection already held, in one run on the shared two-core box. So a reader
of a plain ``redis.Redis`` keeps one connection of that client's pool (URL, user, password, TLS
and database are the client's) and sends its GETs on it with redis-py's own ``Connection``; a
thread that finds it in use by another, a cluster or any other client, goes through
``client.get``. A connection error drops the held connection and the GET is made again through
``client.get``, with the client's retries; a forked child takes a connection of its own.

:meth:`RecsReader.similar` reads an item's similar items (``sim:{item}``), and
:meth:`RecsReader.seen` a user's recent items (``seen:{user}``), which a fallback list for that
user should leave out (``streamrec serve`` does).
"""

from __future__ import annotations

import os
import threading
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
        self._held = _HeldConnection.of(client)

    @classmethod
    def from_url(cls, url: str, keys: RedisKeys = RedisKeys(), **kwargs) -> RecsReader:
        import redis

        return cls(redis.Redis.from_url(url, **kwargs), keys)

    def get(self, user: str) -> Recommendations:
        """The user's own list, or else the global fallback list (read only when needed)."""
        personal = self._read(self.keys.recs(user))
        if personal is not None:
            return Recommendations(user, True, decode(personal, RecommendationList))
        fallback = self._read(self.keys.fallback())
        if fallback is not None:
            return Recommendations(user, False, decode(fallback, RecommendationList))
        return Recommendations(user, False, None)

    def similar(self, item: str) -> SimilarItems | None:
        """The item's similar-item list, or ``None`` when it has none (unknown, deleted, no
        neighbours yet)."""
        raw = self._read(self.keys.similar(item))
        return None if raw is None else decode(raw, SimilarItems)

    def seen(self, user: str) -> tuple[str, ...]:
        """The user's most recent items as the stream worker last wrote them (empty if none)."""
        raw = self._read(self.keys.seen(user))
        return () if raw is None else decode(raw, SeenItems).items

    def _read(self, key: str):
        return self.client.get(key) if self._held is None else self._held.get(key)

    def close(self) -> None:
        """Give the held connection back to the client's pool (the client stays usable)."""
        if self._held is not None:
            self._held.close()


class _HeldConnection:
    """One connection of a plain ``redis.Redis``'s pool, kept for GETs (see the module docstring)."""

    def __init__(self, client):
        self.client = client
        self.pool = client.connection_pool
        self.conn = None
        self.pid: int | None = None
        self.lock = threading.Lock()

    @classmethod
    def of(cls, client) -> _HeldConnection | None:
        """A held connection for ``client``, or ``None`` where GETs go through ``client.get``:
        not a ``redis.Redis`` (a cluster client, a stand-in), or one on a single connection.

        >>> import redis
        >>> type(_HeldConnection.of(redis.Redis(port=1))).__name__, _HeldConnection.of(object())
        ('_HeldConnection', None)
        """
        try:
            import redis
        except ImportError:  # pragma: no cover - a client without redis-py installed
            return None
        if not isinstance(client, redis.Redis) or getattr(client, "connection", None) is not None:
            return None
        return cls(client)

    def get(self, key: str):
        if not self.lock.acquire(blocking=False):  # another thread is reading: the pool's way
            return self.client.get(key)
        try:
            conn = self.conn
            if conn is None or self.pid != os.getpid():
                conn = self.conn = self.pool.get_connection()
                self.pid = os.getpid()
            try:
                conn.send_command("GET", key)
                return conn.read_response()
            except Exception as exc:
                from redis.exceptions import ResponseError

                if isinstance(exc, ResponseError):  # an error reply: the connection is fine
                    raise
                self._drop()  # its state is unknown: never reused
                return self.client.get(key)  # again, with the client's own retries
            except BaseException:  # interrupted mid-read: the reply may still come
                self._drop()
                raise
        finally:
            self.lock.release()

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and self.pid == os.getpid():
            conn.disconnect()
            self.pool.release(conn)

    def close(self) -> None:
        with self.lock:
            conn, self.conn = self.conn, None
            if conn is not None and self.pid == os.getpid():
                self.pool.release(conn)
