"""``bench replay``'s pure parts: metrics, loaders, and the in-process prequential/boundary logic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamrec.bench.replay import LogicalLists, model_config, parse_list, replay_in_process, table
from streamrec.bench.replay_data import (
    Dataset,
    Event,
    detect_layout,
    load_ml100k,
    load_ml_latest,
    load_movielens,
    load_synthetic,
    sort_events,
)
from streamrec.bench.replay_metrics import Prequential, coverage, gini, lorenz, ndcg, quantile, rank_of
from streamrec.schemas.events import Item
from streamrec.settings import Settings

# ---------------------------------------------------------------- metrics


def test_hit_rank_and_ndcg_by_hand():
    top = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]
    assert rank_of("a", top) == 1 and ndcg(rank_of("a", top)) == 1.0
    assert rank_of("c", top) == 3 and ndcg(3) == pytest.approx(0.5)
    assert rank_of("j", top) == 10 and ndcg(10) == pytest.approx(1 / math.log2(11))
    assert rank_of("k", top) is None and ndcg(None) == 0.0  # 11th: outside the top 10
    assert rank_of("a", []) is None


def test_gini_by_hand():
    assert gini([3, 3, 3]) == 0.0
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)  # 1 - 1/n: one item takes all
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)  # sum |xi-xj| / (2 n^2 mean) = 20 / 80
    assert gini([0, 1]) == pytest.approx(0.5)
    assert gini([]) == 0.0 and gini([0, 0]) == 0.0


def test_coverage_lorenz_quantile():
    assert coverage(["a", "b", "a", "c"], 6) == 0.5
    assert coverage([], 0) == 0.0
    x, y = lorenz([1, 1, 2])
    assert x.tolist() == [0.0, 1 / 3, 2 / 3, 1.0] and y.tolist() == [0.0, 0.25, 0.5, 1.0]
    assert quantile([5.0, 1.0, 3.0], 0.5) == 3.0 and math.isnan(quantile([], 0.5))


def test_prequential_scores_only_users_with_history_and_counts_cold_items():
    p = Prequential(catalogue_size=20, cold_threshold=2)
    p.event("u1", "a", 0.0, ["a"], 0.0)  # u1's first event: never scored, even if "a" was listed
    p.event("u2", "a", 1.0, None, None)  # u2's first event
    p.event("u1", "a", 2.0, ["x", "a"], 1.0)  # hit at rank 2; "a" has 2 earlier events: not cold
    p.event("u1", "b", 3.0, ["b"], 1.0)  # hit at rank 1; "b" is cold
    p.event("u2", "c", 4.0, None, None)  # no list at all: a miss; "c" is cold
    r = p.result()
    assert (r["events"], r["evaluated"], r["hits"]) == (5, 3, 2)
    assert r["hr@10"] == pytest.approx(2 / 3)
    assert r["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1.0) / 3)
    assert (r["cold_evaluated"], r["cold_hits"], r["cold_hr@10"]) == (2, 1, 0.5)
    assert r["coverage"] == pytest.approx(3 / 20)  # x, a, b
    assert r["evaluated_without_list"] == 1
    assert r["freshness_mean_s"] == pytest.approx(1.5) and r["freshness_p50_s"] == 1.0
    times, hits = p.series()
    assert times.tolist() == [2.0, 3.0, 4.0] and hits.tolist() == [1.0, 1.0, 0.0]


def test_prequential_exposure_gini_over_whole_catalogue():
    p = Prequential(catalogue_size=4)
    p.event("u", "z", 0.0, None, None)
    for t in range(1, 5):
        p.event("u", f"e{t}", float(t), ["a"], 0.0)  # "a" shown 4 times, b, c, d never
    counts = p.exposure_counts(["a", "b", "c", "d"])
    assert counts.tolist() == [4.0, 0.0, 0.0, 0.0]
    assert p.result(["a", "b", "c", "d"])["gini"] == pytest.approx(0.75)


def test_list_staleness_counts_the_users_own_unreflected_events():
    p = Prequential(catalogue_size=10)
    p.event("u", "a", 10.0, None, None)
    p.event("u", "b", 11.0, ["x"], 0.0)  # list from 0: misses the event at 10
    p.event("u", "c", 12.0, ["x"], 11.0)  # list from 11: has the event at 10, not the one at 11
    p.event("u", "d", 20.0, ["x"], 12.5)  # up to date
    r = p.result()
    assert r["unreflected_events_mean"] == pytest.approx(2 / 3)
    assert r["up_to_date_share"] == pytest.approx(1 / 3)


# ---------------------------------------------------------------- loaders


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))


def test_ml_latest_loader(tmp_path):
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n"
           "1,10,4.0,300\n1,20,3.5,100\n2,10,5.0,100\n2,30,1.0,200\n")  # fmt: skip
    _write(tmp_path / "movies.csv", 'movieId,title,genres\n10,Heat (1995),Action|Crime|Thriller\n'
           '20,"Toy Story, The (1995)",Animation|Children\n30,Obscure (2001),(no genres listed)\n')  # fmt: skip
    _write(tmp_path / "tags.csv", "userId,movieId,tag,timestamp\n1,10,heist,5\n2,10,Heist,6\n"
           "2,10,  Al  Pacino ,7\n1,20,pixar,8\n")  # fmt: skip
    assert detect_layout(tmp_path) == "ml-latest"
    data = load_movielens(tmp_path)
    assert data.kind == "rating" and data.unknown_items == 0 and data.n_users == 2
    # sorted by time, equal timestamps in file order (user 1's before user 2's)
    assert [(e.user, e.item, e.ts) for e in data.events] == [
        ("1", "20", 100.0), ("2", "10", 100.0), ("2", "30", 200.0), ("1", "10", 300.0)]  # fmt: skip
    assert data.events[0].rating == 3.5
    items = {it.item: it for it in data.items}
    assert [it.item for it in data.items] == ["10", "20", "30"]
    assert items["10"].title == "Heat (1995)"
    assert items["10"].text == "Action, Crime, Thriller. heist, Al Pacino."
    assert items["20"].title == "Toy Story, The (1995)"
    assert items["30"].text == ""  # "(no genres listed)" is not a genre
    assert all(it.ts == 99.0 for it in data.items)  # the catalogue precedes the first event
    plain = load_ml_latest(tmp_path, user_tags=False)
    assert {it.item: it.text for it in plain.items}["10"] == "Action, Crime, Thriller."


def test_ml100k_loader_reads_latin1_and_genre_flags(tmp_path):
    _write(tmp_path / "u.data", "1\t2\t5\t881250949\n2\t1\t3\t881250949\n1\t1\t4\t875072484\n")
    flags_heat = ["0"] * 19
    flags_heat[1] = flags_heat[6] = "1"  # Action, Crime
    flags_cafe = ["0"] * 19
    flags_cafe[8] = "1"  # Drama
    _write(tmp_path / "u.item",
           f"1|Heat (1995)|01-Jan-1995||http://x|{'|'.join(flags_heat)}\n"
           f"2|Café Society (1995)|01-Jan-1995||http://y|{'|'.join(flags_cafe)}\n", "latin-1")  # fmt: skip
    assert detect_layout(tmp_path) == "ml-100k"
    data = load_ml100k(tmp_path)
    assert [(e.user, e.item) for e in data.events] == [("1", "1"), ("1", "2"), ("2", "1")]
    items = {it.item: it for it in data.items}
    assert items["2"].title == "Café Society (1995)"
    assert items["1"].text == "Action, Crime." and items["2"].text == "Drama."
    # u.genre, when present, names the flags
    _write(tmp_path / "u.genre", "\n".join(f"G{i}|{i}" for i in range(19)) + "\n")
    assert {it.item: it.text for it in load_ml100k(tmp_path).items}["2"] == "G8."


def test_layout_detection_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="ratings.csv"):
        detect_layout(tmp_path)


def test_synthetic_loader_and_head():
    data = load_synthetic(n_users=10, n_items=30, n_events=200, seed=1)
    assert data.kind == "click" and len(data.items) == 30 and len(data.events) == 200
    assert [e.ts for e in data.events] == sorted(e.ts for e in data.events)
    assert all(it.ts < data.events[0].ts for it in data.items)
    assert len(data.head(50).events) == 50 and data.head(50).items is data.items


def test_sort_is_stable():
    events = [Event("u", "b", 2.0), Event("u", "a", 1.0), Event("v", "c", 1.0)]
    assert [e.item for e in sort_events(events)] == ["a", "c", "b"]


# ---------------------------------------------------------------- boundary and prequential logic


class FakeModel:
    """Records when lists are computed; recommends the items learned so far, newest first."""

    def __init__(self):
        self.learned: list[str] = []
        self.calls: list[tuple[str, int]] = []

    def recommend(self, user, k):
        self.calls.append((user, len(self.learned)))
        return [(i, 1.0) for i in reversed(self.learned)][:k]

    def recommend_many(self, users, k):  # the refresh ranks every owed user in one pass
        return [self.recommend(u, k) for u in users]

    def fallback(self, k):
        return [("pop", 1.0)]


def test_logical_lists_refresh_on_boundaries_before_the_event():
    model = FakeModel()
    lists = LogicalLists(model, interval=10.0, k=5)
    seen = []
    for user, item, ts in [("u1", "a", 0.0), ("u2", "b", 3.0), ("u1", "c", 10.0), ("u1", "d", 12.0),
                           ("u2", "e", 25.0), ("u2", "f", 29.9), ("u2", "g", 30.0)]:  # fmt: skip
        lists.before(ts)
        seen.append((user, lists.read(user)))
        model.learned.append(item)
        lists.learned(user)
    # boundaries crossed at 0 (nobody active yet), 10 (u1, u2 after 2 events), 25 (u1 after 4),
    # 30 (u2 after 6); never at 3, 12 or 29.9
    assert model.calls == [("u1", 2), ("u2", 2), ("u1", 4), ("u2", 6)]
    assert lists.refreshes == 4
    assert seen[0][1] == (["pop"], 0.0)
    assert seen[1][1] == (["pop"], 0.0)  # u2 has no personal list yet: the global one
    assert seen[2][1] == (["b", "a"], 10.0)  # written at 10 from what was learned before it
    assert seen[3][1] == (["b", "a"], 10.0)  # 12 is no boundary: same list
    assert seen[4][1] == (["b", "a"], 10.0)  # u2's list from 10 (u1 refreshed at 25, not u2)
    assert seen[5][1] == (["b", "a"], 10.0)
    assert seen[6][1] == (["f", "e", "d", "c", "b"], 30.0)  # the event at 30 is not in it


def test_empty_recommendation_removes_the_users_list():
    class Empty(FakeModel):
        def recommend(self, user, k):
            return []

    lists = LogicalLists(Empty(), interval=1.0, k=5)
    lists.lists["u"] = (["old"], 0.0)
    lists.learned("u")
    lists.before(5.0)
    assert lists.read("u") == (["pop"], 5.0)


SETTINGS = Settings.from_env({})


def _tiny(events) -> Dataset:
    items = [Item(x, x.upper(), ts=0.5) for x in "abcd"]
    return Dataset("tiny", items, [Event(u, i, t) for u, i, t in events], kind="click")


def test_in_process_replay_scores_lists_published_before_the_event():
    events = [("ann", "a", 1.0), ("ann", "b", 2.0), ("bob", "a", 3.0), ("bob", "b", 15.0)]
    # refresh every 10 s: at 15 bob's list is rewritten from ann's a->b co-occurrence: a hit
    fast = replay_in_process(_tiny(events), "crm", 10.0, SETTINGS, progress=False).metrics
    assert (fast["evaluated"], fast["hits"]) == (2, 1)  # ann's b (global list: miss), bob's b
    assert fast["freshness_p50_s"] == 0.0
    # refresh every 100 s: the only lists are the (empty) global list written at 1 s: no hit
    slow = replay_in_process(_tiny(events), "crm", 100.0, SETTINGS, progress=False).metrics
    assert (slow["evaluated"], slow["hits"]) == (2, 0)
    assert slow["freshness_mean_s"] == pytest.approx(((2 - 1) + (15 - 1)) / 2)
    assert slow["unreflected_events_mean"] == 1.0


def test_an_event_on_the_boundary_is_scored_against_lists_computed_without_it():
    events = [("ann", "a", 1.0), ("ann", "b", 2.0), ("bob", "a", 3.0), ("bob", "b", 10.0)]
    r = replay_in_process(_tiny(events), "crm", 10.0, SETTINGS, progress=False).metrics
    assert r["hits"] == 1 and r["ndcg@10"] == pytest.approx(0.5)  # b first in bob's list


def test_configurations():
    pop = model_config("popularity", SETTINGS)
    assert (pop.n_cooccur, pop.n_mf, pop.weights.cooccur, pop.weights.mf) == (0, 0, 0.0, 0.0)
    assert not model_config("crm", SETTINGS).content.enabled
    llm = model_config("crm+llm", SETTINGS)
    assert llm.content.enabled and llm.weights.embedding > 0  # the recommender's defaults
    with pytest.raises(ValueError, match="unknown configuration"):
        model_config("nope", SETTINGS)
    assert parse_list("60, 5", float) == [60.0, 5.0]


def test_table_has_a_row_per_run():
    r = replay_in_process(_tiny([("ann", "a", 1.0), ("ann", "b", 2.0)]), "popularity", 5.0,
                          SETTINGS, progress=False)  # fmt: skip
    text = table([r, r])
    assert text.count("\n") == 3 and "| popularity | 5 s | in-process |" in text
    assert np.isfinite(r.metrics["events_per_s"])


# ---------------------------------------------------------------- any event log (bench/replay_events.py)


def test_event_log_in_json_lines_replays_with_its_catalogue_and_names_bad_lines(tmp_path, capsys):
    from streamrec.bench.replay_events import load_events

    log = tmp_path / "events.jsonl"
    log.write_text("\n".join([
        '{"type": "item", "item": "i1", "title": "Heat", "text": "a heist", "ts": 100}',
        '{"type": "item", "item": "i2", "title": "Ran", "ts": 100}',
        '{"type": "item", "item": "i3", "title": "Gone", "ts": 100}',
        '{"type": "item", "item": "i3", "deleted": true, "ts": 101}',
        '{"type": "rating", "user": "u1", "item": "i2", "rating": 4.5, "ts": 130}',
        '{"type": "click", "user": "u1", "item": "i1", "ts": 120}',
        '{"type": "rating", "user": "u2", "item": "i1", "rating": 9, "ts": 140}',
        'not json',
    ]) + "\n")  # fmt: skip
    data = load_events(log)
    assert [it.item for it in data.items] == ["i1", "i2"] and data.kind == "mixed"
    assert [(e.user, e.item, e.ts, e.rating) for e in data.events] == [("u1", "i1", 120.0, None), ("u1", "i2", 130.0, 4.5)]
    assert data.meta["rejected"] == 2
    err = capsys.readouterr().err
    assert "events.jsonl: line 7: rating: 9.0 is outside [0.0, 5.0]" in err and "line 8: not valid JSON" in err


def test_event_log_in_csv_and_the_replay_learns_clicks_and_ratings_as_they_are(tmp_path):
    from streamrec.bench.replay import build_model
    from streamrec.bench.replay_events import load_events
    from streamrec.bench.replay_run import run_in_process
    from streamrec.settings import Settings

    rows = ["type,user,item,title,rating,ts"] + [f"item,,i{i},Item {i},,1" for i in range(20)]
    rows += [f"click,u{t % 5},i{(t * 7) % 20},,,{10 + t}" for t in range(150)]
    rows += [f"rating,u{t % 5},i{(t * 3) % 20},,{t % 5}.0,{200 + t}" for t in range(150)]
    log = tmp_path / "log.csv"
    log.write_text("\n".join(rows) + "\n")
    data = load_events(log)
    assert len(data.items) == 20 and len(data.events) == 300 and data.kind == "mixed"
    settings = Settings.from_env({})
    r = run_in_process(data, "crm", 5.0, settings, build=lambda s: build_model("crm", s), progress=False)
    assert r.metrics["evaluated"] == 295 and 0 < r.metrics["coverage"] <= 1.0


def test_an_empty_or_missing_event_log_is_a_clear_error(tmp_path):
    from streamrec.bench.replay_events import load_events

    with pytest.raises(FileNotFoundError, match="event log .* not found"):
        load_events(tmp_path / "nope.jsonl")
    (tmp_path / "items.jsonl").write_text('{"type": "item", "item": "i1", "title": "x", "ts": 1}\n')
    with pytest.raises(ValueError, match="no clicks or ratings"):
        load_events(tmp_path / "items.jsonl")


def test_coverage_never_exceeds_one_when_lists_show_items_outside_the_catalogue():
    p = Prequential(catalogue_size=2)
    p.event("u", "a", 1.0, None, None)
    p.event("u", "b", 2.0, ["x", "y", "z", "a"], 1.0)  # items events named, never catalogued
    assert p.result(["a", "b"])["coverage"] == 0.5
