"""The yardstick of the online MF's learning speed: River's own ``learn_one`` on the equivalent
model (what ``streamrec bench stream`` compares the worker's learning rate with).

Why apart from :mod:`~streamrec.streams.model`: it is a benchmark stage, run once per benchmark,
and the only code that times River itself; the model only needs River in its tests.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any, Iterable

from streamrec.streams.model import MFConfig


def bare_river_learn_rate(
    events: Iterable[dict], config: MFConfig | None = None, with_negatives: bool = True
) -> float:
    """Events per second of River's own ``learn_one`` on the equivalent model: the yardstick.

    ``events`` are dicts shaped like the wire records (``type`` ``click`` or ``rating``, ``user``,
    ``item``, ``rating``). A click (and a rating under the ``interaction`` policy) is a positive and,
    with ``with_negatives``, ``config.n_negatives`` further ``learn_one`` calls with target 0, i.e.
    the same number of SGD steps :class:`~streamrec.streams.model.OnlineMF` takes. Negatives are drawn uniformly here, before
    the clock starts, so only River's own work is timed.
    """
    cfg = config or MFConfig()
    rnd = random.Random(cfg.seed)
    events = list(events)
    items = list(dict.fromkeys(e["item"] for e in events if "item" in e))
    pairs: list[tuple[Any, Any, float]] = []
    n_events = 0
    for e in events:
        if e.get("type") not in ("click", "rating"):
            continue
        n_events += 1
        user, item = e["user"], e["item"]
        rating = e.get("rating")
        if rating is not None and cfg.ratings.mode == "explicit":
            pairs.append((user, item, float(rating)))
            continue
        if rating is not None and not cfg.ratings.positive(rating):
            pairs.append((user, item, 0.0))
            continue
        pairs.append((user, item, 1.0))
        if with_negatives:
            pairs.extend((user, items[int(rnd.random() * len(items))], 0.0) for _ in range(cfg.n_negatives))
    model = cfg.river_model()
    learn = model.learn_one
    start = time.perf_counter()
    for user, item, y in pairs:
        learn(user, item, y)
    elapsed = time.perf_counter() - start
    return n_events / elapsed if elapsed > 0 else math.inf
