"""JSON beside msgpack on the wire: chosen per message, the same checks, the same reasons."""

from __future__ import annotations

import json
from dataclasses import fields

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrec.schemas import RECORD_TYPES, Click, Item, SchemaError, decode, encode, to_mapping
from streamrec.schemas.codec import content_type, wire_format
from streamrec.schemas.topics import Topics
from streamrec.streams.ingest import Boundary


def _cases():
    """The example records and the record strategy of test_schemas.py, loaded by path (tests are
    imported in importlib mode, so they are not importable by module name)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_schema_cases", Path(__file__).with_name("test_schemas.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EXAMPLES, module.records


EXAMPLES, records = _cases()

T = 1_700_000_000.0


def as_json(record) -> bytes:
    return json.dumps(to_mapping(record)).encode()


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except SchemaError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).TYPE)
def test_every_record_decodes_from_json(record):
    assert decode(as_json(record), type(record)) == record


@given(records)
def test_valid_records_decode_the_same_from_json(record):
    assert decode(as_json(record)) == record == decode(encode(record))


def test_the_format_is_chosen_per_message():
    click = Click("u1", "i9", T)
    assert wire_format(encode(click)) == "msgpack"
    assert wire_format(as_json(click)) == "json"
    assert wire_format(b"\n\t {") == "json"
    # the header wins over the first byte, with or without parameters, in any case
    assert wire_format(encode(click), b"Application/JSON; charset=utf-8") == "json"
    assert wire_format(as_json(click), "application/x-msgpack") == "msgpack"
    assert wire_format(as_json(click), "text/plain") == "json"  # unknown type: sniffed
    # no msgpack map can start like a JSON object: 0x7b and whitespace are positive fixints
    for n in (0, 1, 15, 16, 2**16):
        assert wire_format(msgpack.packb({str(i): i for i in range(n)})) == "msgpack"


def test_json_errors_name_the_field_like_msgpack():
    base = to_mapping(Click("u1", "i9", T))
    cases = [
        {k: v for k, v in base.items() if k != "item"},
        {k: v for k, v in base.items() if k != "v"},
        {**base, "ts": 1_700_000_000_000},  # milliseconds
        {**base, "ts": "1700000000"},
        {**base, "user": ""},
        {**base, "extra": 1},
        {**base, "type": "purchase"},
        {**base, "v": 2},
    ]
    for d in cases:
        via_json = outcome(decode, json.dumps(d).encode())
        via_msgpack = outcome(decode, msgpack.packb(d))
        assert via_json[0] == "error" and via_json == via_msgpack, d


@pytest.mark.parametrize(
    "data, reason",
    [
        (b'{"type": "click",', "not valid JSON"),
        (b'{"type": "click"} trailing', "not valid JSON"),
        (b'{"type": "\xff"}', "not valid JSON"),
        (b'{"type": "click", "ts": NaN}', "not valid JSON"),
        (b'[{"type": "click"}]', "a JSON message must be an object"),
        (b'"click"', "a JSON message must be an object"),
        (b'{"a":' * 100_000, "not valid JSON"),  # nesting far too deep
    ],
)
def test_json_parse_errors_say_json(data, reason):
    with pytest.raises(SchemaError) as info:
        decode(data)
    assert info.value.field == "<payload>" and reason in info.value.reason


def test_json_header_on_msgpack_bytes_is_a_json_error():
    with pytest.raises(SchemaError, match="not valid JSON"):
        decode(encode(Click("u1", "i9", T)), content_type=b"application/json")


def test_content_type_header_lookup():
    assert content_type(None) is None and content_type([]) is None
    assert content_type([("CONTENT-TYPE", b"application/json")]) == b"application/json"


def test_boundary_reads_json_on_every_input_topic_and_says_the_format():
    topics = Topics()
    b = Boundary(topics)
    item = Item("i1", "Heat", attributes={"genres": ["crime"]}, ts=T)
    assert b.decode(topics.items, b"i1", as_json(item), now=T) == item
    click = Click("u1", "i1", T)
    assert b.decode(topics.clicks, b"u1", as_json(click), now=T) == click
    for rec in EXAMPLES:
        topic = {"click": topics.clicks, "rating": topics.ratings, "item": topics.items,
                 "embedding": topics.embeddings, "tags": topics.tags}.get(type(rec).TYPE)
        if topic is not None:
            key = getattr(rec, "user", rec.item).encode()
            assert b.decode(topic, key, as_json(rec), now=T) == rec
    letter = b.decode(topics.clicks, b"u2", as_json(click), now=T)
    assert letter.reason == "key: b'u2' does not match user 'u1' (json)"
    assert letter.value == as_json(click)
    letter = b.decode(topics.clicks, b"u1", encode(click), now=T,
                      headers=[("content-type", b"application/json")])  # fmt: skip
    assert letter.reason.startswith("<payload>: not valid JSON") and letter.reason.endswith("(json)")
    # a null value keeps its own path: a delete on the catalogue (a tombstone), refused elsewhere
    assert b.decode(topics.items, b"i1", None, now=T).deleted
    assert b.decode(topics.clicks, b"u1", None, now=T).reason == "<payload>: empty message (null value)"


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(["", " ", "x" * 300, "click", "type"]),
)  # fmt: skip
json_junk = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.sampled_from(sorted(RECORD_TYPES)).flatmap(
    lambda t: st.fixed_dictionaries(
        {"type": st.just(t), "v": st.just(1) | json_junk},
        optional={n: json_junk for n in RECORD_TYPES[t].__dataclass_fields__},
    )
))
def test_json_and_msgpack_agree_on_every_mapping(d):
    """Whatever the mapping, both formats accept the same record or refuse with the same reason
    (dead letters aside: their bytes are base64 strings in JSON, bins in msgpack)."""
    if d["type"] == "deadletter":
        d.pop("key", None), d.pop("value", None)
    via_json = outcome(decode, json.dumps(d).encode())
    via_msgpack = outcome(decode, msgpack.packb(d, use_bin_type=True))
    assert via_json == via_msgpack, d


# --- the read path's fast lane (msgspec) must agree with the ordinary path ------------------------

from streamrec.schemas import RecommendationList, SimilarItems  # noqa: E402
from streamrec.schemas.codec import _MISSING, _build  # noqa: E402

list_junk = st.one_of(json_junk, st.floats(), st.binary(max_size=4),
                      st.lists(st.tuples(st.text(max_size=3), st.floats() | st.integers(-(2**63), 2**64 - 1) | st.booleans()),
                               max_size=4))  # fmt: skip


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(st.sampled_from([RecommendationList, SimilarItems]).flatmap(
    lambda cls: st.tuples(st.just(cls), st.fixed_dictionaries(
        {"type": st.just(cls.TYPE) | json_junk, "v": st.just(1) | json_junk},
        optional={f.name: list_junk for f in fields(cls)} | {"extra": json_junk},
    ))
), st.data())
def test_the_fast_lane_for_lists_agrees_with_the_ordinary_path(case, data):
    cls, d = case
    ids = st.text(min_size=1, max_size=12)
    pairs = st.lists(st.tuples(ids, st.floats(allow_nan=False, allow_infinity=False) | st.integers(-9, 9)),
                     max_size=12, unique_by=lambda p: p[0])  # fmt: skip
    ts = st.floats(min_value=1.0, max_value=4.1e9) | st.integers(1, 4_000_000_000)
    valid = data.draw(st.builds(cls, ids, pairs, ids, ts, ids))
    d = data.draw(st.sampled_from([d, {"type": cls.TYPE, "v": 1, **{f.name: getattr(valid, f.name) for f in
                                                                   fields(cls)}}]))  # fmt: skip
    raw = msgpack.packb({k: ([list(p) for p in v] if k == "items" and isinstance(v, tuple) else v)
                         for k, v in d.items()}, use_bin_type=True)  # fmt: skip
    fast = outcome(decode, raw, cls)
    slow = outcome(lambda b: _build(msgpack.unpackb(b), _MISSING), raw)
    if slow[0] == "ok" and not isinstance(slow[1], cls):
        assert fast[0] == "error" and fast[1].startswith("type: expected")
    elif slow[0] == "error" and d.get("type") != cls.TYPE and fast[0] == "error":
        # another record type, itself invalid: the fast lane names the type first, as it may
        assert fast[1].startswith("type: expected") or fast == slow, (fast, slow)
    else:
        assert fast == slow, d
