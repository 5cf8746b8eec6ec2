"""``streamrec bench scale`` at a toy size: every key of the contract, and sane relations between them."""

from __future__ import annotations

import json

import pytest

from streamrec.bench import scale
from streamrec.settings import Settings

KEYS = {"users", "items", "embeddings", "workers", "learn_us_per_event", "ms_per_list",
        "roofline_ms_per_list", "recall_at_50", "rss_mb_per_worker", "peak_rss_mb",
        "checkpoint_bytes_per_interval", "full_state_bytes", "restore_s", "intake_events_per_s"}  # fmt: skip


@pytest.mark.parametrize("embeddings", [False, True])
def test_a_small_configuration_measures_every_key(embeddings):
    row = scale.measure(Settings(), 3000, 400, embeddings, 3.0, n_lists=100, n_recall=50, seed=1,
                        quiet=True, index_min_items=200)  # fmt: skip
    assert KEYS <= set(row) and json.loads(json.dumps(row)) == row
    assert (row["users"], row["items"], row["embeddings"], row["workers"]) == (3000, 400, embeddings, 1)
    assert 0.5 <= row["recall_at_50"] <= 1.0
    assert 0 < row["checkpoint_bytes_per_interval"] < row["full_state_bytes"]
    assert row["changed_users"] == 30 and row["restore_s"] > 0 and row["intake_events_per_s"] > 0
    assert row["peak_rss_mb"] >= row["rss_mb_per_worker"] > 0
    # the figures are the medians of three passes, each timed after its roofline
    assert row["passes"] == 3 and len(row["ms_per_list_passes"]) == len(row["roofline_ms_per_list_passes"]) == 3
    assert sorted(row["ms_per_list_passes"])[1] == row["ms_per_list"]
    if embeddings:  # the index was built (200 <= 400 embedded items) and swept
        assert row["nprobe_sweep"] and row["users_near_ms"] > 0 and 0 < row["users_near_recall"] <= 1


def test_no_timed_pass_is_refused_with_its_reason():
    from types import SimpleNamespace

    with pytest.raises(ValueError, match="--passes 0: at least one timed pass"):
        scale.main(Settings(), SimpleNamespace(sizes="1kx1k", embeddings="no", passes=0))


def test_sizes_parse_and_bad_ones_are_named():
    assert scale.parse_sizes("1Mx100k") == [(1_000_000, 100_000)]
    with pytest.raises(ValueError, match="'100k' is not USERSxITEMS"):
        scale.parse_sizes("100k")
