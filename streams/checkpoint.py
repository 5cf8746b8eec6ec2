"""Durable checkpoints of the stream worker: model state and input offsets, saved together.

Why offsets live inside the checkpoint: the model state and the position in every input partition
are written in one atomic file, so a restarted worker resumes each partition exactly where the
restored state ends. Events after the checkpoint are replayed once, events before it are never
replayed, so a ``kill -9`` at any moment neither loses nor double-counts an event (effectively-once
for the model state). Kafka's committed offsets follow the checkpoint (committed only after it is
durable) and serve monitoring and first start-up; the checkpoint wins when both exist.

Two formats. Format 2 (the worker's): a streamed snapshot (:mod:`streamrec.streams.snapshot`,
numpy sections written from the model's own memory while hashed, no copy of the state in memory),
either *full* (``checkpoint``) or a *delta* (``checkpoint.d<seq>``) holding only the users changed
since the previous file; a full one starts a new chain, the old chain is kept as ``checkpoint.prev``
(and its deltas) until then. Loading reads the base and every readable delta after it in order,
stopping at the first unreadable one (the state and offsets up to it are consistent), and falls back
to the previous chain when the base itself cannot be read. Format 1, one msgpack record with the
model as bytes (never pickle: checkpoints may move between machines and versions), is still read
and written when the model is given as bytes; a worker restored from one writes format 2 from its
next checkpoint on (a full one). Every file is written to a temporary name, fsynced and renamed.

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
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from streamrec.streams import snapshot

FORMAT_VERSION = 1
SNAPSHOT_VERSION = 2
log = logging.getLogger("streamrec.checkpoint")


@dataclass(frozen=True)
class Snapshots:
    """A format-2 model: the full snapshot document and the deltas after it, in order."""

    base: dict
    deltas: tuple = ()


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int  # increases by one per checkpoint; part of the lists' model version
    created: float
    #: (topic, partition) -> the next offset to read, i.e. every offset below is in ``model``
    offsets: dict[tuple[str, int], int]
    #: format 1: the model's bytes; format 2: a snapshot document to save (its ``delta`` key says
    #: which kind), and on load the :class:`Snapshots` of the chain
    model: Any
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
        self.last_bytes = 0

    def deltas(self, base: Path) -> list[Path]:
        """The delta files after ``base``, oldest first."""
        return sorted(self.dir.glob(base.name + ".d*"), key=lambda p: p.name)

    def save(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` durably (its size is then :attr:`last_bytes`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f"checkpoint.tmp{os.getpid()}"
        delta = isinstance(checkpoint.model, dict) and bool(checkpoint.model.get("delta"))
        with open(tmp, "wb") as f:
            if isinstance(checkpoint.model, (bytes, bytearray)):
                size = f.write(checkpoint.to_bytes())
            else:
                size = snapshot.write(f, {
                    "v": SNAPSHOT_VERSION, "seq": checkpoint.seq, "created": checkpoint.created,
                    "offsets": [[t, p, o] for (t, p), o in sorted(checkpoint.offsets.items())],
                    "pending": list(checkpoint.pending), "meta": checkpoint.meta,
                    "model": checkpoint.model,
                })  # fmt: skip
            f.flush()
            os.fsync(f.fileno())
        if delta:
            if not self.path.exists():
                tmp.unlink()
                raise CheckpointError(f"{self.path}: a delta checkpoint needs a full one before it")
            os.replace(tmp, self.dir / f"checkpoint.d{checkpoint.seq:012d}")
        else:  # a new chain: the current one becomes the fallback
            for old in [self.prev, *self.deltas(self.prev)]:
                old.unlink(missing_ok=True)
            for d in self.deltas(self.path):
                os.replace(d, self.dir / ("checkpoint.prev" + d.name[len("checkpoint") :]))
            if self.path.exists():
                os.replace(self.path, self.prev)
            os.replace(tmp, self.path)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the renames themselves durable
        finally:
            os.close(dir_fd)
        self.last_bytes = size

    def _read(self, path: Path) -> Checkpoint:
        with open(path, "rb") as f:
            head = f.read(len(snapshot.MAGIC))
            if head != snapshot.MAGIC:
                return Checkpoint.from_bytes(head + f.read(), str(path))
            f.seek(0)
            try:
                d = snapshot.read(f, os.fstat(f.fileno()).st_size)
                if d.get("v") != SNAPSHOT_VERSION:
                    raise CheckpointError(f"{path}: unsupported checkpoint format {d.get('v')!r}")
                return Checkpoint(
                    seq=int(d["seq"]), created=float(d["created"]),
                    offsets={(str(t), int(p)): int(o) for t, p, o in d["offsets"]},
                    model=d["model"], pending=tuple(d["pending"]), meta=dict(d["meta"]),
                )  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"{path}: {exc}") from None

    def _chain(self, base: Path) -> Checkpoint:
        first = self._read(base)
        if not isinstance(first.model, dict):  # format 1: no deltas
            return first
        if first.model.get("delta"):
            raise CheckpointError(f"{base}: a delta where a full checkpoint belongs")
        last, deltas = first, []
        for path in self.deltas(base):
            try:
                cp = self._read(path)
                if not isinstance(cp.model, dict) or not cp.model.get("delta") or cp.seq <= last.seq:
                    raise CheckpointError(f"{path}: not a delta after checkpoint {last.seq}")
            except (CheckpointError, OSError) as exc:  # the chain ends at the last good one
                log.warning("checkpoint chain stops before %s: %s", path.name, exc)
                break
            last = cp
            deltas.append(cp.model)
        return Checkpoint(seq=last.seq, created=last.created, offsets=last.offsets,
                          model=Snapshots(first.model, tuple(deltas)), pending=last.pending,
                          meta=last.meta)  # fmt: skip

    def restore(self, decode: Callable[[Any], Any]) -> Restored | None:
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
                checkpoint = self._chain(path)  # a full checkpoint and the deltas after it
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
                return self._chain(path)
            except (CheckpointError, OSError) as exc:
                errors.append(str(exc))
        if errors:
            raise CheckpointError("; ".join(errors))
        return None
