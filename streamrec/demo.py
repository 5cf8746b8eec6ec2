"""The demo behind ``make demo``: synthetic shop, real Kafka and Redis, lists you can read back.

It publishes a synthetic catalogue, lets the stream worker queue it for enrichment and the LLM
workers embed and tag it, then publishes a stream of clicks and ratings (users with known tastes)
and runs the stream worker over them (every worker in burst mode, as in tests), and prints a
few users' lists next to what each user actually likes, then how to read any list yourself.
Run it after ``streamrec up`` and ``streamrec topics create`` (``make demo`` does all three).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from streamrec.connect import redis_client
from streamrec.schemas.codec import from_mapping
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.publisher import Publisher
from streamrec.schemas.reader import RecsReader
from streamrec.settings import Settings
from streamrec.synth import SynthConfig, generate


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def _run_worker(kind: str) -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "streamrec", "worker", kind, "--burst"])
    if result.returncode != 0:
        raise SystemExit(f"the {kind} worker failed (exit {result.returncode})")
    print(f"   {kind} worker done in {time.monotonic() - started:.1f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--no-llm", action="store_true", help="skip the embedding and tag workers")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    # a fixed seed: running the demo again replays the same shop, so the tastes stay consistent
    data = generate(SynthConfig(n_users=args.users, n_items=args.items, n_events=args.events, seed=7))

    with Publisher.from_settings(settings) as pub:
        _step(f"publishing a catalogue of {len(data.items)} items to Kafka")
        pub.publish_many(from_mapping(r) for r in data.items)
    _step("stream worker: take in the catalogue, queue the new items for enrichment")
    _run_worker("streams")
    if not args.no_llm:
        _step("LLM workers: embeddings and tags for the queued items (asynchronous, off the read path)")
        _run_worker("embed")
        _run_worker("tag")
    with Publisher.from_settings(settings) as pub:
        _step(f"publishing {len(data.events)} clicks and ratings")
        pub.publish_many(from_mapping(r) for r in data.events)
    print(f"   {pub.delivered} records acknowledged by the broker")
    _step("stream worker: learn every event (and the enrichments), write lists to Redis")
    _run_worker("streams")

    _step("reading lists back from Redis")
    reader = RecsReader(redis_client(settings), RedisKeys(prefix=settings.redis_prefix))
    hits = total = 0
    for user in sorted(data.user_topics)[:5]:
        likes = data.user_topics[user]
        recs = reader.get(user)
        top = recs.items[:10]
        on_taste = sum(data.item_topic.get(i) in likes for i, _ in top)
        hits, total = hits + on_taste, total + len(top)
        kind = "personal" if recs.personal else "fallback"
        print(f"   {user} likes {', '.join(likes)}: {on_taste}/{len(top)} of the top 10 match "
              f"({kind}, model {recs.list.model_version if recs.list else '-'})")  # fmt: skip
        print("      " + ", ".join(f"{i} ({data.item_topic.get(i, '?')})" for i, _ in top[:5]))
    print(f"\n   {hits}/{total} recommended items match the users' tastes")
    print("\nRead any list yourself:  streamrec recs u7    (or GET rec:u7 with any Redis client)")
    return 0 if total and hits / total > 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
