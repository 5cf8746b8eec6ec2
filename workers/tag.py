"""The tag worker: ``items.enrich`` in, ``items.tags`` out (``streamrec worker tag``).

The default backend needs nothing but the shipped sentence encoder, so it works offline:

- **keyphrases** (KeyBERT-style): 1- to 3-word runs of content words from the item's text
  (stopwords and punctuation split runs, so candidates are noun-ish phrases such as
  "galactic empire"), scored by cosine similarity to the document's embedding and picked with
  maximal marginal relevance, so "space", "space battle" and "space battles" do not fill the list;
- **zero-shot tags**: the document embedding against a tag vocabulary (``STREAMREC_TAG_VOCABULARY``:
  comma list or ``@file``; a small genre/theme vocabulary is built in), which names what the
  text does not say literally ("science fiction" for a plot about starships).

Up to half of the ``tag_top_n`` tags come from the vocabulary, the rest are keyphrases. Scores are
cosine similarities clipped to [0, 1]. The document embedding comes through the same Redis cache as
the embedding worker's (same key, same vector), and phrase embeddings are kept in a bounded
in-process LRU, since phrases repeat across items.

``STREAMREC_TAG_BACKEND=openai`` asks an OpenAI-compatible chat endpoint for comma-separated tags
instead (opt-in; scores then follow the rank the model gave). ``STREAMREC_TAG_OPENAI_API_KEY``, when
set, is sent as ``Authorization: Bearer <key>`` (hosted endpoints need one, a local server usually
does not); it is a :class:`~streamrec.settings.Secret`, so ``streamrec settings`` and reprs show
``<secret>`` and no log line carries it.

Malformed requests are not dead-lettered here but skipped and counted (``malformed_skipped``): the
embedding worker reads the same requests and dead-letters them, once (see :mod:`.common`).
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.error
import urllib.request
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np

from streamrec.schemas.events import EnrichRequest, ItemTags
from streamrec.schemas.fields import MAX_TAG_LEN
from streamrec.settings import Settings
from streamrec.workers.common import EnrichWorker, WorkerError, request_text
from streamrec.workers.embed import cache_for, distinct_texts, embed_cached, load_encoder

log = logging.getLogger("streamrec.workers.tag")

DEFAULT_VOCABULARY = (
    "action", "adventure", "animation", "biography", "comedy", "crime", "documentary", "drama",
    "family", "fantasy", "film noir", "history", "horror", "musical", "mystery", "romance",
    "science fiction", "space opera", "cyberpunk", "dystopia", "superhero", "thriller", "war",
    "western", "sports", "cooking", "travel", "nature", "music", "politics", "religion",
    "technology", "business", "education", "health", "true crime", "coming of age", "friendship",
    "love", "revenge", "survival", "heist", "espionage", "time travel", "artificial intelligence",
    "aliens", "magic", "monsters", "zombies", "vampires", "detective", "courtroom", "high school",
    "small town", "road trip", "dark", "funny", "feel-good", "romantic", "violent", "suspenseful",
    "inspiring", "kids", "for adults",
)  # fmt: skip

STOPWORDS = frozenset("""
a about above after again against all almost also although always am among an and another any
anyone anything are around as at away back be became because become becomes been before being
below between both but by can cannot could did do does doing done down during each either else
enough even ever every few for from further get gets getting give gives go goes going gone got had
has have having he her here hers herself him himself his how however i if in into is it its itself
just last least less let like made make makes many may me might more most much must my myself
near neither never new next no nor not now of off often on once one only onto or other others our
ours ourselves out over own per perhaps quite rather really same see seem seems several shall she
should since so some something soon still such take takes than that the their theirs them
themselves then there these they thing things this those though three through thus to together
too toward two under until up upon us very via was way we well were what whatever when where
whether which while who whom whose why will with within without would yet you your yours
yourself first second finds find tries try comes come becomes goes must
""".split())  # fmt: skip

_CHUNKS = re.compile(r"[.,;:!?()\[\]{}\"“”…/|\n]+|\s[-–—]+\s")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]")


def _content(word: str) -> bool:
    return len(word) > 2 and word not in STOPWORDS and not word.endswith("ly")


def candidates(text: str, max_ngram: int = 3, limit: int = 64) -> list[str]:
    """Keyphrase candidates: n-grams (1..max_ngram) of consecutive content words, most frequent first.

    >>> candidates("A rebel pilot fights the evil galactic empire. The empire strikes back!")
    ['empire', 'rebel', 'pilot', 'fights', 'evil', 'galactic', 'strikes', 'rebel pilot', 'pilot fights', 'evil galactic', 'galactic empire', 'empire strikes', 'rebel pilot fights', 'evil galactic empire']
    """
    counts: Counter[str] = Counter()
    for chunk in _CHUNKS.split(text.lower()):
        run: list[str] = []
        for word in [*_WORD.findall(chunk), ""]:  # "" ends the last run
            word = word.strip("'-")
            if word and _content(word):
                run.append(word)
                continue
            for n in range(1, max_ngram + 1):
                for i in range(len(run) - n + 1):
                    counts[" ".join(run[i : i + n])] += 1
            run = []
    # frequency first, shorter phrases before longer at equal frequency, then first occurrence
    ranked = sorted(counts, key=lambda p: (-counts[p], p.count(" ")))
    return [p for p in ranked if len(p) <= MAX_TAG_LEN][:limit]


def mmr(doc: np.ndarray, cands: np.ndarray, k: int, diversity: float = 0.5) -> list[int]:
    """Maximal marginal relevance: indices of ``k`` candidates relevant to ``doc`` but unlike each other.

    Rows are unit vectors. Each step picks ``argmax (1-d)·cos(c, doc) - d·max cos(c, picked)``.

    >>> doc = np.array([1.0, 0.0])
    >>> cands = np.array([[0.95, 0.312], [0.94, 0.341], [0.8, -0.6], [0.0, 1.0]])  # 1 repeats 0
    >>> mmr(doc, cands, 2, diversity=0.0), mmr(doc, cands, 2, diversity=0.5)
    ([0, 1], [0, 2])
    """
    if len(cands) == 0 or k <= 0:
        return []
    relevance = cands @ doc
    pairwise = cands @ cands.T
    picked = [int(np.argmax(relevance))]
    while len(picked) < min(k, len(cands)):
        redundancy = pairwise[:, picked].max(axis=1)
        score = (1 - diversity) * relevance - diversity * redundancy
        score[picked] = -np.inf
        picked.append(int(np.argmax(score)))
    return picked


def parse_vocabulary(spec: str) -> list[str]:
    """The zero-shot vocabulary: the built-in one for "", ``@path`` for a file (one tag a line,
    ``#`` comments), else a comma-separated list. Duplicates (ignoring case) are dropped.

    >>> parse_vocabulary("Horror, comedy,, horror ,space opera")
    ['Horror', 'comedy', 'space opera']
    >>> parse_vocabulary("")[:3]
    ['action', 'adventure', 'animation']
    """
    if not spec.strip():
        return list(DEFAULT_VOCABULARY)
    if spec.startswith("@"):
        lines = Path(spec[1:]).expanduser().read_text(encoding="utf-8").splitlines()
        raw = [line.split("#", 1)[0] for line in lines]
    else:
        raw = spec.split(",")
    out, seen = [], set()
    for tag in (t.strip() for t in raw):
        if not tag or tag.lower() in seen:
            continue
        if len(tag) > MAX_TAG_LEN:
            raise ValueError(f"tag vocabulary entry {tag[:40]!r}... is longer than {MAX_TAG_LEN} chars")
        seen.add(tag.lower())
        out.append(tag)
    return out


def _score(cos: float) -> float:
    return round(min(1.0, max(0.0, float(cos))), 4)


def select_tags(doc: np.ndarray, phrases: list[str], phrase_vecs: np.ndarray, vocab: list[str],
                vocab_vecs: np.ndarray, top_n: int, diversity: float = 0.5,
                vocab_min: float = 0.2) -> list[tuple[str, float]]:  # fmt: skip
    """Up to ``top_n // 2`` vocabulary tags scoring at least ``vocab_min``, keyphrases by MMR for
    the rest (more vocabulary tags if keyphrases run out); best score first.

    >>> e = np.eye(3, dtype=np.float32)
    >>> select_tags(e[0], ["dune", "sand"], e[[0, 1]], ["sf", "cooking"], e[[0, 2]], top_n=2)
    [('sf', 1.0), ('dune', 1.0)]
    """
    vocab_scores = vocab_vecs @ doc if len(vocab) else np.zeros(0)
    fit = [i for i in np.argsort(-vocab_scores, kind="stable") if vocab_scores[i] >= vocab_min]
    chosen = [(vocab[i], _score(vocab_scores[i])) for i in fit[: top_n // 2]]
    taken = {t.lower() for t, _ in chosen}
    keep = [i for i, p in enumerate(phrases) if p.lower() not in taken]
    picked = mmr(doc, phrase_vecs[keep], top_n - len(chosen), diversity) if keep else []
    relevance = phrase_vecs @ doc if len(phrases) else np.zeros(0)
    chosen += [(phrases[keep[j]], _score(relevance[keep[j]])) for j in picked]
    taken = {t.lower() for t, _ in chosen}
    for i in fit[top_n // 2 :]:  # not enough keyphrases: more of the vocabulary
        if len(chosen) >= top_n:
            break
        if vocab[i].lower() not in taken:  # a keyphrase may already be this tag
            chosen.append((vocab[i], _score(vocab_scores[i])))
            taken.add(vocab[i].lower())
    return sorted(chosen, key=lambda ts: -ts[1])


def parse_generated_tags(content: str, n: int) -> list[tuple[str, float]]:
    """Tags from a chat model's reply; scores follow the given order (first = 1.0).

    >>> parse_generated_tags('1. Space opera, "rebellion"\\n- Space Opera, empire', 4)
    [('space opera', 1.0), ('rebellion', 0.75), ('empire', 0.5)]
    """
    tags: list[str] = []
    content = re.sub(r"^\s*tags?\s*:", "", content, flags=re.IGNORECASE)  # a "Tags:" label
    for part in re.split(r"[,\n;]+", content):
        tag = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", part).strip().strip("\"'`.").strip().lower()
        if tag and len(tag) <= MAX_TAG_LEN and tag not in tags:
            tags.append(tag)
    return [(t, round(1.0 - i / n, 4)) for i, t in enumerate(tags[:n])]


SYSTEM_PROMPT = ("You tag catalogue items for a recommender. Reply with short lowercase tags "
                 "(genres, themes, moods), comma-separated, nothing else.")  # fmt: skip


def openai_tags(url: str, model: str, text: str, n: int, timeout_s: float = 30.0,
                api_key: str = "") -> list[tuple[str, float]]:  # fmt: skip
    """Ask an OpenAI-compatible ``/chat/completions`` endpoint (plain urllib) for ``n`` tags.

    ``api_key`` goes out as ``Authorization: Bearer <key>`` only when set, so a server that needs
    no key gets no header rather than an empty bearer token, which some reject.
    """
    body = {"model": model, "temperature": 0, "messages": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Give at most {n} tags for this item:\n\n{text}"}]}  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(url.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(),
                                 headers=headers)  # fmt: skip
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        reply = json.loads(resp.read())
    return parse_generated_tags(reply["choices"][0]["message"]["content"], n)


class TagWorker(EnrichWorker):
    """Consumes with group ``{enrich_group_id}-tag``; see the module docstring."""

    name = "tag"
    PHRASE_CACHE = 100_000

    def __init__(self, settings: Settings, encoder=None):
        super().__init__(settings)
        self.openai = settings.tag_backend == "openai"
        self.phrases: OrderedDict[str, np.ndarray] = OrderedDict()
        if self.openai:
            if not (settings.tag_openai_url and settings.tag_openai_model):
                raise WorkerError("STREAMREC_TAG_BACKEND=openai needs STREAMREC_TAG_OPENAI_URL and "
                                  "STREAMREC_TAG_OPENAI_MODEL")  # fmt: skip
            self.model_name = settings.tag_openai_model
            return
        self.encoder = encoder if encoder is not None else load_encoder(settings)
        self.model_name = self.encoder.name
        try:
            self.vocab = parse_vocabulary(settings.tag_vocabulary)
        except ValueError as exc:
            raise WorkerError(f"STREAMREC_TAG_VOCABULARY: {exc}") from None
        self.vocab_vecs = self.encoder.encode(self.vocab)
        self._calls_at_start = self.encoder.calls
        self.cache = cache_for(settings, self.encoder.name, self.encoder.dim)

    @property
    def output_topics(self) -> list[str]:
        return [self.topics.tags]

    def phrase_vectors(self, phrases: set[str]) -> None:
        """Embed the phrases not in the LRU yet, in one encoder call."""
        missing = sorted(p for p in phrases if p not in self.phrases)
        for p in phrases - set(missing):
            self.phrases.move_to_end(p)
        if missing:
            self.phrases.update(zip(missing, self.encoder.encode(missing)))
        while len(self.phrases) > self.PHRASE_CACHE:
            self.phrases.popitem(last=False)

    def handle(self, requests: list[EnrichRequest], now: float) -> list[ItemTags]:
        n = self.settings.tag_top_n
        if self.openai:
            return [ItemTags(r.item, self.model_name, r.content_hash, self._ask(request_text(r), n), now)
                    for r in requests]  # fmt: skip
        texts = distinct_texts(requests)
        docs = embed_cached(self.encoder, self.cache, texts, self.stats)
        cands = {h: candidates(t) for h, t in texts.items()}
        self.phrase_vectors({p for ps in cands.values() for p in ps})
        tags = {}
        for h, ps in cands.items():
            vecs = np.stack([self.phrases[p] for p in ps]) if ps else np.zeros((0, self.encoder.dim))
            tags[h] = select_tags(docs[h], ps, vecs, self.vocab, self.vocab_vecs, n)
        self.stats.model_calls = self.encoder.calls - self._calls_at_start
        self.stats.redis_failures = self.cache.failures
        return [ItemTags(r.item, self.model_name, r.content_hash, tags[r.content_hash], now)
                for r in requests]  # fmt: skip

    def _ask(self, text: str, n: int) -> list[tuple[str, float]]:
        """The endpoint's tags; a failing endpoint is retried, then stops the worker uncommitted
        (the request is fine, so it is not dead-lettered)."""
        for attempt in range(4):
            try:
                return openai_tags(self.settings.tag_openai_url, self.model_name, text, n,
                                   api_key=self.settings.tag_openai_api_key)  # fmt: skip
            except (OSError, urllib.error.URLError, ValueError, KeyError, IndexError, TypeError) as exc:
                if attempt == 3:
                    raise WorkerError(f"tag endpoint {self.settings.tag_openai_url} failed: {exc}") from exc
                log.warning("tag endpoint failed (%s); retrying in %ds", exc, 2**attempt)
                time.sleep(2**attempt)
        raise AssertionError("unreachable")

    def extra_health(self) -> dict:
        if self.openai:
            return {"model": self.model_name, "backend": "openai"}
        return {"model": self.model_name, "backend": "local", "redis_ok": self.cache.ok}


def run(settings: Settings, burst: bool = False, max_seconds: float | None = None) -> str:
    """Run the worker (``streamrec worker tag``); the summary line it ends with."""
    from streamrec.workers import agents

    worker = TagWorker(settings)
    stats = agents.run(worker, burst=burst, max_seconds=max_seconds)
    return f"tag worker ({worker.model_name}): {stats.line()}"
