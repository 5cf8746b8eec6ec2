"""``streamrec bench learn``: learning cost per event of the stream worker's model, with and without
a part, on the same events in the same run.

Why a benchmark of its own: ``bench stream`` measures the whole worker against the broker (decode,
refreshes, checkpoints), where one signal's share of the per-event path drowns in noise on a shared
machine. Here the same event stream (MovieLens ratings in timestamp order when the data is there,
else the synthetic clicks) is learned by fresh :class:`~streamrec.streams.recommender.Recommender`
models, the variants alternating round after round (A B A B ...), so load changes hit both alike;
each variant's figure is its median µs/event of CPU time (``time.process_time``: what the learning
costs, not how long other jobs on a shared machine held the cores) over the rounds, and the ratio
to the reference (``base``, the first variant) is the result. No services are needed.

Variants: ``base`` (the default model without transitions) and ``transitions`` (the default model);
a run reports both and the ratio ``transitions / base``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from streamrec.settings import Settings


def variants() -> dict:
    """The configurations compared, reference first.

    >>> list(variants())
    ['base', 'transitions']
    """
    from streamrec.streams.recommender import RecommenderConfig

    cfg = RecommenderConfig()
    return {"base": replace(cfg, transitions=replace(cfg.transitions, enabled=False)), "transitions": cfg}


def learn_all(config, events, seed: int = 0) -> float:
    """CPU seconds to learn ``events`` (replay ``Event`` tuples) into a fresh model of ``config``."""
    from streamrec.streams.recommender import Recommender

    rec = Recommender(config, seed=seed)
    click, rate = rec.learn_click, rec.learn_rating
    t0 = time.process_time()
    for e in events:
        if e.rating is None:
            click(e.user, e.item, e.ts)
        else:
            rate(e.user, e.item, e.rating, e.ts)
    return time.process_time() - t0


def load_events(limit: int | None, settings: Settings) -> tuple[str, list]:
    from streamrec.bench.replay_data import default_movielens_dir, load_movielens, load_synthetic

    path = default_movielens_dir(settings=settings)
    data = load_movielens(path) if Path(path).is_dir() else load_synthetic()
    return data.name, data.head(limit).events


def main(settings: Settings, events: int | None = None, rounds: int = 5, json_path: str | None = None) -> int:
    name, evs = load_events(events, settings)
    configs = variants()
    times: dict[str, list[float]] = {v: [] for v in configs}
    for r in range(rounds):
        for v, cfg in configs.items():
            times[v].append(learn_all(cfg, evs) * 1e6 / len(evs))
        print(f"[bench learn] round {r + 1}/{rounds}: " +
              ", ".join(f"{v} {t[-1]:.1f} µs/event" for v, t in times.items()), file=sys.stderr, flush=True)  # fmt: skip
    med = {v: statistics.median(t) for v, t in times.items()}
    out = {"dataset": name, "events": len(evs), "rounds": rounds, "us_per_event": med,
           "ratio": med["transitions"] / med["base"], "rounds_us_per_event": times}  # fmt: skip
    print(f"| variant | µs/event (median of {rounds}) | vs base |\n| --- | ---: | ---: |")
    for v, t in med.items():
        print(f"| {v} | {t:.1f} | {t / med['base']:.2f} |")
    print(f"({name}, {len(evs):,} events learned per round)")
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return 0
