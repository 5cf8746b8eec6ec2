"""Cyclic collection held off during a ranking pass, and restored exactly as it was found."""

from __future__ import annotations

import gc
import threading

import pytest

from streamrec.streams.gcpause import collection_paused


@pytest.fixture(autouse=True)
def _restore_gc():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_inside_and_restored_after():
    gc.enable()
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_left_off_when_it_was_off():
    gc.disable()
    with collection_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_restored_after_an_exception():
    gc.enable()
    with pytest.raises(KeyError):
        with collection_paused():
            raise KeyError("boom")
    assert gc.isenabled()


def test_overlapping_pauses_in_threads_restore_once_the_last_ends():
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def other():
        with collection_paused():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    with collection_paused():
        t.start()
        assert inside.wait(5)
    assert not gc.isenabled()  # the other thread's pause is still open
    release.set()
    t.join(5)
    assert gc.isenabled()


def test_a_pass_leaves_collection_on():
    """The ranking pass pauses around its chunks only (a small recommender, no index)."""
    from streamrec.streams.recommender import Recommender, RecommenderConfig

    rec = Recommender(RecommenderConfig(), seed=0)
    for u in range(5):
        for i in range(4):
            rec.learn_click(f"u{u}", f"i{(u + i) % 7}", float(u * 10 + i))
    gc.enable()
    lists = rec.recommend_many([f"u{u}" for u in range(5)], 3)
    assert gc.isenabled()
    assert all(len(x) == 3 for x in lists)
