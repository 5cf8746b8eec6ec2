"""State of any size restores, and an unusable checkpoint is never silently lost or fatal.

The large states are built synthetically through the model's public API (embedded items, no
events learned), well past msgpack's 100 MiB default buffer that once made them unrestorable."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.streams.checkpoint import Checkpoint, CheckpointError, FileCheckpointStore
from streamrec.streams.recommender import Recommender
from streamrec.streams.state import HEADER_MAX, dumps, loads

MIB = 1 << 20


def test_an_array_of_150_mib_round_trips():
    big = np.arange(150 * MIB // 4, dtype=np.float32)
    back = loads(dumps({"a": big, "b": [big[:3]]}))["a"]
    assert back.nbytes > 100 * MIB and np.array_equal(back, big)


def test_the_largest_array_header_numpy_allows_fits_the_bound_the_reader_uses():
    import msgpack

    assert len(msgpack.packb(["<f8", [2**62] * 64])) < HEADER_MAX  # numpy has at most 64 dims
    assert np.array_equal(loads(dumps(np.zeros((1,) * 64))), np.zeros((1,) * 64))


def test_a_model_with_embeddings_past_100_mib_checkpoints_and_restores(tmp_path):
    rng = np.random.default_rng(0)
    n, dim = 100_000, 384  # 146 MiB of float32 embeddings (about 68k rows already pass 100 MiB)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    model = Recommender()
    for i in range(n):
        model.set_embedding(f"i{i}", vectors[i])
    model.learn_click("u1", "i7", 1.7e9)
    store = FileCheckpointStore(tmp_path)
    store.save(Checkpoint(seq=3, created=1.7e9, offsets={("events.clicks", 0): 1}, model=model.to_bytes()))
    del model
    restored = store.restore(Recommender.from_bytes)
    assert restored.checkpoint.seq == 3 and restored.passed_over == ()
    for i in (0, 68_000, n - 1):
        v = vectors[i] / np.linalg.norm(vectors[i])
        assert np.allclose(restored.model.embedding_of(f"i{i}"), v, atol=1e-6)
    assert restored.model.n_learned("u1") == 1


def _save(store, seq, model_bytes):
    store.save(Checkpoint(seq=seq, created=1.7e9, offsets={("t", 0): seq}, model=model_bytes))


def test_any_unusable_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    store = FileCheckpointStore(tmp_path)
    _save(store, 1, Recommender().to_bytes())
    _save(store, 2, b"not a model at all")  # a whole, checksummed file whose model cannot decode
    restored = store.restore(Recommender.from_bytes)
    assert restored.checkpoint.seq == 1 and restored.path == store.prev
    assert "unusable model state" in restored.passed_over[0]


def test_when_every_checkpoint_is_unusable_one_error_names_the_files_and_the_way_out(tmp_path):
    store = FileCheckpointStore(tmp_path)
    _save(store, 1, Recommender().to_bytes())
    _save(store, 2, Recommender().to_bytes())
    store.path.write_bytes(b"\x00" * 40)
    data = bytearray(store.prev.read_bytes())
    data[-5] ^= 0xFF
    store.prev.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        store.restore(Recommender.from_bytes)
    msg = str(err.value)
    assert "\n" not in msg and str(store.path) in msg and str(store.prev) in msg
    assert "--reset-state" in msg
    moved = store.set_aside(now=5)
    assert [p.name for p in moved] == ["checkpoint.unusable-5", "checkpoint.prev.unusable-5"]
    assert store.restore(Recommender.from_bytes) is None
