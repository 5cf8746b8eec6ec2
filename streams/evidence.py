"""The self-tuning blend's evidence: paired rewards per arm, the test on them, and their merge.

Why a module of its own: the tuner (streams/tuner.py) decides from these sums alone, and the
sums are additive, which is what lets partitioned workers pool their evidence
(streams/tunershare.py): each worker's block of sums since the last exchange is added to the
others' as if its events came after theirs.

Per arm ``a`` and paired event ``t`` (every arm scored on the same event), with the served
weighting as arm 0: the sums of ``r_a``, ``r_a**2`` and ``r_a * r_0``, decayed by a half-life in
events, so the comparison follows a stream whose best weighting drifts.

>>> e = PairedEvidence(2, half_life=0)              # no decay: plain sums
>>> for r in ([0.0, 1.0], [1.0, 1.0], [0.0, 0.5]):
...     e.add(np.array(r))
>>> e.n, e.mean().tolist()
(3.0, [0.3333333333333333, 0.8333333333333334])
>>> other = PairedEvidence(2, half_life=0, shared=True)
>>> other.add(np.array([1.0, 0.0]))
>>> e.merge(other.take()), e.events, e.mean().tolist()
(True, 4, [0.5, 0.625])
>>> other.take() is None                          # nothing new since
True
"""

from __future__ import annotations

import numpy as np


class PairedEvidence:
    """Decayed sums of the paired rewards of ``arms`` arms (arm 0: the served weighting)."""

    def __init__(self, arms: int, half_life: float, shared: bool = False):
        self.sum, self.sq, self.cross = np.zeros(arms), np.zeros(arms), np.zeros(arms)
        self.n = 0.0  # the decayed count of paired events
        self.events = 0  # paired events, undecayed (own and merged)
        self.decay = 0.5 ** (1.0 / half_life) if half_life > 0 else 1.0
        #: with ``shared``: this worker's own sums since the last :meth:`take`, for the others
        self._own = self._block(arms) if shared else None

    @staticmethod
    def _block(arms: int) -> list:
        return [np.zeros((3, arms)), 0.0, 0]

    def add(self, reward: np.ndarray) -> None:
        """One paired event: ``reward`` per arm."""
        g = self.decay
        self.sum = g * self.sum + reward
        self.sq = g * self.sq + reward * reward
        self.cross = g * self.cross + reward * reward[0]
        self.n = g * self.n + 1.0
        self.events += 1
        if self._own is not None:
            own = self._own
            own[0] = g * own[0] + np.stack([reward, reward * reward, reward * reward[0]])
            own[1], own[2] = g * own[1] + 1.0, own[2] + 1

    def mean(self) -> np.ndarray:
        return self.sum / max(self.n, 1e-12)

    def z(self, margin: float) -> np.ndarray:
        """Per arm, the z-statistic of ``reward - (1 + margin) * served reward`` (arm 0: 0)."""
        n = max(self.n, 1.0)
        c = 1.0 + margin
        mean = (self.sum - c * self.sum[0]) / n
        second = (self.sq - 2 * c * self.cross + c * c * self.sq[0]) / n
        z = mean / np.sqrt(np.maximum(second - mean * mean, 1e-12) / n)
        z[0] = 0.0
        return z

    def take(self) -> dict | None:
        """This worker's own sums since the last call (None: no event since), as a block."""
        if self._own is None or not self._own[2]:
            return None
        sums, n, events = self._own
        self._own = self._block(len(self.sum))
        return {"sums": sums.tolist(), "n": n, "events": events}

    def merge(self, block: dict) -> bool:
        """Another worker's :meth:`take` over the same arms, added after this one's events
        (False, and nothing added, when it has another number of arms)."""
        sums = np.asarray(block["sums"], dtype=float)
        if sums.shape != (3, len(self.sum)):
            return False
        g = self.decay ** int(block["events"])
        self.sum, self.sq, self.cross = g * self.sum + sums[0], g * self.sq + sums[1], g * self.cross + sums[2]
        self.n = g * self.n + float(block["n"])
        self.events += int(block["events"])
        return True
