"""Partitioned state without services: item deltas make every worker's counts agree, and a user's
record moves the user whole to another worker (streams/partitioned.py)."""

from __future__ import annotations

import random

import numpy as np

from streamrec.streams.partitioned import PartitionedState
from streamrec.streams.statetopics import decode_record, encode_record
from streamrec.streams.recommender import Recommender


class Log:
    """The item delta log and the changelog, as lists (the order Kafka would keep); ``writer``
    names the worker producing through this view of it."""

    def __init__(self, items=None, users=None, writer=0):
        self.items: list[tuple[int, bytes]] = [] if items is None else items
        self.users: dict[tuple[int, bytes], bytes] = {} if users is None else users
        self.writer = writer

    def by(self, writer: int) -> Log:
        return Log(self.items, self.users, writer)

    def produce(self, topic, key, value, origin, partition=None):
        if topic == "state.items":
            self.items.append((self.writer, value))
        else:
            self.users[(partition, key)] = value  # compacted: the latest per key
        return True


def _stream(n=3000, users=60, items=80, seed=1):
    rng = random.Random(seed)
    return [(f"u{rng.randrange(users)}", f"i{min(int(rng.paretovariate(1.2)), items)}", float(t))
            for t in range(n)]  # fmt: skip


def _workers(n_workers):
    models = [Recommender(seed=0) for _ in range(n_workers)]
    states = [PartitionedState(m, "state.users", "state.items") for m in models]
    return models, states


def _run(stream, models, states, log, applied):
    """Each event learned by its user's worker; every few events every worker reads the others'."""
    for k, (user, item, ts) in enumerate(stream):
        w = int(user[1:]) % len(models)
        models[w].learn_click(user, item, ts)
        states[w].learned(user, int(user[1:]) % 4)
        if k % 97 == 0:
            _catch_up(models, states, log, applied)


def _catch_up(models, states, log, applied):
    for w, s in enumerate(states):
        s.flush(log.by(w))
    for w, m in enumerate(models):
        for writer, value in log.items[applied[w]:]:
            if writer != w:
                m.add_item_delta(decode_record(value))
        applied[w] = len(log.items)


def test_two_workers_count_every_event_once_and_agree_with_one_worker():
    # (no neighbour map reaches the cap here, so pruning order cannot differ)
    stream = _stream()
    one = Recommender(seed=0)
    for user, item, ts in stream:
        one.learn_click(user, item, ts)
    models, states = _workers(2)
    log, applied = Log(), [0, 0]
    _run(stream, models, states, log, applied)
    _catch_up(models, states, log, applied)
    a, b = models
    pairs = {(i, j) for _, i, _ in stream[:300] for _, j, _ in stream[:300]}
    for i, j in pairs:
        assert a.cooccur.count(i, j) == b.cooccur.count(i, j) == one.cooccur.count(i, j)
    for m in models:
        assert dict(m.popularity.top(20)).keys() == dict(one.popularity.top(20)).keys()
        np.testing.assert_allclose(sorted(s for _, s in m.popularity.top(20)),
                                   sorted(s for _, s in one.popularity.top(20)), rtol=1e-9)
    # each worker holds its own users only, and together every user's exact count
    held = [set(m.seen_users()) for m in models]
    assert not held[0] & held[1]
    assert {u: m.n_learned(u) for m in models for u in m.seen_users()} == {
        u: sum(1 for v, _, _ in stream if v == u) for u, _, _ in stream}


def test_item_factors_learned_on_two_workers_reach_both():
    models, states = _workers(2)
    log, applied = Log(), [0, 0]
    _run(_stream(n=800), models, states, log, applied)
    _catch_up(models, states, log, applied)
    a, b = models
    ia, ib = a.index.get("i1"), b.index.get("i1")
    fa, fb = a.mf.item_factors(np.array([ia])), b.mf.item_factors(np.array([ib]))
    # the same learned change on both; only each worker's initial draw differs
    assert np.linalg.norm(fa - fb) < np.linalg.norm(fa) + np.linalg.norm(fb)
    assert a.take_item_delta() is None  # nothing learned since the last flush


def test_a_user_record_moves_the_user_whole():
    models, states = _workers(2)
    log, applied = Log(), [0, 0]
    _run(_stream(n=1500), models, states, log, applied)
    _catch_up(models, states, log, applied)
    a, b = models
    user = next(u for u in a.seen_users() if a.n_learned(u) >= 5)
    partition = states[0].partition_of[user]
    before = a.recommend(user, 10)
    records = [(k, v) for (p, k), v in log.users.items() if p == partition]
    assert states[1].restore(partition, records)
    assert b.n_learned(user) == a.n_learned(user)
    assert set(b.seen(user)) == set(a.seen(user))
    assert b.cooccur.history(user) == a.cooccur.history(user)
    np.testing.assert_array_equal(a.mf.user_state(user)[0], b.mf.user_state(user)[0])
    # the same co-occurrence scores, item by item (the counts agree, the history moved)
    score = lambda m: {m.index.items[r]: v for r, v in zip(*m.cooccur.sparse_scores(user))}  # noqa: E731
    assert score(a) == score(b)
    states[0].forget({partition})
    assert user not in set(a.seen_users()) and a.n_users == len(set(a.seen_users()))


def test_records_round_trip_with_arrays():
    rec = {"mf": [np.arange(4, dtype=np.float32), 0.5], "seen": ["a", "b"], "n": 2}
    back = decode_record(encode_record(rec))
    np.testing.assert_array_equal(back["mf"][0], rec["mf"][0])
    assert back["seen"] == ["a", "b"]


def test_transitions_reach_the_other_worker_and_move_with_the_user():
    models, states = _workers(2)
    log, applied = Log(), [0, 0]
    stream = _stream(n=1200)
    _run(stream, models, states, log, applied)
    _catch_up(models, states, log, applied)
    one = Recommender(seed=0)
    for user, item, ts in stream:
        one.learn_click(user, item, ts)
    pairs = [(f"i{a}", f"i{b}") for a in range(6) for b in range(6) if a != b]
    for m in models:
        assert [round(m.transitions.count(a, b), 9) for a, b in pairs] == \
            [round(one.transitions.count(a, b), 9) for a, b in pairs]
    a, b = models
    user = next(u for u in a.seen_users() if len(a.transitions.window(u)) >= 3)
    p = states[0].partition_of[user]
    states[1].restore(p, [(k, v) for (q, k), v in log.users.items() if q == p])
    assert b.transitions.window(user) == a.transitions.window(user)


def test_state_topics_are_ready_only_when_every_partition_has_a_leader():
    from types import SimpleNamespace as NS

    from streamrec.streams.statetopics import _led

    def topic(*leaders):
        return NS(error=None, partitions={i: NS(leader=l, error=None) for i, l in enumerate(leaders)})

    names = ("users", "items")
    assert _led({"users": topic(1, 1), "items": topic(1)}, names)
    assert not _led({"users": topic(1, -1), "items": topic(1)}, names)  # just created: no leader yet
    assert not _led({"users": topic(1, 1)}, names)  # not listed yet
    assert not _led({"users": topic(), "items": topic(1)}, names)  # listed without partitions


def test_commit_is_due_after_the_configured_own_events_and_a_flush_resets_it():
    """STREAMREC_COMMIT_EVERY_EVENTS: a saturated worker commits after that many of its own events
    (the other workers' lag), whether or not the half-second timer ran out."""
    model = Recommender()
    state = PartitionedState(model, "state.users", "state.items", commit_every=3)
    log, due = Log(), []
    for k, (user, item, ts) in enumerate(_stream(n=7)):
        model.learn_click(user, item, ts)
        state.learned(user, 0)
        due.append(state.commit_due())
        if due[-1]:
            state.flush(log)
    assert due == [False, False, True, False, False, True, False]
    assert len([v for _, v in log.items]) == 2  # one item delta per commit


def test_commits_model_the_worker_timer_and_event_bound():
    """The replay's commits: the half-second timer (stream clock) at the stream's rate, the
    event bound for a saturated worker, and the fixed-lag protocol when asked for."""
    from streamrec.bench.replay_partitioned import Commits

    live = Commits(2, commit_s=0.5, commit_every=1000)
    assert live.learned(0, 10.0) == [] and live.due(10.4) == [] and live.due(10.5) == [0]
    assert live.due(11.0) == []  # nothing held: no commit
    saturated = Commits(2, commit_s=float("inf"), commit_every=2)
    assert [saturated.learned(w, 0.0) for w in (0, 1, 0, 1)] == [[], [], [0], [1]]
    assert saturated.due(1e9) == []
    fixed = Commits(2, every=3)
    assert [fixed.learned(0, 0.0) for _ in range(6)] == [[], [], [0, 1], [], [], [0, 1]]
    assert fixed.count == 4


def test_a_young_worker_commits_more_often_up_to_the_configured_bound():
    """Early commits (a quarter of what was learned, at least 100) then every commit_every events:
    a dozen extra commits in all, and a peer's lag is at most a quarter of what the worker learned."""
    state = PartitionedState(Recommender(), "state.users", "state.items", commit_every=1000)
    at = []
    for n in range(1, 20_001):
        state.learned("u", 0)
        if state.commit_due():
            state.flush(Log())
            at.append(n)
    gaps = [b - a for a, b in zip([0, *at], at)]
    assert gaps[:4] == [100, 100, 100, 100] and max(gaps) == 1000
    assert gaps == sorted(gaps)  # the bound only grows
    assert all(g <= max(100, n // 4) for g, n in zip(gaps, at))  # lag: a quarter of the learned
    assert len(at) < 20_000 // 1000 + 12  # a dozen commits more than the bound alone
