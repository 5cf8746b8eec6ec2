"""What ``streamrec serve`` keeps between requests: its clients, and what lets a list request cost
one Redis read.

:class:`DeliveryWaiter` is the app's Kafka producer for ``POST /events``: deliveries resolve
asyncio futures, so the event loop never blocks on the broker.

Why: ``bench serve`` showed where a request's time went. Beside the HTTP stack, it was the Redis
client: a ``redis.asyncio`` command borrows a connection from the pool (a lock and bookkeeping)
for every command, about 60 µs a GET on the shared two-core box, twice the round trip itself, and
a request made two (the list, then an SMISMEMBER of the deleted set). So:

- :class:`ReadLane` sends the request's GET on a connection it holds (taken from the client's
  own pool once, so URL, password, TLS and database are the client's), about 30 µs a GET; a
  connection that fails or is cancelled mid-read is dropped, never reused. A cluster client has
  no single pool: there the lane is the client's own ``get``. For a ``redis://`` URL the app
  takes the faster :class:`~streamrec.serve_lane.RespLane` instead (hiredis on one pipelined
  connection); this lane serves TLS, Unix socket and cluster URLs.
- :class:`DeletedMirror` keeps the deleted set in the process, so no request asks Redis about it.
  A background task checks ``deleted:version`` (which the stream worker bumps with every write to
  the set) each ``STREAMREC_SERVE_DELETED_REFRESH_S`` and reloads the set only when it changed
  (and every ``full_every`` checks anyway). A delete thus reaches the API at most that long after
  the worker wrote it; while the mirror is not fresh (Redis errors), requests ask Redis again
  with SMISMEMBER, so a stale copy is never trusted.
- :func:`freshness` judges the global list's age for ``/healthz``: a worker that stopped
  refreshing shows as unhealthy, not only a Redis that does not answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

from streamrec.schemas.keys import RedisKeys


def freshness(generated_at: float | None, model_version: str | None, now: float, stale_after_s: float):
    """``(healthy, detail)`` for a global list generated at ``generated_at`` (``None``: none yet).

    >>> freshness(1000.0, "streamrec-blend.7", now=1060.0, stale_after_s=300)
    (True, {'status': 'ok', 'model_version': 'streamrec-blend.7', 'generated_at': 1000.0, 'age_s': 60.0})
    >>> freshness(1000.0, "streamrec-blend.7", now=1400.0, stale_after_s=300)[1]["status"]
    'stale: the global list is 400 s old (limit 300 s): is the stream worker refreshing?'
    >>> freshness(None, None, now=1.0, stale_after_s=300)
    (False, {'status': 'no global list yet: no stream worker has refreshed', 'model_version': None, 'generated_at': None, 'age_s': None})
    """
    if generated_at is None:
        return False, {"status": "no global list yet: no stream worker has refreshed", "model_version": None,
                       "generated_at": None, "age_s": None}  # fmt: skip
    age = round(max(0.0, now - generated_at), 3)
    ok = age <= stale_after_s
    status = "ok" if ok else (f"stale: the global list is {age:.0f} s old (limit {stale_after_s:.0f} s): "
                              "is the stream worker refreshing?")  # fmt: skip
    return ok, {"status": status, "model_version": model_version, "generated_at": generated_at, "age_s": age}


class DeletedMirror:
    """The set ``deleted``, copied into the process and kept current by :meth:`refresh`.

    >>> m = DeletedMirror(RedisKeys(), interval_s=1.0)
    >>> m.fresh(now=10.0)  # never loaded: requests ask Redis
    False
    >>> m.loaded({"i1", "i2"}, b"7", now=10.0); m.fresh(now=12.0), m.fresh(now=16.0)
    (True, False)
    >>> m.reload_due(b"7"), m.reload_due(b"8"), m.reload_due(None)
    (False, True, True)
    """

    def __init__(self, keys: RedisKeys, interval_s: float, full_every: int = 30, stale_after: float = 5.0):
        self.keys = keys
        self.interval_s = interval_s
        #: reload even an unchanged version this often (a cluster pipeline may land out of order)
        self.full_every = full_every
        #: the copy is trusted while the last good check is at most this many intervals old
        self.stale_after = stale_after
        self.items: frozenset[str] = frozenset()
        self.version: bytes | None = None
        self.checked_at: float | None = None
        self._checks = 0

    def fresh(self, now: float) -> bool:
        """May a request trust :attr:`items` now?"""
        return self.checked_at is not None and now - self.checked_at <= self.stale_after * self.interval_s

    def reload_due(self, version: bytes | None) -> bool:
        """Must the set be read again, given the version now in Redis? (``None``: no version key,
        e.g. a worker that never deleted anything: read the set, it is small or absent.)"""
        return version is None or version != self.version or (self._checks > 0 and self._checks % self.full_every == 0)

    def loaded(self, members: Iterable, version: bytes | None, now: float) -> None:
        self.items = frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        self.version = version
        self.checked_at = now

    async def refresh(self, redis, now: float) -> None:
        """One check (a GET of the version; an SMEMBERS only when it changed). Redis errors
        propagate: the caller logs them, and the copy stops being fresh after a while."""
        version = await redis.get(self.keys.deleted_version())
        self._checks += 1
        if self.checked_at is None or self.reload_due(version):
            self.loaded(await redis.smembers(self.keys.deleted()), version, now)
        else:
            self.checked_at = now

    async def flags(self, redis, names: list[str], now: float) -> list[bool]:
        """Is each of ``names`` deleted? From the copy when fresh, else one SMISMEMBER."""
        if self.fresh(now):
            items = self.items
            return [name in items for name in names]
        return [bool(x) for x in await redis.smismember(self.keys.deleted(), names)]


class ReadLane:
    """GETs on connections the lane holds (see the module docstring for why)."""

    def __init__(self, client, max_idle: int = 32):
        self.client = client
        #: connections kept between requests; past it (after a burst) they go back to the pool
        self.max_idle = max_idle
        self._pool = getattr(client, "connection_pool", None)  # None: a cluster client
        self._free: list = []

    async def get(self, key: str) -> bytes | None:
        if self._pool is None:
            return await self.client.get(key)
        conn = self._free.pop() if self._free else await self._pool.get_connection()
        try:
            await conn.send_command("GET", key)
            value = await conn.read_response()
        except BaseException:  # an error or a cancelled request: the reply may still come, drop it
            await conn.disconnect()
            await self._pool.release(conn)
            raise
        if len(self._free) < self.max_idle:
            self._free.append(conn)
        else:
            await self._pool.release(conn)
        return value

    async def close(self) -> None:
        """Give the held connections back to the pool (before the client is closed)."""
        while self._free:
            await self._pool.release(self._free.pop())


class DeliveryWaiter:
    """A confluent-kafka producer whose deliveries resolve asyncio futures: a daemon thread polls
    it, so the event loop never blocks on the broker."""

    def __init__(self, config: dict):
        self.config = config
        self._producer = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from confluent_kafka import Producer

        self._producer = Producer({**self.config, "acks": "all", "enable.idempotence": True,
                                   "linger.ms": 1, "message.timeout.ms": 10_000})  # fmt: skip
        self._thread = threading.Thread(target=self._poll, daemon=True, name="serve-producer")
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def produce(self, topic: str, key: bytes, value: bytes):
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def on_delivery(err, msg):
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result((err, msg)))

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let the poller drain it
                await asyncio.sleep(0.01)
        return await done

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._producer is not None:
            self._producer.flush(5)
