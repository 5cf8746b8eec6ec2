"""The weightings a tuner scores on the same events: the served one and its one-step neighbours.

Why a module of its own: which challengers exist decides what a climb can reach (one signal
halved, doubled, switched off or on; the LLM-side signals moved together, so that a climb can
leave or enter the content side in one step), apart from how the tuner scores and promotes them
(:mod:`streamrec.streams.tuner`).
"""

from __future__ import annotations

from dataclasses import dataclass

from streamrec.settings import SIGNALS

#: the content (LLM-side) signals, moved together by the ``content*`` challengers
CONTENT = ("embedding", "fresh", "recent", "tags")


def tunable(config) -> tuple[str, ...]:
    """The blend signals a recommender of ``config`` computes: the content signals only with
    content on, ``transitions`` only with transitions on.

    >>> from dataclasses import replace
    >>> from streamrec.streams.recommender import RecommenderConfig
    >>> from streamrec.streams.content import ContentConfig
    >>> tunable(replace(RecommenderConfig(), content=ContentConfig(enabled=False)))
    ('cooccur', 'mf', 'popularity', 'transitions')
    >>> len(tunable(RecommenderConfig())) == len(SIGNALS)
    True
    """
    def on(part: str) -> bool:  # a config without the part (a stand-in) computes its signals
        return getattr(getattr(config, part, None), "enabled", True)

    off = set(() if on("content") else CONTENT) | set(() if on("transitions") else ("transitions",))
    return tuple(n for n in SIGNALS if n not in off)


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    weights: tuple[tuple[str, float], ...]


def challengers(weights: dict[str, float], on_weight: float, signals: tuple[str, ...] = ()) -> list[Arm]:
    """The served weighting, its one-signal neighbours, and the content signals moved together
    (halved, doubled, switched off), so that a climb can also leave the LLM side in one step;
    with ``signals``, only the neighbours that move those.

    >>> [a.name for a in challengers({"cooccur": 1.0, "tags": 0.0}, 0.25)]
    ['served', 'cooccur*0.5', 'cooccur*2', 'cooccur=0', 'tags=0.25']
    >>> [a.name for a in challengers({"embedding": 0.5, "tags": 0.5}, 0.25)][-3:]
    ['content*0.5', 'content*2', 'content=0']
    >>> [a.name for a in challengers({"cooccur": 1.0, "transitions": 0.0}, 0.25, ("transitions",))]
    ['served', 'transitions=0.25']
    """
    base = dict(weights)
    arms = [Arm("served", tuple(sorted(base.items())))]
    seen = {arms[0].weights}

    def add(label: str, changes: dict[str, float]) -> None:
        w = tuple(sorted({**base, **{k: round(v, 6) for k, v in changes.items()}}.items()))
        if w not in seen:
            seen.add(w)
            arms.append(Arm(label, w))

    for name, w in base.items():
        if signals and name not in signals:
            continue
        if w > 0:
            add(f"{name}*0.5", {name: w * 0.5})
            add(f"{name}*2", {name: w * 2.0})
            add(f"{name}=0", {name: 0.0})
        else:
            add(f"{name}={on_weight:g}", {name: on_weight})
    content = {n: base[n] for n in CONTENT if base.get(n, 0) > 0}
    if len(content) > 1 and (not signals or set(content) <= set(signals)):
        add("content*0.5", {n: w * 0.5 for n, w in content.items()})
        add("content*2", {n: w * 2.0 for n, w in content.items()})
        add("content=0", {n: 0.0 for n in content})
    return arms
