"""``streamrec bench agents``: a faust agent against the batched confluent-kafka loop, on the stream
worker's per-event path.

Why the stream worker is not a faust agent is a measured choice; this re-measures it. N synthetic
clicks and ratings are published once to fresh topics; then each path reads all of them from the
beginning, in its own fresh consumer group, and does the stream worker's per-event work on each
(decode and validate at the boundary, then ``learn_click`` / ``learn_rating`` on a fresh online
model built from the same settings)::

    confluent-kafka   Consumer.consume(1000) batches, as streams/worker.py reads
    faust, per event  @app.agent: async for event in stream.events()
    faust, take       @app.agent: async for batch in stream.take_events(1000, within=0.05)

messages/s is N over the time from the first message handled to the last, so start-up and group
joins are left out. The paths run in turn, ``--rounds`` times, in one process on the same
messages; the table gives each path's best round and its ratio to the confluent-kafka loop's
best, which is what makes the numbers comparable on a noisy shared machine.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from pathlib import Path

from streamrec.schemas.admin import admin_for, create_topics
from streamrec.schemas.codec import from_mapping
from streamrec.schemas.events import Click, Rating
from streamrec.schemas.publisher import Publisher
from streamrec.schemas.topics import Topics
from streamrec.settings import Settings
from streamrec.synth import SynthConfig, generate

BATCH = 1000


def _progress(msg: str) -> None:
    print(f"[bench agents] {msg}", file=sys.stderr, flush=True)


class PerEvent:
    """The stream worker's per-event work on one message; counts and times what it handled."""

    def __init__(self, settings: Settings, n: int):
        from streamrec.streams.ingest import Boundary
        from streamrec.streams.worker import build_recommender

        self.boundary = Boundary(Topics(prefix=settings.topic_prefix))
        self.model = build_recommender(settings)
        self.n, self.count = n, 0
        self.first = self.last = 0.0

    def __call__(self, topic: str, key, value) -> None:
        if self.count == 0:
            self.first = time.perf_counter()
        record = self.boundary.decode(topic, key, value, 0.0)
        kind = type(record)
        if kind is Click:
            self.model.learn_click(record.user, record.item, record.ts)
        elif kind is Rating:
            self.model.learn_rating(record.user, record.item, record.rating, record.ts)
        self.count += 1
        if self.count == self.n:
            self.last = time.perf_counter()

    @property
    def rate(self) -> float:
        return self.n / (self.last - self.first)


def run_confluent(settings: Settings, topics: list[str], work: PerEvent, timeout_s: float) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from streamrec.connect import kafka_config

    consumer = Consumer({**kafka_config(settings), "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
    metadata = consumer.list_topics(timeout=30)
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics
                     for p in metadata.topics[t].partitions])  # fmt: skip
    deadline = time.monotonic() + timeout_s
    try:
        while work.count < work.n and time.monotonic() < deadline:
            for msg in consumer.consume(BATCH, 0.1):
                if msg.error() is None:
                    work(msg.topic(), msg.key(), msg.value())
    finally:
        consumer.close()


def run_faust(settings: Settings, topics: list[str], work: PerEvent, take: bool, timeout_s: float) -> None:
    import faust

    from streamrec.workers.agents import broker_urls, credentials, quiet_faust

    quiet_faust(settings)

    app = faust.App(f"bench-{uuid.uuid4().hex[:8]}", broker=broker_urls(settings.kafka_bootstrap),
                    broker_credentials=credentials(settings), web_enabled=False,
                    topic_disable_leader=True, topic_allow_declare=False, store="memory://",
                    consumer_auto_offset_reset="earliest",
                    datadir=str(settings.state_dir / "bench" / "faust"))  # fmt: skip
    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")  # fmt: skip
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    class Worker(faust.Worker):
        def install_signal_handlers(self) -> None:  # the benchmark stops it, not a signal
            pass

        def shutdown(self) -> None:
            self._schedule_shutdown(signal.SIGTERM)

    worker = Worker(app, loop=loop, quiet=True, override_logging=False, redirect_stdouts=False)
    deadline = time.monotonic() + timeout_s

    @app.agent(source)
    async def per_event(stream):
        if take:
            async for events in stream.take_events(BATCH, within=0.05):
                for e in events:
                    work(e.message.topic, e.message.key, e.message.value)
        else:
            async for e in stream.events():
                work(e.message.topic, e.message.key, e.message.value)

    @app.timer(0.1)
    async def done() -> None:
        if work.count >= work.n or time.monotonic() > deadline:
            worker.shutdown()

    (settings.state_dir / "bench").mkdir(parents=True, exist_ok=True)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    finally:
        asyncio.set_event_loop(None)


PATHS = {
    "confluent-kafka, consume(1000) batches": lambda s, t, w, to: run_confluent(s, t, w, to),
    "faust agent, per event": lambda s, t, w, to: run_faust(s, t, w, False, to),
    "faust agent, take(1000)": lambda s, t, w, to: run_faust(s, t, w, True, to),
}


def measure(settings: Settings, n_events: int, rounds: int, timeout_s: float = 600) -> dict:
    prefix = f"bench{uuid.uuid4().hex[:8]}.agents."
    s = settings.replace(topic_prefix=prefix, redis_prefix=prefix)
    names = Topics(prefix)
    create_topics(admin_for(s), names, s.partitions, s.replication)
    data = generate(SynthConfig(n_users=max(50, n_events // 100), n_items=2000, n_events=n_events))
    _progress(f"publishing {len(data.events)} events to {s.partitions} partitions")
    with Publisher.from_settings(s) as pub:
        pub.publish_many(from_mapping(r) for r in data.events)
    n = len(data.events)
    rates: dict[str, list[float]] = {name: [] for name in PATHS}
    for r in range(rounds):
        for name, path in PATHS.items():
            work = PerEvent(s, n)
            path(s, [names.clicks, names.ratings], work, timeout_s)
            if work.count < n:
                raise RuntimeError(f"{name}: handled only {work.count} of {n} messages")
            rates[name].append(work.rate)
            _progress(f"round {r + 1}: {name}: {work.rate:,.0f} messages/s")
    best = {name: max(v) for name, v in rates.items()}
    reference = best[next(iter(PATHS))]
    return {"messages": n, "partitions": s.partitions, "rounds": rates, "best": best,
            "ratio": {name: v / reference for name, v in best.items()}}  # fmt: skip


def main(settings: Settings, n_events: int, rounds: int, json_path: str | None) -> int:
    result = measure(settings, n_events, rounds)
    width = max(len(k) for k in PATHS)
    print(f"{'path':<{width}}  {'messages/s':>12}  {'vs confluent':>12}")
    for name in PATHS:
        print(f"{name:<{width}}  {result['best'][name]:>12,.0f}  {result['ratio'][name]:>12.2f}")
    print(f"({result['messages']:,} messages, {result['partitions']} partitions, best of "
          f"{rounds} round(s) each)")  # fmt: skip
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0
