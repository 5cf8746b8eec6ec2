"""The published JSON Schemas: generated from the records, kept in the repository without drift,
and in agreement with the decoder (accept what it accepts, refuse what it refuses)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import jsonschema
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrec.cli import main
from streamrec.schemas import RECORD_TYPES, SchemaError, decode, to_mapping
from streamrec.schemas.contract import EXAMPLES, FIELDS, NOT_EXPRESSIBLE, SCHEMAS, dumps, reference_markdown

ROOT = Path(__file__).resolve().parents[2]
STORED = ROOT / "schemas" / "json"
VALIDATORS = {name: jsonschema.Draft202012Validator(doc) for name, doc in SCHEMAS.items()}


def _cases():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_schema_cases2", Path(__file__).with_name("test_schemas.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.records


records = _cases()


def test_the_stored_schemas_are_the_generated_ones():
    stored = {p.stem: p.read_text() for p in STORED.glob("*.json")}
    assert sorted(stored) == sorted(SCHEMAS), "run `streamrec schema --write schemas/json`"
    for name, doc in SCHEMAS.items():
        assert stored[name] == dumps(doc), f"schemas/json/{name}.json drifted: run `streamrec schema --write schemas/json`"


def test_every_field_of_every_record_has_a_spec_and_no_more():
    for cls in RECORD_TYPES.values():
        assert set(FIELDS[cls]) == {f.name for f in fields(cls)}, cls.__name__
        assert cls in EXAMPLES


def test_the_schemas_are_valid_json_schema():
    for doc in SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(doc)
        for example in doc["examples"]:
            VALIDATORS[doc["properties"]["type"]["const"]].validate(example)


def test_the_readme_holds_the_generated_reference():
    readme = (ROOT / "README.md").read_text()
    assert reference_markdown() in readme, "README reference drifted: paste `streamrec schema --markdown`"


def test_schema_command(capsys):
    assert main(["schema", "click"]) == 0
    assert json.loads(capsys.readouterr().out) == SCHEMAS["click"]
    assert main(["schema"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)) == sorted(SCHEMAS)
    assert main(["schema", "purchase"]) == 2
    assert "unknown record type 'purchase'" in capsys.readouterr().err


def _json_form(record) -> dict:
    return json.loads(json.dumps(to_mapping(record)))


@given(records)
def test_the_schema_accepts_every_valid_record(record):
    VALIDATORS[type(record).TYPE].validate(_json_form(record))


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
    st.sampled_from(["", " ", "x" * 300, "QUJD", "QQ==", "%%", "\t", "1700000000"]),
    st.sampled_from([0, 1, 5, 5.5, -1, 1.7e9, 1.7e12, 4102444800, 1.0, 3.5e38, 2**63, 2**64]),
)  # fmt: skip
json_junk = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def mutated(draw):
    """A valid record's JSON form with a few fields broken, removed or added."""
    d = _json_form(draw(records))
    names = [k for k in d if k != "type"]
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(["junk", "junk", "drop", "extra", "pair", "deep"]))
        name = draw(st.sampled_from(names))
        if action == "junk":
            d[name] = draw(json_junk)
        elif action == "drop":
            d.pop(name, None)
        elif action == "extra":
            d[draw(st.text(min_size=1, max_size=5))] = draw(json_scalars)
        elif action == "pair" and isinstance(d.get(name), list):
            d[name] = d[name] + [draw(st.lists(json_scalars, min_size=0, max_size=3))]
        elif action == "deep" and isinstance(d.get(name), dict):
            d[name] = {**d[name], draw(st.text(max_size=130)): draw(json_junk)}
    return d


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(mutated())
def test_the_schema_refuses_what_the_decoder_refuses(d):
    validator = VALIDATORS[d["type"]]
    schema_ok = validator.is_valid(d)
    try:
        decode(json.dumps(d).encode())
        decoder_ok, reason = True, ""
    except SchemaError as exc:
        decoder_ok, reason = False, str(exc)
    if decoder_ok:
        assert schema_ok, (d, [e.message for e in validator.iter_errors(d)])
    elif schema_ok:
        assert any(rule in reason for rule in NOT_EXPRESSIBLE), (d, reason)


def test_the_rules_json_schema_cannot_state_are_the_decoders():
    click = {"type": "click", "v": 1, "user": "u", "item": "i", "ts": 1.7e9}
    tags = {"type": "tags", "v": 1, "item": "i", "model": "m", "content_hash": "h",
            "tags": [["a", 1.0], ["a", 0.5]], "ts": 1.7e9}  # fmt: skip
    item = {"type": "item", "v": 1, "item": "i", "title": "t", "attributes": {"n": 2**63}, "ts": 1.7e9}
    for d in ({**click, "v": 1.0}, tags, item):
        assert VALIDATORS[d["type"]].is_valid(d)
        with pytest.raises(SchemaError) as info:
            decode(msgpack.packb(d))
        assert any(rule in str(info.value) for rule in NOT_EXPRESSIBLE)
