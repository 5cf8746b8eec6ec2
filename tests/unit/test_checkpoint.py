"""Checkpoint files: atomic, checksummed, with the previous one as a fallback."""

from __future__ import annotations

import msgpack
import pytest

from streamrec.streams.checkpoint import Checkpoint, CheckpointError, FileCheckpointStore


def cp(seq: int) -> Checkpoint:
    return Checkpoint(seq=seq, created=1.7e9 + seq, offsets={("events.clicks", 0): 10 * seq,
                      ("events.ratings", 2): seq}, model=bytes([seq]) * 100, pending=("u1", "u2"),
                      meta={"learned": seq})  # fmt: skip


def test_round_trip_keeps_everything(tmp_path):
    store = FileCheckpointStore(tmp_path)
    store.save(cp(3))
    assert store.load() == cp(3)
    assert not list(tmp_path.glob("*.tmp*")), "no temporary file left behind"


def test_a_corrupted_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    store = FileCheckpointStore(tmp_path)
    store.save(cp(1))
    store.save(cp(2))
    data = bytearray(store.path.read_bytes())
    data[-5] ^= 0xFF
    store.path.write_bytes(bytes(data))
    assert store.load() == cp(1)


def test_a_truncated_checkpoint_is_refused_with_the_file_named(tmp_path):
    store = FileCheckpointStore(tmp_path)
    store.save(cp(1))
    store.path.write_bytes(store.path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="checkpoint: checksum mismatch"):
        store.load()


def test_unknown_format_versions_are_refused():
    import hashlib

    body = msgpack.packb({"v": 99})
    with pytest.raises(CheckpointError, match="unsupported checkpoint format 99"):
        Checkpoint.from_bytes(hashlib.sha256(body).digest() + body)


def test_first_start_has_no_checkpoint(tmp_path):
    assert FileCheckpointStore(tmp_path / "new").load() is None
