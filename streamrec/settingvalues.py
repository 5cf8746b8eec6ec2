"""Parsers for one settings value each: a raw environment string in, a typed, checked value out.

Why a module of their own: :class:`~streamrec.settings.Settings` names each variable, its default
and its parser; the parsers themselves are plain functions that raise ``ValueError`` with what is
wrong (the settings object prefixes the variable's name and reports every bad one at once).

>>> integer(1, 64)("3"), boolean("Yes"), choice("a", "b")("b")
(3, True, 'b')
>>> integer(1, 64)("0")
Traceback (most recent call last):
ValueError: 0 is outside [1, 64]
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse


def _bounded(convert: Callable[[str], float], what: str, raw: str, lo: float, hi: float):
    try:
        value = convert(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not {what}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{value} is outside [{lo}, {hi}]")
    return value


def integer(lo: int, hi: int) -> Callable[[str], int]:
    return lambda raw: _bounded(int, "an integer", raw, lo, hi)


def real(lo: float, hi: float) -> Callable[[str], float]:
    """
    >>> real(0.0, 1.0)("x")
    Traceback (most recent call last):
    ValueError: 'x' is not a number
    """
    return lambda raw: _bounded(float, "a number", raw, lo, hi)


def hostport(raw: str) -> str:
    for part in raw.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{raw!r} is not a comma-separated list of host:port")
    return raw


def redis_url(raw: str) -> str:
    if urlparse(raw).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{raw!r} is not a redis://, rediss:// or unix:// URL")
    return raw


def boolean(raw: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``; any case)."""
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{raw!r} is not true or false")


def text(raw: str) -> str:
    return raw


class Secret(str):
    """A string that never shows itself in reprs, logs or `streamrec settings`.

    >>> Secret("hunter2"), str(Secret("hunter2")) == "hunter2"
    (<secret>, True)
    """

    def __repr__(self) -> str:
        return "<secret>" if self else "''"


def redact_url(url: str) -> str:
    """``url`` with any password in it replaced by ``<secret>``, for every message that names it.

    >>> redact_url("redis://recs:s3cret@cache:6379/0"), redact_url("rediss://:p%40ss@h/0")
    ('redis://recs:<secret>@cache:6379/0', 'rediss://:<secret>@h/0')
    >>> redact_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    return re.sub(r"^([a-z][a-z0-9+.-]*://[^/@:]*):[^@/]*@", r"\1:<secret>@", url, flags=re.I)


def secret(raw: str) -> Secret:
    return Secret(raw)


def path(raw: str) -> Path:
    return Path(raw).expanduser()


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"{raw!r} is not one of {', '.join(options)}")
        return raw

    return parse


#: the blend's named signals, one field each in ``streamrec.streams.ranking.BlendWeights``
#: (defined here so that parsing settings does not import the model code)
SIGNALS = ("cooccur", "mf", "popularity", "embedding", "fresh", "recent", "tags", "transitions")


def weights(raw: str) -> tuple[tuple[str, float], ...]:
    """``name=weight`` pairs, comma-separated, over the blend's named signals.

    >>> weights("popularity=0.3, embedding=0.9")
    (('popularity', 0.3), ('embedding', 0.9))
    >>> weights("popularty=0.3")
    Traceback (most recent call last):
    ValueError: 'popularty' is not a signal (signals: cooccur, mf, popularity, embedding, fresh, recent, tags, transitions)
    """
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, value = (x.strip() for x in part.partition("="))
        if not sep:
            raise ValueError(f"{part!r} is not name=weight")
        if name not in SIGNALS:
            raise ValueError(f"{name!r} is not a signal (signals: {', '.join(SIGNALS)})")
        if name in out:
            raise ValueError(f"{name!r} is given twice")
        out[name] = real(0.0, 1000.0)(value)
    return tuple(out.items())


def signal_names(raw: str) -> tuple[str, ...]:
    """Blend signal names, comma-separated.

    >>> signal_names("transitions, mf")
    ('transitions', 'mf')
    >>> signal_names("transition")
    Traceback (most recent call last):
    ValueError: 'transition' is not a signal (signals: cooccur, mf, popularity, embedding, fresh, recent, tags, transitions)
    """
    out = tuple(dict.fromkeys(filter(None, (p.strip() for p in raw.split(",")))))
    for name in out:
        if name not in SIGNALS:
            raise ValueError(f"{name!r} is not a signal (signals: {', '.join(SIGNALS)})")
    return out


def skips(raw: str) -> frozenset:
    """``topic:partition:offset`` entries, comma-separated: messages every worker passes over.

    >>> sorted(skips("events.clicks:0:41, t.items.enrich:2:7"))
    [('events.clicks', 0, 41), ('t.items.enrich', 2, 7)]
    >>> skips("events.clicks:0")
    Traceback (most recent call last):
    ValueError: 'events.clicks:0' is not topic:partition:offset
    """
    out = set()
    for part in filter(None, (p.strip() for p in raw.split(","))):
        topic, _, rest = part.partition(":")
        partition, _, offset = rest.partition(":")
        if not (topic and partition.isdigit() and offset.isdigit()):
            raise ValueError(f"{part!r} is not topic:partition:offset")
        out.add((topic, int(partition), int(offset)))
    return frozenset(out)
