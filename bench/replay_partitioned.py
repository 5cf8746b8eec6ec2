"""``bench replay --in-process --workers N``: the replay with partitioned state (N stream workers).

The same protocol as :func:`streamrec.bench.replay_run.run_in_process`, with the cluster of
``STREAMREC_STATE=partitioned`` in place of the one worker: every user's events go to the owner of
the user's partition (6 partitions, range-assigned to the N workers), which alone learns them,
holds the user and writes the user's lists (its own logical-clock refresh and its own self-tuning
blend, one climb shared through the delta log as in the worker: streams/tunershare.py); every worker reads the whole catalogue and its enrichments. Item-side
learning reaches the models as in the worker: at once in the learner, as deltas in the others,
which apply them in log order, as each worker commits: as the worker does (:class:`Commits`),
half a second (of the stream's clock, like the refresh) after the first event its transaction
holds, or after ``STREAMREC_COMMIT_EVERY_EVENTS`` events of its own, whichever is first. At the
stream's own rate that is the timer (a lag of the events of half a second); a worker catching up
on a backlog learns thousands of events in half a second, and there the event bound sets the lag,
which ``REPLAY_COMMIT_S=inf`` models. ``REPLAY_EXCHANGE_EVERY=n`` instead commits every worker
every *n* events of the stream (the first protocol: 2000 is a cap of 1000 own events each). Compared with the one-worker run on the same stream, the difference in HR@10 is the price of the
partitioning.
"""

from __future__ import annotations

import os
import time
import zlib

from streamrec.bench.replay_data import Dataset
from streamrec.bench.replay_enrich import Enrichment
from streamrec.bench.replay_metrics import Prequential
from streamrec.bench.replay_run import RunResult, _bar, _finish, served_lists
from streamrec.bench.scaleout import PARTITIONS, _owner
from streamrec.settings import Settings
from streamrec.streams.partitioned import commit_bound
from streamrec.streams.tunershare import TUNER_KEY

#: the worker's commit timer (streams/outputs.py: ``commit_every_s``), in the stream's seconds
COMMIT_S = float(os.environ.get("REPLAY_COMMIT_S", "0.5"))
#: a fixed lag instead (the first protocol): every worker commits every this many stream events
EXCHANGE_EVERY = int(os.environ.get("REPLAY_EXCHANGE_EVERY", "0"))


class Commits:
    """When each simulated worker commits its transaction, as the worker does: ``COMMIT_S`` after
    the first event it holds (the stream's clock, as the refresh's), or after
    ``commit_every`` events of its own (``STREAMREC_COMMIT_EVERY_EVENTS``; fewer while young, as
    :func:`~streamrec.streams.partitioned.commit_bound` says), whichever comes first;
    with ``every`` (> 0) all of them every ``every`` events of the stream instead.

    >>> c = Commits(2, commit_s=0.5, commit_every=3)
    >>> [c.due(ts) for ts in (0.0, 0.1)], c.learned(0, 0.0), c.learned(1, 0.1), c.due(0.55)
    ([[], []], [], [], [0])
    >>> [c.learned(1, t) for t in (0.6, 0.7)], c.due(0.8)
    ([[], [1]], [])
    >>> f = Commits(2, every=2); [f.learned(w, 0.0) for w in (0, 1, 0)]
    [[], [0, 1], []]
    """

    def __init__(self, workers: int, commit_s: float = 0.5, commit_every: int = 1000, every: int = 0):
        self.commit_s, self.commit_every, self.every = commit_s, commit_every, every
        self.opened: list[float | None] = [None] * workers
        self.held, self.seen, self.count = [0] * workers, 0, 0
        self.learned_by = [0] * workers

    def due(self, ts: float) -> list[int]:
        """The workers whose timer ran out before the event at ``ts`` (they commit first)."""
        if self.every:
            return []
        late = [w for w, o in enumerate(self.opened) if o is not None and ts - o >= self.commit_s]
        return self._commit(late)

    def learned(self, w: int, ts: float) -> list[int]:
        """Worker ``w`` learned an event at ``ts``; the workers that commit after it."""
        self.seen += 1
        if self.every:
            return self._commit(range(len(self.held))) if self.seen % self.every == 0 else []
        if self.opened[w] is None:
            self.opened[w] = ts
        self.held[w] += 1
        self.learned_by[w] += 1
        return self._commit([w]) if self.held[w] >= commit_bound(self.learned_by[w], self.commit_every) else []

    def _commit(self, workers) -> list[int]:
        workers = list(workers)
        for w in workers:
            self.opened[w], self.held[w] = None, 0
        self.count += len(workers)
        return workers


def partition_of(user: str) -> int:
    """A stable partition per user (any stable hash splits users as a key partitioner does).

    >>> partition_of("u1") == partition_of("u1"), 0 <= partition_of("u2") < PARTITIONS
    (True, True)
    """
    return zlib.crc32(user.encode()) % PARTITIONS


def run_partitioned(dataset: Dataset, name: str, interval: float, settings: Settings, *, build,
                    workers: int, content: Enrichment | None = None, progress: bool = True,
                    tuner=None) -> RunResult:  # fmt: skip
    from streamrec.streams.partitioned import PartitionedState
    from streamrec.streams.statetopics import decode_record

    class Log:
        def __init__(self, writer: int, items: list):
            self.writer, self.items = writer, items

        def produce(self, topic, key, value, origin, partition=None):
            if topic == "state.items":
                self.items.append((self.writer, key, value))
            return True

    models, states, lists, tuners = [], [], [], []
    for _ in range(workers):
        model = build(settings)
        ll, tuned = served_lists(model, dataset, content, settings, interval, tuner)
        models.append(model)
        states.append(PartitionedState(model, "state.users", "state.items"))
        states[-1].share_tuner(tuned)  # one climb for all workers, as in the worker
        lists.append(ll)
        tuners.append(tuned)
    shared: list = []
    logs, applied = [Log(w, shared) for w in range(workers)], [0] * workers
    owner_of = [_owner(p, workers) for p in range(PARTITIONS)]
    commits = Commits(workers, COMMIT_S, settings.commit_every_events, EXCHANGE_EVERY)
    metrics = Prequential(len(dataset.items))
    kind, step = dataset.kind, 500
    with _bar(len(dataset.events), f"{name} @{interval:g}s in-process, {workers} workers", progress) as bar:
        started = time.perf_counter()
        for n, (user, item, ts, value) in enumerate(dataset.events, 1):
            w = owner_of[partition_of(user)]
            due = commits.due(ts)
            if due:
                _exchange(models, states, logs, applied, decode_record, due)
            model, ll, tuned = models[w], lists[w], tuners[w]
            for other in lists:  # every worker's logical clock moves with the stream
                other.before(ts)
            current = ll.read(user)
            metrics.event(user, item, ts, *(current if current is not None else (None, None)))
            if tuned is not None:
                tuned.observe(model, user, item)
            if kind == "rating" or (kind == "mixed" and value is not None):
                model.learn_rating(user, item, value, ts)
            else:
                model.learn_click(user, item, ts)
            states[w].learned(user, partition_of(user))
            ll.learned(user)
            due = commits.learned(w, ts)
            if due:
                _exchange(models, states, logs, applied, decode_record, due)
            if n % step == 0:
                bar.update(step)
        seconds = time.perf_counter() - started
        bar.update(len(dataset.events) % step)
    lag = ({"exchange_every": EXCHANGE_EVERY} if EXCHANGE_EVERY else
           {"commit_s": COMMIT_S, "commit_every_events": settings.commit_every_events})
    extra = {"workers": workers, **lag, "commits": commits.count,
             "refreshes": sum(ll.refreshes for ll in lists),
             "lists_written": sum(ll.lists_written for ll in lists),
             "users_per_worker": [m.n_users for m in models]}  # fmt: skip
    climbs = [t for t in tuners if t is not None]
    if climbs:
        extra["tuner"] = {"promotions": climbs[0].promotions, "weights": climbs[0].weights,
                          "same_weights": all(t.weights == climbs[0].weights for t in climbs)}  # fmt: skip
    return _finish(name, interval, f"in-process, {workers} workers", metrics, dataset, seconds, extra)


def _exchange(models, states, logs, applied, decode, writers) -> None:
    """The ``writers`` commit their deltas; every worker reads the log to its end."""
    for w in writers:
        states[w].emit_delta(logs[w])
    shared = logs[0].items
    for w, model in enumerate(models):
        for writer, key, value in shared[applied[w]:]:
            if key == TUNER_KEY:  # the shared climb: read in log order, own records too
                states[w].read_climb(value, own=writer == w)
            elif writer != w:
                model.add_item_delta(decode(value))
        applied[w] = len(shared)
