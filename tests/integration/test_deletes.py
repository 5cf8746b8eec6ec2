"""Deletes reach every list: inactive users' lists too, by a delete record or a Kafka tombstone; and
items the catalogue never announced are kept out of lists when the setting says so."""

from __future__ import annotations

import time

import pytest
from workerkit import REFRESH_S, TS, publish, read_list, start_worker, stop, wait_for

from streamrec.schemas.codec import decode
from streamrec.schemas.events import Click, Item, RecommendationList
from streamrec.schemas.keys import RedisKeys


def _catalogue(n: int = 12) -> list[Item]:
    return [Item(item=f"c{i}", title=f"Film {i}", text="a film", ts=TS) for i in range(n)]


def _lists(redis_client, prefix: str) -> dict[bytes, RecommendationList]:
    return {key: decode(redis_client.get(key), RecommendationList)
            for key in redis_client.scan_iter(RedisKeys(prefix=prefix).recs("*"))}  # fmt: skip


@pytest.mark.parametrize("how", ["record", "tombstone"])
def test_a_delete_rewrites_every_list_holding_the_item_active_or_not(how, worker_env, stack, topics,
                                                                       prefix, redis_client):  # fmt: skip
    # every user clicked c1 with c9, so c9 sits in every list; then nobody is active any more
    users = [f"u{j}" for j in range(8)]
    fans = [Click(user=f"fan{j}", item=i, ts=TS) for j in range(6) for i in ("c1", "c9", "c2", "c3")]
    clicks = [Click(user=u, item="c1", ts=TS) for u in users]
    worker = start_worker(worker_env)
    try:
        publish(stack, topics, [*_catalogue(), *fans, *clicks])
        wait_for(lambda: all((lst := read_list(redis_client, prefix, u)) and "c9" in dict(lst.items)
                             for u in users), 60, "c9 in every user's list", worker)  # fmt: skip
        time.sleep(2 * REFRESH_S)  # nobody is owed a list any more: the users are inactive
        deleted_at = time.time()
        if how == "record":
            publish(stack, topics, [Item(item="c9", ts=TS + 1, deleted=True)])
        else:
            from confluent_kafka import Producer

            producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
            producer.produce(topics.items, key=b"c9", value=None)
            assert producer.flush(10) == 0

        def every_list_without_c9():
            lists = _lists(redis_client, prefix)
            return lists and all("c9" not in dict(lst.items) for lst in lists.values())

        wait_for(every_list_without_c9, 2 * REFRESH_S + 10, "c9 gone from every list", worker)
    finally:
        log = stop(worker)
    lists = _lists(redis_client, prefix)
    for u in users:  # rewritten, not expired: each inactive user got a fresh list without c9
        lst = lists.get(RedisKeys(prefix=prefix).recs(u).encode())
        assert lst is not None, (u, sorted(lists), log)
        assert lst.generated_at > deleted_at and lst.items, (u, lst)
    assert "dead-lettered" not in log, log


def test_items_only_seen_in_events_are_not_recommended_when_the_setting_says_so(worker_env, stack,
                                                                                 topics, prefix,
                                                                                 redis_client):  # fmt: skip
    env = {**worker_env, "STREAMREC_RECOMMEND_UNCATALOGUED": "false"}
    fans = [Click(user=f"fan{j}", item=i, ts=TS) for j in range(6) for i in ("c1", "c2", "x-unknown")]
    worker = start_worker(env)
    try:
        publish(stack, topics, [*_catalogue(), *fans, Click(user="u0", item="c1", ts=TS)])
        lst = wait_for(lambda: read_list(redis_client, prefix, "u0"), 60, "u0's list", worker)
        assert "c2" in dict(lst.items) and "x-unknown" not in dict(lst.items), lst.items
        # announced later, it becomes recommendable
        publish(stack, topics, [Item(item="x-unknown", title="Now known", ts=TS + 1),
                                Click(user="u0", item="c3", ts=TS + 1)])  # fmt: skip
        wait_for(lambda: "x-unknown" in dict(read_list(redis_client, prefix, "u0").items), 30,
                 "x-unknown in u0's list once catalogued", worker)  # fmt: skip
    finally:
        stop(worker)
