"""`RecsReader`'s held connection against the real Redis: it reads what a plain GET reads, survives
its connection being killed (the GET is made again through the client), serves threads that
read at once (each gets its own user's list), and a forked child reads on a connection of its own."""

from __future__ import annotations

import multiprocessing
import threading

import redis

from streamrec.schemas.codec import encode
from streamrec.schemas.events import RecommendationList
from streamrec.schemas.keys import RedisKeys
from streamrec.schemas.reader import RecsReader

TS = 1_700_000_000.0


def _lists(client, keys: RedisKeys, users: int) -> None:
    for u in range(users):
        lst = RecommendationList(f"u{u}", ((f"i{u}", 1.0), (f"j{u}", 0.5)), "m.1", TS, "d")
        client.set(keys.recs(f"u{u}"), encode(lst), ex=60)


def test_reader_survives_a_killed_connection_and_serves_threads(stack, prefix):
    keys = RedisKeys(prefix=prefix)
    name = f"{prefix}reader".replace(".", "_")
    client = redis.Redis.from_url(stack.redis_url, client_name=name)
    admin = redis.Redis.from_url(stack.redis_url)
    _lists(admin, keys, 20)
    reader = RecsReader(client, keys)
    try:
        assert reader.get("u1").items == [("i1", 1.0), ("j1", 0.5)]
        assert reader.get("nobody").list is None  # no personal list, no global one
        held = [c for c in admin.client_list() if c["name"] == name]
        assert len(held) == 1
        admin.client_kill_filter(_id=held[0]["id"])
        assert reader.get("u2").items[0] == ("i2", 1.0)  # the held connection is gone: made again

        errors: list = []

        def read(t: int) -> None:
            try:
                for n in range(200):
                    u = (t * 7 + n) % 20
                    got = reader.get(f"u{u}")
                    assert got.personal and got.items[0] == (f"i{u}", 1.0), (u, got)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=read, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
    finally:
        reader.close()
        client.close()
        for u in range(20):
            admin.delete(keys.recs(f"u{u}"))
        admin.close()


def _child_reads(url: str, prefix: str, reader: RecsReader, out) -> None:
    out.put(reader.get("u3").items[0])


def test_a_forked_child_reads_on_its_own_connection(stack, prefix):
    keys = RedisKeys(prefix=prefix)
    client = redis.Redis.from_url(stack.redis_url)
    _lists(client, keys, 5)
    reader = RecsReader(client, keys)
    try:
        assert reader.get("u1").items[0] == ("i1", 1.0)  # the parent holds a connection now
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        child = ctx.Process(target=_child_reads, args=(stack.redis_url, prefix, reader, out))
        child.start()
        child.join(30)
        assert child.exitcode == 0 and out.get(timeout=5) == ("i3", 1.0)
        assert reader.get("u4").items[0] == ("i4", 1.0)  # the parent's connection is untouched
    finally:
        reader.close()
        for u in range(5):
            client.delete(keys.recs(f"u{u}"))
        client.close()
