"""Replay any event log: a file in the wire format, or the deployment's own topics.

So that a team evaluates on its own data, not on MovieLens: ``bench replay --dataset events --path
FILE`` reads JSON lines or CSV in the format ``streamrec publish`` takes (catalogue records, clicks
and ratings with timestamps; parsed by :mod:`streamrec.schemas.lines`, so a file that publishes
also replays), and ``--from-topics`` reads the deployment's ``catalog.items``, ``events.clicks``
and ``events.ratings`` from their earliest retained offsets.

Both become a :class:`~streamrec.bench.replay_data.Dataset`: the catalogue is the last record of
every item (a deleted item leaves it), published before the events as the replay protocol does;
clicks and ratings are interactions in timestamp order (file or offset order on ties), each
learned as what it is. A line or message that does not parse is counted and named, never fatal:
the replay reports how many were skipped and the first few reasons.

>>> data = dataset_from_records("log", [
...     Item("i1", "Heat", ts=1.0), Item("i2", "Ran", ts=1.0), Item("i2", deleted=True, ts=2.0),
...     Rating("u1", "i1", 4.0, ts=5.0), Click("u1", "i3", ts=4.0)])
>>> [it.item for it in data.items], [(e.item, e.rating) for e in data.events], data.kind
(['i1'], [('i3', None), ('i1', 4.0)], 'mixed')
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from streamrec.bench.replay_data import Dataset, Event, _finish, sort_events
from streamrec.schemas.events import Click, Item, Rating

#: this many rejected lines are named in the log; the rest only counted
SHOW_REJECTED = 5


def _log(msg: str) -> None:
    print(f"[bench replay] {msg}", file=sys.stderr, flush=True)


def dataset_from_records(name: str, records: Iterable[object], meta: dict | None = None) -> Dataset:
    """The dataset of a stream of records (``Item``, ``Click``, ``Rating``; others are ignored)."""
    catalogue: dict[str, Item] = {}
    events: list[Event] = []
    kinds = set()
    for record in records:
        kind = type(record)
        if kind is Item:
            if record.deleted:
                catalogue.pop(record.item, None)
            else:
                catalogue[record.item] = record
        elif kind is Click:
            events.append(Event(record.user, record.item, record.ts))
            kinds.add("click")
        elif kind is Rating:
            events.append(Event(record.user, record.item, record.ts, record.rating))
            kinds.add("rating")
    events = sort_events(events)
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    first = events[0].ts if events else float("inf")
    # the protocol publishes the catalogue first: an item's record never postdates the stream start
    items = [it if it.ts <= first else Item(it.item, it.title, it.text, it.attributes, ts=first)
             for it in catalogue.values()]  # fmt: skip
    return _finish(name, items, events, kind, dict(meta or {}))


def load_events(path: Path | str, fmt: str | None = None) -> Dataset:
    """A JSON-lines or CSV event log (format from the extension unless ``fmt``)."""
    from streamrec.schemas.lines import Rejected, guess_format, parse_lines

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"event log {path} not found (JSON lines or CSV in the wire format)")
    fmt = fmt or guess_format(path.name)
    rejected = []

    def good():
        with open(path, encoding="utf-8", newline="") as f:
            for out in parse_lines(f, fmt=fmt, now=0.0):
                if isinstance(out, Rejected):
                    rejected.append(out)
                else:
                    yield out

    data = dataset_from_records(path.stem or "events", good(), {"layout": f"events-{fmt}"})
    report_rejected(rejected, f"{path.name}: line")
    data.meta["rejected"] = len(rejected)
    if not data.events:
        raise ValueError(f"{path}: no clicks or ratings to replay")
    return data


def report_rejected(rejected: list, where: str) -> None:
    if not rejected:
        return
    _log(f"skipped {len(rejected):,} record(s) that do not parse:")
    for r in rejected[:SHOW_REJECTED]:
        _log(f"  {where} {r.line}: {r.reason}")


def load_topics(settings, timeout_s: float = 60.0) -> Dataset:
    """The deployment's catalogue and event topics, from their earliest retained offsets to their
    ends now (read with an unnamed consumer that commits nothing, so no group's position moves)."""
    from types import SimpleNamespace

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from streamrec.connect import check_kafka, kafka_config
    from streamrec.schemas.events import DeadLetter
    from streamrec.schemas.topics import Topics
    from streamrec.streams.ingest import Boundary

    import time

    topics = Topics(prefix=settings.topic_prefix)
    config = kafka_config(settings)
    metadata = check_kafka(config).list_topics(timeout=30)
    names = [topics.items, topics.clicks, topics.ratings]
    missing = [t for t in names if t not in metadata.topics]
    if len(missing) == len(names):
        raise ValueError(f"none of the topics {', '.join(names)} exists on {settings.kafka_bootstrap}")
    consumer = Consumer({**config, "group.id": "streamrec-bench-replay", "enable.auto.commit": False,
                        "enable.partition.eof": False})  # fmt: skip
    ends: dict[tuple[str, int], int] = {}
    parts = []
    for t in names:
        if t in missing:
            continue
        for p in metadata.topics[t].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            if high > low:
                ends[(t, p)] = high
                parts.append(TopicPartition(t, p, OFFSET_BEGINNING))
    boundary, records, rejected, n = Boundary(topics), [], [], 0
    try:
        consumer.assign(parts)
        done: set = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise RuntimeError(f"reading the topics took over {timeout_s:.0f}s ({n:,} messages read)")
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                tp = (msg.topic(), msg.partition())
                n += 1
                if msg.offset() + 1 >= ends.get(tp, 0):
                    done.add(tp)
                if msg.offset() >= ends.get(tp, 0):
                    continue
                record = boundary.decode(msg.topic(), msg.key(), msg.value(), time.time())
                if type(record) is DeadLetter:
                    rejected.append(SimpleNamespace(line=f"{msg.topic()}[{msg.partition()}]@{msg.offset()}",
                                                    reason=record.reason))  # fmt: skip
                else:
                    records.append(record)
    finally:
        consumer.close()
    report_rejected(rejected, "message")
    # the catalogue keeps its topic order; events are sorted by time (ties: topic order)
    data = dataset_from_records(f"topics:{settings.topic_prefix or 'default'}", records,
                                {"layout": "topics", "messages": n, "rejected": len(rejected)})  # fmt: skip
    if not data.events:
        raise ValueError(f"no clicks or ratings on {topics.clicks} / {topics.ratings} to replay")
    return data
