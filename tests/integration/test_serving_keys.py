"""The stream worker keeps what the read API needs in Redis: item records for filters, users' seen
items and similar-item lists, each with its TTL; deletes reach all three."""

from __future__ import annotations

from workerkit import TS, group_of, publish, start_worker, stop, taste_events, wait_for, wait_for_lists

from streamrec.schemas.codec import decode, encode
from streamrec.schemas.events import Item, SimilarItems
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.reader import RecsReader
from streamrec.streams.recommender import Recommender
from streamrec.streams.serving import ServingState
from streamrec.streams.worker import MODEL_NAME


def test_item_records_seen_and_similar_lists(worker_env, stack, topics, prefix, redis_client):
    keys = RedisKeys(prefix=prefix)
    reader = RecsReader(redis_client, keys)
    events = taste_events(n_users=16, per_user=20, seed=7)
    items = sorted({e.item for e in events})
    catalogue = [Item(i, f"Film {i}", "long text", {"category": f"g{group_of(i)}"}, ts=TS) for i in items]
    publish(stack, topics, catalogue + events)
    worker = start_worker(worker_env)
    try:
        users = sorted({e.user for e in events})
        wait_for_lists(redis_client, prefix, users, worker)
        probe = items[0]
        sim = wait_for(lambda: reader.similar(probe), 30, f"sim:{probe}", worker)
        # a delete: the item's record says so, its own list goes, and it leaves its neighbours' lists
        victim = sim.items[0][0]
        more = [e.__class__(e.user, probe, TS + 2) for e in events[:3]]
        publish(stack, topics, [Item(victim, deleted=True, ts=TS + 1), *more])
        wait_for(lambda: (r := redis_client.get(keys.item(victim))) and decode(r, Item).deleted, 30,
                 "the delete in Redis", worker)  # fmt: skip
        after = wait_for(lambda: (s := reader.similar(probe)) and s.generated_at > sim.generated_at and s,
                         30, "a rewritten similar list", worker)  # fmt: skip
        gone = wait_for(lambda: reader.similar(victim) is None, 30, "the deleted item's list removed", worker)
    finally:
        stop(worker)
    assert gone
    assert victim not in dict(after.items)
    assert redis_client.smismember(keys.deleted(), [victim, items[1]]) == [1, 0]
    assert 0 < redis_client.ttl(keys.deleted()) <= keys.item_ttl_s
    # item records: attributes for filters, no text, a TTL
    record = decode(redis_client.get(keys.item(items[1])), Item)
    assert record.attributes["category"] == f"g{group_of(items[1])}" and record.text == ""
    assert 0 < redis_client.ttl(keys.item(items[1])) <= keys.item_ttl_s
    # similar lists: same taste group first, never the item itself, with model version and TTL
    assert isinstance(sim, SimilarItems) and sim.model_version.startswith(MODEL_NAME) and sim.config_digest
    top = [i for i, _ in sim.items[:5]]
    assert probe not in dict(sim.items)
    assert sum(group_of(i) == group_of(probe) for i in top) >= 4, top
    assert 0 < redis_client.ttl(keys.similar(probe)) <= keys.similar_ttl_s
    # seen lists: every user's clicked items, bounded, with a TTL
    for user in users[:5]:
        seen = set(reader.seen(user))
        assert seen == {e.item for e in events + more if e.user == user}
        assert 0 < redis_client.ttl(keys.seen(user)) <= keys.seen_ttl_s


def test_every_item_gets_a_fresh_similar_list_within_the_cycle(redis_client, prefix):
    """The rolling cursor: with nothing touched, every item with neighbours gets its list, a stale
    list is rewritten and a deleted item's list removed, all within one cycle, in bounded writes."""
    keys = RedisKeys(prefix=prefix)
    reader = RecsReader(redis_client, keys)
    model = Recommender(seed=5)
    events = taste_events(n_users=16, per_user=12, seed=3)
    for e in events:
        model.learn_click(e.user, e.item, ts=e.ts)
    items = [str(i) for i in model.index.items]
    victim, stale = items[1], items[2]
    model.delete_item(victim)
    old = SimilarItems(stale, (("nobody", 1.0),), "old.1", TS, "d")
    for item in (victim, stale):
        redis_client.set(keys.similar(item), encode(old), ex=3600)
    cycle, budget, step = 40.0, 40, 5.0  # 116 items: 14.5 due a write, within the share of 20
    state = ServingState(similar_k=5, budget=budget, cycle_s=cycle)
    writes, written, now = 0, 0, TS + 100
    while now <= TS + 100 + cycle:  # one cycle of writes, 5 s apart, nothing touched
        written += state.write(redis_client, keys, model, [], now, "sweep.1", "d")
        writes += 1
        now += step
    assert written <= writes * budget // 2 and not state.sweep.behind  # bounded, and on time
    assert reader.similar(victim) is None  # deleted: its old list removed
    fresh = reader.similar(stale)
    assert fresh.model_version == "sweep.1" and "nobody" not in dict(fresh.items)
    for item in items:
        if item == victim:
            continue
        lst = reader.similar(item)
        assert lst is not None and lst.generated_at > TS + 100 - 1, item  # every item, not only touched
        assert 0 < redis_client.ttl(keys.similar(item)) <= keys.similar_ttl_s
