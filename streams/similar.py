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
