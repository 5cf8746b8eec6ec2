"""Cold start through the whole system: a new item with no interactions at all reaches, within two
refreshes, the lists of users whose history matches its text — via the real embedding worker
(the shipped MiniLM), the real broker and Redis, and the stream worker's content signals."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from workerkit import publish, read_list, stop, wait_for

from streamrec.schemas.codec import from_mapping
from streamrec.schemas.events import Item
from streamrec.synth import SynthConfig, generate, vocabulary

REFRESH_S = 2.0


def start(kind: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamrec", "worker", kind], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def health(env: dict) -> dict:
    try:
        return json.loads((Path(env["STREAMREC_CHECKPOINT_DIR"]) / "health.json").read_text())
    except (OSError, ValueError):
        return {}


def test_a_new_item_reaches_matching_users_within_two_refreshes(worker_env, stack, topics, prefix,
                                                                redis_client, tmp_path):  # fmt: skip
    data = generate(SynthConfig(n_users=40, n_items=120, n_topics=4, n_events=2000, seed=11))
    env = {**worker_env, "STREAMREC_REFRESH_INTERVAL_S": str(REFRESH_S),
           "STREAMREC_STATE_DIR": str(tmp_path / "state"), "STREAMREC_EMBED_BATCH_WAIT_S": "0.02"}  # fmt: skip
    # as in a live shop, the catalogue is there (and embedded) before people click on it
    publish(stack, topics, [from_mapping(r) for r in data.items])
    stream, embed = start("streams", env), start("embed", env)
    try:
        wait_for(lambda: health(env).get("enrichments", 0) >= len(data.items), 120,
                 "the catalogue's embeddings back in the stream worker", stream)  # fmt: skip
        publish(stack, topics, [from_mapping(r) for r in data.events])
        wait_for(lambda: health(env).get("learned", 0) >= len(data.events), 60, "every event", stream)
        time.sleep(REFRESH_S + 0.5)  # the lists of every user written once
        topic = "jazz"
        words = vocabulary(topic)
        new = Item(item="brand-new", title=f"{words[0]} {words[1]} {words[2]}",
                   text=" ".join(words[3:10]), attributes={"topic": topic}, ts=time.time())  # fmt: skip
        fans = [u for u, likes in data.user_topics.items() if topic in likes]
        others = [u for u, likes in data.user_topics.items() if topic not in likes]
        assert fans and others
        published = time.time()
        publish(stack, topics, [new])

        def reached():
            lists = {u: read_list(redis_client, prefix, u) for u in fans}
            return [u for u, lst in lists.items()
                    if lst and lst.generated_at > published and "brand-new" in dict(lst.items)]  # fmt: skip

        reached_fans = wait_for(reached, 2 * REFRESH_S + 8, "the new item in a matching user's list", stream)
        latency = time.time() - published
        time.sleep(REFRESH_S)
        lists = {u: read_list(redis_client, prefix, u) for u in fans + others}
    finally:
        stop(embed)
        stop(stream)
    print(f"new item in {len(reached_fans)} matching users' lists {latency:.1f}s after publishing "
          f"(refresh every {REFRESH_S}s)")  # fmt: skip

    def share(users):
        return sum(1 for u in users if lists[u] and "brand-new" in dict(lists[u].items)) / len(users)

    assert latency <= 2 * REFRESH_S + 2
    assert share(fans) > share(others), (share(fans), share(others))
