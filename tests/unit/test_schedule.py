"""Refresh scheduling: owed users, early refresh, the logical clock, rebalances, Redis backoff."""

from __future__ import annotations

from streamrec.streams.schedule import PassSlices, RefreshSchedule, active_from_meta, active_to_meta

P0, P1 = ("events.clicks", 0), ("events.clicks", 1)


def everywhere(position) -> bool:
    return True


def only_p0(position) -> bool:
    return position is None or position == P0


def schedule(**kw) -> RefreshSchedule:
    args = {"interval_s": 60.0, "early_s": 2.0, "early_max_per_s": 100, "logical": False, "now": 0.0}
    return RefreshSchedule(**{**args, **kw})


def test_early_refresh_is_a_debounce_from_the_first_event():
    s = schedule()
    s.touch("u1", P0, now=10.0)
    s.touch("u1", P0, now=11.9)
    assert s.early_due(11.9, everywhere) == []
    assert s.early_due(12.0, everywhere) == ["u1"]
    s.early_written(["u1"])
    assert s.early == {} and s.active == {}


def test_early_refresh_spends_at_most_the_per_second_budget():
    s = schedule(early_max_per_s=3)
    for n in range(10):
        s.touch(f"u{n}", P0, now=0.0)
    due = s.early_due(2.0, everywhere)
    assert due == ["u0", "u1", "u2"]
    s.early_written(due)
    assert s.early_due(2.0, everywhere) == []  # budget spent, no time passed
    assert s.early_due(2.5, everywhere) == ["u3"]  # half a second refills 1.5 tokens


def test_early_refresh_skips_users_served_elsewhere():
    s = schedule()
    s.touch("u0", P0, now=0.0)
    s.touch("u1", P1, now=0.0)
    assert s.early_due(5.0, only_p0) == ["u0"]


def test_no_early_refresh_when_off_or_on_a_logical_clock():
    for s in (schedule(early_s=0.0), schedule(logical=True)):
        s.touch("u1", P0, now=0.0)
        assert s.early == {} and s.owed(everywhere) == ["u1"]


def test_a_refresh_pass_settles_served_users_and_remembers_the_others():
    s = schedule()
    s.touch("u0", P0, now=0.0)
    s.touch("u1", P1, now=0.0)
    s.owe("u2")  # a cold-start match: partition unknown, every serving worker writes it
    assert s.owed(only_p0) == ["u0", "u2"]
    s.written(only_p0, now=60.0)
    assert s.active == {} and s.others == {"u1": (P1, 60.0)}
    s.gained({P1})  # its worker left: u1's list may be owed
    assert s.active == {"u1": P1} and s.others == {}


def test_the_others_are_forgotten_after_the_keep_period():
    s = schedule()
    s.touch("u1", P1, now=0.0)
    s.written(only_p0, now=0.0)
    s.written(only_p0, now=s.others_keep_s + 1)
    s.gained({P1})
    assert s.active == {}


def test_the_logical_clock_moves_to_the_next_multiple_of_the_interval():
    s = schedule(logical=True)
    assert s.boundary_reached(1.7e9)
    s.advance_boundary(130.0)
    assert not s.boundary_reached(179.9) and s.boundary_reached(180.0)


def test_redis_backoff_doubles_to_thirty_seconds_and_resets():
    s = schedule()
    assert s.redis_ready(0.0)
    delays = [s.redis_failed(0.0) for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert not s.redis_ready(29.9) and s.redis_ready(30.0)
    s.redis_ok()
    assert s.redis_backoff == 0.0 and s.redis_failed(40.0) == 1.0


def test_owed_users_survive_a_checkpoint():
    active = {"u1": P1, "u2": None}
    assert active_from_meta(active_to_meta(active)) == active
    assert RefreshSchedule(60.0, 0.0, 10, False, 0.0, active).owed(everywhere) == ["u1", "u2"]


def test_an_interleaved_pass_settles_only_users_not_learned_from_since_it_began():
    only_p0 = lambda position: position is None or position[1] == 0  # noqa: E731
    s = RefreshSchedule(interval_s=60.0, early_s=2.0, early_max_per_s=100, logical=False, now=0.0)
    for user, part in [("a", 0), ("b", 0), ("c", 1)]:
        s.touch(user, ("events.clicks", part), now=1.0)
    s.owe("cold")  # a cold-start match, partition unknown
    assert s.begin_pass(only_p0) == ["a", "b", "cold"]
    s.touch("b", ("events.clicks", 0), now=2.0)  # learned while the pass runs
    s.touch("d", ("events.clicks", 0), now=2.0)  # a new user during the pass
    s.finish_pass(only_p0, now=3.0)
    assert sorted(s.active) == ["b", "d"]  # owed by the next pass (and the checkpoint)
    assert "c" in s.others and "a" not in s.early and "b" in s.early
    assert s.in_pass is None


def test_an_abandoned_pass_keeps_every_user_owed():
    s = RefreshSchedule(interval_s=60.0, early_s=0.0, early_max_per_s=100, logical=False, now=0.0)
    s.touch("a", ("events.clicks", 0), now=1.0)
    s.begin_pass(lambda p: True)
    s.abandon_pass()  # e.g. Redis failed half way
    assert s.owed(lambda p: True) == ["a"]


def test_pass_slices_rank_every_user_once_in_order():
    clock = iter(float(t) for t in range(1000))
    seen = []
    job = PassSlices([f"u{i}" for i in range(10)], lambda us: seen.extend(us) or [[u] for u in us], chunk=3)
    while not job.done:
        users, lists = job.next_slice(lambda: next(clock), slice_s=2.0)
        assert list(lists) == users
    assert seen == [f"u{i}" for i in range(10)] and job.slices == 2
