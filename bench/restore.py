"""How long a large checkpoint takes to restore, next to reading and copying its bytes.

Run as ``python -m streamrec.bench.restore --mib 1024 --dir DIR``: builds a model whose item
embeddings alone take about ``--mib`` MiB (through the public API: ``set_embedding`` per item, no
events learned), checkpoints it with the stream worker's store into ``DIR``, then times the
worker's restore path (``FileCheckpointStore.restore(Recommender.from_bytes)``) against a
reference measured in the same run: reading the file and copying its bytes into one array, the
floor any restore pays. The checkpoint stays in ``DIR``, so a real worker can then be started from
it (``STREAMREC_CHECKPOINT_DIR=DIR streamrec worker streams --burst``).

Why a module and not a ``bench`` subcommand: it needs no Kafka or Redis and is a one-off capacity
check of the state format, not a figure the README tracks per change.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

DIM = 384


def build(n_items: int, seed: int = 0):
    from streamrec.streams.recommender import Recommender

    rng = np.random.default_rng(seed)
    model = Recommender()
    for start in range(0, n_items, 10_000):
        block = rng.standard_normal((min(10_000, n_items - start), DIM)).astype(np.float32)
        for j, vector in enumerate(block):
            model.set_embedding(f"i{start + j}", vector)
    model.learn_click("u1", "i0", 1.7e9)
    return model


def main(argv: list[str] | None = None) -> dict:
    from streamrec.streams.checkpoint import Checkpoint, FileCheckpointStore
    from streamrec.streams.recommender import Recommender

    parser = argparse.ArgumentParser(prog="python -m streamrec.bench.restore")
    parser.add_argument("--mib", type=int, default=1024, help="embedding MiB (default 1024)")
    parser.add_argument("--dir", required=True, help="where the checkpoint is written (and kept)")
    args = parser.parse_args(argv)
    n_items = args.mib * (1 << 20) // (4 * DIM)
    t0 = time.perf_counter()
    model = build(n_items)
    built_s = time.perf_counter() - t0
    store = FileCheckpointStore(args.dir)
    t0 = time.perf_counter()
    store.save(Checkpoint(seq=1, created=time.time(), offsets={}, model=model.to_bytes()))
    save_s = time.perf_counter() - t0
    del model
    size = store.path.stat().st_size
    t0 = time.perf_counter()
    raw = store.path.read_bytes()
    floor = np.frombuffer(raw, dtype=np.uint8).copy()
    reference_s = time.perf_counter() - t0
    del raw, floor
    t0 = time.perf_counter()
    restored = store.restore(Recommender.from_bytes)
    restore_s = time.perf_counter() - t0
    assert restored.model.embedding_of(f"i{n_items - 1}") is not None
    result = {"items": n_items, "checkpoint_bytes": size, "build_s": round(built_s, 1),
              "save_s": round(save_s, 2), "restore_s": round(restore_s, 2),
              "read_copy_reference_s": round(reference_s, 2),
              "restore_over_reference": round(restore_s / reference_s, 2),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}  # fmt: skip
    print(json.dumps(result))
    Path(args.dir, "restore-bench.json").write_text(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
