"""``streamrec bench scale --workers N``: partitioned state, in process, N workers against one.

The same synthetic stream as ``bench scale`` (bench/scale.py) is split by user into 6 partitions,
assigned to the workers as the range assignor does. Each simulated worker is the stream worker's
own model and :class:`~streamrec.streams.partitioned.PartitionedState`: it decodes its own
events' wire bytes at the topic boundary, learns them, writes its changed users' records and item
deltas at every commit, as often as a saturated worker commits (``commit_due``: after
``STREAMREC_COMMIT_EVERY_EVENTS`` events of its own, fewer while it is young; encoded, as they go
to Kafka), and applies *every* worker's
deltas (decoded) in log order. Workers run one after another in this process and each one's CPU
time is measured (``time.process_time``), so the figures are per core, whatever else the machine
runs. Rows:

``intake_ratio_vs_one``         events/s of the cluster (all events over the slowest worker's CPU
                                time) over the events/s of one partitioned worker doing it all
``user_state_share_per_worker`` the largest worker's user-side state (bytes of its users' changelog
                                records) over one worker's
``pair_counts_as_one_worker``   share of a sample of item pairs that every worker counts as one
                                worker does (below 1 only where the per-item neighbour cap pruned
                                in another order)
"""

from __future__ import annotations

import time

import numpy as np

PARTITIONS = 6


def _owner(partition: int, n_workers: int) -> int:
    """Range assignment of ``PARTITIONS`` partitions to ``n_workers`` members.

    >>> [_owner(p, 2) for p in range(6)], [_owner(p, 4) for p in range(6)]
    ([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 3])
    """
    per, extra = divmod(PARTITIONS, n_workers)
    bounds, start = [], 0
    for w in range(n_workers):
        start += per + (1 if w < extra else 0)
        bounds.append(start)
    return next(w for w, end in enumerate(bounds) if partition < end)


def simulate(settings, users, items, ts, n_workers: int) -> dict:
    """Run ``n_workers`` partitioned workers over the stream; their CPU times and state."""
    from streamrec.schemas.codec import encode
    from streamrec.schemas.events import Click
    from streamrec.schemas.topics import Topics
    from streamrec.streams.ingest import Boundary
    from streamrec.streams.partitioned import PartitionedState
    from streamrec.streams.statetopics import decode_record
    from streamrec.streams.worker import build_recommender

    topic = Topics().clicks
    part = users % PARTITIONS
    owner = np.asarray([_owner(p, n_workers) for p in range(PARTITIONS)])[part]

    class Log:
        def __init__(self):
            self.items, self.user_bytes = [], {}

        def produce(self, t, key, value, origin, partition=None):
            if t.endswith("state.items"):
                self.items.append(value)
            else:
                self.user_bytes[key] = len(value)
            return True

    workers = []
    for w in range(n_workers):
        mine = np.flatnonzero(owner == w)
        wire = [(f"u{u}".encode(), encode(Click(user=f"u{u}", item=f"i{i}", ts=float(t))), int(p))
                for u, i, t, p in zip(users[mine].tolist(), items[mine].tolist(), ts[mine].tolist(),
                                      part[mine].tolist())]  # fmt: skip
        model = build_recommender(settings)
        state = PartitionedState(model, "state.users", "state.items",
                                 commit_every=settings.commit_every_events)
        workers.append((model, state, wire, Log()))
    cpu = [0.0] * n_workers
    # phase 1: every worker learns its own events and writes its deltas and records
    for w, (model, state, wire, log) in enumerate(workers):
        boundary = Boundary(Topics())
        start = time.process_time()
        for key, value, p in wire:
            r = boundary.decode(topic, key, value, 0.0)
            model.learn_click(r.user, r.item, r.ts)
            state.learned(r.user, p)
            if state.commit_due():  # the worker's own rule (streams/partitioned.py)
                state.flush(log)
        state.flush(log)
        cpu[w] += time.process_time() - start
    # phase 2: every worker applies the other workers' deltas, as it reads them from the log
    for w, (model, _, _, _) in enumerate(workers):
        start = time.process_time()
        for v, (_, _, _, log) in enumerate(workers):
            if v != w:
                for value in log.items:
                    model.add_item_delta(decode_record(value))
        cpu[w] += time.process_time() - start
    return {"cpu_s": cpu, "models": [m for m, *_ in workers],
            "user_bytes": [sum(log.user_bytes.values()) for *_, log in workers],
            "users": [m.n_users for m, *_ in workers]}


def measure_workers(settings, n_users: int, n_items: int, events_per_user: float, n_workers: int,
                    seed: int, quiet: bool) -> dict:  # fmt: skip
    from streamrec.bench.scale import _say, synth

    n_events = max(int(n_users * events_per_user), n_items)
    _say(f"{n_users:,} users x {n_items:,} items: {n_events:,} events, 1 and {n_workers} workers", quiet)
    users, items, ts, _, _ = synth(n_users, n_items, n_events, False, seed)
    one = simulate(settings, users, items, ts, 1)
    many = simulate(settings, users, items, ts, n_workers)
    ref = one["models"][0]
    rng = np.random.default_rng(seed)
    sample = [(f"i{a}", f"i{b}") for a, b in zip(rng.choice(items, 500).tolist(), rng.choice(items, 500).tolist())]
    same = np.mean([all(m.cooccur.count(a, b) == ref.cooccur.count(a, b) for m in many["models"])
                    for a, b in sample])
    return {
        "users": n_users, "items": n_items, "events": n_events, "workers": n_workers,
        "commit_every_events": settings.commit_every_events,
        "one_worker_events_per_s": round(n_events / one["cpu_s"][0]),
        "cluster_events_per_s": round(n_events / max(many["cpu_s"])),
        "intake_ratio_vs_one": round(one["cpu_s"][0] / max(many["cpu_s"]), 3),
        "user_state_share_per_worker": round(max(many["user_bytes"]) / one["user_bytes"][0], 3),
        "users_per_worker": many["users"],
        "pair_counts_as_one_worker": round(float(same), 3),
        "cpu_s_per_worker": [round(c, 2) for c in many["cpu_s"]], "one_worker_cpu_s": round(one["cpu_s"][0], 2),
    }  # fmt: skip
