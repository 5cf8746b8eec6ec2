"""Logging set-up shared by every process: plain text for people, JSON lines for log pipelines.

>>> import logging
>>> line = JsonFormatter().format(logging.LogRecord("streamrec.worker", logging.INFO, __file__, 1,
...                                                 "learned %d", (5,), None))
>>> import json; {k: json.loads(line)[k] for k in ("level", "logger", "message")}
{'level': 'INFO', 'logger': 'streamrec.worker', 'message': 'learned 5'}
"""

from __future__ import annotations

import json
import logging
import sys


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def error(msg: str) -> None:
    """The one shape of a command's error line, for every subcommand module (``streamrec.cli*``)."""
    print(f"streamrec: error: {msg}", file=sys.stderr)


def configure(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
