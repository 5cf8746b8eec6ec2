"""Format-2 checkpoints: streamed snapshots, full and delta, chains, fallbacks, bounded seen sets.

A model restored from a full snapshot plus the deltas after it must behave exactly like the model
that wrote them, now and after learning more (RNG states included); a delta holds only the users
changed since the last snapshot, so it grows with them, not with the model; any unreadable file
falls back to a consistent earlier state; format-1 checkpoints still load.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from streamrec.streams import snapshot
from streamrec.streams.checkpoint import Checkpoint, CheckpointError, FileCheckpointStore, Snapshots
from streamrec.streams.recommender import Recommender, RecommenderConfig
from streamrec.streams.blendlearner import LearnedBlendConfig
from streamrec.synth import SynthConfig, generate

DATA = generate(SynthConfig(n_users=25, n_items=150, n_topics=5, n_events=1600, seed=21))
FIRST, LATER = DATA.events[:1200], DATA.events[1200:]
USERS = sorted(DATA.user_topics) + ["ghost"]


def with_content(rec: Recommender) -> Recommender:
    rng = np.random.default_rng(3)
    names = sorted(set(DATA.item_topic.values()))
    for k, item in enumerate(DATA.items):
        topic = DATA.item_topic[item["item"]]
        if k % 5:
            rec.set_embedding(item["item"], np.eye(8)[names.index(topic)] + 0.3 * rng.normal(size=8), item["ts"])
        if k % 2:
            rec.set_tags(item["item"], [(topic, 0.9), (item["text"].split()[0], 0.4)], item["ts"])
    return rec


WRAPPERS = {
    "recommender": lambda: Recommender(seed=13),
    "recommender-content": lambda: with_content(Recommender(seed=13)),
    "recommender-learned-blend": lambda: with_content(
        Recommender(RecommenderConfig(learn_blend=LearnedBlendConfig(enabled=True, warmup=20)), seed=13)
    ),
}


def feed(model, events) -> None:
    for e in events:
        if e["type"] == "click":
            model.learn_click(e["user"], e["item"], e["ts"])
        else:
            model.learn_rating(e["user"], e["item"], e["rating"], e["ts"])

KINDS = ["recommender", "recommender-content", "recommender-learned-blend"]


def lists(rec):
    return [rec.recommend(u, 10) for u in USERS]


def cp(seq: int, model) -> Checkpoint:
    return Checkpoint(seq=seq, created=1.7e9 + seq, offsets={("events.clicks", 0): 100 * seq},
                      model=model, pending=("u1",), meta={"learned": seq})  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_full_plus_deltas_restore_the_model_now_and_after_more_learning(kind, tmp_path):
    rec = WRAPPERS[kind]()
    store = FileCheckpointStore(tmp_path)
    feed(rec, FIRST)
    store.save(cp(1, rec.snapshot()))
    rec.checkpointed()
    for seq, part in [(2, LATER[:150]), (3, LATER[150:250])]:
        feed(rec, part)
        store.save(cp(seq, rec.snapshot(delta=True)))
        rec.checkpointed()
    loaded = store.load()
    assert loaded.seq == 3 and loaded.offsets == {("events.clicks", 0): 300}
    assert isinstance(loaded.model, Snapshots) and len(loaded.model.deltas) == 2
    back = Recommender.from_snapshots(loaded.model.base, loaded.model.deltas)
    assert lists(back) == lists(rec)
    assert [back.n_learned(u) for u in USERS] == [rec.n_learned(u) for u in USERS]
    feed(rec, LATER[250:])
    feed(back, LATER[250:])
    assert lists(back) == lists(rec)
    assert back.to_bytes() == rec.to_bytes()  # every part, byte for byte (format 1 of both)


def test_a_delta_holds_only_the_changed_users():
    rec = Recommender(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(15_000):  # many users, a small catalogue: the user side dominates the state
        rec.learn_click(f"u{rng.integers(8000)}", f"i{rng.integers(60)}", 1.0)
    full = io.BytesIO()
    snapshot.write(full, rec.snapshot())
    rec.checkpointed()
    rec.learn_click("u1", "i1", 2.0)
    assert rec.n_changed_users == 1
    delta = io.BytesIO()
    snapshot.write(delta, rec.snapshot(delta=True))
    doc = snapshot.read(io.BytesIO(delta.getvalue()), len(delta.getvalue()))
    assert snapshot.unpack_ids(doc["users"]["ids"]) == ["u1"]
    assert len(delta.getvalue()) < 0.2 * len(full.getvalue())


def roundtrip(doc):
    buf = io.BytesIO()
    n = snapshot.write(buf, doc)
    return snapshot.read(io.BytesIO(buf.getvalue()), n), n


def test_item_side_deltas_restore_exactly_through_sweeps_cuts_new_items_and_rescales():
    """Small caps and sweeps (neighbour lists and transitions are cut between checkpoints), new
    items in later intervals, a popularity rescale (every count changes): base + deltas give the
    model byte for byte, and it goes on learning alike."""
    from dataclasses import replace

    cfg = RecommenderConfig()
    cfg = replace(cfg, cooccur=replace(cfg.cooccur, max_neighbours=4, sweep_every=40),
                  transitions=replace(cfg.transitions, max_successors=3, sweep_every=30))  # fmt: skip
    rec = with_content(Recommender(cfg, seed=5))
    events = sorted(DATA.events, key=lambda e: e["ts"])
    late = {e["item"] for e in events[1000:]} - {e["item"] for e in events[:1000]}
    feed(rec, [e for e in events[:1000]])
    docs = [roundtrip(rec.snapshot())[0]]
    rec.checkpointed()
    for start, end in [(1000, 1150), (1150, 1151), (1151, 1400), (1400, 1600)]:
        part = events[start:end]
        if start == 1400:  # decades later: the popularity scale is folded back (every count)
            part = [{**e, "ts": e["ts"] + 80 * 365 * 86400.0} for e in part]
        feed(rec, part)
        docs.append(roundtrip(rec.snapshot(delta=True))[0])
        rec.checkpointed()
    assert late, "some items appear only after the full snapshot"
    back = Recommender.from_snapshots(docs[0], docs[1:])
    assert back.to_bytes() == rec.to_bytes()
    assert lists(back) == lists(rec)
    feed(rec, events[:300])
    feed(back, events[:300])
    assert back.to_bytes() == rec.to_bytes()
    one = docs[2]  # the delta after a single event: what that event changed, not the catalogue
    assert len(snapshot.unpack_ids(one["items"])) <= 1
    assert len(one["mf"]["Q"]["rows"]) <= 1 + rec.config.mf.n_negatives
    assert len(one["cooccur"]["log_rows"]) <= 1 and len(one["cooccur"]["log_windows"]) <= rec.config.cooccur.pair_window
    assert len(one["transitions"]["log_ts"]) <= 1 and len(one["transitions"]["log_a"]) <= rec.config.transitions.window
    assert len(one["popularity"]["counts"]["rows"]) <= 1


def test_an_item_delta_grows_with_the_changed_rows_not_the_catalogue():
    rec = Recommender(seed=2)
    rng = np.random.default_rng(4)
    for k in range(30_000):  # a large catalogue for its users: the item side dominates the state
        rec.learn_click(f"u{rng.integers(300)}", f"i{rng.integers(6000)}", float(k))
    _, full = roundtrip(rec.snapshot())
    rec.checkpointed()
    for k in range(20):
        rec.learn_click(f"u{k}", f"i{rng.integers(6000)}", 40_000.0 + k)
    doc, delta = roundtrip(rec.snapshot(delta=True))
    assert delta < 0.05 * full
    assert Recommender.from_snapshots(roundtrip(rec.snapshot())[0]).to_bytes() == rec.to_bytes()


def test_a_delta_after_a_long_interval_holds_the_item_rows_whole_and_restores_exactly():
    from dataclasses import replace

    cfg = RecommenderConfig()
    cfg = replace(cfg, cooccur=replace(cfg.cooccur, sweep_every=20), transitions=replace(cfg.transitions, sweep_every=20))
    rec = Recommender(cfg, seed=3)
    rec.cooccur.LOG_MAX = rec.transitions.LOG_MAX = 50  # the pairs of a long interval are dropped
    feed(rec, FIRST)
    base = roundtrip(rec.snapshot())[0]
    rec.checkpointed()
    feed(rec, LATER)
    doc = roundtrip(rec.snapshot(delta=True))[0]
    assert "log_rows" not in doc["cooccur"] and "log_a" not in doc["transitions"]
    assert Recommender.from_snapshots(base, [doc]).to_bytes() == rec.to_bytes()


def test_an_unreadable_delta_ends_the_chain_and_an_unreadable_full_one_falls_back(tmp_path):
    rec = WRAPPERS["recommender"]()
    store = FileCheckpointStore(tmp_path)
    feed(rec, FIRST[:600])
    store.save(cp(1, rec.snapshot()))
    rec.checkpointed()
    feed(rec, FIRST[600:])
    store.save(cp(2, rec.snapshot()))  # a second chain; the first becomes checkpoint.prev
    rec.checkpointed()
    feed(rec, LATER[:100])
    store.save(cp(3, rec.snapshot(delta=True)))
    rec.checkpointed()
    feed(rec, LATER[100:])
    store.save(cp(4, rec.snapshot(delta=True)))
    newest = store.deltas(store.path)[-1]
    newest.write_bytes(newest.read_bytes()[:-10])  # truncated: the chain stops at seq 3
    assert store.load().seq == 3
    data = bytearray(store.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the full one corrupted: the previous chain
    store.path.write_bytes(bytes(data))
    assert store.load().seq == 1
    store.prev.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="checkpoint.prev"):
        store.load()


def test_a_delta_without_a_full_checkpoint_is_refused(tmp_path):
    rec = WRAPPERS["recommender"]()
    feed(rec, FIRST[:50])
    with pytest.raises(CheckpointError, match="needs a full one"):
        FileCheckpointStore(tmp_path).save(cp(1, rec.snapshot(delta=True)))


def test_format_1_checkpoints_still_load_and_a_new_full_one_replaces_them(tmp_path):
    rec = WRAPPERS["recommender-content"]()
    feed(rec, FIRST)
    store = FileCheckpointStore(tmp_path)
    store.save(cp(1, rec.to_bytes()))
    old = store.load()
    assert isinstance(old.model, bytes)
    assert lists(Recommender.from_bytes(old.model)) == lists(rec)
    store.save(cp(2, rec.snapshot()))
    assert isinstance(store.load().model, Snapshots) and store.prev.exists()


def test_reset_embeddings_needs_a_full_snapshot():
    rec = WRAPPERS["recommender-content"]()
    feed(rec, FIRST[:100])
    rec.checkpointed()
    rec.reset_embeddings()
    assert rec.needs_full
    with pytest.raises(ValueError, match="full snapshot"):
        rec.snapshot(delta=True)


def test_snapshot_reader_bounds_every_length_by_the_file(tmp_path):
    buf = io.BytesIO()
    n = snapshot.write(buf, {"a": np.arange(1000.0)})
    data = buf.getvalue()
    for bad in (data[: n // 2], data[:40], b"x" * n):
        with pytest.raises(ValueError):
            snapshot.read(io.BytesIO(bad), len(bad))
    with pytest.raises(TypeError, match="refusing"):
        snapshot.write(io.BytesIO(), {"a": np.array(["x"], dtype=object)})


def test_seen_sets_are_bounded_and_forget_the_oldest_first():
    rec = Recommender(RecommenderConfig(max_seen=3), seed=1)
    for item in ["a", "b", "c", "d"]:
        rec.learn_click("ann", item, 1.0)
    assert rec.seen("ann") == {"b", "c", "d"}
    rec.learn_click("ann", "b", 2.0)  # seen again: now the most recent
    rec.learn_click("ann", "e", 3.0)
    assert rec.seen("ann") == {"d", "b", "e"}
    assert rec.n_learned("ann") == 6
