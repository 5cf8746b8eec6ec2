"""Partitioned state (``STREAMREC_STATE=partitioned``) against the real broker and Redis.

Each worker learns only its event partitions' users; a partition's users move with it through the
``state.users`` changelog, in the same transactions as the group's offsets (streams/partitioned.py).
The ground truth is the changelog itself: the latest record of every user carries the number of
events learned for that user, so a lost event shows as a smaller count and one learned twice as a
larger one."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

from workerkit import GROUPS, publish, read_list, start_worker, stop, taste_events, wait_for

from streamrec.connect import kafka_config
from streamrec.schemas.events import Click
from streamrec.streams.checkpoint import FileCheckpointStore
from streamrec.streams.statetopics import decode_record, read_changelog, state_topics
from streamrec.streams.recommender import Recommender


def changelog_counts(stack, prefix: str) -> dict[str, int]:
    users_topic, _ = state_topics(prefix)
    latest = {}
    for key, value in read_changelog(kafka_config(stack), users_topic, [0, 1, 2], 30):
        latest[key.decode()] = decode_record(value)["n"]
    return latest


def partition_users(stack, prefix: str, partitions) -> set[str]:
    """The users whose changelog records are on ``partitions`` (their event partitions)."""
    users_topic, _ = state_topics(prefix)
    return {key.decode() for key, _ in read_changelog(kafka_config(stack), users_topic, sorted(partitions), 30)}


def pair_counts(model, items) -> dict:
    return {(a, b): model.cooccur.count(a, b) for a in items for b in items if a != b}


def checkpoint_pair_counts(env: dict, items) -> dict | None:
    """A worker's item side as its latest checkpoint holds it (co-occurrence counts)."""
    try:
        checkpoint = FileCheckpointStore(env["STREAMREC_CHECKPOINT_DIR"]).load()
    except Exception:  # being written
        return None
    return None if checkpoint is None else pair_counts(Recommender.from_checkpoint(checkpoint.model), items)


def health(env: dict) -> dict:
    try:
        return json.loads((Path(env["STREAMREC_CHECKPOINT_DIR"]) / "health.json").read_text())
    except (OSError, ValueError):
        return {}


def owned(env: dict) -> set[int]:
    serving = health(env).get("serving")
    return {p for _, p in serving} if isinstance(serving, list) else set()


def test_partitioned_workers_hold_their_users_and_hand_over_exactly(worker_env, stack, topics, prefix,
                                                                    redis_client, tmp_path):  # fmt: skip
    envs = [{**worker_env, "STREAMREC_STATE": "partitioned", "STREAMREC_WORKER_ID": name,
             "STREAMREC_CHECKPOINT_DIR": str(tmp_path / name)} for name in ("pa", "pb", "pc")]  # fmt: skip
    workers = [start_worker(envs[0]), start_worker(envs[1])]
    events = taste_events(n_users=30, per_user=20)
    users = sorted({e.user for e in events})
    expected = Counter(e.user for e in events)
    try:
        wait_for(lambda: owned(envs[0]) and owned(envs[1]) and not owned(envs[0]) & owned(envs[1]),
                 90, "two workers splitting the partitions", workers[0])  # fmt: skip
        publish(stack, topics, events)
        wait_for(lambda: changelog_counts(stack, prefix) == dict(expected), 90,
                 "every event learned exactly once, by its partition's owner", workers[0])  # fmt: skip
        wait_for(lambda: sum(h.get("users_held", 0) for h in map(health, envs[:2])) == len(users), 15,
                 "each user held by one worker")  # fmt: skip
        held = [health(env)["users_held"] for env in envs[:2]]
        assert 0 < held[0] < len(users) and 0 < held[1] < len(users), held
        print(f"users held by two workers: {held} of {len(users)}")

        # b dies without warning: a takes b's partitions with their users, from the changelog
        workers[1].send_signal(signal.SIGKILL)
        workers[1].wait()
        died = time.time()
        wait_for(lambda: owned(envs[0]) == {0, 1, 2}, 60, "a owning every partition", workers[0])
        more = [Click(user=u, item=f"i{int(u[1:]) % GROUPS}_1", ts=1.7e9 + 1) for u in users]
        publish(stack, topics, more)
        expected.update(e.user for e in more)
        wait_for(lambda: changelog_counts(stack, prefix) == dict(expected), 90,
                 "no event lost or learned twice across the kill -9", workers[0])  # fmt: skip
        wait_for(lambda: all((lst := read_list(redis_client, prefix, u)) and lst.generated_at > died
                             for u in users), 45, "fresh lists for every user after the handover",
                 workers[0])  # fmt: skip

        # scale up to two again (a new worker, no volume): it restores its partitions' users and,
        # with no new event, writes their lists within a refresh interval (1 s here) of taking them
        wait_for(lambda: health(envs[0]).get("ts", 0) > time.time() - 3, 10, "a's heartbeat")
        started_c = time.time()  # a writes no list from here on: no event, nothing owed
        workers.append(start_worker(envs[2]))
        wait_for(lambda: owned(envs[2]) and owned(envs[0]) and not owned(envs[0]) & owned(envs[2]),
                 90, "a and c splitting the partitions", workers[2])  # fmt: skip
        took = time.time()
        moved = [u for u in users if u in partition_users(stack, prefix, owned(envs[2]))]
        assert moved
        wait_for(lambda: all(read_list(redis_client, prefix, u).generated_at > started_c for u in moved),
                 4, "c writing the moved users' lists within a refresh of taking them", workers[2])  # fmt: skip
        again = [Click(user=u, item=f"i{int(u[1:]) % GROUPS}_2", ts=1.7e9 + 2) for u in users]
        publish(stack, topics, again)
        expected.update(e.user for e in again)
        wait_for(lambda: changelog_counts(stack, prefix) == dict(expected), 90,
                 "no event lost or learned twice across the scale-up", workers[2])  # fmt: skip
        wait_for(lambda: 0 < health(envs[2]).get("users_held", 0) < len(users), 15, "c holding its users")
    finally:
        for w in workers:
            stop(w)


def test_three_partitioned_workers_through_kill_9s_and_lost_volumes_learn_every_event_once(
        worker_env, stack, topics, prefix, tmp_path):  # fmt: skip
    import random
    import shutil

    rng = random.Random(7)
    names = ["qa", "qb", "qc"]
    env_of = {n: {**worker_env, "STREAMREC_STATE": "partitioned", "STREAMREC_WORKER_ID": n,
                  "STREAMREC_CHECKPOINT_DIR": str(tmp_path / n)} for n in names}  # fmt: skip
    procs = {n: start_worker(env_of[n]) for n in names}
    users = [f"u{k}" for k in range(45)]
    expected: Counter = Counter()
    published: list[Click] = []
    try:
        wait_for(lambda: sum(len(owned(env_of[n])) for n in names) == 3
                 and all(owned(env_of[n]) for n in names), 90, "three workers, one partition each")  # fmt: skip
        for wave in range(4):
            batch = [Click(user=u, item=f"i{rng.randrange(GROUPS)}_{rng.randrange(5)}", ts=1.7e9 + wave)
                     for u in users for _ in range(rng.randrange(1, 4))]  # fmt: skip
            publish(stack, topics, batch)
            published += batch
            expected.update(e.user for e in batch)
            time.sleep(rng.uniform(0.2, 1.5))  # somewhere in the middle of learning the wave
            victim = rng.choice(names)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            if wave % 2:  # the pod comes back without its volume
                shutil.rmtree(env_of[victim]["STREAMREC_CHECKPOINT_DIR"], ignore_errors=True)
            procs[victim] = start_worker(env_of[victim])
        wait_for(lambda: changelog_counts(stack, prefix) == dict(expected), 120,
                 "every event learned exactly once through 4 kill -9s", procs["qa"])  # fmt: skip
        wait_for(lambda: all(owned(env_of[n]) for n in names), 60, "all three owning again")
        # item side: every delta applied once by every worker (co-occurrence counts depend only
        # on each user's own sequence, so one model learning every event is the reference)
        reference = Recommender()
        for e in published:
            reference.learn_click(e.user, e.item, e.ts)
        items = sorted({e.item for e in published})
        want = pair_counts(reference, items)
        for n in names:
            wait_for(lambda n=n: checkpoint_pair_counts(env_of[n], items) == want, 60,
                     f"{n}'s co-occurrence counts: every item delta applied exactly once")  # fmt: skip
        held = [health(env_of[n]).get("users_held", 0) for n in names]
        print(f"users held by three workers: {held} of {len(users)}")
        assert all(h <= 0.6 * len(users) for h in held), held
    finally:
        for p in procs.values():
            stop(p)


def test_a_worker_without_a_volume_starts_its_item_side_from_the_snapshot_when_the_log_is_cut(
        worker_env, stack, topics, prefix, tmp_path):  # fmt: skip
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    from streamrec.streams.statetopics import read_item_snapshot, snapshot_topic

    envs = [{**worker_env, "STREAMREC_STATE": "partitioned", "STREAMREC_WORKER_ID": name,
             "STREAMREC_ITEM_SNAPSHOT_S": "1", "STREAMREC_CHECKPOINT_DIR": str(tmp_path / name)}
            for name in ("sa", "sb")]  # fmt: skip
    config = kafka_config(stack)
    _, items_topic = state_topics(prefix)
    first = taste_events(n_users=20, per_user=10)
    second = taste_events(n_users=20, per_user=5, seed=2)
    workers = [start_worker(envs[0])]
    try:
        wait_for(lambda: owned(envs[0]) == {0, 1, 2}, 90, "sa owning every partition", workers[0])
        publish(stack, topics, first)
        wait_for(lambda: changelog_counts(stack, prefix) == dict(Counter(e.user for e in first)), 90,
                 "the first events learned", workers[0])  # fmt: skip
        from confluent_kafka import Consumer

        probe = Consumer({**config, "group.id": f"{prefix}probe"})
        end = probe.get_watermark_offsets(TopicPartition(items_topic, 0), timeout=10)[1]
        probe.close()
        # (the last offset is the marker of the last transaction: a reader's position stops before it)
        found = wait_for(lambda: (f := read_item_snapshot(config, snapshot_topic(prefix), 10)) is not None
                         and f[1]["position"] >= end - 1 and f, 30, "a snapshot covering the delta log",
                         workers[0])  # fmt: skip
        # retention cuts the delta log: nothing the snapshot covers can be read any more
        admin = AdminClient(config)
        cut = found[1]["position"]
        for future in admin.delete_records([TopicPartition(items_topic, 0, cut)]).values():
            future.result()
        publish(stack, topics, second)
        both = first + second
        wait_for(lambda: changelog_counts(stack, prefix) == dict(Counter(e.user for e in both)), 90,
                 "the second events learned", workers[0])  # fmt: skip
        workers.append(start_worker(envs[1]))
        wait_for(lambda: owned(envs[1]) and owned(envs[0]) and not owned(envs[0]) & owned(envs[1]),
                 90, "sa and sb splitting the partitions", workers[1])  # fmt: skip
        reference = Recommender()
        for e in both:
            reference.learn_click(e.user, e.item, e.ts)
        items = sorted({e.item for e in both})
        want = pair_counts(reference, items)
        wait_for(lambda: checkpoint_pair_counts(envs[1], items) == want, 60,
                 "sb's item side: the snapshot and the deltas after it", workers[1])  # fmt: skip
    finally:
        for w in workers:
            stop(w)
