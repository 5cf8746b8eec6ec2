"""Similar items: an item's co-occurrence and embedding neighbours, blended into one ranked list.

Why a blend of the two: co-occurrence knows what people take together but nothing of an item
nobody has taken yet; the embedding knows what reads alike but nothing of taste. Each is scaled to
a best of 1 (co-occurrence counts and cosines are on unrelated scales) and weighed with the
recommender's own ``cooccur`` and ``embedding`` blend weights, so the similar lists follow the same
configuration as the users' lists. Only positive evidence counts; the item itself and disallowed
(deleted) rows never appear.

>>> import numpy as np
>>> rows = blend(np.array([0.0, 4.0, 2.0, 0.0]), np.array([1.0, 0.1, -0.5, 0.9]),
...              allowed=np.array([True, True, True, True]), row=0, k=3, w_cooccur=1.0, w_embedding=0.9)
>>> [(int(r), round(float(s), 2)) for r, s in rows]
[(1, 1.1), (3, 0.9), (2, 0.5)]
"""

from __future__ import annotations

import numpy as np

from streamrec.streams.ranking import top_n


def blend(cooccur: np.ndarray | None, cosine: np.ndarray | None, allowed: np.ndarray, row: int, k: int,
          w_cooccur: float, w_embedding: float) -> list[tuple[int, float]]:  # fmt: skip
    """The ``k`` best (row, score) by ``w_cooccur * cooccur / max + w_embedding * cosine / max``
    over positive values; ``cooccur`` and ``cosine`` are dense over rows (``None``: no such part)."""
    total = np.zeros(len(allowed))
    for values, weight in ((cooccur, w_cooccur), (cosine, w_embedding)):
        if values is None or weight <= 0:
            continue
        v = np.where(np.isfinite(values) & (values > 0), values, 0.0)[: len(total)]
        v[row] = 0.0
        best = v.max() if len(v) else 0.0
        if best > 0:
            total[: len(v)] += weight * v / best
    total[~allowed] = 0.0
    total[row] = 0.0
    total[total <= 0] = -np.inf
    rows = top_n(total, k)
    return [(r, float(total[r])) for r in rows.tolist()]


class Sweep:
    """A rolling cursor over the item rows, so every item's similar-item list is rewritten at least
    once per ``cycle_s``, not only when the item is touched.

    Why: the rows an item's list is made of change when *other* items are taken together or
    embedded, and an item nobody touches would keep a list that only ages (or never get one).
    Each write takes the rows the elapsed time has earned (``n_items * elapsed / cycle_s``), at
    most ``limit`` (bounded work per write); what is not taken stays owed (:attr:`behind` says so),
    so a full round takes ``cycle_s`` while the rate fits the limit. Pure: the caller passes ``now``.

    >>> s = Sweep(cycle_s=100.0)
    >>> s.take(10, now=0.0, limit=4)  # the first write starts at once, within the limit
    [0, 1, 2, 3]
    >>> s.take(10, now=50.0, limit=4), s.behind  # 50 s earn half the rows; 4 now, 1 owed
    ([4, 5, 6, 7], True)
    >>> s.take(10, now=60.0, limit=4), s.behind  # 1 owed + 1 earned; the cursor wraps around
    ([8, 9], False)
    >>> s.take(10, now=70.0, limit=4)
    [0]
    """

    def __init__(self, cycle_s: float):
        self.cycle_s = cycle_s
        self.cursor = 0
        self.credit = 0.0
        self.last: float | None = None
        #: rows were owed beyond the limit at the last write: the cycle is not kept at this rate
        self.behind = False

    def take(self, n_items: int, now: float, limit: int) -> list[int]:
        """The rows whose lists are due at ``now`` over ``n_items`` rows, at most ``limit``."""
        if n_items <= 0:
            return []
        if self.last is None:
            self.credit = float(limit)
        else:
            self.credit = min(float(n_items), self.credit + n_items * max(0.0, now - self.last) / self.cycle_s)
        self.last = now
        count = min(int(self.credit + 1e-9), n_items, limit)
        self.credit -= count
        self.behind = self.credit >= 1.0 and count == limit
        start, self.cursor = self.cursor % n_items, (self.cursor + count) % n_items
        return [(start + j) % n_items for j in range(count)]
