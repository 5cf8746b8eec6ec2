"""A blend that tunes itself on the deployment's own stream: shadow weightings, promoted by a test.

Why this way: the blend weights that suit one catalogue hurt another (on MovieLens the content
signals add 7% HR@10; on the synthetic set the same weights halve it), and nobody hand-tunes seven
weights per deployment. Every weighting's list can be computed without serving it, from the same
candidates and normalised signal values (one matrix product; the served list itself leaves out
what only collaborative signals at weight 0 nominated, :func:`served_pool`), so each candidate
weighting is scored on the same events as the served one: at each refresh the tuner computes, for the user, the served
list and the top ``depth`` of every *challenger*; at each of the user's next events it notes where
the item ranks in each. The comparison is paired and exact for the stream as it was (a challenger's
list was not shown, so in a live deployment a user cannot click what only it would have shown: the
bias favours the served weighting, which makes promotion conservative, never reckless).

The challengers are the served weighting with one signal halved, doubled or switched off (or
switched on at ``on_weight`` when it is off), plus the weighting learned online by River (a
:class:`~streamrec.streams.blendlearner.BlendLearner`, a ``river.linear_model.LogisticRegression`` over
the signals' normalised values of picked against other candidates). A challenger is promoted when,
after at least ``min_events`` paired events, its mean reward beats the served one's by more than the
relative ``margin`` (counted from the tuner's ``margin_from``-th paired event on) with a one-sided
z-test at ``z`` (the reward is NDCG at ``depth``: with one relevant item it is ``1/log2(rank+1)``
within the first ``depth``, a lower-variance stand-in for HR@10 that moves with it); from
``early_looks * min_events`` on it may be promoted earlier, at the stricter level
``z * sqrt(min_events / paired)``. Then the challengers are rebuilt around the new
weighting and the count starts again: a hill climb whose every step is a significant win on fresh
events. Promotions are logged, kept in the state (the worker checkpoints it) and counted in the
metrics. Partitioned workers pool their evidence and share one climb (streams/tunershare.py).

Why early looks: the first steps decide a stream's first thousand events (on the synthetic set
``fresh`` at its cold-start weight 1.0 halves NDCG once the model has learned a little, and every
300 events spent finding that out are served at half quality), while a test at z = 2.5 on every
look from 100 events on promotes noise (``min_events=100`` lost 2.7% HR@10 there). A boundary that
falls as ``1/sqrt(paired)`` keeps the false promotions of early looks rare and lets a large
difference through after 100-200 events.

The tuner talks to the recommender only through its public methods (``allowed``, ``signals``,
``fallback``, ``set_weights``, ``index``, ``config``).

>>> t = Tuner(TunerConfig(min_events=2), {"cooccur": 1.0, "embedding": 0.0})
>>> sorted(a.name for a in t.arms)        # the served weighting is arm 0, then the challengers
['cooccur*0.5', 'cooccur*2', 'cooccur=0', 'embedding=0.25', 'learned', 'served']
>>> t.weights["embedding"]
0.0
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import asdict, dataclass

import numpy as np

from streamrec.settings import SIGNALS
from streamrec.streams.evidence import PairedEvidence
from streamrec.streams.blendlearner import BlendLearner, LearnedBlendConfig
from streamrec.streams.challengers import Arm, challengers, tunable
from streamrec.streams.nominate import Nominated, as_nominated, feature_columns, union_sorted
from streamrec.streams.ranking import CONTENT_WEIGHTS, BlendWeights, best_k

log = logging.getLogger("streamrec.tuner")
START_OFF = ("embedding", "recent", "tags", "transitions")


@dataclass(frozen=True, slots=True)
class TunerConfig:
    enabled: bool = True
    #: paired evaluated events since the last promotion before a challenger may be promoted
    min_events: int = 300
    #: a challenger must beat the served weighting's mean reward by this share ...
    margin: float = 0.01
    #: ... once the tuner has scored this many paired events in all; before that a significant
    #: win is enough: the start weighting is a guess, not a choice the stream has earned, and a
    #: margin there stops the first climb short (on the synthetic set at 60 s it kept the
    #: embedding at 0.25 where 0.5 serves 2% more), while later it keeps small steps from churning
    margin_from: int = 5000
    #: ... with a one-sided z-test at this level (many challengers, many looks: strict)
    z: float = 2.5
    #: rank depth of the reward (NDCG@depth) and of the shadow lists kept per user
    depth: int = 20
    #: weight a switched-off signal is tried at
    on_weight: float = 0.25
    #: users whose shadow lists are kept (LRU); others are scored again at their next refresh
    max_users: int = 20_000
    #: look for a promotion every this many paired events
    check_every: int = 50
    #: the paired rewards are averaged with this half-life (events), so the comparison follows a
    #: stream whose best weighting drifts (what suits the first days may not suit the next)
    half_life: float = 3000.0
    #: the River-learned weighting as a challenger; it moves every weight at once, so it needs
    #: ``learned_patience`` times the evidence of a one-signal step before it is promoted
    learned: bool = True
    learned_patience: float = 4.0
    #: where the climb starts: the model's weights with these signals off, so the CRM is served
    #: until the stream shows that the content signals help, and ordered transitions until it
    #: shows an order (on the synthetic set, whose users click their topics in no order, they cost
    #: the fixed-weight CRM 2.5%; on MovieLens the tuner switches them on within its first steps); ``fresh`` keeps its weight, because
    #: only it can show a new item that nobody has interacted with yet (the zero-shot cold start;
    #: at 0.25 instead of 1.0 a new item reached none of its matching users' lists in the cold-start
    #: scenario), and the tuner turns it down or off where the stream says so
    start_off: tuple[str, ...] = START_OFF
    #: the signals the tuner may move (empty: every signal the model computes); the others keep
    #: their weights, and the River-learned weighting, which moves every weight, is left out
    signals: tuple[str, ...] = ()
    #: looks before ``min_events`` (from this share of it), each at a stricter level
    #: ``z * sqrt(min_events / paired)`` (a group-sequential boundary of O'Brien-Fleming's shape):
    #: a large difference is acted on early, a small one still needs the full count
    early_looks: float = 1 / 3

    @classmethod
    def from_settings(cls, settings) -> TunerConfig:
        """The worker's tuner. ``STREAMREC_TUNE_BLEND=auto`` (the default): on, unless
        ``STREAMREC_BLEND_WEIGHTS`` pins the weights; ``on``: tune, starting from those weights when
        given; ``off``: serve the configured weights as they are.

        >>> from streamrec.settings import Settings
        >>> c = TunerConfig.from_settings(Settings.from_env({"STREAMREC_BLEND_WEIGHTS": "embedding=0.5",
        ...                                                  "STREAMREC_TUNE_BLEND": "on"}))
        >>> c.enabled, c.start_off, c.min_events
        (True, (), 300)
        >>> TunerConfig.from_settings(Settings.from_env({"STREAMREC_BLEND_WEIGHTS": "embedding=0.5",
        ...                                              "STREAMREC_TUNE_BLEND": "auto"})).enabled
        False
        >>> TunerConfig.from_settings(Settings()).start_off     # the default climb's start
        ('embedding', 'recent', 'tags', 'transitions')
        >>> TunerConfig.from_settings(Settings.from_env({"STREAMREC_TUNE_SIGNALS": "transitions"})).signals
        ('transitions',)
        """
        mode = settings.tune_blend
        enabled = mode == "on" or (mode == "auto" and not settings.blend_weights)
        return cls(enabled=enabled, min_events=settings.tune_min_events, margin=settings.tune_margin,
                   margin_from=settings.tune_margin_from,
                   start_off=() if settings.blend_weights else START_OFF,
                   signals=tuple(settings.tune_signals))  # fmt: skip


class Tuner:
    """Serves one weighting, scores its challengers in shadow, promotes a significant winner."""

    def __init__(self, config: TunerConfig | None = None, start: dict[str, float] | None = None):
        self.config = cfg = config or TunerConfig()
        self.weights: dict[str, float] = {n: float(w) for n, w in (start or {}).items()}
        learned = cfg.learned and not cfg.signals  # the learned weighting moves every weight
        self.learner = BlendLearner(LearnedBlendConfig(enabled=True, warmup=200)) if learned else None
        self.generation = 0
        self.promotions: list[dict] = []
        #: the climb the shared delta log has confirmed, kept apart from ``promotions`` so that a
        #: restart does not take its own unannounced steps as agreed (None: not shared)
        self.confirmed: list[dict] | None = None
        self.scored = 0  # paired events in all
        self._tops: OrderedDict[Hashable, tuple[int, np.ndarray]] = OrderedDict()
        self._shared = False  # evidence pooled with other workers' (see share)
        self._rebuild()

    @classmethod
    def for_model(cls, model, config: TunerConfig | None = None) -> Tuner:
        """A tuner starting from ``model``'s weights, ``config.start_off`` switched off. It tunes
        only the signals ``model`` can produce (:func:`tunable`): an arm that moves a signal the
        model never computes ranks exactly as the served one and only costs a shadow list."""
        cfg = config or TunerConfig()
        w = model.config.weights
        start = {n: float(w.of(n)) for n in tunable(model.config)}
        start.update({n: 0.0 for n in cfg.start_off if n in start})
        return cls(cfg, start)

    def _rebuild(self) -> None:
        self.arms = challengers(self.weights, self.config.on_weight, self.config.signals)
        if self.learner is not None:
            self.arms.append(Arm("learned", ()))
        n = len(self.arms)
        self.evidence = PairedEvidence(n, self.config.half_life, self._shared)
        self.generation += 1

    @property
    def paired(self) -> int:
        """Paired events since the last promotion (this worker's and, shared, the others')."""
        return self.evidence.events

    # -- serving ------------------------------------------------------------------------------------

    def _prior(self, extra: tuple = ()) -> BlendWeights:
        return BlendWeights(**{n: self.weights.get(n, 0.0) for n in SIGNALS}, extra=extra)

    def _matrix(self, signals, extra: tuple) -> np.ndarray:
        """Signals x arms: each arm's weight of each signal (runtime sources as configured)."""
        prior = self._prior(extra)
        names, sources = [s.name for s in signals], [s.source for s in signals]
        W = np.zeros((len(signals), len(self.arms)))
        for a, arm in enumerate(self.arms):
            if arm.name == "learned":
                W[:, a] = self.learner.weights(names, sources, prior)
                continue
            w = dict(arm.weights)
            W[:, a] = [prior.of(n, True) if src else w.get(n, 0.0) for n, src in zip(names, sources)]
        return W

    def recommend(self, model, user: Hashable, k: int | None = None) -> list[tuple[Hashable, float]]:
        """``model.recommend`` with the served weighting over the dense signals (the reference
        path; the worker ranks through :meth:`rank` inside a batched ranking pass)."""
        k = model.config.k if k is None else k
        allowed = model.allowed(user)
        signals = as_nominated(model.signals(user, allowed), allowed)
        if not signals:
            self._tops.pop(user, None)
            return model.fallback(k)
        cand = union_sorted([s.rows for s in signals if len(s.rows)])
        if not len(cand) or k <= 0:
            return []
        rows, scores = self.rank(model, user, signals, cand, feature_columns(signals, cand), k)
        items = model.index.items
        return [(items[r], float(s)) for r, s in zip(rows.tolist(), scores.tolist())]

    def ranker(self, model):
        """``rank`` bound to ``model``: what a ranking pass calls per user (see
        :class:`~streamrec.streams.candidates.RankPass`)."""
        return lambda user, signals, cand, X, k: self.rank(model, user, signals, cand, X, k)

    def rank(self, model, user: Hashable, signals: list[Nominated], cand: np.ndarray, X: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """The served weighting's top ``k`` of ``cand`` (the union of the ``signals``' nominees;
        ``X``: their normalised values there, one column each), as ``(rows, scores)``; remembers
        every challenger's list. The served list is drawn from :func:`served_pool`."""
        W = self._matrix(signals, model.config.weights.extra)
        S = X @ W
        pool = served_pool(signals, W[:, 0], cand)
        if pool is None:
            served = best_k(S[:, 0], k)
            scores = S[served, 0]
        else:  # the served weighting's own candidates, normalised over them; a signal at weight
            # 0 adds an exact 0 to each score, so its column is left at 0 unread
            sp = feature_columns(signals, cand[pool], W[:, 0]) @ W[:, 0]
            best = best_k(sp, k)
            served, scores = pool[best], sp[best]
        depth = self.config.depth
        tops = np.full((len(self.arms), depth), -1, dtype=np.int64)
        for a in range(len(self.arms)):
            rows = served[:depth] if a == 0 else best_k(S[:, a], depth)
            tops[a, : len(rows)] = cand[rows]
        self._tops[user] = (self.generation, tops)
        self._tops.move_to_end(user)
        while len(self._tops) > self.config.max_users:
            self._tops.popitem(last=False)
        if self.learner is not None:
            self.learner.remember(user, [s.name for s in signals], cand, X, served[:10])
        return cand[served], scores

    # -- learning -----------------------------------------------------------------------------------

    def observe(self, model, user: Hashable, item: Hashable) -> None:
        """One click or rating, before it is learned: score every arm's last list for ``user``."""
        row = model.index.get(item)
        if row is None:
            return
        if self.learner is not None:
            self.learner.learn(user, row)
        entry = self._tops.get(user)
        if entry is None or entry[0] != self.generation:
            return
        eq = entry[1] == row
        found = eq.any(axis=1)
        reward = np.where(found, 1.0 / np.log2(eq.argmax(axis=1) + 2.0), 0.0)
        self.evidence.add(reward)
        self.scored += 1
        if self.paired % self.config.check_every == 0:
            self._maybe_promote(model)

    def test(self) -> np.ndarray:
        """Per arm, the z-statistic of ``reward - (1 + margin) * served reward`` (arm 0: 0), the
        margin counted once ``margin_from`` paired events were scored.

        >>> t = Tuner(TunerConfig(learned=False, margin_from=0), {"cooccur": 1.0})  # served + 3 challengers
        >>> rewards = np.array([[1, 1, 0, 1], [0, 1, 0, 0], [1, 1, 0, 1], [0, 1, 0, 0.5]])
        >>> for r in rewards: t.evidence.add(r)
        >>> t.test().round(2).tolist()       # always found wins, never found loses; one better event is no proof
        [0.0, 1.96, -2.0, 1.09]
        """
        young = self.scored < self.config.margin_from
        return self.evidence.z(0.0 if young else self.config.margin)

    def _maybe_promote(self, model) -> None:
        if self.paired < self.config.early_looks * self.config.min_events:
            return
        z = self.test()
        if self.learner is not None and self.paired < self.config.learned_patience * self.config.min_events:
            z[-1] = 0.0  # the learned arm is the last
        best = int(np.argmax(z))
        level = self.config.z * math.sqrt(max(1.0, self.config.min_events / self.paired))
        if best == 0 or z[best] <= level:
            return
        arm, n = self.arms[best], self.paired
        before, after = self.evidence.mean()[[0, best]].tolist()
        weights = dict(arm.weights) if arm.name != "learned" else self._learned_weights(model)
        self.weights = {k: float(v) for k, v in weights.items()}
        record = {"arm": arm.name, "events": n, "at_event": self.scored, "reward_served": round(before, 5),
                  "reward_promoted": round(after, 5), "z": round(float(z[best]), 2),
                  "weights": dict(self.weights)}  # fmt: skip
        self.promotions.append(record)
        log.info("blend tuner: promoted %s after %d paired events (NDCG@%d %.4f -> %.4f, z %.1f): %s",
                 arm.name, n, self.config.depth, before, after, z[best], self.weights)  # fmt: skip
        model.set_weights(**self.weights)
        self._rebuild()

    # -- shared by partitioned workers (streams/tunershare.py) -----------------------------------

    def share(self) -> None:
        """Keep this worker's paired rewards since the last :meth:`take_evidence` apart as well,
        for the other workers to add to theirs."""
        self._shared = True
        self.evidence = PairedEvidence(len(self.arms), self.config.half_life, shared=True)

    def take_evidence(self) -> dict | None:
        """This worker's evidence since the last call (None: none), for the served weighting of
        climb step ``step``: decayed sums of reward, its square and its product with the served
        reward, per arm (additive: :meth:`add_evidence`)."""
        block = self.evidence.take()
        if block is None:
            return None
        return {"step": len(self.promotions), "served": sorted(self.weights.items()), **block}

    def add_evidence(self, model, evidence: dict) -> bool:
        """Another worker's :meth:`take_evidence`, if it scored the same arms (same step, same
        served weighting; else it is dropped): added as if its events came after this worker's,
        then the test is run on the sum."""
        if evidence["step"] != len(self.promotions) or dict(evidence["served"]) != self.weights:
            return False
        if not self.evidence.merge(evidence):
            return False
        self.scored += int(evidence["events"])
        self._maybe_promote(model)
        return True

    def adopt(self, model, promotions: list[dict]) -> None:
        """Take another worker's climb (``promotions``, non-empty) as this one's."""
        self.promotions = [dict(p) for p in promotions]
        self.weights = {k: float(v) for k, v in promotions[-1]["weights"].items()}
        model.set_weights(**self.weights)
        self._rebuild()

    def _learned_weights(self, model) -> dict[str, float]:
        names = [n for n in SIGNALS if n in self.weights]
        w = self.learner.weights(names, [False] * len(names), self._prior())
        return {n: round(float(v), 6) for n, v in zip(names, w)}

    # -- state --------------------------------------------------------------------------------------

    def to_state(self) -> dict:
        """What a restart keeps: the served weighting, the climb's history and the learner (the
        shadow lists and the current count are rebuilt from the next refreshes)."""
        return {"config": asdict(self.config), "weights": self.weights, "promotions": self.promotions,
                "scored": self.scored, "confirmed": self.confirmed,
                "learner": self.learner.to_state() if self.learner is not None else None}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict, config: TunerConfig | None = None) -> Tuner:
        """Inverse of :meth:`to_state` (``config``, when given, replaces the saved one).

        >>> t = Tuner(TunerConfig(learned=False), {"cooccur": 1.0}); t.promotions.append({"arm": "x"})
        >>> Tuner.from_state(t.to_state()).promotions
        [{'arm': 'x'}]
        """
        self = cls(config or TunerConfig(**state["config"]), state["weights"])
        self.promotions = list(state["promotions"])
        self.scored = int(state["scored"])
        self.confirmed = state.get("confirmed")  # absent in states written before it was kept
        if self.learner is not None and state.get("learner"):
            self.learner = BlendLearner.from_state(state["learner"], self.learner.config)
        return self

    def status(self) -> dict:
        """For the stats hash and the metrics: how far the climb has got."""
        return {"tuner_promotions": len(self.promotions), "tuner_paired": self.paired,
                "tuner_scored": self.scored, "tuner_weights": dict(self.weights)}  # fmt: skip


#: signals whose nominees join the served list's candidates even at weight 0: the content
#: signals are the cold-start candidate source (an item nobody has taken yet reaches a list only
#: through them), and the others' signals rank what they bring
NOMINATE_AT_ZERO = frozenset(CONTENT_WEIGHTS)


def served_pool(signals: list[Nominated], served: np.ndarray, cand: np.ndarray) -> np.ndarray | None:
    """Positions in ``cand`` that the served weighting (``served``: its weight of each signal)
    ranks, or None for all of them: the union without the nominees that only collaborative
    signals at weight 0 brought.

    Why: a collaborative signal the served weighting leaves at 0 (ordered transitions before the
    stream shows an order) is computed for the challengers that switch it on; its nominees would
    change the served list only by stretching the other signals' normalisation over the
    candidates (on the synthetic set that cost the CRM two hits in 19,800). Content signals and
    runtime sources keep nominating at weight 0 (see :data:`NOMINATE_AT_ZERO`).

    >>> co = Nominated("cooccur", np.array([1, 3]), None)
    >>> tr = Nominated("transitions", np.array([3, 7]), None)
    >>> fr = Nominated("fresh", np.array([9]), None)
    >>> cand = np.array([1, 3, 7, 9])
    >>> served_pool([co, tr, fr], np.array([1.0, 0.0, 0.0]), cand).tolist()   # 7: transitions' alone
    [0, 1, 3]
    >>> served_pool([co, tr, fr], np.array([1.0, 0.5, 0.0]), cand) is None
    True
    """
    idle = [c for c, s in enumerate(signals)
            if not served[c] and len(s.rows) and not s.source and s.name not in NOMINATE_AT_ZERO]  # fmt: skip
    if not idle:
        return None
    keep = [s.rows for c, s in enumerate(signals) if c not in idle and len(s.rows)]
    if not keep:
        return None  # nothing else nominated: the union rather than no list
    pool = union_sorted(keep)
    if len(pool) == len(cand):
        return None
    return np.searchsorted(cand, pool)
