"""The ASGI face of ``streamrec serve``: Starlette, with its hot route answered before routing.

Why: in ``bench serve`` a trivial Starlette endpoint took about 30 µs more than the same body sent
by a bare ASGI callable under the same uvicorn: two middlewares that wrap ``send`` (server errors,
exception handlers), the router's regular expressions, a ``Request`` and a ``Response`` object per
request. On ``GET /recommend/{user}``, the request that applications make for every page they
show, that was a fifth of the budget of three bare Redis reads. :class:`Api` answers that one
request straight from the ASGI scope with two messages, and hands everything else (HEAD, the other
routes, lifespan, any path it does not match exactly) to Starlette, which serves them as before,
the ``/recommend/{user}`` route included, from the same handler.
"""

from __future__ import annotations

from starlette.applications import Starlette

_PREFIX = "/recommend/"
_CUT = len(_PREFIX)
_JSON = (b"content-type", b"application/json")


def hot_user(scope) -> str | None:
    """The user of a ``GET /recommend/{user}`` scope the fast path may answer, else ``None``
    (the same paths Starlette's ``{user}`` matches: one non-empty segment).

    >>> hot_user({"type": "http", "method": "GET", "path": "/recommend/u42", "root_path": ""})
    'u42'
    >>> [hot_user({"type": "http", "method": m, "path": p}) for m, p in
    ...  (("HEAD", "/recommend/u42"), ("GET", "/recommend/"), ("GET", "/recommend/u4/x"), ("GET", "/similar/i1"))]
    [None, None, None, None]
    >>> hot_user({"type": "http", "method": "GET", "path": "/api/recommend/u42", "root_path": "/api"})
    """
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    path = scope["path"]
    if not path.startswith(_PREFIX):
        return None
    user = path[_CUT:]
    return user if user and "/" not in user else None


class Api(Starlette):
    """Starlette whose ``hot_recommend(user, query_string) -> (status, body)`` answers
    ``GET /recommend/{user}`` before routing (``None``: routing answers everything)."""

    hot_recommend = None

    async def __call__(self, scope, receive, send) -> None:
        hot = self.hot_recommend
        user = hot_user(scope) if hot is not None else None
        if user is None:
            await super().__call__(scope, receive, send)
            return
        status, body = await hot(user, scope["query_string"])
        await send({"type": "http.response.start", "status": status,
                    "headers": [_JSON, (b"content-length", b"%d" % len(body))]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
