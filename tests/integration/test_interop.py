"""Interoperability: JSON from Kafka's own console producer (Java, no streamrec code on the
producing side) is learned end to end, through the real broker, into lists in Redis."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from workerkit import TS, group_of, start_worker, stop, taste_events, wait_for, wait_for_lists

from streamrec.localstack import kafka_tools_classpath
from streamrec.schemas.codec import decode
from streamrec.schemas.events import DeadLetter
from streamrec.schemas.peek import read_topic


def console_produce(settings, topic: str, lines: list[str], headers: bool = False) -> None:
    """Publish ``key<TAB>value`` lines with ``org.apache.kafka.tools.ConsoleProducer`` (acks=all);
    with ``headers``, each line starts with ``name:value<TAB>``."""
    classpath = ":".join(str(p) for p in kafka_tools_classpath(settings))
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    cmd = [java, "-cp", classpath, "org.apache.kafka.tools.ConsoleProducer",
           "--bootstrap-server", settings.kafka_bootstrap, "--topic", topic,
           "--request-required-acks", "all",
           "--property", "parse.key=true", "--property", "key.separator=\t"]  # fmt: skip
    if headers:
        cmd += ["--property", "parse.headers=true", "--property", "headers.delimiter=\t",
                "--property", "headers.key.separator=:"]  # fmt: skip
    result = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_console_producer_json_is_learned_end_to_end(stack, topics, worker_env, redis_client, prefix):
    events = taste_events(n_users=12, per_user=15, seed=5)
    items = sorted({e.item for e in events})
    catalogue = [
        f"content-type:application/json\t{i}\t"
        + json.dumps({"type": "item", "v": 1, "item": i, "title": f"Film {i}",
                      "attributes": {"category": f"g{group_of(i)}"}, "ts": TS})
        for i in items
    ]  # fmt: skip
    clicks = [f"{e.user}\t" + json.dumps({"type": "click", "v": 1, "user": e.user, "item": e.item,
                                         "ts": int(e.ts)}) for e in events]  # fmt: skip
    bad = ['u0\t{"type": "click", "v": 1, "user": "u0", "ts": 1700000000}',  # no item
           'u0\t{"type": "click", "v": 1, "user": "u0", "item": "i0_1", "ts": 1700000000000}']  # ms
    console_produce(stack, topics.items, catalogue, headers=True)
    console_produce(stack, topics.clicks, clicks + bad)
    worker = start_worker(worker_env)
    try:
        users = sorted({e.user for e in events})
        lists = wait_for_lists(redis_client, prefix, users, worker)
        letters = wait_for(lambda: (ls := [decode(v) for _, v in read_topic(stack.kafka_bootstrap,
                           topics.deadletter)]) and len(ls) >= 2 and ls, 60, "two dead letters", worker)  # fmt: skip
    finally:
        stop(worker)
    seen: dict[str, set[str]] = {}
    for e in events:
        seen.setdefault(e.user, set()).add(e.item)
    for user, lst in lists.items():
        top = [i for i, _ in lst.items[:10]]
        assert top and set(top) <= set(items), f"{user}: {top} not from the catalogue"
        own = sum(group_of(i) == int(user[1:]) % 4 for i in top) / len(top)
        assert own >= 0.5, f"{user}: only {own:.0%} of the top 10 match their taste"
        assert not set(top) & seen[user]
    assert all(isinstance(d, DeadLetter) for d in letters)
    reasons = sorted(d.reason for d in letters)
    assert reasons == ["item: missing (required for 'click') (json)",
                       "ts: 1700000000000.0 is outside (0.0, 4102444800.0) (json)"], reasons
