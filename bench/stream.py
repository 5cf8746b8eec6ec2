"""``streamrec bench stream``: throughput and freshness of the running stream worker.

Two measurements, each against the real broker and Redis, on fresh topics and keys:

1. **Throughput.** N synthetic events are published first; then a :class:`StreamWorker` (the same
   class the ``worker streams`` command runs, in this process so its own clock can be read) works
   through them with its normal loop, refreshes and checkpoints included. events/s is the number
   learned divided by the time from the first to the last event learned. The yardstick is River's
   bare ``learn_one`` rate for the same model (same factors, same negatives per positive), measured
   on the same events in the same run, so the ratio is meaningful on a noisy shared machine.
2. **Freshness.** A worker runs as its own process with the configured refresh interval; probe
   clicks for distinct users are published at random moments over two intervals, and for each the
   time from publishing to a list in Redis generated after it is recorded; p50 and p99 are reported.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from streamrec.connect import redis_client
from streamrec.schemas.admin import admin_for, create_topics
from streamrec.schemas.codec import decode, from_mapping
from streamrec.schemas.events import Click, RecommendationList
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.publisher import Publisher
from streamrec.schemas.topics import Topics
from streamrec.settings import Settings
from streamrec.synth import SynthConfig, generate


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile.

    >>> _quantile([1.0, 2.0, 3.0, 4.0], 0.5), _quantile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))]


def _progress(msg: str) -> None:
    print(f"[bench stream] {msg}", file=sys.stderr, flush=True)


def _fresh(settings: Settings, tmp: Path, tag: str) -> Settings:
    prefix = f"bench{uuid.uuid4().hex[:8]}.{tag}."
    s = settings.replace(topic_prefix=prefix, redis_prefix=prefix, group_id=f"{prefix}stream",
                         checkpoint_dir=tmp / tag)  # fmt: skip
    create_topics(admin_for(s), Topics(prefix), s.partitions, s.replication)
    return s


def measure_throughput(settings: Settings, n_events: int, tmp: Path) -> dict:
    from streamrec.streams.mf_river import bare_river_learn_rate
    from streamrec.streams.worker import StreamWorker, build_recommender

    data = generate(SynthConfig(n_users=max(50, n_events // 100), n_items=2000, n_events=n_events))
    s = _fresh(settings, tmp, "throughput")
    _progress(f"publishing {n_events} events")
    with Publisher.from_settings(s) as pub:
        pub.publish_many(from_mapping(r) for r in data.events)
    river = bare_river_learn_rate(data.events, build_recommender(s).config.mf)
    _progress(f"River bare learn_one: {river:,.0f} events/s; starting the worker")
    worker = StreamWorker(s)
    first = last = None
    deadline = time.monotonic() + 600
    next_refresh = time.monotonic() + s.refresh_interval_s
    while worker.stats.learned < n_events and time.monotonic() < deadline:
        if worker.poll() and first is None:
            first = time.perf_counter()
        if time.monotonic() >= next_refresh:
            worker.refresh()
            next_refresh = time.monotonic() + s.refresh_interval_s
    last = time.perf_counter()
    learned = worker.stats.learned
    worker.refresh()
    worker.close()
    if learned < n_events:
        raise RuntimeError(f"the worker learned only {learned} of {n_events} events in 600 s")
    rate = learned / (last - first)
    return {"events": learned, "events_per_s": rate, "river_learn_one_per_s": river,
            "ratio": rate / river}  # fmt: skip


def measure_freshness(settings: Settings, probes: int, tmp: Path) -> dict:
    s = _fresh(settings, tmp, "freshness")
    keys = RedisKeys(prefix=s.redis_prefix)
    data = generate(SynthConfig(n_users=probes, n_items=500, n_events=probes * 20, seed=5))
    env = {**os.environ, "STREAMREC_TOPIC_PREFIX": s.topic_prefix,
           "STREAMREC_REDIS_PREFIX": s.redis_prefix, "STREAMREC_GROUP_ID": s.group_id,
           "STREAMREC_CHECKPOINT_DIR": str(s.checkpoint_dir),
           "STREAMREC_REFRESH_INTERVAL_S": str(s.refresh_interval_s),
           "STREAMREC_EARLY_REFRESH_S": str(s.early_refresh_s), "STREAMREC_LOG_LEVEL": "WARNING"}  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-m", "streamrec", "worker", "streams"], env=env)
    client = redis_client(s)
    lags: list[float] = []
    try:
        with Publisher.from_settings(s) as pub:  # warm-up history for every user
            pub.publish_many(from_mapping(r) for r in data.events)
        # wait until the worker has caught up with the warm-up (every user has a list)
        users = sorted(data.user_topics)
        deadline = time.monotonic() + 120 + 2 * s.refresh_interval_s
        while not all(client.exists(keys.recs(u)) for u in users):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the worker did not write the warm-up lists")
            time.sleep(0.2)
        rng = random.Random(7)
        span = 2 * s.refresh_interval_s
        schedule = sorted((rng.uniform(0, span), u) for u in users)
        items = [r["item"] for r in data.items]
        pending: dict[str, float] = {}
        start = time.time()
        _progress(f"{probes} probes over {span:.0f}s (refresh every {s.refresh_interval_s}s)")
        with Publisher.from_settings(s) as pub:
            while schedule or pending:
                now = time.time()
                while schedule and start + schedule[0][0] <= now:
                    _, user = schedule.pop(0)
                    pub.publish(Click(user=user, item=rng.choice(items), ts=now))
                    pub.flush()
                    pending[user] = time.time()
                raws = client.mget([keys.recs(u) for u in pending]) if pending else []
                for (user, sent), raw in zip(list(pending.items()), raws):
                    if raw and decode(raw, RecommendationList).generated_at >= sent:
                        lags.append(time.time() - sent)
                        del pending[user]
                if time.time() - start > span + 3 * s.refresh_interval_s + 60:
                    raise RuntimeError(f"{len(pending)} probes never saw a fresh list")
                time.sleep(0.02)
    finally:
        worker.terminate()
        worker.wait(60)
    return {"freshness_p50_s": _quantile(lags, 0.5), "freshness_p99_s": _quantile(lags, 0.99),
            "refresh_interval_s": s.refresh_interval_s, "early_refresh_s": s.early_refresh_s,
            "probes": len(lags)}  # fmt: skip


def run(settings: Settings, n_events: int, probes: int, json_path: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="streamrec-bench-") as tmp:
        result = measure_throughput(settings, n_events, Path(tmp))
        result.update(measure_freshness(settings, probes, Path(tmp)))
    rows = [
        ("events learned", f"{result['events']:,}"),
        ("worker events/s", f"{result['events_per_s']:,.0f}"),
        ("River bare learn_one events/s", f"{result['river_learn_one_per_s']:,.0f}"),
        ("ratio worker / River", f"{result['ratio']:.2f}"),
        ("refresh interval (s)", f"{result['refresh_interval_s']:g}"),
        ("early refresh (s, 0 = off)", f"{result['early_refresh_s']:g}"),
        ("freshness p50 (s)", f"{result['freshness_p50_s']:.2f}"),
        ("freshness p99 (s)", f"{result['freshness_p99_s']:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v:>12}" for k, v in rows))
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return result
