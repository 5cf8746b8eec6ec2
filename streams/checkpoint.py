"""Durable checkpoints of the stream worker: model state and input offsets, saved together.

Why offsets live inside the checkpoint: the model state and the position in every input partition
are written in one atomic file, so a restarted worker resumes each partition exactly where the
restored state ends. Events after the checkpoint are replayed once, events before it are never
replayed, so a ``kill -9`` at any moment neither loses nor double-counts an event (effectively-once
for the model state). Kafka's committed offsets follow the checkpoint (committed only after it is
durable) and serve monitoring and first start-up; the checkpoint wins when both exist.

The file is msgpack (never pickle: checkpoints may move between machines and versions), written to
a temporary name, fsynced and renamed over the old one; the previous checkpoint is kept as a
fallback in case the newest is unreadable.

>>> import tempfile
>>> store = FileCheckpointStore(tempfile.mkdtemp())
>>> store.load() is None
True
>>> store.save(Checkpoint(seq=1, created=1.7e9, offsets={("events.clicks", 0): 42},
...                       model=b"state", pending=("u1",)))
>>> cp = store.load()
>>> cp.seq, cp.offsets, cp.model, cp.pending
(1, {('events.clicks', 0): 42}, b'state', ('u1',))
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int  # increases by one per checkpoint; part of the lists' model version
    created: float
    #: (topic, partition) -> the next offset to read, i.e. every offset below is in ``model``
    offsets: dict[tuple[str, int], int]
    model: bytes
    #: users whose lists are owed to Redis (active, not yet written, e.g. while Redis was down)
    pending: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        if len(self.model) >= 2**32:  # msgpack's bin format: say so instead of failing obscurely
            raise CheckpointError(f"model state of {len(self.model)} bytes exceeds the checkpoint "
                                  "format's 4 GiB limit")  # fmt: skip
        body = msgpack.packb(
            {
                "v": FORMAT_VERSION,
                "seq": self.seq,
                "created": self.created,
                "offsets": [[t, p, o] for (t, p), o in sorted(self.offsets.items())],
                "model": self.model,
                "pending": list(self.pending),
                "meta": self.meta,
            },
            use_bin_type=True,
        )
        return hashlib.sha256(body).digest() + body

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "checkpoint") -> Checkpoint:
        digest, body = data[:32], memoryview(data)[32:]  # no copy of a large checkpoint
        if len(data) < 33 or hashlib.sha256(body).digest() != digest:
            raise CheckpointError(f"{source}: checksum mismatch (truncated or corrupted)")
        try:
            d = msgpack.unpackb(body, raw=False, strict_map_key=False)
            if d.get("v") != FORMAT_VERSION:
                raise CheckpointError(f"{source}: unsupported checkpoint format {d.get('v')!r}")
            return cls(
                seq=int(d["seq"]),
                created=float(d["created"]),
                offsets={(str(t), int(p)): int(o) for t, p, o in d["offsets"]},
                model=bytes(d["model"]),
                pending=tuple(d["pending"]),
                meta=dict(d["meta"]),
            )
        except (KeyError, TypeError, ValueError, msgpack.UnpackException) as exc:
            raise CheckpointError(f"{source}: malformed checkpoint ({exc})") from None


RESET_HINT = "`streamrec worker streams --reset-state`"


@dataclass(frozen=True)
class Restored:
    """A checkpoint and its decoded model; ``passed_over`` says why newer ones were not usable."""

    checkpoint: Checkpoint
    model: Any
    path: Path
    passed_over: tuple[str, ...] = ()


class FileCheckpointStore:
    """Checkpoints in a directory (a volume in containers): ``checkpoint`` and ``checkpoint.prev``."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.path = self.dir / "checkpoint"
        self.prev = self.dir / "checkpoint.prev"

    def save(self, checkpoint: Checkpoint) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f"checkpoint.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(checkpoint.to_bytes())
            f.flush()
            os.fsync(f.fileno())
        if self.path.exists():
            os.replace(self.path, self.prev)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the renames themselves durable
        finally:
            os.close(dir_fd)

    def restore(self, decode: Callable[[bytes], Any]) -> Restored | None:
        """The newest checkpoint whose model ``decode`` accepts, else the previous one; None when
        there is none at all.

        Any failure counts as unusable (a bad checksum, a malformed file, a model that does not
        decode, an unreadable file), not only checksum errors. When every checkpoint there is
        unusable, one :class:`CheckpointError` names the files, what is wrong with each and the
        command that recovers.
        """
        problems: list[str] = []
        for path in (self.path, self.prev):
            if not path.exists():
                continue
            try:
                checkpoint = Checkpoint.from_bytes(path.read_bytes(), str(path))
                return Restored(checkpoint, decode(checkpoint.model), path, tuple(problems))
            except CheckpointError as exc:
                problems.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - e.g. a model from another format or version
                problems.append(f"{path}: unusable model state ({type(exc).__name__}: {exc})"[:500])
        if problems:
            raise CheckpointError(f"no usable checkpoint ({'; '.join(problems)}); to start afresh "
                                  f"and re-learn every event still on the input topics, run "
                                  f"{RESET_HINT} (it keeps the unusable files aside)")  # fmt: skip
        return None

    def set_aside(self, now: float | None = None) -> list[Path]:
        """Rename the checkpoints to ``*.unusable-<time>`` (kept for inspection); return new names."""
        stamp = int(time.time() if now is None else now)
        moved = []
        for path in (self.path, self.prev):
            if path.exists():
                target = path.with_name(f"{path.name}.unusable-{stamp}")
                os.replace(path, target)
                moved.append(target)
        return moved

    def load(self) -> Checkpoint | None:
        """The newest readable checkpoint, or None on first start."""
        errors = []
        for path in (self.path, self.prev):
            if not path.exists():
                continue
            try:
                return Checkpoint.from_bytes(path.read_bytes(), str(path))
            except CheckpointError as exc:
                errors.append(str(exc))
        if errors:
            raise CheckpointError("; ".join(errors))
        return None
