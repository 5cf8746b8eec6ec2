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
    if args.health:
        return serve_health(args.port or settings.serve_port)
    from streamrec.serve import run

    run(settings, host=args.host, port=args.port)
    return 0


def serve_health(port: int, timeout_s: float = 5.0) -> int:
    """0 when the local ``streamrec serve`` answers ``/healthz`` with 200 (container checks)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout_s) as r:
            print(r.read().decode(errors="replace"))
            return 0
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


def add_commands(add) -> None:
    """Register ``schema`` and ``serve`` with the main parser's ``add(name, func, help)``."""
    p = add("schema", cmd_schema, "print the JSON Schema of a record type (or of all of them)")
    p.add_argument("record", nargs="?", help="a record type: click, rating, item, ... (default: all)")
    p.add_argument("--write", metavar="DIR", help="write one <record>.json per type into DIR")
    p.add_argument("--markdown", action="store_true", help="print the README reference tables")
    s = add("serve", cmd_serve, "the HTTP read API: /recommend, /similar, POST /events, /metrics")
    s.add_argument("--host", help="listen address (default: STREAMREC_SERVE_HOST)")
    s.add_argument("--port", type=int, help="port (default: STREAMREC_SERVE_PORT)")
    s.add_argument("--health", action="store_true",
                   help="exit 0 if the local server's /healthz answers 200, else 1 (container checks)")
