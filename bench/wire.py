"""``streamrec bench wire``: decode + validation throughput of the wire formats, in one run.

What it answers: (1) is JSON on the input topics cheap enough next to msgpack (target: JSON at
least 80% of msgpack's events/s), and (2) would msgspec pay for itself, as the JSON parser alone
or with typed Structs doing the validation in place of the hand-written checks in
``schemas/fields.py``. Every variant decodes the same messages, a mix like an input topic's
(clicks, ratings, catalogue items with attributes), built once; each is timed best-of-``repeat``
on the same machine in the same run, so the ratios hold on a noisy box.

The msgspec Struct variant is a prototype of the three input records with the same limits
expressed as ``msgspec.Meta`` constraints; :func:`struct_messages` shows the errors it gives next
to ours, since keeping the field-naming messages is the condition for adopting it.
"""


import json
import random
import sys
import time
from typing import Annotated, Any

import msgpack

from streamrec.schemas.codec import _build, decode, encode, to_mapping
from streamrec.schemas.events import Click, Item, Rating
from streamrec.schemas.fields import (
    MAX_ATTR_KEY_LEN,
    MAX_ATTRIBUTES,
    MAX_ID_LEN,
    MAX_TEXT_LEN,
    MAX_TITLE_LEN,
    RATING_MAX,
    RATING_MIN,
    TS_MAX,
    TS_MIN,
    SchemaError,
)

_MISSING = object()


def messages(n: int, seed: int = 0) -> list[Any]:
    """``n`` records: 80% clicks, 15% ratings, 5% items with a few attributes.

    >>> sorted({type(r).__name__ for r in messages(200)})
    ['Click', 'Item', 'Rating']
    """
    rng = random.Random(seed)
    out: list[Any] = []
    for i in range(n):
        u, it, ts = f"u{rng.randrange(10_000)}", f"i{rng.randrange(5_000)}", 1.7e9 + i
        r = rng.random()
        if r < 0.80:
            out.append(Click(u, it, ts))
        elif r < 0.95:
            out.append(Rating(u, it, rng.choice([1.0, 2.5, 4.0, 5.0]), ts))
        else:
            out.append(Item(it, f"Title {i}", "some descriptive text " * 4,
                            {"category": rng.choice(["film", "book"]), "year": 1990 + i % 30,
                             "genres": ["drama", "crime"]}, ts=ts))  # fmt: skip
    return out


def _structs():
    """msgspec Structs for the input records, the limits as constraints (a prototype)."""
    import msgspec

    Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
    Ts = Annotated[float, msgspec.Meta(gt=TS_MIN, lt=TS_MAX)]
    AttrKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ATTR_KEY_LEN)]
    AttrVal = str | int | float | bool | list[str]
    Attrs = Annotated[dict[AttrKey, AttrVal], msgspec.Meta(max_length=MAX_ATTRIBUTES)]

    class SClick(msgspec.Struct, tag="click", tag_field="type", forbid_unknown_fields=True):
        v: int
        user: Id
        item: Id
        ts: Ts

    class SRating(msgspec.Struct, tag="rating", tag_field="type", forbid_unknown_fields=True):
        v: int
        user: Id
        item: Id
        rating: Annotated[float, msgspec.Meta(ge=RATING_MIN, le=RATING_MAX)]
        ts: Ts

    class SItem(msgspec.Struct, tag="item", tag_field="type", forbid_unknown_fields=True):
        v: int
        item: Id
        ts: Ts
        title: Annotated[str, msgspec.Meta(max_length=MAX_TITLE_LEN)] = ""
        text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LEN)] = ""
        attributes: Attrs = {}
        deleted: bool = False

    Union = SClick | SRating | SItem
    return msgspec.json.Decoder(Union), msgspec.msgpack.Decoder(Union), msgspec.ValidationError


def _time(fn, payloads: list[bytes], repeat: int) -> float:
    """Best events/s of ``repeat`` passes of ``fn`` over ``payloads``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in payloads:
            fn(p)
        best = min(best, time.perf_counter() - t0)
    return len(payloads) / best


def run(n: int = 50_000, repeat: int = 5) -> dict[str, float]:
    """events/s of each variant; ``json_per_s`` and ``msgpack_per_s`` are the codec as it is."""
    recs = messages(n)
    as_msgpack = [encode(r) for r in recs]
    as_json = [json.dumps(to_mapping(r)).encode() for r in recs]
    expected = (Click, Rating, Item)
    json_decoder, msgpack_decoder, _ = _structs()

    def stdlib_then_checks(data: bytes):  # the JSON path before msgspec parsed it
        return _build(json.loads(data), _MISSING)

    results = {
        "msgpack_per_s": _time(lambda p: decode(p, expected), as_msgpack, repeat),
        "json_per_s": _time(lambda p: decode(p, expected), as_json, repeat),
        "json_stdlib_parse_per_s": _time(stdlib_then_checks, as_json, repeat),
        "json_msgspec_struct_per_s": _time(json_decoder.decode, as_json, repeat),
        "msgpack_msgspec_struct_per_s": _time(msgpack_decoder.decode, as_msgpack, repeat),
        "msgpack_unpack_only_per_s": _time(msgpack.unpackb, as_msgpack, repeat),
        "json_loads_only_per_s": _time(json.loads, as_json, repeat),
    }
    results["json_vs_msgpack"] = results["json_per_s"] / results["msgpack_per_s"]
    results["events"] = n
    return results


def struct_messages() -> list[tuple[str, str, str]]:
    """(case, our reason, msgspec's) for a few invalid clicks: the messages the condition is about."""
    json_decoder, _, ValidationError = _structs()
    base = {"type": "click", "v": 1, "user": "u1", "item": "i9", "ts": 1.7e9}
    cases = {
        "missing item": {k: v for k, v in base.items() if k != "item"},
        "ms timestamp": {**base, "ts": 1.7e12},
        "empty user": {**base, "user": ""},
        "unknown field": {**base, "extra": 1},
        "bool ts": {**base, "ts": True},
    }
    out = []
    for name, d in cases.items():
        data = json.dumps(d).encode()
        try:
            decode(data)
            ours = "accepted"
        except SchemaError as exc:
            ours = str(exc)
        try:
            json_decoder.decode(data)
            theirs = "accepted"
        except ValidationError as exc:
            theirs = str(exc)
        out.append((name, ours, theirs))
    return out


def main(n: int, json_path: str | None = None) -> int:
    results = run(n)
    print("| variant | events/s | vs msgpack (ours) |\n| --- | ---: | ---: |")
    base = results["msgpack_per_s"]
    for key, value in results.items():
        if key.endswith("_per_s"):
            print(f"| {key[:-6]} | {value:,.0f} | {value / base:.2f} |")
    print(f"\nJSON / msgpack (decode + validation, ours): {results['json_vs_msgpack']:.2f}")
    print("\n| invalid click | our reason | msgspec Struct's |\n| --- | --- | --- |")
    for name, ours, theirs in struct_messages():
        print(f"| {name} | {ours} | {theirs} |")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"wrote {json_path}", file=sys.stderr)
    return 0
