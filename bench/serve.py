"""``streamrec bench serve``: latency and requests/s of ``GET /recommend`` next to a bare Redis read.

One run, against the live Redis: users' lists (50 items, as the stream worker writes them) are
written under a fresh key prefix, a ``streamrec serve`` process is started on a free loopback port
on that prefix, and the same users are then read, in interleaved rounds so that the machine's load
drifts over all variants alike:

- ``serve``: ``GET /recommend/{user}?n=10`` over one keep-alive HTTP/1.1 connection (the stdlib
  client: the least client overhead Python has), the JSON parsed;
- ``redis``: a bare ``GET rec:{user}`` + ``msgpack.unpackb`` with a plain client (the reference);
- ``get``: the bare ``GET`` alone, and ``reader``: ``RecsReader.get`` (which validates the list);
- ``reader_before``: what ``RecsReader.get`` did before: the user's and the global key in one
  pipeline, then the list validated by the ordinary (pure Python) path.

``requests_per_s`` is sequential (one client, one connection): requests over the wall time of the
serve rounds. The keys are deleted afterwards and the server stopped.
"""

from __future__ import annotations

import http.client
import json
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


def _start(settings: Settings, prefix: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "STREAMREC_REDIS_PREFIX": prefix, "STREAMREC_LOG_LEVEL": "WARNING",
           "STREAMREC_REDIS_URL": settings.redis_url, "STREAMREC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "streamrec", "serve", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamrec serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("streamrec serve did not become healthy within 60 s")


def run(settings: Settings, requests: int = 2000, users: int = 1000, rounds: int = 10) -> dict:
    prefix = f"benchserve{uuid.uuid4().hex[:8]}."
    keys = RedisKeys(prefix=prefix)
    client = redis_client(settings)
    reader = RecsReader(client, keys)
    names = _seed(client, keys, users)
    port = _free_port()
    _progress(f"{users} lists written under {prefix}; starting streamrec serve on 127.0.0.1:{port}")
    proc = _start(settings, prefix, port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    rng = random.Random(1)
    order = [rng.choice(names) for _ in range(requests)]
    times: dict[str, list[float]] = {"serve": [], "redis": [], "get": [], "reader": [], "reader_before": []}
    serve_wall = 0.0
    per = max(1, requests // rounds)
    clock = time.perf_counter
    try:
        for u in order[:50]:  # warm up every path (connections, caches)
            conn.request("GET", f"/recommend/{u}?n=10")
            conn.getresponse().read()
            msgpack.unpackb(client.get(keys.recs(u)))
            reader.get(u)
        for r in range(0, requests, per):
            block = order[r : r + per]
            start = clock()
            for u in block:
                t0 = clock()
                conn.request("GET", f"/recommend/{u}?n=10")
                resp = conn.getresponse()
                body = json.loads(resp.read())
                times["serve"].append(clock() - t0)
                assert resp.status == 200 and body["personal"] and len(body["items"]) == 10, body
            serve_wall += clock() - start
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
        proc.terminate()
        proc.wait(timeout=30)
        for batch in range(0, len(names), 500):
            client.delete(*[keys.recs(u) for u in names[batch : batch + 500]])
    ms = {name: [t * 1000 for t in ts] for name, ts in times.items()}
    out = {
        "serve_p50_ms": _quantile(ms["serve"], 0.5), "serve_p99_ms": _quantile(ms["serve"], 0.99),
        "redis_p50_ms": _quantile(ms["redis"], 0.5), "redis_p99_ms": _quantile(ms["redis"], 0.99),
        "requests_per_s": len(ms["serve"]) / serve_wall,
        "get_p50_ms": _quantile(ms["get"], 0.5), "get_p99_ms": _quantile(ms["get"], 0.99),
        "reader_p50_ms": _quantile(ms["reader"], 0.5), "reader_p99_ms": _quantile(ms["reader"], 0.99),
        "reader_before_p50_ms": _quantile(ms["reader_before"], 0.5),
        "reader_before_p99_ms": _quantile(ms["reader_before"], 0.99),
        "requests": len(ms["serve"]),
    }  # fmt: skip
    out["serve_vs_redis_p50"] = out["serve_p50_ms"] / out["redis_p50_ms"]
    out["reader_vs_get_p50"] = out["reader_p50_ms"] / out["get_p50_ms"]
    out["reader_vs_redis_p50"] = out["reader_p50_ms"] / out["redis_p50_ms"]
    return out


def main(settings: Settings, requests: int, json_path: str | None = None) -> int:
    out = run(settings, requests=requests)
    print("| path | p50 ms | p99 ms |\n| --- | ---: | ---: |")
    for name, label in (("serve", "GET /recommend over HTTP (loopback)"), ("redis", "bare GET + msgpack unpack"),
                        ("get", "bare GET"), ("reader", "RecsReader.get"),
                        ("reader_before", "RecsReader.get before (2 GETs, Python checks)")):  # fmt: skip
        print(f"| {label} | {out[f'{name}_p50_ms']:.3f} | {out[f'{name}_p99_ms']:.3f} |")
    print(f"\nrequests/s (one connection, sequential): {out['requests_per_s']:,.0f}")
    print(f"GET /recommend p50 / bare GET + unpack p50: {out['serve_vs_redis_p50']:.2f} (target <= 3)")
    print(f"RecsReader.get p50 / bare GET p50: {out['reader_vs_get_p50']:.2f} (target <= 1.2); "
          f"/ bare GET + unpack: {out['reader_vs_redis_p50']:.2f}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(out, fh, indent=2)
        _progress(f"wrote {json_path}")
    return 0
