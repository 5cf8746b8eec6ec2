"""``streamrec schema`` (the wire contract as JSON Schema) and ``streamrec serve`` (the HTTP API).

Kept beside :mod:`streamrec.cli` like the other subcommand groups: both speak the contract to the
outside. The schemas come from
:mod:`streamrec.schemas.contract`; ``--write DIR`` regenerates the files the repository keeps in
``schemas/json/`` and ``--markdown`` prints the README's reference tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_schema(settings, args) -> int:
    from streamrec.schemas.contract import SCHEMAS, dumps, reference_markdown
    from streamrec.schemas.fields import SchemaError

    names = [args.record] if args.record else sorted(SCHEMAS)
    if args.record and args.record not in SCHEMAS:
        raise SchemaError("type", f"unknown record type {args.record!r} (known: {', '.join(sorted(SCHEMAS))})")
    if args.write:
        out = Path(args.write)
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            (out / f"{name}.json").write_text(dumps(SCHEMAS[name]))
        print(f"wrote {len(names)} schema(s) to {out}", file=sys.stderr)
    elif args.markdown:
        print(reference_markdown())
    elif args.record:
        print(dumps(SCHEMAS[args.record]), end="")
    else:
        print(json.dumps(SCHEMAS, indent=2, ensure_ascii=False))
    return 0


def cmd_serve(settings, args) -> int:
    from streamrec.serve import run

    run(settings, host=args.host, port=args.port)
    return 0


def add_commands(add) -> None:
    """Register ``schema`` and ``serve`` with the main parser's ``add(name, func, help)``."""
    p = add("schema", cmd_schema, "print the JSON Schema of a record type (or of all of them)")
    p.add_argument("record", nargs="?", help="a record type: click, rating, item, ... (default: all)")
    p.add_argument("--write", metavar="DIR", help="write one <record>.json per type into DIR")
    p.add_argument("--markdown", action="store_true", help="print the README reference tables")
    s = add("serve", cmd_serve, "the HTTP read API: /recommend, /similar, POST /events, /metrics")
    s.add_argument("--host", help="listen address (default: STREAMREC_SERVE_HOST)")
    s.add_argument("--port", type=int, help="port (default: STREAMREC_SERVE_PORT)")
