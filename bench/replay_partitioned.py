"""``bench replay --in-process --workers N``: the replay with partitioned state (N stream workers).

The same protocol as :func:`streamrec.bench.replay_run.run_in_process`, with the cluster of
``STREAMREC_STATE=partitioned`` in place of the one worker: every user's events go to the owner of
the user's partition (6 partitions, range-assigned to the N workers), which alone learns them,
holds the user and writes the user's lists (its own logical-clock refresh and its own self-tuning
blend, one climb shared through the delta log as in the worker: streams/tunershare.py); every worker reads the whole catalogue and its enrichments. Item-side
learning reaches the models as in the worker: at once in the learner, as deltas in the others,
which apply them in log order. The exchange happens every ``EXCHANGE_EVERY`` events of the stream
(each worker's transaction commits about every half second; at the thousands of events per second
one worker takes, that is a few thousand events), so the other workers' counts lag by up to that.
Compared with the one-worker run on the same stream, the difference in HR@10 is the price of the
partitioning.
"""

from __future__ import annotations

import time
import zlib

from streamrec.bench.replay_data import Dataset
from streamrec.bench.replay_enrich import Enrichment
from streamrec.bench.replay_metrics import Prequential
from streamrec.bench.replay_run import RunResult, _bar, _finish, served_lists
from streamrec.bench.scaleout import PARTITIONS, _owner
from streamrec.settings import Settings
from streamrec.streams.tunershare import TUNER_KEY

EXCHANGE_EVERY = int(__import__("os").environ.get("REPLAY_EXCHANGE_EVERY", "2000"))


def partition_of(user: str) -> int:
    """A stable partition per user (any stable hash splits users as a key partitioner does).

    >>> partition_of("u1") == partition_of("u1"), 0 <= partition_of("u2") < PARTITIONS
    (True, True)
    """
    return zlib.crc32(user.encode()) % PARTITIONS


def run_partitioned(dataset: Dataset, name: str, interval: float, settings: Settings, *, build,
                    workers: int, content: Enrichment | None = None, progress: bool = True,
                    tuner=None) -> RunResult:  # fmt: skip
    from streamrec.streams.partitioned import PartitionedState, decode_record

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
    metrics = Prequential(len(dataset.items))
    kind, step = dataset.kind, 500
    with _bar(len(dataset.events), f"{name} @{interval:g}s in-process, {workers} workers", progress) as bar:
        started = time.perf_counter()
        for n, (user, item, ts, value) in enumerate(dataset.events, 1):
            w = owner_of[partition_of(user)]
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
            if n % EXCHANGE_EVERY == 0:
                _exchange(models, states, logs, applied, decode_record)
            if n % step == 0:
                bar.update(step)
        seconds = time.perf_counter() - started
        bar.update(len(dataset.events) % step)
    extra = {"workers": workers, "exchange_every": EXCHANGE_EVERY,
             "refreshes": sum(ll.refreshes for ll in lists),
             "lists_written": sum(ll.lists_written for ll in lists),
             "users_per_worker": [m.n_users for m in models]}  # fmt: skip
    climbs = [t for t in tuners if t is not None]
    if climbs:
        extra["tuner"] = {"promotions": climbs[0].promotions, "weights": climbs[0].weights,
                          "same_weights": all(t.weights == climbs[0].weights for t in climbs)}  # fmt: skip
    return _finish(name, interval, f"in-process, {workers} workers", metrics, dataset, seconds, extra)


def _exchange(models, states, logs, applied, decode) -> None:
    """Every worker writes its delta, then reads the others' from the log to its end."""
    for state, log in zip(states, logs):
        state.emit_delta(log)
    shared = logs[0].items
    for w, model in enumerate(models):
        for writer, key, value in shared[applied[w]:]:
            if key == TUNER_KEY:  # the shared climb: read in log order, own records too
                states[w].read_climb(value, own=writer == w)
            elif writer != w:
                model.add_item_delta(decode(value))
        applied[w] = len(shared)
