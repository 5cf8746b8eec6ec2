"""Synthetic users, items and events with a known ground truth, for demos, load tests and tests.

Each user likes one or two topics out of ``n_topics``; each item has one topic, a title and a short
text drawn mostly from that topic's vocabulary, so text similarity reflects topic (the LLM
embedding worker relies on that); events are mostly clicks on items of the user's topics (item
popularity within a topic is Zipf-like, so co-occurrence and popularity have something to find),
some noise clicks on any item, and some ratings (high on liked topics, low elsewhere). Timestamps
increase strictly. Because the truth is returned alongside the records, a test can check that a
model ranks each user's topics far above chance.

Everything is plain dicts in the JSON-lines shape the publish CLI accepts, and everything is a pure
function of the config: the same seed gives the same bytes on every machine (only ``random.Random``
is used, whose sequence Python keeps stable).

>>> data = generate(SynthConfig(n_users=3, n_items=4, n_topics=2, n_events=3, seed=1))
>>> data.items[0]["type"], data.items[0]["item"], sorted(data.items[0])
('item', 'i0', ['attributes', 'item', 'text', 'title', 'ts', 'type'])
>>> sorted(data.events[0]), data.events[0]["user"] in data.user_topics
(['item', 'rating', 'ts', 'type', 'user'], True)
>>> len(list(data.records())) == 4 + 3
True
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Iterable, Iterator

#: topic -> vocabulary; words are distinct across topics so texts of one topic resemble each other
VOCABULARY: dict[str, tuple[str, ...]] = {
    "jazz": ("saxophone", "trumpet", "swing", "bebop", "improvisation", "quartet", "groove",
             "ballad", "standards", "brass", "smoky", "club"),
    "rock": ("guitar", "riff", "amplifier", "drums", "anthem", "stadium", "distortion", "band",
             "solo", "garage", "loud", "encore"),
    "classical": ("symphony", "orchestra", "violin", "sonata", "concerto", "conductor", "opera",
                  "baroque", "piano", "chamber", "overture", "cello"),
    "cooking": ("recipe", "kitchen", "oven", "spices", "dough", "simmer", "chef", "flavour",
                "roast", "sauce", "bake", "herbs"),
    "travel": ("journey", "passport", "island", "backpack", "flight", "beach", "mountains",
               "hostel", "itinerary", "border", "train", "explore"),
    "football": ("goal", "striker", "pitch", "league", "midfield", "penalty", "coach",
                 "derby", "keeper", "tackle", "season", "transfer"),
    "scifi": ("spaceship", "galaxy", "android", "alien", "starship", "wormhole", "colony",
              "laser", "orbit", "cyborg", "nebula", "quantum"),
    "gardening": ("seeds", "compost", "roses", "soil", "greenhouse", "pruning", "bulbs",
                  "orchard", "harvest", "weeds", "shrubs", "blossom"),
    "finance": ("stocks", "budget", "savings", "dividend", "portfolio", "inflation", "bonds",
                "mortgage", "interest", "market", "pension", "tax"),
    "fitness": ("workout", "running", "muscles", "yoga", "cardio", "stretching", "marathon",
                "squats", "protein", "gym", "endurance", "sprint"),
}
GENERIC = ("new", "complete", "guide", "classic", "essential", "collection", "edition", "story",
           "best", "live", "volume", "special")


@dataclass(frozen=True, slots=True)
class SynthConfig:
    n_users: int = 100
    n_items: int = 500
    n_topics: int = 8
    n_events: int = 5_000
    #: share of clicks on a uniformly random item, whatever the user likes
    p_noise: float = 0.1
    #: share of events that are ratings rather than clicks
    p_rating: float = 0.2
    #: each user likes 1..max_favourites topics
    max_favourites: int = 2
    words_per_text: int = 8
    #: Zipf exponent of item popularity within a topic (0: uniform)
    zipf: float = 1.0
    start_ts: float = 1_700_000_000.0
    mean_gap_s: float = 2.0
    seed: int = 0


@dataclass(frozen=True)
class Synth:
    """Records plus the ground truth they were drawn from."""

    config: SynthConfig
    items: list[dict]
    events: list[dict]
    user_topics: dict[str, tuple[str, ...]] = field(repr=False)
    item_topic: dict[str, str] = field(repr=False)

    def records(self) -> Iterator[dict]:
        """The catalogue first, then the events: the order to publish them in."""
        yield from self.items
        yield from self.events

    def items_of(self, topics: Iterable[str]) -> set[str]:
        wanted = set(topics)
        return {item for item, topic in self.item_topic.items() if topic in wanted}


def topics(n: int) -> list[str]:
    """The first ``n`` topic names; beyond the built-in ones, ``topic10``, ``topic11``, ...

    >>> topics(3), topics(12)[-1]
    (['jazz', 'rock', 'classical'], 'topic11')
    """
    names = list(VOCABULARY)[:n]
    return names + [f"topic{k}" for k in range(len(names), n)]


def vocabulary(topic: str) -> tuple[str, ...]:
    """The words of ``topic`` (made up for topics beyond the built-in ones).

    >>> vocabulary("topic12")[:2]
    ('t12word0', 't12word1')
    """
    if topic in VOCABULARY:
        return VOCABULARY[topic]
    return tuple(f"t{topic[5:]}word{k}" for k in range(12))


def make_items(config: SynthConfig, rng: random.Random) -> tuple[list[dict], dict[str, str]]:
    """Catalogue records (``type: item``) and item -> topic; items cycle through topics."""
    names = topics(config.n_topics)
    items, truth = [], {}
    for k in range(config.n_items):
        topic = names[k % len(names)]
        words = vocabulary(topic)
        n_topic_words = max(1, round(config.words_per_text * 0.75))
        text = rng.choices(words, k=n_topic_words) + rng.choices(GENERIC, k=config.words_per_text - n_topic_words)
        rng.shuffle(text)
        title = f"{rng.choice(GENERIC).title()} {rng.choice(words).title()} {rng.choice(words).title()}"
        item = f"i{k}"
        truth[item] = topic
        ts = config.start_ts - config.n_items + k
        items.append({"type": "item", "item": item, "title": title, "text": " ".join(text),
                      "attributes": {"topic": topic}, "ts": ts})
    return items, truth


def make_users(config: SynthConfig, rng: random.Random) -> dict[str, tuple[str, ...]]:
    """user -> favourite topics (1..max_favourites distinct topics)."""
    names = topics(config.n_topics)
    most = max(1, min(config.max_favourites, len(names)))
    return {f"u{k}": tuple(rng.sample(names, rng.randint(1, most))) for k in range(config.n_users)}


def make_events(
    config: SynthConfig,
    rng: random.Random,
    user_topics: dict[str, tuple[str, ...]],
    item_topic: dict[str, str],
) -> list[dict]:
    """Click and rating records with strictly increasing ``ts``."""
    by_topic: dict[str, list[str]] = {}
    for item, topic in item_topic.items():
        by_topic.setdefault(topic, []).append(item)
    weights = {t: [1.0 / (r + 1) ** config.zipf for r in range(len(v))] for t, v in by_topic.items()}
    all_items = list(item_topic)
    users = list(user_topics)
    activity = [1.0 / (r + 1) ** 0.5 for r in range(len(users))]  # a few heavy users
    events, ts = [], config.start_ts
    for _ in range(config.n_events):
        ts = round(ts + max(0.001, rng.expovariate(1.0 / config.mean_gap_s)), 3)
        user = rng.choices(users, activity)[0]
        liked = user_topics[user]
        if rng.random() < config.p_noise or not liked:
            item = rng.choice(all_items)
        else:
            topic = rng.choice(liked)
            item = rng.choices(by_topic[topic], weights[topic])[0]
        if rng.random() < config.p_rating:
            scale = (3.5, 4.0, 4.5, 5.0) if item_topic[item] in liked else (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
            events.append({"type": "rating", "user": user, "item": item, "rating": rng.choice(scale), "ts": ts})
        else:
            events.append({"type": "click", "user": user, "item": item, "ts": ts})
    return events


def generate(config: SynthConfig | None = None) -> Synth:
    """Catalogue, events and ground truth, all from ``config.seed``."""
    cfg = config or SynthConfig()
    if cfg.n_topics < 1 or cfg.n_items < 1 or cfg.n_users < 1:
        raise ValueError("need at least one topic, item and user")
    rng = random.Random(cfg.seed)
    items, item_topic = make_items(cfg, rng)
    user_topics = make_users(cfg, rng)
    events = make_events(cfg, rng, user_topics, item_topic)
    return Synth(cfg, items, events, user_topics, item_topic)


def to_jsonl(records: Iterable[dict]) -> str:
    """One compact JSON object per line.

    >>> to_jsonl([{"type": "click", "user": "u1", "item": "i2", "ts": 1.0}])
    '{"type":"click","user":"u1","item":"i2","ts":1.0}\\n'
    """
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
