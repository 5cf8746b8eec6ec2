"""The OpenAPI 3.1 document of ``streamrec serve``, built from the wire contract.

The request body of ``POST /events`` is the JSON Schemas of the input records themselves
(:mod:`streamrec.schemas.contract`), so the HTTP contract cannot drift from the Kafka one;
``tests/unit/test_serve.py`` checks that every route of the app is described here.

>>> doc = openapi()
>>> sorted(doc["paths"])
['/events', '/healthz', '/livez', '/metrics', '/openapi.json', '/recommend/{user}', '/similar/{item}']
"""

from __future__ import annotations

from functools import lru_cache

from streamrec import __version__
from streamrec.schemas.contract import SCHEMAS
from streamrec.schemas.fields import MAX_RECS

_ERROR = {"type": "object", "properties": {"error": {"type": "string"},
                                           "field": {"type": ["string", "null"]}},
          "required": ["error", "field"]}  # fmt: skip
_ITEMS = {"type": "array", "items": {"type": "object", "required": ["item", "score"],
                                     "properties": {"item": {"type": "string"}, "score": {"type": "number"}}}}  # fmt: skip


def _param(name: str, where: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required, "schema": schema, "description": description}


_LIST_PARAMS = [
    _param("n", "query", {"type": "integer", "minimum": 1, "maximum": MAX_RECS, "default": 10}, "items to return"),
    _param("offset", "query", {"type": "integer", "minimum": 0, "maximum": MAX_RECS, "default": 0},
           "items to skip (after filtering)"),
    _param("exclude", "query", {"type": "array", "items": {"type": "string"}},
           "item ids to leave out (repeat the parameter or separate with commas)"),
    _param("category", "query", {"type": "array", "items": {"type": "string"}},
           "keep only items whose `category` attribute is one of these"),
]  # fmt: skip


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


@lru_cache(maxsize=1)
def openapi() -> dict:
    """The document (built once)."""
    inputs = {name: {k: v for k, v in SCHEMAS[name].items() if k not in ("$schema", "$id")}
              for name in ("click", "rating", "item")}  # fmt: skip
    bad = _json({"$ref": "#/components/schemas/Error"}, "invalid: `error` says why, `field` names what")
    return {
        "openapi": "3.1.0",
        "info": {"title": "streamrec", "version": __version__,
                 "description": "Recommendations, similar items and event intake over HTTP."},
        "paths": {
            "/recommend/{user}": {"get": {
                "summary": "a user's list; without one, the global list minus the user's seen items",
                "parameters": [_param("user", "path", {"type": "string"}, "user id", True), *_LIST_PARAMS],
                "responses": {"200": _json({"type": "object", "properties": {
                    "user": {"type": "string"}, "personal": {"type": "boolean"}, "items": _ITEMS,
                    "model_version": {"type": ["string", "null"]},
                    "generated_at": {"type": ["number", "null"]}}}, "the list (deleted items left out)"),
                    "400": bad},
            }},
            "/similar/{item}": {"get": {
                "summary": "items similar to an item (co-occurrence and embedding)",
                "parameters": [_param("item", "path", {"type": "string"}, "item id", True), *_LIST_PARAMS],
                "responses": {"200": _json({"type": "object", "properties": {
                    "item": {"type": "string"}, "items": _ITEMS, "model_version": {"type": "string"},
                    "generated_at": {"type": "number"}}}, "the similar items"),
                    "400": bad, "404": _json({"$ref": "#/components/schemas/Error"}, "no list for the item")},
            }},
            "/events": {"post": {
                "summary": "publish one click, rating or catalogue item (acks=all)",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"oneOf": [{"$ref": f"#/components/schemas/{n}"}
                                                              for n in inputs]}},
                    "application/msgpack": {"schema": {"description": "the same map as msgpack"}}}},
                "responses": {"202": _json({"type": "object", "properties": {
                    "accepted": {"type": "string"}, "topic": {"type": "string"},
                    "partition": {"type": "integer"}, "offset": {"type": "integer"}}},
                    "the broker has the event"), "400": bad,
                    "413": _json({"$ref": "#/components/schemas/Error"}, "the body is too large"),
                    "503": _json({"$ref": "#/components/schemas/Error"}, "the broker did not acknowledge")},
            }},
            "/healthz": {"get": {"summary": "200 while Redis answers and the global list is fresh", "responses": {
                "200": {"description": "healthy: status, model_version, generated_at, age_s"},
                "503": {"description": "Redis does not answer, or the global list is missing or older "
                                       "than STREAMREC_SERVE_STALE_AFTER_S (a stalled stream worker)"}}}},
            "/livez": {"get": {"summary": "200 while Redis answers (for liveness probes)", "responses": {
                "200": {"description": "alive"}, "503": {"description": "Redis does not answer"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "text exposition format"}}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {
                "200": {"description": "OpenAPI 3.1"}}}},
        },
        "components": {"schemas": {**inputs, "Error": _ERROR}},
    }  # fmt: skip
