"""The recommender's configuration: one frozen object for the parts, the blend and the lists.

Why a module of its own: the worker, the tuner and the benchmarks build and read configurations
without the model (and a checkpoint carries one as a dict, :meth:`RecommenderConfig.from_dict`);
:class:`~streamrec.streams.recommender.Recommender` is what learns and ranks with it.

>>> from dataclasses import asdict
>>> cfg = RecommenderConfig(n_mf=50)
>>> RecommenderConfig.from_dict(asdict(cfg)) == cfg
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamrec.streams.content import ContentConfig
from streamrec.streams.cooccur import CooccurConfig
from streamrec.streams.popularity import PopularityConfig
from streamrec.streams.model import MFConfig
from streamrec.streams.blendlearner import LearnedBlendConfig
from streamrec.streams.ranking import CONTENT_WEIGHTS, DEFAULT_WEIGHTS, BlendWeights
from streamrec.streams.state import RatingPolicy
from streamrec.streams.transitions import TransitionConfig


@dataclass(frozen=True, slots=True)
class RecommenderConfig:
    mf: MFConfig = field(default_factory=MFConfig)
    cooccur: CooccurConfig = field(default_factory=CooccurConfig)
    popularity: PopularityConfig = field(default_factory=PopularityConfig)
    #: ordered transitions a -> b within a user's recent window (streams/transitions.py)
    transitions: TransitionConfig = field(default_factory=TransitionConfig)
    #: blend weights; the default also weighs the content signals (``DEFAULT_WEIGHTS``)
    weights: BlendWeights = field(default_factory=lambda: DEFAULT_WEIGHTS)
    #: how embeddings and tags become signals
    content: ContentConfig = field(default_factory=ContentConfig)
    #: learn the blend weights online from the users' picks (off by default)
    learn_blend: LearnedBlendConfig = field(default_factory=LearnedBlendConfig)
    #: how ratings are learned; applies to every part (it replaces the parts' own policies)
    ratings: RatingPolicy = field(default_factory=RatingPolicy)
    #: candidates nominated per source before blending
    n_cooccur: int = 200
    n_transitions: int = 200
    n_mf: int = 200
    n_popular: int = 100
    #: list length when ``recommend``/``fallback`` are called without ``k``
    k: int = 50
    #: items remembered as seen per user (never recommended to them again); past it the oldest is
    #: forgotten and may come back. Bounds memory and checkpoint size per heavy user.
    max_seen: int = 10_000

    @classmethod
    def from_dict(cls, d: dict) -> RecommenderConfig:
        """Inverse of ``dataclasses.asdict`` (lists back to tuples where the fields want them)."""
        d = dict(d)
        ratings = RatingPolicy(**d["ratings"])
        d["ratings"] = ratings
        d["mf"] = MFConfig(**{**d["mf"], "ratings": RatingPolicy(**d["mf"]["ratings"])})
        d["cooccur"] = CooccurConfig(**{**d["cooccur"], "ratings": RatingPolicy(**d["cooccur"]["ratings"])})
        pop = d["popularity"]
        d["popularity"] = PopularityConfig(**{**pop, "ratings": RatingPolicy(**pop["ratings"])})
        d["transitions"] = TransitionConfig.from_dict(d.get("transitions"))
        w = {**CONTENT_WEIGHTS, **d["weights"]}  # checkpoints from before content lack them
        w["extra"] = tuple((str(k), float(v)) for k, v in w["extra"])
        d["weights"] = BlendWeights(**w)
        d["content"] = ContentConfig.from_dict(d.get("content"))
        d["learn_blend"] = LearnedBlendConfig(**d.get("learn_blend", {}))
        return cls(**d)
