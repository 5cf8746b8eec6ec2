"""``streamrec bench scale``: one stream worker's model at tenant scale, in process.

For each configuration (users x items, with or without 384-d item embeddings) a synthetic Zipf
stream is learned by the worker's own :class:`~streamrec.streams.recommender.Recommender` (built as
the worker builds it), and then, as the worker does at a refresh: lists for a sample of users
(:meth:`Recommender.recommend_many`), and a checkpoint written by the worker's
:class:`~streamrec.streams.checkpoint.FileCheckpointStore` and read back. Measured, per
configuration (one JSON object each, the keys below):

``learn_us_per_event``       µs per ``learn_click`` (the model's per-event path)
``intake_events_per_s``      wire bytes decoded at the topic boundary and learned, events/s
``ms_per_list``              one list in a pass (index build excluded, reported as ``index_build_s``),
                             the median of ``passes`` timed passes over samples of their own
                             (``ms_per_list_passes``: each); ``cpu_ms_per_list`` the same in
                             process CPU time (what a shared, overloaded machine distorts
                             least), likewise for the roofline, measured before each pass
``roofline_ms_per_list``     the bare numpy floor over the same items in the same run: a batched
                             product of the users' query vectors (profiles with embeddings, MF
                             factors without) with every item, plus ``argpartition`` top-50
``dense_ms_per_list``        the per-user dense ranking this pass replaced (a score vector per
                             signal over every item), on the same model: the "before"
``recall_at_50``             overlap of the pass's lists with exhaustive nomination (``exact=True``)
``users_near_ms``            one cold-start lookup of the closest users of an item (and its recall)
``rss_mb_per_worker``        resident memory before the checkpoint: the steady state with the
                             index built, the data freed (``rss_mb_after_learning``: before it)
``peak_rss_mb``              the highest resident memory sampled while the full checkpoint is
                             written (``peak_rss_mb_delta``: while the delta is)
``full_state_bytes``         a full checkpoint; ``checkpoint_bytes_per_interval`` what the next
                             interval writes (a delta) after 1% of the users had an event
``restore_s``                reading the full checkpoint and the delta back into a model

Synthetic data: items in 100 topics of ``items / 20`` subtopics (an embedding is its topic's and
subtopic's direction plus noise, unit length: the structure real text embeddings have, which an
index exploits and uniform noise would not), users with one home topic (80% of their events),
item popularity Zipf within a topic; the newest 1% of the items are published during the last
day (the cold ones). Threads: ``OPENBLAS_NUM_THREADS=1`` and one faiss thread, as in the worker.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DIM = 384
T0 = 1.7e9
DAY = 86400.0


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # pragma: no cover
        return 0.0


class PeakRss:
    """Samples RSS every few milliseconds in a thread while the ``with`` block runs."""

    def __init__(self, period_s: float = 0.005):
        self.period_s, self.peak = period_s, 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self.peak = rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[bench scale] {msg}", file=sys.stderr, flush=True)


def synth(n_users: int, n_items: int, n_events: int, embeddings: bool, seed: int = 0):
    """(user rows, item rows, timestamps, item vectors or None, item birth times), as numpy arrays."""
    rng = np.random.default_rng(seed)
    n_topics = 100
    item_topic = rng.integers(0, n_topics, n_items)
    vectors = None
    if embeddings:
        n_sub = max(1, n_items // 20)
        centres = rng.normal(size=(n_topics, DIM)).astype(np.float32)
        sub_topic = rng.integers(0, n_topics, n_sub)
        subs = centres[sub_topic] + 0.7 * rng.normal(size=(n_sub, DIM)).astype(np.float32)
        # an item's subtopic lies in its topic, so topic = subtopic's topic
        item_sub = rng.integers(0, n_sub, n_items)
        item_topic = sub_topic[item_sub]
        vectors = np.empty((n_items, DIM), dtype=np.float32)
        for s in range(0, n_items, 20_000):
            e = min(n_items, s + 20_000)
            v = subs[item_sub[s:e]] + 0.7 * rng.normal(size=(e - s, DIM)).astype(np.float32)
            vectors[s:e] = v / np.linalg.norm(v, axis=1, keepdims=True)
    order = np.argsort(item_topic, kind="stable")
    starts = np.searchsorted(item_topic[order], np.arange(n_topics + 1))
    user_topic = rng.integers(0, n_topics, n_users)
    users = rng.integers(0, n_users, n_events)
    home = rng.random(n_events) < 0.8
    topic = np.where(home, user_topic[users], rng.integers(0, n_topics, n_events))
    size = np.maximum(starts[topic + 1] - starts[topic], 1)
    rank = np.minimum((rng.zipf(1.3, n_events) - 1) % size, size - 1)  # Zipf within the topic
    items = order[np.minimum(starts[topic] + rank, n_items - 1)]
    span = 30 * DAY
    ts = T0 + np.sort(rng.random(n_events)) * span
    born = np.full(n_items, T0 - DAY)
    newest = rng.choice(n_items, max(1, n_items // 100), replace=False)
    born[newest] = T0 + span - rng.random(len(newest)) * DAY
    return users, items, ts, vectors, born


def roofline(queries: np.ndarray, matrix: np.ndarray, k: int = 50, chunk: int = 64) -> tuple[float, float]:
    """ms per query of the bare floor, wall and CPU: ``queries @ matrix.T`` in chunks, plus top-``k``."""
    start, cpu = time.perf_counter(), time.process_time()
    for s in range(0, len(queries), chunk):
        scores = queries[s : s + chunk] @ matrix.T
        np.argpartition(-scores, k, axis=1)[:, :k]
    n = max(1, len(queries))
    return (time.perf_counter() - start) * 1e3 / n, (time.process_time() - cpu) * 1e3 / n


def _queries(rec, users: list, embeddings: bool) -> np.ndarray:
    """The roofline's query vectors of ``users``: their profiles with embeddings, else MF factors."""
    if embeddings:
        cm = rec.content
        return np.stack([p for u in users if (p := cm.profile(u, rec.cooccur.history_rows(u))) is not None])
    return rec.mf.user_factors(np.array([r for u in users if (r := rec.mf.user_row(u)) is not None]))


def measure(settings, n_users: int, n_items: int, embeddings: bool, events_per_user: float,
            n_lists: int, n_recall: int, seed: int, quiet: bool,
            index_min_items: int | None = None, passes: int = 3) -> dict:  # fmt: skip
    """One configuration, as one JSON-able dict."""
    from tqdm import tqdm

    from streamrec.schemas.codec import encode
    from streamrec.schemas.events import Click
    from streamrec.schemas.topics import Topics
    from streamrec.streams.checkpoint import Checkpoint, FileCheckpointStore
    from streamrec.streams.ingest import Boundary
    from streamrec.streams.recommender import Recommender
    from streamrec.streams.worker import build_recommender

    label = f"{n_users:,} users x {n_items:,} items, embeddings {'yes' if embeddings else 'no'}"
    n_events = max(int(n_users * events_per_user), n_items)
    _say(f"{label}: generating {n_events:,} events", quiet)
    users, items, ts, vectors, born = synth(n_users, n_items, n_events, embeddings, seed)
    rec = build_recommender(settings)
    if index_min_items is not None:
        from dataclasses import replace

        cfg = rec.config
        rec = Recommender(replace(cfg, content=replace(cfg.content, index_min_items=index_min_items)))
    item_ids = [f"i{i}" for i in range(n_items)]
    for i in tqdm(range(n_items), desc="catalogue", disable=quiet, mininterval=1.0, leave=False):
        rec.upsert_item(item_ids[i], float(born[i]))
        if vectors is not None:
            rec.set_embedding(item_ids[i], vectors[i], float(born[i]))
    del vectors
    # intake: the wire bytes through the topic boundary, then learned (the first events)
    boundary, topic = Boundary(Topics()), Topics().clicks
    n_intake = min(n_events // 10, 50_000)
    wire = [(f"u{u}".encode(), encode(Click(user=f"u{u}", item=f"i{i}", ts=float(t))))
            for u, i, t in zip(users[:n_intake].tolist(), items[:n_intake].tolist(), ts[:n_intake].tolist())]  # fmt: skip
    start = time.perf_counter()
    for key, value in wire:
        r = boundary.decode(topic, key, value, 0.0)
        rec.learn_click(r.user, r.item, r.ts)
    intake = n_intake / (time.perf_counter() - start)
    del wire
    learn_s = 0.0
    bar = tqdm(total=n_events - n_intake, desc="learning", unit="ev", disable=quiet, mininterval=1.0, leave=False)
    step = 100_000
    for s in range(n_intake, n_events, step):
        e = min(n_events, s + step)
        batch = [(f"u{u}", item_ids[i], t) for u, i, t in zip(users[s:e].tolist(), items[s:e].tolist(), ts[s:e].tolist())]
        start = time.perf_counter()
        for u, i, t in batch:
            rec.learn_click(u, i, t)
        learn_s += time.perf_counter() - start
        bar.update(e - s)
    bar.close()
    learn_us = learn_s * 1e6 / max(1, n_events - n_intake)
    active = np.unique(users[-max(1, n_users // 100) * 3 :])[: max(1, n_users // 100)]
    del users, items, ts
    gc.collect()
    steady = rss_mb()
    # lists: one warm-up pass builds the index (timed apart), then ``passes`` timed passes over
    # samples of their own, each after the roofline over the same users (both see the same noise)
    rng = np.random.default_rng(seed + 1)
    first = rng.choice(n_users, min(n_lists, n_users), replace=False)
    rest = rng.permutation(np.setdiff1d(np.arange(n_users), first))  # the later passes' users
    samples = []
    for p in range(passes):
        ids = first if p == 0 else rest[(p - 1) * len(first) : p * len(first)]
        drawn = [f"u{u}" for u in ids.tolist()]
        drawn = [u for u in drawn if rec.n_learned(u)] or drawn
        samples.append(drawn if len(drawn) else samples[0])  # a small catalogue of users: again
    sample = samples[0]
    start = time.perf_counter()
    rec.recommend_many(sample[:8])  # starts the index build (a thread in the worker)
    rec.content.ann.wait()
    rec.recommend_many(sample[:8])  # installs it
    index_build_s = time.perf_counter() - start
    _say(f"{label}: ranking {passes} x {len(sample):,} lists (index built in {index_build_s:.1f}s)", quiet)
    cm = rec.content
    M = cm.vectors(cm.embedded_rows()) if embeddings else rec.mf.item_factors(rec.mf.factor_rows())
    timed = []  # per pass: (wall, cpu) ms per list, then the roofline's
    for p, users_p in enumerate(samples):
        roof_p = roofline(_queries(rec, users_p, embeddings), M)
        start, cpu = time.perf_counter(), time.process_time()
        got = rec.recommend_many(users_p, 50)
        timed.append(((time.perf_counter() - start) * 1e3 / len(users_p),
                      (time.process_time() - cpu) * 1e3 / len(users_p)) + roof_p)  # fmt: skip
        if p == 0:
            lists = got
    del M
    ms_per_list, cpu_ms_per_list, roof, roof_cpu = (float(np.median(col)) for col in zip(*timed))
    r_users = sample[:n_recall]
    start = time.perf_counter()
    exact = rec.recommend_many(r_users, 50, exact=True)
    exact_ms = (time.perf_counter() - start) * 1e3 / len(r_users)
    start = time.perf_counter()
    for u in r_users[:50]:
        rec.recommend_dense(u, 50)
    dense_ms = (time.perf_counter() - start) * 1e3 / len(r_users[:50])
    def recall_of(got) -> float:
        pairs = zip(got, exact)
        overlap = [len({i for i, _ in a} & {i for i, _ in b}) / max(1, len(b)) for a, b in pairs]
        return float(np.mean(overlap)) if overlap else 1.0

    recall = recall_of(lists)
    sweep = []
    ann = rec.content.ann
    if ann.built:  # the index's speed against recall trade-off, same users
        default = ann.nprobe
        for nprobe in sorted({4, 8, 16, 32} - {default}):
            ann.set_nprobe(nprobe)
            start = time.perf_counter()
            got = rec.recommend_many(r_users, 50)
            sweep.append({"nprobe": nprobe, "ms_per_list": round((time.perf_counter() - start) * 1e3 / len(r_users), 3),
                          "recall_at_50": round(recall_of(got), 4)})  # fmt: skip
        ann.set_nprobe(default)
    near_ms, near_recall, near_cpu = None, None, None
    if embeddings:
        probe = [item_ids[i] for i in rng.choice(n_items, 100, replace=False).tolist()]
        start, cpu = time.perf_counter(), time.process_time()
        near = [rec.users_near(i, 100) for i in probe]
        near_ms = (time.perf_counter() - start) * 1e3 / len(probe)
        near_cpu = (time.process_time() - cpu) * 1e3 / len(probe)
        ann, nprobe = cm.ann, cm.ann.users_nprobe
        ann.users_nprobe = 1 << 20  # every bucket: the exhaustive answer
        full = [rec.users_near(i, 100) for i in probe[:20]]
        ann.users_nprobe = nprobe
        near_recall = float(np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(near, full)]))
    # checkpoints as the worker writes them: a full one, then 1% of the users have an event and
    # the next interval's (delta) checkpoint is written; peak memory sampled while writing
    gc.collect()
    before_checkpoint = rss_mb()  # the worker's steady state: model, index and buckets
    with tempfile.TemporaryDirectory() as tmp:
        store = FileCheckpointStore(tmp)

        def save(seq: int, delta: bool) -> float:
            start = time.perf_counter()
            store.save(Checkpoint(seq=seq, created=time.time(), offsets={("events.clicks", 0): n_events},
                                  model=rec.snapshot(delta=delta), meta={"learned": n_events}))  # fmt: skip
            rec.checkpointed()
            return time.perf_counter() - start

        with PeakRss() as peak:
            write_s = save(1, delta=False)
        full_bytes = store.last_bytes
        for u, i in zip(active.tolist(), rng.integers(0, n_items, len(active)).tolist()):
            rec.learn_click(f"u{u}", item_ids[i], T0 + 31 * DAY)
        changed = rec.n_changed_users
        with PeakRss() as peak_delta:
            delta_s = save(2, delta=True)
        interval_bytes = store.last_bytes
        del rec
        gc.collect()
        start = time.perf_counter()
        cp = store.load()
        restored = Recommender.from_snapshots(cp.model.base, cp.model.deltas)
        restore_s = time.perf_counter() - start
        del restored, cp
    out = {
        "users": n_users, "items": n_items, "embeddings": embeddings, "workers": 1, "events": n_events,
        "learn_us_per_event": round(learn_us, 2), "intake_events_per_s": round(intake),
        "ms_per_list": round(ms_per_list, 3), "roofline_ms_per_list": round(roof, 3), "passes": len(timed),
        "ms_per_list_passes": [round(t[0], 3) for t in timed],
        "roofline_ms_per_list_passes": [round(t[2], 3) for t in timed],
        "cpu_ms_per_list": round(cpu_ms_per_list, 3), "roofline_cpu_ms_per_list": round(roof_cpu, 3),
        "exact_ms_per_list": round(exact_ms, 3), "dense_ms_per_list": round(dense_ms, 3), "recall_at_50": round(recall, 4),
        "index_build_s": round(index_build_s, 2), "nprobe_sweep": sweep,
        "users_near_ms": None if near_ms is None else round(near_ms, 3),
        "users_near_cpu_ms": None if near_cpu is None else round(near_cpu, 3),
        "users_near_recall": None if near_recall is None else round(near_recall, 4),
        "rss_mb_per_worker": round(before_checkpoint), "rss_mb_after_learning": round(steady),
        "peak_rss_mb": round(peak.peak),
        "peak_rss_mb_delta": round(peak_delta.peak), "checkpoint_delta_s": round(delta_s, 2),
        "checkpoint_bytes_per_interval": interval_bytes, "full_state_bytes": full_bytes,
        "changed_users": changed, "checkpoint_write_s": round(write_s, 2), "restore_s": round(restore_s, 2),
    }  # fmt: skip
    gc.collect()
    return out


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"10000x10000,1000000x100000"`` as (users, items) pairs; ``k``/``M`` suffixes allowed.

    >>> parse_sizes("10kx5k, 1Mx100k")
    [(10000, 5000), (1000000, 100000)]
    """
    def num(s: str) -> int:
        s = s.strip().lower()
        mult = {"k": 1_000, "m": 1_000_000}.get(s[-1:], 1)
        return int(float(s[:-1] if mult > 1 else s) * mult)

    out = []
    for part in text.split(","):
        u, _, i = part.strip().partition("x")
        if not i:
            raise ValueError(f"size {part!r} is not USERSxITEMS, e.g. 100kx10k")
        out.append((num(u), num(i)))
    return out


def main(settings, args) -> int:
    sizes = parse_sizes(args.sizes)
    passes = getattr(args, "passes", 3)
    if passes < 1:
        raise ValueError(f"--passes {passes}: at least one timed pass")
    kinds = {"yes": [True], "no": [False], "both": [False, True]}[args.embeddings]
    rows = []
    for n_users, n_items in sizes:
        for emb in kinds:
            row = measure(settings, n_users, n_items, emb, args.events_per_user, args.lists,
                          args.recall_lists, args.seed, args.no_progress, args.index_min_items, passes)  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:  # rewritten after each configuration: a long run keeps what it measured
                Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
        if getattr(args, "workers", None):
            from streamrec.bench.scaleout import measure_workers

            row = measure_workers(settings, n_users, n_items, args.events_per_user, args.workers,
                                  args.seed, args.no_progress)  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0
