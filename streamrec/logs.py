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


#: the configured secrets (set by :func:`configure`): masked in every log line and error line
_SECRETS: list[str] = []


def scrub(text: str) -> str:
    """``text`` with every configured secret replaced by ``<secret>``.

    >>> _SECRETS[:] = ["hunter2"]; scrub("auth hunter2 failed"); _SECRETS.clear()
    'auth <secret> failed'
    """
    for secret in _SECRETS:
        text = text.replace(secret, "<secret>")
    return text


class _Scrubbing(logging.Formatter):
    """Formats with the wrapped formatter, then masks the secrets (messages, arguments, tracebacks)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return scrub(self.inner.format(record))


def error(msg: str) -> None:
    """The one shape of a command's error line, for every subcommand module (``streamrec.cli*``)."""
    print(f"streamrec: error: {scrub(msg)}", file=sys.stderr)


#: loggers of libraries kept at WARNING unless the level is DEBUG
QUIET_LIBRARIES = ("faiss", "faiss.loader")


def configure(level: str, fmt: str = "text", secrets: list[str] = ()) -> None:
    """Log to stderr as text or JSON; no secret in ``secrets`` ever reaches a log line."""
    _SECRETS[:] = sorted(set(secrets), key=len, reverse=True)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        inner: logging.Formatter = JsonFormatter()
    else:
        inner = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(_Scrubbing(inner))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # libraries that narrate their own start-up at INFO (faiss: which CPU build it loads) speak
    # only when asked for DEBUG, so a command's output stays its own
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
