"""The HTTP API's pure parts: query parsing, filters, the OpenAPI document; and that building the
app opens no connection."""

from __future__ import annotations

import jsonschema
import pytest

from streamrec.schemas.events import Item
from streamrec.schemas.fields import SchemaError
from streamrec.serve import keep, parse_query
from streamrec.serve_openapi import openapi
from streamrec.settings import Settings


class Params(dict):
    def getlist(self, key):
        v = self.get(key)
        return [] if v is None else (v if isinstance(v, list) else [v])


def test_query_defaults_and_lists():
    q = parse_query(Params())
    assert (q.n, q.offset, q.exclude, q.categories) == (10, 0, frozenset(), frozenset())
    q = parse_query(Params(n="3", offset="2", exclude=["a,b", "c"], category=["film", " book "]))
    assert (q.n, q.offset, q.exclude, q.categories) == (3, 2, {"a", "b", "c"}, {"film", "book"})


@pytest.mark.parametrize("params, field", [
    ({"n": "x"}, "n"), ({"n": "1001"}, "n"), ({"offset": "-1"}, "offset"), ({"k": "1"}, "k"),
])  # fmt: skip
def test_bad_query_names_the_parameter(params, field):
    with pytest.raises(SchemaError) as info:
        parse_query(Params(params))
    assert info.value.field == field


def test_category_filter():
    film = Item("i1", "Heat", attributes={"category": "film"}, ts=1.0)
    other = Item("i2", "Dune", attributes={"genre": "sf"}, ts=1.0)
    assert keep("i1", film, frozenset()) and keep("i1", film, frozenset({"film", "book"}))
    assert not keep("i2", other, frozenset({"film"}))
    assert not keep("i9", None, frozenset({"film"}))  # unknown item: not known to be a film


def test_openapi_describes_every_route_and_embeds_the_wire_schemas():
    from streamrec.serve import create_app

    app = create_app(Settings.from_env({}))
    doc = openapi()
    assert {r.path for r in app.routes} == set(doc["paths"])
    for name in ("click", "rating", "item"):
        jsonschema.Draft202012Validator.check_schema(doc["components"]["schemas"][name])
    body = doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert len(body["oneOf"]) == 3


def test_create_app_opens_no_connection(monkeypatch):
    import socket

    import confluent_kafka

    def refuse(*args, **kwargs):
        raise AssertionError("create_app opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(confluent_kafka, "Producer", refuse)
    from streamrec.serve import create_app

    app = create_app(Settings.from_env({}))
    assert app.router.lifespan_context is not None  # the connections belong to the lifespan
