"""Shared helpers of the stream-worker integration tests: synthetic tastes, running workers as
real processes, reading their lists and checkpoints."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from streamrec.schemas.codec import decode
from streamrec.schemas.events import Click, RecommendationList
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.publisher import Publisher
from streamrec.streams.checkpoint import FileCheckpointStore
from streamrec.streams.recommender import Recommender

GROUPS = 4
ITEMS_PER_GROUP = 40
REFRESH_S = 1.0
TS = 1_700_000_000.0


def taste_events(n_users: int, per_user: int, seed: int = 1) -> list[Click]:
    """Users of group g click only items of group g (items i{g}_{j}); interleaved in time."""
    rng = random.Random(seed)
    events = []
    for u in range(n_users):
        g = u % GROUPS
        for _ in range(per_user):
            events.append(Click(user=f"u{u}", item=f"i{g}_{rng.randrange(ITEMS_PER_GROUP)}", ts=TS))
    rng.shuffle(events)
    return events


def group_of(item: str) -> int:
    return int(item[1 : item.index("_")])


def start_worker(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamrec", "worker", "streams", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return out + err


def wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"worker exited ({proc.returncode}) while waiting for {what}:\n{stop(proc)}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


def publish(stack, topics, records) -> None:
    with Publisher(stack.kafka_bootstrap, topics) as pub:
        for r in records:
            pub.publish(r)


def read_list(redis_client, prefix: str, user: str) -> RecommendationList | None:
    raw = redis_client.get(RedisKeys(prefix=prefix).recs(user))
    return decode(raw, RecommendationList) if raw else None


def wait_for_lists(redis_client, prefix: str, users, proc: subprocess.Popen | None = None,
                   timeout_s: float = 60) -> dict[str, RecommendationList]:  # fmt: skip
    """Every user's list, once all of them are in Redis."""
    return wait_for(
        lambda: (ls := {u: read_list(redis_client, prefix, u) for u in users}) and all(ls.values()) and ls,
        timeout_s, "every user's list", proc,
    )


def learned_counts(env: dict) -> dict[str, int] | None:
    checkpoint = FileCheckpointStore(env["STREAMREC_CHECKPOINT_DIR"]).load()
    if checkpoint is None:
        return None
    model = Recommender.from_checkpoint(checkpoint.model)
    return {u: model.n_learned(u) for u in model._learned}
