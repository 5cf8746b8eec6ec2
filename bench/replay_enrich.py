"""The enrichment stage of ``streamrec bench replay``: item embeddings and tags for ``crm+llm``.

Why a stage of its own: the content signals must be the ones the LLM workers would publish, or
the replay would measure a different system. So the texts are what the embedding worker embeds
(:func:`item_texts`), the vectors come from the shipped encoder, and the tags from the tag
worker's own pure functions with the same encoder (:func:`worker_tags`). Encoding every item
text, and every keyphrase for the tags, is slow on a CPU and gives the same result for the same
texts, so the results are cached under ``<state dir>/replay/`` keyed by the encoder's name, its
token limit and a hash of every item text (tags also by the vocabulary and ``tag_top_n``): reruns
do not re-encode.

The replay feeds an :class:`Enrichment` to the model in the order the Kafka path publishes it
(see :func:`streamrec.bench.replay_run.feed_catalogue`).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamrec.bench.replay_data import Dataset
from streamrec.settings import Settings

TAG_MODES = ("worker", "none")


def _log(msg: str) -> None:
    print(f"[bench replay] {msg}", file=sys.stderr, flush=True)


@dataclass
class Enrichment:
    """Item embeddings (rows aligned with the catalogue) and tags, as the LLM workers make them."""

    model: str
    vectors: np.ndarray
    tags: list[list[tuple[str, float]]] | None
    tag_source: str
    seconds: dict = field(default_factory=dict)


def item_texts(dataset: Dataset) -> list[str]:
    """What the embedding worker embeds for each catalogue item (title, text, attribute values)."""
    from streamrec.workers.common import text_of

    return [text_of(it.title, it.text, it.attributes) for it in dataset.items]


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _encode(encoder, texts: list[str], desc: str, progress: bool, chunk: int = 512) -> np.ndarray:
    from tqdm import tqdm

    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    with tqdm(total=len(texts), desc=desc, unit=" texts", file=sys.stderr, disable=not progress,
              leave=False) as bar:  # fmt: skip
        for start in range(0, len(texts), chunk):
            out[start : start + chunk] = encoder.encode(texts[start : start + chunk])
            bar.update(min(chunk, len(texts) - start))
    return out


def enrichment_for(dataset: Dataset, settings: Settings, tags: str = "worker",
                   progress: bool = True, cache_dir: Path | None = None) -> Enrichment:  # fmt: skip
    """Embeddings (and tags) of every catalogue item, from the cache or the real encoder."""
    from streamrec.workers.encoder import resolve_model

    if tags not in TAG_MODES:
        raise ValueError(f"tags must be one of {TAG_MODES}")
    _, model_name = resolve_model(settings.embed_model)
    texts = item_texts(dataset)
    cache = Path(cache_dir or settings.state_dir / "replay")
    cache.mkdir(parents=True, exist_ok=True)
    key = _digest(model_name, str(settings.embed_max_tokens), *texts)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in model_name)
    emb_path = cache / f"emb-{safe}-{key}.npy"
    tag_key = _digest(key, settings.tag_vocabulary, str(settings.tag_top_n))
    tag_path = cache / f"tags-{safe}-{tag_key}.json"
    encoder = None
    seconds = {}

    def get_encoder():
        nonlocal encoder
        if encoder is None:
            from streamrec.workers.embed import load_encoder

            started = time.perf_counter()
            encoder = load_encoder(settings)
            seconds["load_encoder_s"] = time.perf_counter() - started
        return encoder

    if emb_path.is_file():
        vectors = np.load(emb_path)
        _log(f"embeddings of {len(texts)} items from cache {emb_path.name}")
    else:
        enc = get_encoder()
        _log(f"embedding {len(texts)} item texts with {enc.name} on {enc.device}")
        started = time.perf_counter()
        vectors = _encode(enc, texts, "embedding items", progress)
        seconds["embed_s"] = time.perf_counter() - started
        _log(f"embedded {len(texts)} texts in {seconds['embed_s']:.1f}s")
        tmp = emb_path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(emb_path)
    item_tags = None
    if tags == "worker":
        if tag_path.is_file():
            item_tags = [distinct_tags(pairs) for pairs in json.loads(tag_path.read_text())]
            _log(f"tags of {len(texts)} items from cache {tag_path.name}")
        else:
            started = time.perf_counter()
            item_tags = worker_tags(get_encoder(), texts, vectors, settings, progress)
            seconds["tags_s"] = time.perf_counter() - started
            _log(f"tagged {len(texts)} items in {seconds['tags_s']:.1f}s")
            tmp = tag_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(item_tags))
            tmp.replace(tag_path)
    source = ("tag worker functions (keyphrases + zero-shot vocabulary, "
              f"{model_name})" if tags == "worker" else "none")  # fmt: skip
    return Enrichment(model_name, vectors, item_tags, source, seconds)


def worker_tags(encoder, texts: list[str], docs: np.ndarray, settings: Settings,
                progress: bool = True) -> list[list[tuple[str, float]]]:  # fmt: skip
    """Tags exactly as the local tag worker computes them (its pure functions, same encoder)."""
    from streamrec.workers.tag import candidates, parse_vocabulary, select_tags

    vocab = parse_vocabulary(settings.tag_vocabulary)
    vocab_vecs = encoder.encode(vocab)
    cands = [candidates(t) for t in texts]
    phrases = sorted({p for ps in cands for p in ps})
    vecs = dict(zip(phrases, _encode(encoder, phrases, "embedding keyphrases", progress)))
    out = []
    for doc, ps in zip(docs, cands):
        pv = np.stack([vecs[p] for p in ps]) if ps else np.zeros((0, encoder.dim), dtype=np.float32)
        out.append(distinct_tags(select_tags(doc, ps, pv, vocab, vocab_vecs, settings.tag_top_n)))
    return out


def distinct_tags(pairs) -> list[tuple[str, float]]:
    """Each tag once, first score wins (what ``ItemTags`` accepts and ``set_tags`` keeps).

    ``select_tags`` can name a tag twice when a keyphrase equals a vocabulary tag taken to fill
    the list ("action" from the genres and from the vocabulary); the schema refuses that.

    >>> distinct_tags([("action", 0.3), ("heat", 0.4), ("action", 0.3)])
    [('action', 0.3), ('heat', 0.4)]
    """
    out: dict[str, float] = {}
    for tag, score in pairs:
        out.setdefault(str(tag), float(score))
    return list(out.items())
