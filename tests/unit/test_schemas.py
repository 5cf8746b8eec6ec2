"""The wire schemas: records validate themselves, the codec round-trips them exactly, and decode
turns any bytes at all into a record or a SchemaError naming the field."""

from __future__ import annotations

import base64
import json
import math
import struct
from dataclasses import FrozenInstanceError, fields

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrec.schemas import (
    MAX_ID_LEN,
    RATING_MAX,
    RATING_MIN,
    RECORD_TYPES,
    SCHEMA_VERSION,
    TS_MAX,
    Attributes,
    Click,
    DeadLetter,
    EnrichRequest,
    Item,
    ItemEmbedding,
    ItemTags,
    Rating,
    RecommendationList,
    SchemaError,
    SeenItems,
    SimilarItems,
    content_hash,
    decode,
    encode,
    from_mapping,
    to_mapping,
)
from streamrec.schemas import events as ev

T = 1_700_000_000.0
PAYLOAD = "<payload>"

EXAMPLES = [
    Click("u1", "i9", T),
    Rating("u1", "i9", 4.5, T),
    Item("i9", "Dune", "Desert planet.", {"year": 1965, "genres": ["sf", "classic"], "score": 4.2,
                                          "in_print": True}, ts=T),
    Item("i9", ts=T, deleted=True),
    EnrichRequest("i9", "ab" * 16, "Dune", "Desert planet.", {"year": 1965}, T),
    ItemEmbedding("i9", "minilm", "ab" * 16, (0.5, -1.25, 3.0), T),
    ItemTags("i9", "llama", "ab" * 16, (("sf", 0.9), ("desert", 0.4)), T),
    RecommendationList("u1", (("i9", 2.5), ("i3", 1.0)), "mf-2024-01", T, "cfg123"),
    RecommendationList("u2", (), "mf-2024-01", T, "cfg123"),
    SimilarItems("i9", (("i3", 0.8), ("i7", 0.5)), "mf-2024-01", T, "cfg123"),
    SeenItems("u1", ("i3", "i9"), T),
    DeadLetter("events.clicks", b"u1", b"\x00\xffgarbage", "payload: not valid msgpack", T),
    DeadLetter("events.clicks", None, b"", "value: empty", T),
]


def wire(record) -> dict:
    return msgpack.unpackb(encode(record), raw=False)


def decode_dict(d: dict):
    return decode(msgpack.packb(d, use_bin_type=True))


def schema_error(fn, *args, **kwargs) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        fn(*args, **kwargs)
    return info.value


# --- round trips ------------------------------------------------------------------------------


def test_every_record_type_has_an_example():
    assert {type(r) for r in EXAMPLES} == set(RECORD_TYPES.values())
    assert all(cls.VERSION == SCHEMA_VERSION for cls in RECORD_TYPES.values())


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).TYPE)
def test_encode_decode_round_trip(record):
    data = encode(record)
    assert isinstance(data, bytes)
    back = decode(data)
    assert back == record and type(back) is type(record)
    assert decode(data, expected=type(record)) == record
    assert decode(bytearray(data)) == record and decode(memoryview(data)) == record
    assert encode(back) == data
    hash(back)  # frozen and hashable all the way down


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).TYPE)
def test_mapping_round_trip_through_json(record):
    mapping = to_mapping(record)
    assert mapping["type"] == type(record).TYPE and mapping["v"] == SCHEMA_VERSION
    text = json.dumps(mapping)  # JSON-able as is
    assert from_mapping(json.loads(text)) == record
    assert from_mapping(mapping) == record


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).TYPE)
def test_wire_map_has_type_version_and_fields(record):
    d = wire(record)
    assert list(d) == ["type", "v", *(f.name for f in fields(record))]
    assert d["type"] == type(record).TYPE and d["v"] == SCHEMA_VERSION


def test_records_are_frozen():
    with pytest.raises(FrozenInstanceError):
        EXAMPLES[0].user = "u2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        EXAMPLES[2].attributes["year"] = 1  # type: ignore[index]


def test_from_mapping_is_the_cli_path():
    line = '{"type":"click","user":"u1","item":"i9","ts":1700000000}'
    assert from_mapping(json.loads(line)) == Click("u1", "i9", T)
    assert from_mapping({"type": "click", "v": 1, "user": "u1", "item": "i9", "ts": T}) == Click("u1", "i9", T)


def test_normalisation():
    assert type(Click("u", "i", 1_700_000_000).ts) is float
    assert Rating("u", "i", 4, T).rating == 4.0 and type(Rating("u", "i", 4, T).rating) is float
    assert Rating("u", "i", RATING_MIN, T).rating == 0.0 and Rating("u", "i", RATING_MAX, T).rating == 5.0
    assert Click("u", "i", np.float64(T)).ts == T and Click("u", "i", np.int64(1)).ts == 1.0
    assert DeadLetter("t", bytearray(b"k"), memoryview(b"v"), "r", T) == DeadLetter("t", b"k", b"v", "r", T)
    tags = ItemTags("i", "m", "h", [["a", 1], ("b", 0.5)], T)
    assert tags.tags == (("a", 1.0), ("b", 0.5))
    item = Item("i", "t", attributes={"b": ["x"], "a": 1}, ts=T)
    assert isinstance(item.attributes, Attributes) and list(item.attributes) == ["a", "b"]
    assert item.attributes == {"a": 1, "b": ["x"]} and item.attributes["b"] == ("x",)
    assert Item("i", "t", ts=T).attributes == {}
    assert Item("i", ts=T, deleted=True).title == ""


def test_vectors_are_float32_on_the_wire():
    e = ItemEmbedding("i", "m", "h", [0.1, 2, np.float32(-3.5)], T)
    assert e.vector == tuple(float(np.float32(x)) for x in (0.1, 2, -3.5))
    assert all(type(x) is float for x in e.vector)
    raw = wire(e)["vector"]
    assert raw == struct.pack("<3f", *e.vector) and len(raw) == 12
    assert ItemEmbedding("i", "m", "h", np.array([0.1, 2.0]), T).vector == e.vector[:2]
    assert to_mapping(e)["vector"] == list(e.vector)
    d = wire(e)
    for bad in (b"", b"\x00" * 6, b"\x00" * 4 * 4097, struct.pack("<2f", 1.0, math.nan)):
        d["vector"] = bad
        assert schema_error(decode_dict, d).field == "vector"
    d["vector"] = [1.0, 2.0]  # a list is accepted too (it is what JSON carries)
    assert decode_dict(d).vector == (1.0, 2.0)


def test_deadletter_bytes_are_base64_in_mappings():
    dl = EXAMPLES[-2]
    m = to_mapping(dl)
    assert m["key"] == base64.b64encode(b"u1").decode() and base64.b64decode(m["value"]) == dl.value
    assert to_mapping(EXAMPLES[-1])["key"] is None
    assert from_mapping({**m, "value": dl.value}) == dl  # raw bytes accepted as well
    assert schema_error(from_mapping, {**m, "value": "not base64!"}).field == "value"
    assert schema_error(from_mapping, {**m, "key": "é"}).field == "key"


# --- content hash -----------------------------------------------------------------------------


def test_content_hash_is_stable_and_pinned():
    a = Item("i1", "Dune", "Desert.", {"year": 1965, "genres": ["sf"]}, ts=T)
    b = Item("i2", "Dune", "Desert.", {"genres": ("sf",), "year": 1965}, ts=T + 5)
    assert a.content_hash() == b.content_hash() == content_hash("Dune", "Desert.", {"genres": ["sf"], "year": 1965})
    assert len(a.content_hash()) == 32 and int(a.content_hash(), 16) >= 0
    assert content_hash("Dune", "") == "7628f8961611ea7676e962330bdee6a9"  # must never change


@pytest.mark.parametrize(
    "title, text, attributes",
    [
        ("Dune!", "Desert.", {"year": 1965}),
        ("Dune", "Desert", {"year": 1965}),
        ("Dune", "Desert.", {"year": 1966}),
        ("Dune", "Desert.", {"year": 1965.0}),
        ("Dune", "Desert.", {"year": "1965"}),
        ("Dune", "Desert.", {"year": 1965, "x": True}),
        ("Dune", "Desert.", {}),
        ("Dune", "", {"year": 1965, "text": "Desert."}),
        ("DuneDesert.", "", {"year": 1965}),
    ],
)
def test_content_hash_is_sensitive_to_content(title, text, attributes):
    base = content_hash("Dune", "Desert.", {"year": 1965})
    assert content_hash(title, text, attributes) != base


def test_enrich_request_for_item():
    item = EXAMPLES[2]
    req = EnrichRequest.for_item(item, T + 1)
    assert req.content_hash == item.content_hash() and req.attributes == item.attributes
    assert decode(encode(req)) == req


# --- the wire envelope ------------------------------------------------------------------------


CLICK = {"type": "click", "v": 1, "user": "u1", "item": "i9", "ts": T}


def test_unknown_version_is_refused():
    err = schema_error(decode_dict, {**CLICK, "v": 7})
    assert (err.field, str(err)) == ("v", "v: unsupported schema version 7 for 'click'")
    assert schema_error(from_mapping, {**CLICK, "v": 0}).field == "v"
    assert schema_error(decode_dict, {**CLICK, "v": True}).field == "v"
    assert schema_error(decode_dict, {**CLICK, "v": "1"}).field == "v"
    assert str(schema_error(decode_dict, {k: v for k, v in CLICK.items() if k != "v"})) == "v: missing"


def test_unknown_type_is_refused():
    err = schema_error(decode_dict, {**CLICK, "type": "purchase"})
    assert err.field == "type" and "unknown record type 'purchase'" in str(err) and "click" in err.reason
    assert schema_error(decode_dict, {**CLICK, "type": 3}).field == "type"
    assert schema_error(decode_dict, {**CLICK, "type": ["click"]}).field == "type"
    assert str(schema_error(from_mapping, {"user": "u1"})) == "type: missing"


def test_extra_fields_are_refused_by_name():
    err = schema_error(decode_dict, {**CLICK, "colour": "red"})
    assert (err.field, str(err)) == ("colour", "colour: unknown field for 'click'")
    err = schema_error(from_mapping, {**CLICK, "zz": 1, "aa": 2})
    assert err.field == "aa" and "also: zz" in err.reason
    err = schema_error(decode, msgpack.packb({**CLICK, b"raw": 1}, use_bin_type=True))
    assert err.field == "b'raw'"


def test_missing_fields_are_named():
    err = schema_error(decode_dict, {k: v for k, v in CLICK.items() if k != "item"})
    assert (err.field, str(err)) == ("item", "item: missing (required for 'click')")
    assert schema_error(from_mapping, {"type": "item", "item": "i1", "title": "x"}).field == "ts"
    # fields with defaults may be left out
    assert from_mapping({"type": "item", "item": "i1", "title": "x", "ts": T}) == Item("i1", "x", ts=T)


def test_expected_type():
    data = encode(EXAMPLES[0])
    assert str(schema_error(decode, data, expected=Rating)) == "type: expected rating, got click"
    assert str(schema_error(decode, data, (Rating, Item))) == "type: expected rating or item, got click"
    assert decode(data, (Rating, Click)) == EXAMPLES[0]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used byte
        encode(EXAMPLES[0])[:-1],  # truncated
        encode(EXAMPLES[0]) + b"\x00",  # trailing bytes
        msgpack.packb([1, 2]),
        msgpack.packb("click"),
        msgpack.packb(None),
        msgpack.packb({1: 2}),  # non-str key
        msgpack.packb({**CLICK, "user": msgpack.ExtType(5, b"x")}),
        msgpack.packb({**CLICK, "ts": msgpack.Timestamp(1, 0)}),
        b"\x81\xa4type\xa2\xff\xfe",  # invalid UTF-8
        b"\xdd\xff\xff\xff\xff",  # array header claiming 4G entries
        b"\xdb\xff\xff\xff\xff",  # str header claiming 4G bytes
        b"\xc6\x00\x20\x00\x00",  # bin header over the limit
        b"\x91" * 100_000,  # nesting far too deep
        b"\xdf\xff\xff\xff\xff",  # map header claiming 4G entries
    ],
)
def test_garbage_is_a_payload_error(data):
    assert schema_error(decode, data).field == PAYLOAD


def test_non_bytes_input():
    assert schema_error(decode, "click").field == PAYLOAD
    assert schema_error(decode, None).field == PAYLOAD
    assert schema_error(from_mapping, [("type", "click")]).field == PAYLOAD


def test_encode_refuses_non_records():
    with pytest.raises(TypeError):
        encode({"type": "click"})  # type: ignore[arg-type]


# --- field validation -------------------------------------------------------------------------


def _too_many(n):
    return [(f"t{i}", 1.0) for i in range(n)]


INVALID = [
    (lambda: Click("", "i", T), "user"),
    (lambda: Click("u" * (MAX_ID_LEN + 1), "i", T), "user"),
    (lambda: Click(7, "i", T), "user"),
    (lambda: Click(b"u", "i", T), "user"),
    (lambda: Click("\ud800", "i", T), "user"),
    (lambda: Click("u", None, T), "item"),
    (lambda: Click("u", "i", math.nan), "ts"),
    (lambda: Click("u", "i", math.inf), "ts"),
    (lambda: Click("u", "i", True), "ts"),
    (lambda: Click("u", "i", "1700000000"), "ts"),
    (lambda: Click("u", "i", 0), "ts"),
    (lambda: Click("u", "i", -1.0), "ts"),
    (lambda: Click("u", "i", TS_MAX), "ts"),
    (lambda: Click("u", "i", 10**400), "ts"),
    (lambda: Click("u", "i", None), "ts"),
    (lambda: Rating("u", "i", 7.0, T), "rating"),
    (lambda: Rating("u", "i", -0.01, T), "rating"),
    (lambda: Rating("u", "i", math.nan, T), "rating"),
    (lambda: Rating("u", "i", False, T), "rating"),
    (lambda: Rating("u", "i", "4", T), "rating"),
    (lambda: Rating("u", "i", 4.0, math.nan), "ts"),
    (lambda: Item("i", ts=T), "title"),
    (lambda: Item("i", "   ", ts=T), "title"),
    (lambda: Item("i", "t" * 1001, ts=T), "title"),
    (lambda: Item("i", 5, ts=T, deleted=True), "title"),
    (lambda: Item("i", "t", "x" * 20_001, ts=T), "text"),
    (lambda: Item("i", "t", None, ts=T), "text"),
    (lambda: Item("", "t", ts=T), "item"),
    (lambda: Item("i", "t", ts=T, deleted=1), "deleted"),
    (lambda: Item("i", "t", ts=T, deleted="yes"), "deleted"),
    (lambda: Item("i", "t", ts=T + math.inf), "ts"),
    (lambda: Item("i", "t", attributes=[("a", 1)], ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={f"k{i}": i for i in range(65)}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={1: "x"}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={"": "x"}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={"k" * 129: "x"}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={"a": {"b": 1}}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={"a": [1, 2]}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={"a": ["x"] * 65}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={"a": "x" * 1001}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={"a": math.nan}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={"a": 2**63}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={"a": None}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={"a": b"x"}, ts=T), "attributes"),
    (lambda: Item("i", "t", attributes={"a": "\udfff"}, ts=T), "attributes"),
    (lambda: EnrichRequest("i", "", "t", "", {}, T), "content_hash"),
    (lambda: EnrichRequest("i", "h" * 129, "t", "", {}, T), "content_hash"),
    (lambda: EnrichRequest("i", "h", "t", "", None, T), "attributes"),
    (lambda: Item("i", "t", attributes=5, ts=T), "attributes"),
    (lambda: ItemEmbedding("i", "", "h", (1.0,), T), "model"),
    (lambda: ItemEmbedding("i", "m" * 257, "h", (1.0,), T), "model"),
    (lambda: ItemEmbedding("i", "m", "h", (), T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", (1.0, math.nan), T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", (math.inf,), T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", (1e39,), T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", (True,), T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", ("1",), T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", (10**400,), T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", [0.0] * 4097, T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", "1234", T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", 3.0, T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", np.zeros((2, 2)), T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", np.array([True]), T), "vector"),
    (lambda: ItemEmbedding("i", "m", "h", np.array([np.nan], dtype=np.float32), T), "vector"),
    (lambda: ItemTags("i", "m", "h", _too_many(257), T), "tags"),
    (lambda: ItemTags("i", "m", "h", [("", 1.0)], T), "tags"),
    (lambda: ItemTags("i", "m", "h", [("t" * 129, 1.0)], T), "tags"),
    (lambda: ItemTags("i", "m", "h", [("a", 1.0), ("a", 2.0)], T), "tags"),
    (lambda: ItemTags("i", "m", "h", [("a", math.nan)], T), "tags"),
    (lambda: ItemTags("i", "m", "h", [("a", True)], T), "tags"),
    (lambda: ItemTags("i", "m", "h", [("a", 1.0, 2.0)], T), "tags"),
    (lambda: ItemTags("i", "m", "h", ["ab"], T), "tags"),
    (lambda: ItemTags("i", "m", "h", {"a": 1.0}, T), "tags"),
    (lambda: ItemTags("i", "m", "h", None, T), "tags"),
    (lambda: ItemTags("i", "m", "", (), T), "content_hash"),
    (lambda: RecommendationList("u", _too_many(1001), "m", T, "d"), "items"),
    (lambda: RecommendationList("u", [("a", 1.0), ("a", 0.5)], "m", T, "d"), "items"),
    (lambda: RecommendationList("u", [(["a"], 1.0)], "m", T, "d"), "items"),
    (lambda: RecommendationList("u", [("a", "1.0")], "m", T, "d"), "items"),
    (lambda: RecommendationList("u", [("u" * 257, 1.0)], "m", T, "d"), "items"),
    (lambda: RecommendationList("u", (), "", T, "d"), "model_version"),
    (lambda: RecommendationList("u", (), "m", 0, "d"), "generated_at"),
    (lambda: RecommendationList("u", (), "m", T, ""), "config_digest"),
    (lambda: RecommendationList("", (), "m", T, "d"), "user"),
    (lambda: DeadLetter("", None, b"", "r", T), "topic"),
    (lambda: DeadLetter("t" * 250, None, b"", "r", T), "topic"),
    (lambda: DeadLetter("t", "k", b"", "r", T), "key"),
    (lambda: DeadLetter("t", None, None, "r", T), "value"),
    (lambda: DeadLetter("t", None, b"x" * (ev.MAX_PAYLOAD_BYTES + 1), "r", T), "value"),
    (lambda: DeadLetter("t", None, b"", "", T), "reason"),
    (lambda: DeadLetter("t", None, b"", "r", "now"), "ts"),
]


@pytest.mark.parametrize("make, field", INVALID)
def test_invalid_records_name_the_field(make, field):
    err = schema_error(make)
    assert err.field == field
    assert str(err) == f"{field}: {err.reason}" and err.reason


def test_the_same_checks_apply_when_decoding():
    # decode builds through the constructor: a sample of the cases above, arriving as bytes
    cases = [
        ({**CLICK, "user": ""}, "user"),
        ({**CLICK, "ts": float("nan")}, "ts"),
        ({**CLICK, "ts": True}, "ts"),
        ({**CLICK, "ts": 2**64 - 1}, "ts"),
        ({**CLICK, "item": b"i9"}, "item"),
        ({**CLICK, "item": {"a": 1}}, "item"),
        ({"type": "rating", "v": 1, "user": "u", "item": "i", "rating": 9, "ts": T}, "rating"),
        ({**wire(EXAMPLES[2]), "attributes": {"a": [[1]]}}, "attributes"),
        ({**wire(EXAMPLES[2]), "attributes": [1, 2]}, "attributes"),
        ({**wire(EXAMPLES[7]), "items": [["a", 1.0], ["a", 1.0]]}, "items"),
        ({**wire(EXAMPLES[7]), "items": {"a": 1.0}}, "items"),
        ({**wire(EXAMPLES[6]), "tags": [[{}, 1.0]]}, "tags"),
        ({**wire(EXAMPLES[-2]), "value": "%%%"}, "value"),
        ({**wire(EXAMPLES[-2]), "key": 5}, "key"),
    ]
    for d, field in cases:
        assert schema_error(decode_dict, d).field == field, d


def test_rating_message_reads_well():
    assert str(schema_error(Rating, "u", "i", 7.0, T)) == "rating: 7.0 is outside [0.0, 5.0]"
    assert str(schema_error(Click, "u", "i", math.nan)) == "ts: nan is not a finite number"
    assert str(schema_error(Click, "u", "i", True)) == "ts: expected a number, got bool"


def test_schema_error_is_a_value_error_and_pickles():
    err = SchemaError("rating", "7.0 is outside [0.0, 5.0]")
    assert isinstance(err, ValueError)
    # (pytest's doctest collection may import fields.py a second time, so rebuild via __reduce__
    # rather than trusting pickle's lookup of the class by module name)
    cls, args = err.__reduce__()
    back = cls(*args)
    assert (back.field, back.reason, str(back)) == (err.field, err.reason, str(err))


def test_events_still_exports_the_names_that_moved_to_fields():
    # code outside this package imports the limits, SchemaError and Attributes from events
    from streamrec.schemas import fields

    moved = [n for n in vars(fields) if n.isupper() or n in ("SchemaError", "Attributes", "AttrValue")]
    assert "MAX_REASON_LEN" in moved and "TS_MAX" in moved
    for name in moved:
        assert getattr(ev, name) is getattr(fields, name), name
        assert name in ev.__all__, name


# --- properties -------------------------------------------------------------------------------

ids = st.text(min_size=1, max_size=12)
short = st.text(max_size=30)
timestamps = st.one_of(
    st.floats(min_value=0.0, max_value=TS_MAX, exclude_min=True, exclude_max=True),
    st.integers(min_value=1, max_value=int(TS_MAX) - 1),
)
finite = st.floats(allow_nan=False, allow_infinity=False)
attr_values = st.one_of(
    short, st.booleans(), st.integers(min_value=ev.INT64_MIN, max_value=ev.INT64_MAX), finite,
    st.lists(st.text(max_size=8), max_size=4),
)
attributes = st.dictionaries(st.text(min_size=1, max_size=10), attr_values, max_size=6)
titles = st.text(min_size=1, max_size=30).filter(str.strip)
pairs = st.lists(st.tuples(ids, finite), max_size=12, unique_by=lambda p: p[0])

records = st.one_of(
    st.builds(Click, ids, ids, timestamps),
    st.builds(Rating, ids, ids, st.floats(min_value=RATING_MIN, max_value=RATING_MAX), timestamps),
    st.builds(Item, ids, titles, short, attributes, ts=timestamps),
    st.builds(Item, ids, st.just(""), st.just(""), ts=timestamps, deleted=st.just(True)),
    st.builds(EnrichRequest, ids, ids, titles, short, attributes, timestamps),
    st.builds(ItemEmbedding, ids, ids, ids,
              st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=32),
              timestamps),
    st.builds(ItemTags, ids, ids, ids, pairs, timestamps),
    st.builds(RecommendationList, ids, pairs, ids, timestamps, ids),
    st.builds(SimilarItems, ids, pairs, ids, timestamps, ids),
    st.builds(SeenItems, ids, st.lists(ids, max_size=8), timestamps),
    st.builds(DeadLetter, ids, st.none() | st.binary(max_size=20), st.binary(max_size=40), ids, timestamps),
)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(),
    st.text(max_size=12), st.binary(max_size=12), st.sampled_from(["", " ", "x" * 300, "click", "type"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
junk_with_ext = st.recursive(
    scalars | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@given(records)
def test_valid_records_round_trip_exactly(record):
    data = encode(record)
    back = decode(data, expected=type(record))
    assert back == record
    assert encode(back) == data  # byte-identical: ints stay ints, bools stay bools
    assert from_mapping(json.loads(json.dumps(to_mapping(record)))) == record


@given(st.lists(st.floats(min_value=-3e38, max_value=3e38), min_size=1, max_size=16))
def test_float64_vectors_round_trip_after_float32_rounding(values):
    e = ItemEmbedding("i", "m", "h", values, T)
    expected = tuple(float(np.float32(v)) for v in values)
    assert e.vector == expected and decode(encode(e)).vector == expected


@given(st.binary(max_size=200))
def test_decode_random_bytes_raises_only_schema_error(data):
    try:
        decode(data)
    except SchemaError:
        pass


@given(junk_with_ext)
def test_decode_packed_junk_raises_only_schema_error(obj):
    try:
        decode(msgpack.packb(obj, use_bin_type=True))
    except SchemaError:
        pass


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(RECORD_TYPES)).flatmap(
    lambda t: st.fixed_dictionaries(
        {"type": st.just(t), "v": st.just(1) | junk},
        optional={f.name: junk for f in fields(RECORD_TYPES[t])},
    )
))
def test_decode_typed_junk_raises_only_schema_error(d):
    try:
        decode(msgpack.packb(d, use_bin_type=True))
    except SchemaError:
        pass


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(records, st.data())
def test_one_bad_field_is_named(record, data):
    d = wire(record)
    name = data.draw(st.sampled_from([f.name for f in fields(record)]))
    d[name] = data.draw(junk)
    try:
        decode_dict(d)
    except SchemaError as exc:
        # an upsert's title is checked against `deleted`, so breaking `deleted` can blame the title
        assert exc.field == name or (isinstance(record, Item) and exc.field == "title"), (exc, d)
