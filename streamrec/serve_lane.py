"""The GETs of ``streamrec serve``'s list requests: RESP over one held connection, parsed by hiredis.

Why: ``bench serve`` put the Redis read at a third of a request's time. The same GET on a
connection already held costs, in the server's event loop on the shared two-core box, about 35
µs through ``redis.asyncio`` (:class:`~streamrec.serve_state.ReadLane`: an ``asyncio.wait_for``
task around every send and a timeout scope around every read, then its stream reader) and about
14 µs as an asyncio protocol that writes the command and hands each reply that hiredis (the C
parser redis-py itself uses) completes to the oldest waiting request. Requests in flight together
share the connection as a pipeline: replies come back in order, so a request that is cancelled
leaves nothing behind (its reply is read and dropped), and no connection is taken per request.

One timer per connection, not per request, keeps the client's ``socket_timeout``: when the oldest
request has waited longer, the connection is aborted, its requests fail with ``TimeoutError``, and
the next GET connects again. :func:`open_lane` takes this lane only where it knows the whole
handshake (a ``redis://`` URL: AUTH with the configured user and password, SELECT of the database,
CLIENT SETNAME); a ``rediss://`` (TLS), ``unix://`` or cluster URL gets the redis-py lane, slower
but the client's own code.
"""

from __future__ import annotations

import asyncio
import collections

from streamrec.settings import Settings

#: the parts of a RESP request for ``GET key``: ``*2 $3 GET $len key``
_GET_HEAD = b"*2\r\n$3\r\nGET\r\n$"


def pack(*args: str | bytes) -> bytes:
    """One RESP request (an array of bulk strings).

    >>> pack("GET", "rec:u1")
    b'*2\\r\\n$3\\r\\nGET\\r\\n$6\\r\\nrec:u1\\r\\n'
    >>> pack("GET", "rec:é") == get_request("rec:é") == b"*2\\r\\n$3\\r\\nGET\\r\\n$6\\r\\nrec:\\xc3\\xa9\\r\\n"
    True
    """
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def get_request(key: str) -> bytes:
    """``pack("GET", key)``, the one request of the hot path, in one formatting step."""
    raw = key.encode()
    return b"%s%d\r\n%s\r\n" % (_GET_HEAD, len(raw), raw)


def handshake(username: str | None, password: str | None, db: int, name: str | None) -> list[bytes]:
    """The requests sent on a new connection before any GET (each must answer ``+OK``).

    >>> handshake(None, None, 0, None)
    []
    >>> handshake("app", "pw", 2, "streamrec-serve") == [pack("AUTH", "app", "pw"), pack("SELECT", "2"),
    ...                                                   pack("CLIENT", "SETNAME", "streamrec-serve")]
    True
    >>> handshake(None, "pw", 0, None) == [pack("AUTH", "pw")]
    True
    """
    out = []
    if password:
        out.append(pack("AUTH", username, password) if username else pack("AUTH", password))
    if db:
        out.append(pack("SELECT", str(db)))
    if name:
        out.append(pack("CLIENT", "SETNAME", name))
    return out


class _Resp(asyncio.Protocol):
    """One connection: writes requests, completes the oldest waiter with each parsed reply."""

    def __init__(self, timeout_s: float | None):
        import hiredis

        self.reader = hiredis.Reader()
        self.waiting: collections.deque = collections.deque()  # (sent at, future), oldest first
        self.transport = None
        self.timeout_s = timeout_s
        self.lost: BaseException | None = None
        self._timer = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while (reply := self.reader.gets()) is not False:
            if not waiting:  # a reply nobody asked for: the stream is out of step, never trust it
                from redis.exceptions import ConnectionError

                self.lost = ConnectionError(f"Redis sent a reply no request was waiting for: {reply!r:.80}")
                self.transport.abort()
                return
            future = waiting.popleft()[1]
            if not future.done():  # a cancelled request: its reply is dropped, the order kept
                future.set_result(reply)

    def connection_lost(self, exc: BaseException | None) -> None:
        from redis.exceptions import ConnectionError

        if self.lost is None:
            self.lost = ConnectionError(f"Redis closed the connection ({exc or 'end of stream'})")
        self._fail(self.lost)

    def _fail(self, exc: BaseException) -> None:
        while self.waiting:
            future = self.waiting.popleft()[1]
            if not future.done():
                future.set_exception(exc)

    def request(self, data: bytes) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append((loop.time(), future))
        self.transport.write(data)
        if self._timer is None and self.timeout_s:
            self._timer = loop.call_later(self.timeout_s, self._check)
        return future

    def _check(self) -> None:
        """Abort when the oldest request has waited past the timeout, else look again later."""
        from redis.exceptions import TimeoutError

        self._timer = None
        if not self.waiting:
            return
        loop = asyncio.get_running_loop()
        overdue = self.waiting[0][0] + self.timeout_s - loop.time()
        if overdue <= 0:
            self.lost = TimeoutError(f"Redis did not answer within {self.timeout_s} s")
            self.transport.abort()  # connection_lost fails every waiter
        else:
            self._timer = loop.call_later(overdue, self._check)

    @property
    def usable(self) -> bool:
        return self.lost is None and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()


class RespLane:
    """GETs over one held connection (see the module docstring); the same interface as
    :class:`~streamrec.serve_state.ReadLane` (``await get(key)``, ``await close()``)."""

    def __init__(self, host: str, port: int, *, username: str | None = None, password: str | None = None,
                 db: int = 0, client_name: str | None = None, connect_timeout_s: float | None = 2.0,
                 timeout_s: float | None = 5.0):  # fmt: skip
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        #: the requests sent on every new connection before its first GET
        self.setup = handshake(username, password, db, client_name)
        self._conn: _Resp | None = None
        self._connecting: asyncio.Future | None = None
        #: connections made so far (the first, and one per reconnect)
        self.connects = 0

    async def get(self, key: str) -> bytes | None:
        conn = self._conn
        if conn is None or not conn.usable:
            conn = await self._connect()
        reply = await conn.request(get_request(key))
        if isinstance(reply, Exception):  # an error reply (hiredis returns it, does not raise)
            from redis.exceptions import ResponseError

            raise ResponseError(str(reply))
        return reply

    async def _connect(self) -> _Resp:
        """One connection at a time: requests that arrive meanwhile wait for the same one."""
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            conn = await asyncio.wait_for(self._open(), self.connect_timeout_s)
        except BaseException as exc:
            from redis.exceptions import ConnectionError

            err = exc if isinstance(exc, ConnectionError) else ConnectionError(
                f"cannot connect to Redis at {self.host}:{self.port}: {exc or type(exc).__name__}")  # fmt: skip
            self._connecting.set_exception(err)
            self._connecting.exception()  # retrieved: no "never retrieved" warning without waiters
            self._connecting = None
            if isinstance(exc, asyncio.CancelledError):
                raise  # this request was cancelled; the others waiting get the error
            raise err from None
        self._connecting.set_result(conn)
        self._connecting = None
        return conn

    async def _open(self) -> _Resp:
        from redis.exceptions import ConnectionError

        if self._conn is not None:
            self._conn.close()
            self._conn = None
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Resp(self.timeout_s), self.host, self.port)
        try:
            for request in self.setup:
                reply = await conn.request(request)
                if reply != b"OK":
                    raise ConnectionError(f"Redis refused the connection set-up: {reply}")
        except BaseException:
            conn.close()
            raise
        self.connects += 1
        self._conn = conn
        return conn

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def open_lane(settings: Settings, client):
    """The read lane for ``client`` (made from ``settings`` by ``async_redis_client``): a
    :class:`RespLane` for a ``redis://`` URL, else redis-py's own (:class:`ReadLane`). Opens nothing:
    the lane connects on its first GET."""
    from redis.connection import parse_url

    from streamrec.serve_state import ReadLane

    if settings.redis_cluster or not settings.redis_url.startswith("redis://"):
        return ReadLane(client)
    url = parse_url(settings.redis_url)  # what it names wins over the settings, as in redis-py's from_url
    password = url.get("password", str(settings.redis_password) if settings.redis_password else None)
    return RespLane(url.get("host") or "127.0.0.1", int(url.get("port") or 6379),
                    username=url.get("username", settings.redis_username or None), password=password,
                    db=int(url.get("db") or 0))  # fmt: skip
