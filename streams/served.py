"""What the stream worker serves, and how well: the blend (self-tuning or fixed) and the live metrics.

The worker's part is a few calls: :attr:`Served.ranker` for its ranking passes and
:meth:`Served.noted` for every list it writes,
:meth:`Served.published` for the global list, :meth:`Served.event` for every click or rating before
the model learns it, :meth:`Served.to_meta` into each checkpoint, and :meth:`Served.report` /
:meth:`Served.stats_fields` for the metrics and the stats hash. Behind them:

- :class:`~streamrec.streams.quality.LiveQuality` scores every event of a user with history against
  the list this worker last wrote for them (else the global list), the replay's protocol, online;
- :class:`~streamrec.streams.tuner.Tuner` (``STREAMREC_TUNE_BLEND``, on by default) serves its
  weighting, scores the challengers in shadow and promotes a significant winner;
- the configuration digest stamped on every list covers the served weighting, so the metrics of
  a promoted weighting are kept apart from those of the one before it.

The metrics and the tuner's climb are in the checkpoint, so a restart resumes them.
"""

from __future__ import annotations

import json
from collections.abc import Container, Hashable

from streamrec.streams.quality import LiveQuality, quality_fields
from streamrec.streams.refresh import config_digest
from streamrec.streams.state import dumps, loads
from streamrec.streams.tuner import Tuner, TunerConfig


def _state(meta: dict, name: str) -> dict | None:
    raw = meta.get(name)
    return loads(raw) if raw else None


class Served:
    def __init__(self, model, settings, version: dict, meta: dict | None = None):
        meta = meta or {}
        self.model = model
        self.version = dict(version)
        self.quality = LiveQuality.from_state(_state(meta, "quality"), window=settings.quality_window)
        config = TunerConfig.from_settings(settings)
        self.tuner: Tuner | None = None
        if config.enabled:
            state = _state(meta, "tuner")
            self.tuner = Tuner.from_state(state, config) if state else Tuner.for_model(model, config)
            model.set_weights(**self.tuner.weights)
        self.promotions = self._promotions()
        self.generation = self.tuner.generation if self.tuner is not None else 0
        self.digest = self._digest()

    def _promotions(self) -> int:
        return len(self.tuner.promotions) if self.tuner is not None else 0

    def _digest(self) -> str:
        if self.tuner is None:
            return config_digest(self.version)
        return config_digest({**self.version, "tuned": sorted(self.tuner.weights.items())})

    @property
    def ranker(self):
        """What a ranking pass blends with: the tuner's served weighting (None: the model's own)."""
        return None if self.tuner is None else self.tuner.ranker(self.model)

    def recommend(self, user: Hashable, k: int) -> list[tuple[Hashable, float]]:
        """One user's list as the worker ranks it (a pass of one), noted for the live metrics."""
        items = self.model.recommend_many([user], k, ranker=self.ranker)[0]
        self.noted(user, items)
        return items

    def noted(self, user: Hashable, items: list[tuple[Hashable, float]]) -> None:
        """``user``'s list was written: the one their next events are scored against."""
        self.quality.published(user, [i for i, _ in items], self.digest)

    def published(self, global_list: list[tuple[Hashable, float]]) -> None:
        """The global list was written (what users without a list of their own read)."""
        self.quality.published(None, [i for i, _ in global_list], self.digest)

    def event(self, user: Hashable, item: Hashable, served: bool) -> None:
        """A click or rating, before the model learns it; ``served``: this worker writes the user's
        list (only those are scored: another worker's lists are not known here)."""
        if served:
            self.quality.event(user, item, self.model.n_learned(user) > 0)
        if self.tuner is not None:
            self.tuner.observe(self.model, user, item)
            if self.tuner.generation != self.generation:  # promoted, or took the others' climb
                self.promotions, self.generation = self._promotions(), self.tuner.generation
                self.digest = self._digest()

    def report(self, catalogue: Container) -> dict:
        """``{"window"|"total": {digest: metrics}}``; coverage over the ``catalogue`` items."""
        return {which: self.quality.summary(which, catalogue=catalogue) for which in ("window", "total")}

    def stats_fields(self, catalogue: Container) -> dict:
        """The stats hash's share: the served digest's windowed metrics, the report, the climb."""
        out = quality_fields(self.report(catalogue), self.digest)
        if self.tuner is not None:
            out["tuner"] = json.dumps({**self.tuner.status(), "last": self.tuner.promotions[-1:]})
        return out

    def weights(self) -> dict | None:
        return dict(self.tuner.weights) if self.tuner is not None else None

    def to_meta(self) -> dict:
        return {"quality": dumps(self.quality.to_state()),
                "tuner": dumps(self.tuner.to_state()) if self.tuner is not None else None}  # fmt: skip
