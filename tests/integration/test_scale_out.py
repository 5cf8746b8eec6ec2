"""Two stream workers in one consumer group, against the real broker and Redis.

The scheme under test (see ``streamrec.streams.membership``): every worker learns every event,
the group splits which partitions' users each worker writes lists for, and a worker leaving hands
over nothing but its partitions."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

from workerkit import (
    GROUPS,
    group_of,
    learned_counts,
    publish,
    read_list,
    start_worker,
    stop,
    taste_events,
    wait_for,
    wait_for_lists,
)

from streamrec.schemas.events import Click


def serving(env: dict) -> list | None:
    try:
        beat = json.loads((Path(env["STREAMREC_CHECKPOINT_DIR"]) / "health.json").read_text())
    except (OSError, ValueError):
        return None
    return beat["serving"] if isinstance(beat.get("serving"), list) else None


def on_taste(lists: dict) -> float:
    hits = total = 0
    for user, lst in lists.items():
        top = [i for i, _ in lst.items[:10]]
        hits += sum(group_of(i) == int(user[1:]) % GROUPS for i in top)
        total += len(top)
    return hits / total


def test_two_workers_split_partitions_and_hand_over_without_loss(worker_env, stack, topics, prefix,
                                                                 redis_client, tmp_path):  # fmt: skip
    envs = [{**worker_env, "STREAMREC_WORKER_ID": name,
             "STREAMREC_CHECKPOINT_DIR": str(tmp_path / name)} for name in ("wa", "wb")]  # fmt: skip
    workers = [start_worker(env) for env in envs]
    events = taste_events(n_users=24, per_user=20)
    users = sorted({e.user for e in events})
    try:
        wait_for(lambda: all(serving(env) for env in envs), 60, "both workers serving", workers[0])
        publish(stack, topics, events)
        lists = wait_for_lists(redis_client, prefix, users)
        split = [{tuple(p) for p in serving(env)} for env in envs]
        assert split[0] and split[1] and not split[0] & split[1], split
        assert len(split[0] | split[1]) == 6, "clicks and ratings, 3 partitions each, all served"
        two_worker_quality = on_taste(lists)
        expected = Counter(e.user for e in events)
        for env in envs:  # replicated learning: each worker learned every event exactly once
            wait_for(lambda env=env: learned_counts(env) == dict(expected), 30, "both checkpoints")

        # worker b dies without warning; a takes over its partitions and serves every user
        workers[1].send_signal(signal.SIGKILL)
        workers[1].wait()
        died = time.time()
        more = [Click(user=u, item=f"i{int(u[1:]) % GROUPS}_0", ts=1.7e9) for u in users]
        publish(stack, topics, more)
        wait_for(lambda: all((lst := read_list(redis_client, prefix, u)) and lst.generated_at > died
                             for u in users), 45, "fresh lists for every user after the handover",
                 workers[0])  # fmt: skip
        wait_for(lambda: len(serving(envs[0]) or ()) == 6, 10, "worker a serving all six partitions")
        expected.update(e.user for e in more)
        wait_for(lambda: learned_counts(envs[0]) == dict(expected), 30, "no event lost in the handover")
    finally:
        for w in workers:
            stop(w)

    # one worker alone on the same events, for the quality comparison
    single_env = {**worker_env, "STREAMREC_WORKER_ID": "solo", "STREAMREC_GROUP_ID": f"{prefix}solo",
                  "STREAMREC_REDIS_PREFIX": f"{prefix}solo:",
                  "STREAMREC_CHECKPOINT_DIR": str(tmp_path / "solo")}  # fmt: skip
    solo = start_worker(single_env, "--burst")
    assert solo.wait(120) == 0, stop(solo)
    solo_lists = {u: read_list(redis_client, f"{prefix}solo:", u) for u in users}
    single_quality = on_taste({u: lst for u, lst in solo_lists.items() if lst})
    print(f"on-taste share of top 10: two workers {two_worker_quality:.3f}, one worker {single_quality:.3f}")
    assert two_worker_quality >= single_quality - 0.05
