"""Item-side deltas for incremental checkpoints: which item rows changed since the last one.

Why: a delta checkpoint after 1% of the users had an event held the whole item side (neighbour
lists, transitions, item factors, popularity), 24-51% of a full checkpoint without embeddings.
Only the item rows those events touched changed; a delta now holds just those rows, and loading
it overwrites them on top of the snapshots before it.

Two ways of knowing what changed, both free on the per-event path:

- dense per-item arrays (item factors, biases, popularity counts) are compared with a copy taken
  at the last checkpoint (:class:`DenseBase`): one vectorised pass at checkpoint time, no
  bookkeeping per event (a decay rescale that touches every row simply shows up as every row);
- sparse structures (co-occurrence and transition rows) already know the rows they touched for
  their sweeps; the owners keep those rows until the next checkpoint.

>>> base = DenseBase()
>>> q, bias = np.zeros((4, 2)), np.zeros(4)
>>> base.reset(q=q, bias=bias)
>>> q[1, 0] = 0.5; bias[3] = 1.0
>>> base.changed(5, q=q, bias=bias).tolist()   # row 4 is new since the checkpoint
[1, 3, 4]
>>> part = rows_of(np.arange(5.0), np.array([1, 4]), 5); part["rows"].tolist(), part["vals"].tolist()
([1, 4], [1.0, 4.0])
>>> apply_rows(np.zeros(3), part).tolist()
[0.0, 1.0, 0.0, 0.0, 4.0]
"""

from __future__ import annotations

import numpy as np


class DenseBase:
    """Copies of dense per-row arrays as of the last checkpoint, to diff against. The copies
    keep spare rows, so a checkpoint after new items arrived copies into them instead of
    allocating a second copy of everything while the first is still held."""

    def __init__(self) -> None:
        self._base: dict[str, np.ndarray] | None = None
        self._n: dict[str, int] = {}

    def reset(self, **arrays: np.ndarray) -> None:
        """The arrays as they are now (a checkpoint is durable)."""
        old = self._base or {}
        base = {}
        for name, a in arrays.items():
            b = old.get(name)
            if b is None or len(b) < len(a) or b.shape[1:] != a.shape[1:]:
                b = np.empty((len(a) + len(a) // 4 + 16, *a.shape[1:]), a.dtype)
            b[: len(a)] = a
            base[name], self._n[name] = b, len(a)
        self._base = base

    def changed(self, n: int, **arrays: np.ndarray) -> np.ndarray:
        """Rows below ``n`` where any array differs from its copy (rows past a copy: all);
        every row when there is no copy yet."""
        if self._base is None:
            return np.arange(n, dtype=np.int64)
        diff = np.zeros(n, bool)
        for name, a in arrays.items():
            b = self._base[name]
            m = min(n, len(a), self._n[name])
            d = a[:m] != b[:m]
            diff[:m] |= d.any(axis=tuple(range(1, d.ndim))) if d.ndim > 1 else d
            diff[m:] = True
        return np.flatnonzero(diff)


def rows_of(a: np.ndarray, rows: np.ndarray, n: int) -> dict:
    """The rows ``rows`` of ``a`` (its first ``n`` rows being the state) as a partial section."""
    return {"rows": rows, "vals": a[rows], "n": n}


def apply_rows(a: np.ndarray, part: dict) -> np.ndarray:
    """``a`` grown to ``part["n"]`` rows (zeros) with the rows of :func:`rows_of` written in."""
    n = int(part["n"])
    if len(a) < n:
        grown = np.zeros((n, *a.shape[1:]), a.dtype)
        grown[: len(a)] = a
        a = grown
    rows = part["rows"]
    a[rows] = part["vals"].reshape(len(rows), *a.shape[1:])
    return a
