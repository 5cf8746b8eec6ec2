"""``streamrec serve``: the HTTP read API, for applications that would rather not speak Redis.

Endpoints (OpenAPI at ``/openapi.json``, see :mod:`streamrec.serve_openapi`):

- ``GET /recommend/{user}?n=&offset=&exclude=&category=``: the user's list; without one, the
  global list minus the user's seen items (``seen:{user}``). Deleted items (the set ``deleted``) and
  ``exclude`` are always left out; ``category`` keeps items whose ``category`` attribute
  (``item:{item}``) is one of those given.
- ``GET /similar/{item}``: the item's similar items (``sim:{item}``), with the same parameters.
- ``POST /events``: one click, rating or item as JSON (or msgpack), validated by the wire codec
  (the one validation place), published to its topic with ``acks=all``: 202 once the broker has
  it, 400 naming the field, 503 when the broker does not acknowledge.
- ``/healthz``: Redis answers *and* the global list is fresh (at most ``STREAMREC_SERVE_STALE_AFTER_S``
  old), so a stalled stream worker shows; ``/livez``: Redis answers (for liveness probes: a stale
  worker is no reason to restart the API). Prometheus ``/metrics``.

Why Starlette under uvicorn and not FastAPI: validation is the wire codec's job, so FastAPI's
pydantic models would be a second, drifting copy of the contract; the OpenAPI document is built
from the JSON Schemas the codec's records publish instead. Starlette is the ASGI toolkit FastAPI
itself is built on, without the per-request model layer.

:func:`create_app` takes the settings and opens nothing: Redis and Kafka clients are made when the
app starts (its lifespan) and closed when it stops. ``GET /recommend/{user}`` is answered before
Starlette's routing (:mod:`streamrec.serve_asgi`); for a user who has a list it costs one Redis
round trip, the GET of the list, over RESP on a connection the app holds
(:mod:`streamrec.serve_lane`); deleted items are checked
against an in-process copy of the deleted set (see :mod:`streamrec.serve_state`); a category filter
adds one pipeline of the items' records. The filtering itself is pure (:func:`keep`,
:func:`parse_query`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from streamrec.schemas.codec import MAX_JSON_BYTES, decode, encode
from streamrec.schemas.events import Click, Item, Rating, RecommendationList, SeenItems, SimilarItems
from streamrec.schemas.fields import MAX_RECS, SchemaError
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.publisher import route
from streamrec.schemas.topics import Topics
from streamrec.serve_lane import open_lane
from streamrec.serve_state import DeletedMirror, DeliveryWaiter, freshness
from streamrec.settings import Settings

log = logging.getLogger(__name__)

INPUT_TYPES = (Click, Rating, Item)
DEFAULT_N = 10


@dataclass(frozen=True)
class Query:
    n: int = DEFAULT_N
    offset: int = 0
    exclude: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()


_DEFAULT_QUERY = Query()
_KNOWN = frozenset({"n", "offset", "exclude", "category"})


def _many(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip() for raw in values for v in raw.split(",") if v.strip())


def parse_query(params) -> Query:
    """The query parameters of a list endpoint; a SchemaError names a bad or unknown one.

    >>> q = parse_query({"n": "5", "exclude": "i1,i2", "category": "film"})
    >>> q.n, q.offset, sorted(q.exclude), sorted(q.categories)
    (5, 0, ['i1', 'i2'], ['film'])
    >>> parse_query({"n": "0"})
    Traceback (most recent call last):
    ...
    streamrec.schemas.fields.SchemaError: n: 0 is outside [1, 1000]
    >>> parse_query({"limit": "5"})
    Traceback (most recent call last):
    ...
    streamrec.schemas.fields.SchemaError: limit: unknown parameter (known: n, offset, exclude, category)
    """
    if not params:
        return _DEFAULT_QUERY
    getlist = params.getlist if hasattr(params, "getlist") else lambda k: [params[k]]
    if not _KNOWN.issuperset(params.keys()):
        unknown = sorted(set(params.keys()) - _KNOWN)
        raise SchemaError(unknown[0][:100], "unknown parameter (known: n, offset, exclude, category)")
    values = {}
    for name, default, hi in (("n", DEFAULT_N, MAX_RECS), ("offset", 0, MAX_RECS)):
        raw = params.get(name)
        if raw is None:
            values[name] = default
            continue
        try:
            value = int(raw)
        except ValueError:
            raise SchemaError(name, f"{raw[:40]!r} is not an integer") from None
        lo = 1 if name == "n" else 0
        if not lo <= value <= hi:
            raise SchemaError(name, f"{value} is outside [{lo}, {hi}]")
        values[name] = value
    exclude = _many(getlist("exclude")) if "exclude" in params else frozenset()
    categories = _many(getlist("category")) if "category" in params else frozenset()
    return Query(values["n"], values["offset"], exclude, categories)


@functools.lru_cache(maxsize=4096)
def query_of(raw: bytes) -> Query:
    """:func:`parse_query` of a raw query string, remembered: most requests repeat a few query
    strings (``n=10``), and parsing one costs about as much as a Redis GET on a small box.

    >>> query_of(b"n=3&category=film") == Query(3, 0, frozenset(), frozenset({"film"}))
    True
    """
    from starlette.datastructures import QueryParams

    return parse_query(QueryParams(raw.decode("latin-1")))


def keep(item: str, record: Item | None, categories: frozenset[str]) -> bool:
    """Does ``item`` (catalogue record ``record``, if any) pass the category filter?

    >>> film = Item("i1", "Heat", attributes={"category": "film"}, ts=1.0)
    >>> keep("i1", film, frozenset({"film"})), keep("i1", film, frozenset({"book"})), keep("i2", None, frozenset())
    (True, False, True)
    >>> keep("i3", Item("i3", "Both", attributes={"category": ["film", "book"]}, ts=1.0), frozenset({"book"}))
    True
    """
    if not categories:
        return True
    if record is None:
        return False
    value = record.attributes.get("category")
    return any(str(v) in categories for v in (value if isinstance(value, tuple) else (value,)))


def _json(body, status: int = 200):
    from starlette.responses import Response

    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


def _error(exc: SchemaError, status: int = 400):
    return _json({"error": str(exc), "field": exc.field}, status)


def create_app(settings: Settings):
    """The ASGI app for ``settings``; connections are opened by its lifespan, not here."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from starlette.responses import Response
    from starlette.routing import Route

    from streamrec.connect import async_redis_client, kafka_config
    from streamrec.serve_asgi import Api
    from streamrec.serve_openapi import openapi

    keys = RedisKeys(prefix=settings.redis_prefix)
    topics = Topics(prefix=settings.topic_prefix)
    registry = CollectorRegistry()
    requests = Counter("streamrec_serve_requests", "HTTP requests", ["route", "status"], registry=registry)
    latency = Histogram("streamrec_serve_request_duration_seconds", "time to answer", ["route"],
                        registry=registry,
                        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))  # fmt: skip
    fallbacks = Counter("streamrec_serve_fallbacks", "lists served from the global list", registry=registry)
    published = Counter("streamrec_serve_events_published", "events accepted by the broker",
                        ["type"], registry=registry)  # fmt: skip
    state: dict = {}

    mirror = DeletedMirror(keys, settings.serve_deleted_refresh_s)

    counters: dict[tuple[str, int], Counter] = {}  # children bound once, not looked up per request

    def count(name: str, status: int) -> None:
        counter = counters.get((name, status))
        if counter is None:
            counter = counters[name, status] = requests.labels(name, str(status))
        counter.inc()

    observe_recommend = latency.labels("recommend").observe

    def timed(name: str):
        observe = latency.labels(name).observe

        def wrap(handler):
            async def endpoint(request):
                t0 = time.perf_counter()
                response = await handler(request)
                observe(time.perf_counter() - t0)
                count(name, response.status_code)
                return response

            return endpoint

        return wrap

    async def page(entries, query: Query, also_exclude: Iterable[str] = ()) -> list[dict]:
        """The ``query.offset``-th to ``offset+n``-th entries that are not excluded, not deleted and
        pass the category filter; item state is read in chunks, one pipeline each."""
        redis = state["redis"]
        excluded = (query.exclude | frozenset(also_exclude)) if also_exclude else query.exclude
        need = query.offset + query.n
        if not query.categories and mirror.fresh(time.time()):  # the common case: no I/O, and
            dropped = mirror.items  # only as far down the list as the page reaches
            kept: list[tuple[str, float]] = []
            for entry in entries:
                if entry[0] not in excluded and entry[0] not in dropped:
                    kept.append(entry)
                    if len(kept) == need:
                        break
            return [{"item": i, "score": s} for i, s in kept[query.offset :]]
        cands = [(i, s) for i, s in entries if i not in excluded]
        out: list[tuple[str, float]] = []
        start = 0
        while start < len(cands) and len(out) < need:
            chunk = cands[start : start + max(2 * (need - len(out)), 16)]
            start += len(chunk)
            names = [item for item, _ in chunk]
            deleted = await mirror.flags(redis, names, time.time())
            if query.categories:
                pipe = redis.pipeline(transaction=False)
                for item in names:
                    pipe.get(keys.item(item))
                records = await pipe.execute()
            for j, (item, score) in enumerate(chunk):
                if deleted[j]:
                    continue
                if query.categories:
                    raw = records[j]
                    if not keep(item, None if raw is None else decode(raw, Item), query.categories):
                        continue
                out.append((item, score))
        return [{"item": i, "score": s} for i, s in out[query.offset : need]]

    async def recommend_body(user: str, query_string: bytes) -> tuple[int, bytes]:
        """``GET /recommend/{user}``'s status and JSON body; the app answers it before routing
        (:class:`~streamrec.serve_asgi.Api`), the route below serves HEAD and the rest."""
        t0 = time.perf_counter()
        status, body = await recommend_core(user, query_string)
        observe_recommend(time.perf_counter() - t0)
        count("recommend", status)
        return status, body

    async def recommend_core(user: str, query_string: bytes) -> tuple[int, bytes]:
        try:
            query = query_of(query_string)
        except SchemaError as exc:
            return 400, msgspec.json.encode({"error": str(exc), "field": exc.field})
        redis = state["redis"]
        raw = await state["lane"].get(keys.recs(user))
        personal, seen = raw is not None, ()
        if not personal:
            pipe = redis.pipeline(transaction=False)
            pipe.get(keys.fallback())
            pipe.get(keys.seen(user))
            raw, seen_raw = await pipe.execute()
            seen = () if seen_raw is None else decode(seen_raw, SeenItems).items
            fallbacks.inc()
        if raw is None:
            return 200, msgspec.json.encode({"user": user, "personal": False, "items": [], "model_version": None,
                                             "generated_at": None})  # fmt: skip
        lst = decode(raw, RecommendationList)
        items = await page(lst.items, query, seen)
        return 200, msgspec.json.encode({"user": user, "personal": personal, "items": items,
                                         "model_version": lst.model_version, "generated_at": lst.generated_at})  # fmt: skip

    @timed("recommend")
    async def recommend(request):
        status, body = await recommend_core(request.path_params["user"], request.scope["query_string"])
        return Response(body, status_code=status, media_type="application/json")

    @timed("similar")
    async def similar(request):
        item = request.path_params["item"]
        try:
            query = query_of(request.scope["query_string"])
        except SchemaError as exc:
            return _error(exc)
        redis = state["redis"]
        pipe = redis.pipeline(transaction=False)
        pipe.get(keys.similar(item))
        pipe.sismember(keys.deleted(), item)
        raw, deleted = await pipe.execute()
        if raw is None or deleted:
            why = "is deleted" if deleted else "has no similar-item list (unknown, or no neighbours yet)"
            return _json({"error": f"item {item!r} {why}", "field": "item"}, 404)
        lst = decode(raw, SimilarItems)
        items = await page(lst.items, query, (item,))
        return _json({"item": item, "items": items, "model_version": lst.model_version,
                      "generated_at": lst.generated_at})  # fmt: skip

    @timed("events")
    async def events(request):
        size = request.headers.get("content-length", "")
        if size.isdigit() and int(size) > MAX_JSON_BYTES:
            return _json({"error": f"{size} bytes exceeds the limit of {MAX_JSON_BYTES}",
                          "field": "<payload>"}, 413)  # fmt: skip
        body = await request.body()
        try:
            record = decode(body, INPUT_TYPES, request.headers.get("content-type"))
        except SchemaError as exc:
            return _error(exc)
        topic, key = route(record, topics)
        err, msg = await state["producer"].produce(topic, key, encode(record))
        if err is not None:
            return _json({"error": f"the broker did not acknowledge the event: {err}", "field": None}, 503)
        published.labels(record.TYPE).inc()
        return _json({"accepted": record.TYPE, "topic": topic, "partition": msg.partition(),
                      "offset": msg.offset()}, 202)  # fmt: skip

    async def livez(request):
        try:
            await state["redis"].ping()
        except Exception as exc:  # any failure to answer is "unhealthy", with the reason
            return _json({"status": "unavailable", "redis": str(exc)[:200]}, 503)
        return _json({"status": "ok"})

    async def healthz(request):
        try:
            raw = await state["lane"].get(keys.fallback())
            lst = None if raw is None else decode(raw, RecommendationList)
        except SchemaError as exc:
            return _json({"status": f"the global list is unreadable: {exc}"}, 503)
        except Exception as exc:  # any failure to answer is "unhealthy", with the reason
            return _json({"status": "unavailable", "redis": str(exc)[:200]}, 503)
        now = time.time()
        ok, lists = freshness(lst and lst.generated_at, lst and lst.model_version, now,
                              settings.serve_stale_after_s)  # fmt: skip
        body = {**lists, "deleted_copy_age_s": None if mirror.checked_at is None else round(now - mirror.checked_at, 3)}
        return _json(body, 200 if ok else 503)

    async def keep_mirror() -> None:
        """The deleted set's copy, checked every ``serve_deleted_refresh_s`` while the app runs."""
        failing = False
        while True:
            try:
                await mirror.refresh(state["redis"], time.time())
                failing = False
            except Exception as exc:  # Redis away: requests ask Redis themselves meanwhile
                if not failing:
                    log.warning("cannot refresh the copy of the deleted set (%s); asking Redis per request", exc)
                failing = True
            await asyncio.sleep(settings.serve_deleted_refresh_s)

    async def metrics(request):
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi_json(request):
        return _json(openapi())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state["redis"] = async_redis_client(settings)
        state["lane"] = open_lane(settings, state["redis"])
        state["producer"] = DeliveryWaiter(kafka_config(settings))
        state["producer"].start()
        mirror_task = asyncio.create_task(keep_mirror())
        try:
            yield
        finally:
            mirror_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mirror_task
            state["producer"].close()
            await state["lane"].close()
            await state["redis"].aclose()

    routes = [
        Route("/recommend/{user}", recommend, methods=["GET"]),
        Route("/similar/{item}", similar, methods=["GET"]),
        Route("/events", events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
    ]
    app = Api(routes=routes, lifespan=lifespan)
    app.hot_recommend = recommend_body
    return app


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve until stopped (uvicorn on uvloop with the httptools parser: both core dependencies)."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host or settings.serve_host, port=port or settings.serve_port,
                log_level=settings.log_level.lower(), access_log=False, lifespan="on", loop="uvloop",
                http="httptools")  # fmt: skip
