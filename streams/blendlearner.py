"""Learning the blend weights online from what users pick out of their own candidate lists.

A challenger of the fixed blend of :mod:`streamrec.streams.ranking` (off by default, see
:class:`LearnedBlendConfig`): it keeps each user's last candidate set and features, and one logistic
regression step per interaction separates the picked candidate's normalised signal values from
those of other candidates of that list. Kept apart from the ranking core, which it only calls.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable

import numpy as np

from streamrec.streams.ranking import BlendWeights, Signal, best_k, candidates, feature_matrix


@dataclass(frozen=True, slots=True)
class LearnedBlendConfig:
    """Learn the blend weights from what users pick out of their own candidate lists (off by default).

    When a user interacts with a row that was a candidate of their last computed list, one
    logistic-regression SGD step per pair separates its normalised signal values (label 1) from those
    of ``n_negatives`` other candidates of that list (label 0; a ``shown_share`` of them drawn from
    the list's top ``k``, the ones shown and not taken, the rest from all its candidates). The final
    weights are ``(1 - mix) * prior + mix * learned``, the learned (non-negative) coefficients
    rescaled to the priors' total.

    Off as the ranker by default: it is a challenger of the self-tuning blend (streams/tuner.py),
    served only when it wins there. Alone it did not help on the synthetic benchmark (prequential HR@10 0.094
    against 0.095 for the fixed CRM weights, 0.092 against 0.095 with content signals; negatives
    drawn from the shown top ``k`` taught it that high-scoring candidates are *not* picked, the
    selection bias of learning from one's own lists, and made it worse still).
    """

    enabled: bool = False
    lr: float = 0.05
    l2: float = 1e-4
    n_negatives: int = 4
    shown_share: float = 0.0
    mix: float = 0.5
    #: the last candidate set (rows, features as uint8) is kept for this many users (LRU)
    max_users: int = 2000
    #: no learned weights are used before this many learned interactions
    warmup: int = 100
    seed: int = 0


class BlendLearner:
    """Online logistic regression over the signals' normalised values (see :class:`LearnedBlendConfig`),
    learned by River's ``linear_model.LogisticRegression`` (plain SGD at ``lr``, L2 at ``l2``).

    >>> bl = BlendLearner(LearnedBlendConfig(warmup=0, n_negatives=1))
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> bl.remember("ann", ("cooccur", "tags"), np.array([3, 7]), X, np.array([1, 0]))
    >>> for _ in range(50):
    ...     _ = bl.learn("ann", 7)                    # always the row strong on "tags"
    >>> bl.coef["tags"] > 0 > bl.coef["cooccur"]
    True
    >>> bl.weights(("cooccur", "tags"), (False, False), BlendWeights(cooccur=1.0, tags=1.0)).tolist()
    [0.5, 1.5]
    """

    def __init__(self, config: LearnedBlendConfig | None = None):
        self.config = config or LearnedBlendConfig()
        self.model = self._river(self.config)
        self.n = 0
        #: user -> (signal names, sorted candidate rows, uint8 features, positions of the top k)
        self._mem: OrderedDict[Hashable, tuple] = OrderedDict()
        self._rng = random.Random(self.config.seed)

    @staticmethod
    def _river(cfg: LearnedBlendConfig):
        from river import linear_model, optim

        return linear_model.LogisticRegression(optimizer=optim.SGD(cfg.lr), l2=cfg.l2, intercept_lr=cfg.lr)

    @property
    def coef(self) -> dict[str, float]:
        return dict(self.model.weights)

    @property
    def bias(self) -> float:
        return float(self.model.intercept)

    def weights(self, names, sources, prior: BlendWeights) -> np.ndarray:
        p = np.array([prior.of(name, src) for name, src in zip(names, sources)])
        cfg = self.config
        if self.n < max(cfg.warmup, 1) or cfg.mix <= 0:
            return p
        learned = np.array([max(self.coef.get(name, 0.0), 0.0) for name in names])
        total = learned.sum()
        if total <= 0:
            return p
        return (1.0 - cfg.mix) * p + cfg.mix * learned * (p.sum() / total)

    def remember(self, user: Hashable, names, cand: np.ndarray, X: np.ndarray, best: np.ndarray) -> None:
        q = np.clip(np.rint(X * 255.0), 0, 255).astype(np.uint8)
        mem = self._mem
        mem[user] = (tuple(names), np.asarray(cand, np.int64), q, np.asarray(best, np.int64))
        mem.move_to_end(user)
        while len(mem) > self.config.max_users:
            mem.popitem(last=False)

    def learn(self, user: Hashable, row: int) -> bool:
        """One step if ``row`` was among ``user``'s remembered candidates; ``True`` when it learned."""
        entry = self._mem.get(user)
        if entry is None:
            return False
        names, cand, q, best = entry
        j = int(np.searchsorted(cand, row))
        if j >= len(cand) or cand[j] != row or len(cand) < 2:
            return False
        cfg, rnd = self.config, self._rng.random
        pairs = [(j, 1.0)]
        for _ in range(cfg.n_negatives):
            if len(best) > 1 and rnd() < cfg.shown_share:
                i = int(best[int(rnd() * len(best))])
            else:
                i = int(rnd() * len(cand))
            if i != j:
                pairs.append((i, 0.0))
        learn = self.model.learn_one
        for i, y in pairs:
            learn(dict(zip(names, (q[i] / 255.0).tolist())), bool(y))
        self.n += 1
        return True

    def to_state(self) -> dict:
        users = list(self._mem)
        return {
            "coef": self.coef, "bias": self.bias, "n": self.n, "rng": self._rng.getstate(),
            "users": users, "mem": [list(self._mem[u]) for u in users],
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict | None, config: LearnedBlendConfig) -> BlendLearner:
        self = cls(config)
        if state:
            # River keeps no public setter for a linear model's weights (``clone`` keeps only the
            # hyper-parameters), so a restored learner writes them back into its weight vector
            for name, value in state["coef"].items():
                self.model._weights[name] = float(value)
            self.model.intercept, self.n = float(state["bias"]), state["n"]
            version, internal, gauss = state["rng"]
            self._rng.setstate((version, tuple(internal), gauss))
            for u, (names, cand, q, best) in zip(state["users"], state["mem"]):
                self._mem[u] = (tuple(names), cand, q, best)
        return self


def rank_learned(
    signals: list[Signal],
    weights: BlendWeights,
    allowed: np.ndarray,
    k: int,
    learner: BlendLearner,
    user: Hashable,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rank` with the learner's weights; remembers the user's candidates for learning."""
    n = len(allowed)
    cand = candidates(signals, allowed)
    if not len(cand) or k <= 0:
        return cand[:0], np.zeros(0)
    X = feature_matrix(signals, cand, n)
    names = [s.name for s in signals]
    total = X @ learner.weights(names, [s.source for s in signals], weights)
    best = best_k(total, k)
    learner.remember(user, names, cand, X, best)
    return cand[best], total[best]
