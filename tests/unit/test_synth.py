"""The synthetic generator: seeded, well-formed, and faithful to its own ground truth."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from streamrec.synth import GENERIC, SynthConfig, generate, to_jsonl, topics, vocabulary

CFG = SynthConfig(n_users=50, n_items=240, n_topics=6, n_events=3000, seed=3)


@pytest.fixture(scope="module")
def data():
    return generate(CFG)


def test_same_seed_same_records_other_seed_other_records(data):
    assert to_jsonl(generate(CFG).records()) == to_jsonl(data.records())
    other = generate(SynthConfig(n_users=50, n_items=240, n_topics=6, n_events=3000, seed=4))
    assert other.events != data.events


def test_record_shapes_match_the_publish_format(data):
    assert len(data.items) == CFG.n_items and len(data.events) == CFG.n_events
    for item in data.items:
        assert set(item) == {"type", "item", "title", "text", "attributes", "ts"}
        assert item["type"] == "item" and item["item"].startswith("i")
        assert item["attributes"] == {"topic": data.item_topic[item["item"]]}
        assert item["title"] and len(item["text"].split()) == CFG.words_per_text
    for e in data.events:
        assert e["type"] in ("click", "rating") and e["user"].startswith("u")
        assert e["item"] in data.item_topic
        if e["type"] == "rating":
            assert set(e) == {"type", "user", "item", "rating", "ts"}
            assert 0.5 <= e["rating"] <= 5.0 and (e["rating"] * 2).is_integer()
        else:
            assert set(e) == {"type", "user", "item", "ts"}
    lines = to_jsonl(data.records()).splitlines()
    assert len(lines) == CFG.n_items + CFG.n_events
    assert json.loads(lines[0]) == data.items[0] and json.loads(lines[-1]) == data.events[-1]


def test_timestamps_increase_and_the_catalogue_comes_first(data):
    ts = [r["ts"] for r in data.records()]
    assert all(a < b for a, b in zip(ts, ts[1:]))


def test_events_follow_the_users_topics(data):
    on_topic = sum(data.item_topic[e["item"]] in data.user_topics[e["user"]] for e in data.events)
    assert on_topic / len(data.events) >= 1 - CFG.p_noise - 0.05
    ratings = [e for e in data.events if e["type"] == "rating"]
    assert 0.1 < len(ratings) / len(data.events) < 0.3
    liked = [e["rating"] for e in ratings if data.item_topic[e["item"]] in data.user_topics[e["user"]]]
    disliked = [e["rating"] for e in ratings if data.item_topic[e["item"]] not in data.user_topics[e["user"]]]
    assert min(liked) >= 3.5 and max(disliked) <= 3.0


def test_users_have_one_or_two_topics_and_items_spread_over_topics(data):
    assert set(data.user_topics) == {f"u{k}" for k in range(CFG.n_users)}
    assert all(1 <= len(t) <= 2 and len(set(t)) == len(t) for t in data.user_topics.values())
    per_topic = Counter(data.item_topic.values())
    assert set(per_topic) == set(topics(CFG.n_topics)) and set(per_topic.values()) == {40}
    assert data.items_of(["jazz"]) == {i for i, t in data.item_topic.items() if t == "jazz"}


def test_text_reflects_topic(data):
    for item in data.items:
        words = item["text"].split()
        own = set(vocabulary(item["attributes"]["topic"]))
        assert all(w in own or w in GENERIC for w in words)
        assert sum(w in own for w in words) > len(words) / 2
    vocabularies = [set(vocabulary(t)) for t in topics(12)]
    assert all(not (a & b) for k, a in enumerate(vocabularies) for b in vocabularies[k + 1 :])


def test_more_topics_than_builtin_and_bad_configs():
    many = generate(SynthConfig(n_users=5, n_items=30, n_topics=15, n_events=50, seed=0))
    assert len(set(many.item_topic.values())) == 15
    with pytest.raises(ValueError):
        generate(SynthConfig(n_items=0))
