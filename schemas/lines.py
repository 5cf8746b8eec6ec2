"""Turning text lines (JSON lines or CSV) into validated records, for ``streamrec publish``.

A bad line never stops the good ones: each line yields either a record or a :class:`Rejected`
that names the line number and the reason, so the caller can publish the first and report the
second. A missing ``ts`` means "now"; CSV files without a ``type`` column take ``default_type``.

>>> out = list(parse_lines(['{"type":"click","user":"u1","item":"i1","ts":1700000000}', 'nope'],
...                        fmt="jsonl", now=1.7e9))
>>> out[0]
Click(user='u1', item='i1', ts=1700000000.0)
>>> out[1]
Rejected(line=2, reason='not valid JSON: Expecting value (column 1)')
>>> list(parse_lines(["user,item,rating", "u1,i1,4.5", "u2,i1,9"], fmt="csv",
...                  default_type="rating", now=1.7e9))  # doctest: +NORMALIZE_WHITESPACE
[Rating(user='u1', item='i1', rating=4.5, ts=1700000000.0),
 Rejected(line=3, reason='rating: 9.0 is outside [0.0, 5.0]')]
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from streamrec.schemas.codec import from_mapping
from streamrec.schemas.fields import SchemaError

FORMATS = ("jsonl", "csv")
_NUMERIC = ("rating", "ts")


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


def guess_format(filename: str | None) -> str:
    """``csv`` for ``*.csv`` files, JSON lines otherwise (stdin included).

    >>> guess_format("events.csv"), guess_format("events.jsonl"), guess_format(None)
    ('csv', 'jsonl', 'jsonl')
    """
    return "csv" if filename and filename.lower().endswith(".csv") else "jsonl"


def _build(fields: dict, line: int, default_type: str | None, now: float):
    if "type" not in fields or fields["type"] in ("", None):
        if default_type is None:
            return Rejected(line, "type: missing (add a 'type' field or pass --type)")
        fields["type"] = default_type
    fields.setdefault("ts", now)
    try:
        return from_mapping(fields)
    except SchemaError as exc:
        return Rejected(line, str(exc))


def _csv_fields(row: dict) -> dict:
    fields: dict = {}
    attributes: dict = {}
    for key, value in row.items():
        if key is None:  # more cells than header columns
            raise ValueError(f"{len(value)} cell(s) beyond the header")
        if value is None or value == "":
            continue
        if key.startswith("attr."):
            attributes[key[5:]] = value
        elif key == "attributes":
            attributes.update(json.loads(value))
        elif key in _NUMERIC:
            fields[key] = float(value)
        elif key == "deleted":
            fields[key] = value.strip().lower() in ("1", "true", "yes")
        else:
            fields[key] = value
    if attributes:
        fields["attributes"] = attributes
    return fields


def parse_lines(
    lines: Iterable[str], fmt: str, now: float, default_type: str | None = None
) -> Iterator[object]:
    """Yield a record or a :class:`Rejected` per data line (line numbers count from 1)."""
    if fmt == "jsonl":
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                fields = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Rejected(number, f"not valid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(fields, dict):
                yield Rejected(number, f"expected a JSON object, got {type(fields).__name__}")
                continue
            yield _build(fields, number, default_type, now)
    elif fmt == "csv":
        reader = csv.DictReader(lines)
        for row in reader:
            number = reader.line_num
            try:
                fields = _csv_fields(row)
            except (ValueError, TypeError) as exc:
                yield Rejected(number, f"bad cell: {exc}")
                continue
            yield _build(fields, number, default_type, now)
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
