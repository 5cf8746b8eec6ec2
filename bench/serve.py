"""``streamrec bench serve``: latency and requests/s of ``GET /recommend`` next to a bare Redis read.

One run, against the live Redis: users' lists (50 items, as the stream worker writes them) are
written under a fresh key prefix, a ``streamrec serve`` process is started on a free loopback port
on that prefix, and the same users are then read, in interleaved rounds so that the machine's load
drifts over all variants alike:

- ``serve``: ``GET /recommend/{user}?n=10`` over one keep-alive HTTP/1.1 connection with
  :class:`MinimalHttp` (one ``sendall``, one read of the head and ``Content-Length`` bytes: for HTTP
  what hiredis is for Redis, so the client's own parsing does not count as the API's time), the
  JSON parsed; ``serve_stdlib``: the same with ``http.client`` (what the first runs measured; its
  header parsing alone costs more than a Redis GET);
- ``http_ref``: the same request, client and server settings (uvicorn, uvloop, httptools) to a
  trivial Starlette app answering a fixed body of the same size (:data:`reference_app`), so that
  ``serve - http_ref`` is the API's own work (Redis read, filters, JSON);
- ``asgi_ref``: the same fixed body from a bare ASGI callable under the same uvicorn settings
  (:data:`reference_asgi`): the HTTP floor, what ``streamrec serve``'s hot route builds on;
- ``redis``: a bare ``GET rec:{user}`` + ``msgpack.unpackb`` with a plain client (the reference);
- ``get``: the bare ``GET`` alone (redis-py's ``client.get``), and ``reader``: ``RecsReader.get``
  (which validates the list);
- ``get_held``: the same ``GET`` sent with redis-py's ``Connection`` on a connection taken from the
  client's pool once, which is how ``RecsReader`` sends it: ``reader / get_held`` is what the
  reader adds beyond its round trip (the list's validation), ``reader / get`` what an application
  pays with the reader against a GET of its own;
- ``reader_before``: what ``RecsReader.get`` did before: the user's and the global key in one
  pipeline, then the list validated by the ordinary (pure Python) path.

``requests_per_s`` is sequential (one client, one connection): requests over the wall time of the
serve rounds. The keys are deleted afterwards and the server stopped.
"""

from __future__ import annotations

import http.client
import json
import msgspec
import os
import random
import socket
import subprocess
import sys
import time
import uuid

import msgpack

from streamrec.connect import redis_client
from streamrec.schemas.codec import decode, encode
from streamrec.schemas.events import RecommendationList
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.reader import RecsReader
from streamrec.settings import Settings


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile.

    >>> _quantile([4.0, 1.0, 3.0, 2.0], 0.5), _quantile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))]


class MinimalHttp:
    """A keep-alive HTTP/1.1 client for one host that reads ``Content-Length`` bodies, nothing else."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def get(self, path: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self.buf += self._recv()
        head, self.buf = self.buf[:end], self.buf[end + 4 :]
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:]) if k.lower() == b"content-length")
        while len(self.buf) < length:
            self.buf += self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


def _reference_app():
    """A Starlette app whose ``/recommend/{user}`` answers a fixed body shaped like the API's."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    body = msgspec.json.encode({"user": "u0", "personal": True, "items": [{"item": f"i{j}", "score": 1.0 / (j + 1)}
                                for j in range(10)], "model_version": "bench.1", "generated_at": 1.7e9})  # fmt: skip

    async def fixed(request):
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/recommend/{user}", fixed), Route("/livez", fixed)])


#: run by uvicorn with the settings ``streamrec serve`` uses (the HTTP reference)
reference_app = _reference_app()


def _reference_asgi():
    """A bare ASGI callable answering every request with the reference app's body."""
    body = msgspec.json.encode({"user": "u0", "personal": True, "items": [{"item": f"i{j}", "score": 1.0 / (j + 1)}
                                for j in range(10)], "model_version": "bench.1", "generated_at": 1.7e9})  # fmt: skip
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]}  # fmt: skip
    message = {"type": "http.response.body", "body": body}

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send(start)
            await send(message)

    return app


#: the HTTP floor: the same body without a framework, same server settings
reference_asgi = _reference_asgi()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _progress(msg: str) -> None:
    print(f"[bench serve] {msg}", file=sys.stderr, flush=True)


def _seed(client, keys: RedisKeys, users: int, k: int = 50) -> list[str]:
    rng = random.Random(0)
    names = [f"u{i}" for i in range(users)]
    pipe = client.pipeline(transaction=False)
    for u in names:
        items = tuple((f"i{j}", 1.0 / (r + 1)) for r, j in enumerate(rng.sample(range(5000), k)))
        pipe.set(keys.recs(u), encode(RecommendationList(u, items, "bench.1", time.time(), "bench")), ex=3600)
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()
    return names


def _start(settings: Settings, prefix: str, port: int, reference: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "STREAMREC_REDIS_PREFIX": prefix, "STREAMREC_LOG_LEVEL": "WARNING",
           "STREAMREC_REDIS_URL": settings.redis_url, "STREAMREC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}  # fmt: skip
    if reference:
        cmd = ["-m", "uvicorn", f"streamrec.bench.serve:{reference}", "--loop", "uvloop", "--http", "httptools",
               "--no-access-log", "--log-level", "warning", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    else:
        cmd = ["-m", "streamrec", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen([sys.executable, *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamrec serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/livez")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{cmd[1]} did not answer /livez within 60 s")


def run(settings: Settings, requests: int = 2000, users: int = 1000, rounds: int = 10) -> dict:
    prefix = f"benchserve{uuid.uuid4().hex[:8]}."
    keys = RedisKeys(prefix=prefix)
    client = redis_client(settings)
    reader = RecsReader(client, keys)
    names = _seed(client, keys, users)
    port, ref_port, asgi_port = _free_port(), _free_port(), _free_port()
    _progress(f"{users} lists written under {prefix}; starting streamrec serve on 127.0.0.1:{port} "
              f"and the reference apps on {ref_port} (Starlette) and {asgi_port} (bare ASGI)")  # fmt: skip
    proc = _start(settings, prefix, port)
    ref = _start(settings, prefix, ref_port, reference="reference_app")
    asgi = _start(settings, prefix, asgi_port, reference="reference_asgi")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    fast, ref_conn, asgi_conn = MinimalHttp(port), MinimalHttp(ref_port), MinimalHttp(asgi_port)
    held = client.connection_pool.get_connection()  # get_held's connection, as RecsReader holds one
    json_decode = msgspec.json.decode
    rng = random.Random(1)
    order = [rng.choice(names) for _ in range(requests)]
    names_ = ("serve", "serve_stdlib", "http_ref", "asgi_ref", "redis", "get", "get_held", "reader", "reader_before")
    times: dict[str, list[float]] = {name: [] for name in names_}
    serve_wall = 0.0
    per = max(1, requests // rounds)
    clock = time.perf_counter
    try:
        for u in order[:50]:  # warm up every path (connections, caches)
            conn.request("GET", f"/recommend/{u}?n=10")
            conn.getresponse().read()
            fast.get(f"/recommend/{u}?n=10")
            ref_conn.get(f"/recommend/{u}?n=10")
            asgi_conn.get(f"/recommend/{u}?n=10")
            msgpack.unpackb(client.get(keys.recs(u)))
            held.send_command("GET", keys.recs(u))
            held.read_response()
            reader.get(u)
        for r in range(0, requests, per):
            block = order[r : r + per]
            start = clock()
            for u in block:
                t0 = clock()
                status, raw = fast.get(f"/recommend/{u}?n=10")
                body = json_decode(raw)
                times["serve"].append(clock() - t0)
                assert status == 200 and body["personal"] and len(body["items"]) == 10, body
            serve_wall += clock() - start
            for u in block:
                t0 = clock()
                status, raw = ref_conn.get(f"/recommend/{u}?n=10")
                body = json_decode(raw)
                times["http_ref"].append(clock() - t0)
            for u in block:
                t0 = clock()
                status, raw = asgi_conn.get(f"/recommend/{u}?n=10")
                body = json_decode(raw)
                times["asgi_ref"].append(clock() - t0)
            for u in block:
                t0 = clock()
                conn.request("GET", f"/recommend/{u}?n=10")
                resp = conn.getresponse()
                body = json.loads(resp.read())
                times["serve_stdlib"].append(clock() - t0)
                assert resp.status == 200 and body["personal"] and len(body["items"]) == 10, body
            for u in block:
                t0 = clock()
                msgpack.unpackb(client.get(keys.recs(u)))
                times["redis"].append(clock() - t0)
            for u in block:
                t0 = clock()
                client.get(keys.recs(u))
                times["get"].append(clock() - t0)
            for u in block:
                t0 = clock()
                held.send_command("GET", keys.recs(u))
                held.read_response()
                times["get_held"].append(clock() - t0)
            for u in block:
                t0 = clock()
                got = reader.get(u)
                times["reader"].append(clock() - t0)
                assert got.personal
            for u in block:
                t0 = clock()
                pipe = client.pipeline(transaction=False)
                pipe.get(keys.recs(u))
                pipe.get(keys.fallback())
                personal, _ = pipe.execute()
                decode(personal)  # no expected type: the ordinary path
                times["reader_before"].append(clock() - t0)
    finally:
        conn.close()
        fast.close()
        ref_conn.close()
        asgi_conn.close()
        client.connection_pool.release(held)
        reader.close()
        for p in (proc, ref, asgi):
            p.terminate()
            p.wait(timeout=30)
        for batch in range(0, len(names), 500):
            client.delete(*[keys.recs(u) for u in names[batch : batch + 500]])
    ms = {name: [t * 1000 for t in ts] for name, ts in times.items()}
    out = {f"{name}_{q}_ms": _quantile(ms[name], v) for name in names_ for q, v in (("p50", 0.5), ("p99", 0.99))}
    out |= {"requests_per_s": len(ms["serve"]) / serve_wall, "requests": len(ms["serve"])}
    out["serve_vs_redis_p50"] = out["serve_p50_ms"] / out["redis_p50_ms"]
    out["serve_vs_http_ref_p50"] = out["serve_p50_ms"] / out["http_ref_p50_ms"]
    out["serve_vs_asgi_ref_p50"] = out["serve_p50_ms"] / out["asgi_ref_p50_ms"]
    out["api_work_vs_redis_p50"] = (out["serve_p50_ms"] - out["http_ref_p50_ms"]) / out["redis_p50_ms"]
    out["reader_vs_get_p50"] = out["reader_p50_ms"] / out["get_p50_ms"]
    out["reader_vs_redis_p50"] = out["reader_p50_ms"] / out["redis_p50_ms"]
    out["reader_vs_get_held_p50"] = out["reader_p50_ms"] / out["get_held_p50_ms"]
    return out


def main(settings: Settings, requests: int, json_path: str | None = None) -> int:
    out = run(settings, requests=requests)
    print("| path | p50 ms | p99 ms |\n| --- | ---: | ---: |")
    for name, label in (("serve", "GET /recommend over HTTP (loopback)"),
                        ("serve_stdlib", "GET /recommend, stdlib http.client"),
                        ("http_ref", "trivial Starlette endpoint, same server and client"),
                        ("asgi_ref", "trivial bare ASGI endpoint, same server and client"),
                        ("redis", "bare GET + msgpack unpack"),
                        ("get", "bare GET"), ("get_held", "bare GET on a held connection"),
                        ("reader", "RecsReader.get"),
                        ("reader_before", "RecsReader.get before (2 GETs, Python checks)")):  # fmt: skip
        print(f"| {label} | {out[f'{name}_p50_ms']:.3f} | {out[f'{name}_p99_ms']:.3f} |")
    print(f"\nrequests/s (one connection, sequential): {out['requests_per_s']:,.0f}")
    print(f"GET /recommend p50 / bare GET + unpack p50: {out['serve_vs_redis_p50']:.2f} (target <= 3)")
    print(f"GET /recommend p50 / trivial bare ASGI endpoint p50: {out['serve_vs_asgi_ref_p50']:.2f}")
    print(f"GET /recommend p50 / trivial endpoint p50: {out['serve_vs_http_ref_p50']:.2f}; "
          f"(GET /recommend - trivial) / bare GET + unpack: {out['api_work_vs_redis_p50']:.2f}")
    print(f"RecsReader.get p50 / bare GET p50: {out['reader_vs_get_p50']:.2f} (target <= 1.2); "
          f"/ bare GET + unpack: {out['reader_vs_redis_p50']:.2f}; "
          f"/ bare GET on a held connection: {out['reader_vs_get_held_p50']:.2f}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(out, fh, indent=2)
        _progress(f"wrote {json_path}")
    return 0
