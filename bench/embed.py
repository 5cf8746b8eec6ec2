"""``streamrec bench embed``: items/s through the embedding worker, end to end, vs the bare encoder.

What is measured, and why it is an honest end-to-end number:

- **worker**: the real :class:`~streamrec.workers.embed.EmbedWorker` runs as its faust agent
  (:func:`streamrec.workers.agents.run`) in a thread of this process under a fresh topic prefix,
  consumer group and Redis key prefix, with its real batching, Redis cache (GET/SET pipelines per
  batch) and Kafka transactions. For each round, requests are published to ``items.enrich`` and
  the clock runs from the first publish until a separate group-less consumer, reading committed
  records only (as every consumer of the output topics must), has read the round's last embedding
  back from ``items.embeddings``: consume, decode, cache round trips, encoding, produce,
  the transaction commit and delivery are all inside it. Requests go straight to ``items.enrich``: in production the stream
  worker turns ``catalog.items`` into them, but that is the stream worker's cost.
- **raw**: ``Encoder.encode`` alone on the same texts, same batch size, in a thread of its own.

The N unique ~30-word texts (no cache hits) are split into rounds of eight batches, and raw and
worker rounds alternate (ABBA order). This machine may be shared, and background load comes and
goes in bursts of seconds: alternating short rounds exposes both sides to the same load, where
one long run of each compares two different machines. The worker shares the encoder already
loaded for raw, and joins its group during an untimed warm-up round, so neither number includes
model loading or group start-up. In-process costs the worker nothing: librdkafka does its I/O in
its own threads, aiokafka runs on the agent's event loop, and torch releases the GIL while it
computes.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid

from streamrec.schemas.events import EnrichRequest, Item
from streamrec.settings import Settings

WORDS = """
ancient city river night storm captain ship island forest mountain village secret letter family
brother sister mother father friend stranger detective murder mystery war soldier army battle
king queen prince castle dragon magic witch wizard spell curse ghost house haunted shadow dream
robot planet star galaxy empire rebel pilot engine machine signal code computer hacker network
money bank heist thief prison escape chase car road desert ocean storm winter summer music band
singer dancer painter artist school teacher student love wedding divorce secret past memory
journey quest treasure map gold silver sword knight horse farm harvest kitchen chef recipe bread
garden flower tree doctor hospital virus cure scientist lab experiment future time machine clock
tower bridge train station airport storm flood fire earthquake volcano lost found broken brave
quiet loud dark bright cold warm young old small giant hidden forgotten cursed sacred wild gentle
""".split()
ROUND_BATCHES = 8


def synthetic_requests(n: int, seed: int = 7, words: int = 30, ts: float | None = None,
                       ) -> list[EnrichRequest]:  # fmt: skip
    """``n`` requests with distinct ~``words``-word texts (distinct content hashes: no cache hits).

    >>> reqs = synthetic_requests(3, ts=1.7e9)
    >>> len({r.content_hash for r in reqs}), len(reqs[0].text.split())
    (3, 30)
    """
    rng = random.Random(seed)
    ts = time.time() if ts is None else ts
    out, seen = [], set()
    while len(out) < n:
        text = " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."
        if text in seen:
            continue
        seen.add(text)
        item = Item(f"bench{len(out)}", f"Item {len(out)}", text, ts=ts)
        out.append(EnrichRequest.for_item(item, ts=ts))
    return out


def time_raw(encoder, texts: list[str], batch_size: int) -> float:
    """Seconds ``encoder.encode`` takes alone, in a thread of its own like the worker's."""
    elapsed: list[float] = []

    def work() -> None:
        started = time.perf_counter()
        encoder.encode(texts, batch_size=batch_size)
        elapsed.append(time.perf_counter() - started)

    thread = threading.Thread(target=work, name="raw-encoder")
    thread.start()
    thread.join()
    if not elapsed:
        raise RuntimeError("the raw encoder run failed (see the traceback above)")
    return elapsed[0]


class WorkerSession:
    """A running EmbedWorker on fresh topics and keys, and a reader of what it produces."""

    def __init__(self, settings: Settings, encoder):
        from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

        from streamrec.connect import kafka_config
        from streamrec.schemas.admin import admin_for, create_topics
        from streamrec.schemas.topics import Topics
        from streamrec.workers.embed import EmbedWorker

        prefix = f"bench{uuid.uuid4().hex[:8]}."
        self.settings = settings.replace(topic_prefix=prefix, redis_prefix=prefix,
                                         enrich_group_id=f"{prefix}enrich",
                                         state_dir=settings.state_dir / "bench")  # fmt: skip
        self.prefix, self.topics = prefix, Topics(prefix=prefix)
        self.admin = admin_for(settings)
        create_topics(self.admin, self.topics, settings.partitions, settings.replication)
        base = kafka_config(settings)
        self.producer = Producer({**base, "acks": "all", "linger.ms": 5})
        self.reader = Consumer({**base, "group.id": f"{prefix}reader", "enable.auto.commit": False,
                                "isolation.level": "read_committed"})  # as consumers must read
        info = self.reader.list_topics(self.topics.embeddings, timeout=10).topics[self.topics.embeddings]
        self.reader.assign([TopicPartition(self.topics.embeddings, p, OFFSET_BEGINNING)
                            for p in info.partitions])  # fmt: skip
        self.worker = EmbedWorker(self.settings, encoder=encoder)
        self.failure: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, name="embed-worker")
        self.thread.start()

    def _work(self) -> None:
        from streamrec.workers import agents

        try:
            agents.run(self.worker, stop=self.stop)
        except BaseException as exc:  # reported by the main thread
            self.failure.append(exc)

    def round(self, requests: list[EnrichRequest], on_item=None) -> float:
        """Seconds from publishing ``requests`` to reading back the embedding of every one."""
        from streamrec.schemas.codec import encode

        payloads = [(r.item.encode(), encode(r)) for r in requests]
        wanted = {key for key, _ in payloads}
        started = time.perf_counter()
        for key, value in payloads:
            self.producer.produce(self.topics.enrich, key=key, value=value)
        self.producer.flush(30)
        deadline = time.monotonic() + 300
        while wanted:
            if self.failure:
                raise self.failure[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(wanted)} embeddings still missing after 300s")
            for msg in self.reader.consume(1000, 0.05):
                if msg.error() is None and msg.key() in wanted:
                    wanted.discard(msg.key())
                    if on_item:
                        on_item(1)
        return time.perf_counter() - started

    def close(self) -> None:
        from streamrec.connect import redis_client

        self.stop.set()
        self.thread.join(120)
        self.reader.close()
        self.admin.delete_topics([t.name for t in self.topics.specs()], operation_timeout=30)
        client = redis_client(self.settings)
        keys = list(client.scan_iter(f"{self.prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        if self.failure:
            raise self.failure[0]


def main(settings: Settings, items: int = 2000, json_path: str | None = None) -> int:
    from tqdm import tqdm

    from streamrec.workers.common import request_text
    from streamrec.workers.embed import load_encoder

    print("loading the encoder...", file=sys.stderr)
    encoder = load_encoder(settings)
    size = settings.embed_batch_size
    every = synthetic_requests(items + size)
    warmup, requests = every[:size], every[size:]
    encoder.encode([request_text(r) for r in warmup], batch_size=size)  # allocator, kernels, caches
    per_round = ROUND_BATCHES * size
    rounds = [requests[i : i + per_round] for i in range(0, items, per_round)]
    raw_s = worker_s = 0.0
    session = WorkerSession(settings, encoder)
    try:
        session.round(warmup)  # joins the group; untimed
        with tqdm(total=2 * items, desc="raw + worker", unit=" items", file=sys.stderr) as bar:
            for n, batch in enumerate(rounds):
                texts = [request_text(r) for r in batch]
                for side in ("raw", "worker") if n % 4 in (0, 3) else ("worker", "raw"):  # ABBA
                    if side == "raw":
                        raw_s += time_raw(encoder, texts, size)
                        bar.update(len(batch))
                    else:
                        worker_s += session.round(batch, bar.update)
    finally:
        session.close()
    raw, worker = items / raw_s, items / worker_s
    result = {"items": items, "batch_size": size, "rounds": len(rounds), "device": encoder.device,
              "model": encoder.name, "worker_items_per_s": round(worker, 2),
              "raw_items_per_s": round(raw, 2), "ratio": round(worker / raw, 4)}  # fmt: skip
    print(f"{'':<32}{'items/s':>10}")
    print(f"{'raw encoder (batch ' + str(size) + ')':<32}{raw:>10.1f}")
    print(f"{'embedding worker, end to end':<32}{worker:>10.1f}")
    print(f"{'ratio worker / raw':<32}{worker / raw:>10.3f}   {items} items in {len(rounds)} "
          f"alternating rounds, {encoder.name} on {encoder.device}")  # fmt: skip
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0
