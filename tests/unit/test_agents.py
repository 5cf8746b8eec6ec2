"""The faust agent of the LLM workers, driven through faust's ``agent.test_context()`` (no broker).

The sink is the test's: it records each batch's outputs, so the tests see what the agent would
write into the Kafka transactions, paired with the request each record answers, and which events
the agent acknowledged (only acknowledged offsets are ever committed).
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from streamrec.schemas.codec import decode, encode
from streamrec.schemas.events import Click, DeadLetter, EnrichRequest, Item, ItemTags
from streamrec.settings import Settings
from streamrec.workers.agents import EnrichAgent, broker_urls, credentials
from streamrec.workers.common import EnrichWorker

TS = 1_700_000_000.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EchoWorker(EnrichWorker):
    """A stage without a model: one ItemTags per request; remembers the thread it ran on."""

    name = "echo"

    def __init__(self, settings, owns_dead_letters=False, fail_on=None):
        super().__init__(settings)
        self.owns_dead_letters = owns_dead_letters
        self.fail_on = fail_on
        self.threads: set[str] = set()

    def handle(self, requests, now):
        self.threads.add(threading.current_thread().name)
        if self.fail_on and any(r.item == self.fail_on for r in requests):
            raise RuntimeError(f"model failed on {self.fail_on}")
        return [ItemTags(r.item, "echo", r.content_hash, [("tag", 1.0)], now) for r in requests]


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({}, state_dir=tmp_path, embed_batch_size=3, embed_batch_wait_s=0.05,
                             kafka_bootstrap=f"127.0.0.1:{_closed_port()}")  # fmt: skip


def request(item: str) -> bytes:
    return encode(EnrichRequest.for_item(Item(item, f"Title {item}", "Some text.", ts=TS), ts=TS))


async def drive(agent: EnrichAgent, values: list[tuple[bytes, bytes, int]], batches: list, n_out: int):
    """Put (key, value, partition) messages through the agent; wait for ``n_out`` outputs."""
    async with agent.agent.test_context() as tc:
        events = [await tc.put(value, key=key, partition=p, wait=False) for key, value, p in values]
        for _ in range(200):
            if sum(len(b) for b in batches) >= n_out and not agent.busy:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # anything more (there should be nothing) would show up now
        return events


def run_agent(worker, settings, values, n_out):
    batches: list = []

    async def sink(outputs):
        batches.append(list(outputs))

    async def main():
        agent = EnrichAgent(worker, settings, sink=sink)
        events = await drive(agent, values, batches, n_out)
        return agent, events

    agent, events = asyncio.run(main())
    return agent, events, batches


def test_batches_by_size_and_wait_each_output_paired_with_its_request(settings):
    worker = EchoWorker(settings)
    values = [(f"i{n}".encode(), request(f"i{n}"), n % 2) for n in range(7)]
    agent, events, batches = run_agent(worker, settings, values, n_out=7)
    assert [len(b) for b in batches] == [3, 3, 1]  # two full batches, then the wait ran out
    outputs = [o for b in batches for o in b]
    for out, (key, value, partition) in zip(outputs, values):
        record = decode(out.value, ItemTags)
        assert out.topic == worker.topics.tags and out.key == key == record.item.encode()
        assert out.source.key == key and out.source.value == value and out.source.partition == partition
    assert [o.source.offset for o in outputs] == list(range(7))
    assert all(e.message.acked for e in events)  # so their offsets are committable
    assert worker.threads and "MainThread" not in worker.threads  # the model ran off the event loop
    assert worker.stats.processed == 7 and worker.stats.batches == 3
    assert agent.done == {(worker.topics.enrich, 0): 7, (worker.topics.enrich, 1): 6}


def test_the_dead_lettering_kind_pairs_a_dead_letter_with_each_malformed_request(settings):
    worker = EchoWorker(settings, owns_dead_letters=True)
    bad = encode(Click(user="u1", item="i1", ts=TS))
    values = [(b"i0", request("i0"), 0), (b"i1", bad, 0), (b"i2", b"\x93junk", 0)]
    _, events, batches = run_agent(worker, settings, values, n_out=3)
    outputs = batches[0]
    letters = [o for o in outputs if o.topic == worker.topics.deadletter]
    assert {o.source.offset for o in letters} == {1, 2}
    for o in letters:
        letter = decode(o.value, DeadLetter)
        assert letter.value == o.source.value and letter.topic == worker.topics.enrich and letter.reason
    assert worker.stats.dead_letters == 2 and worker.stats.processed == 1
    assert all(e.message.acked for e in events)


def test_other_kinds_skip_and_count_malformed_requests(settings):
    worker = EchoWorker(settings, owns_dead_letters=False)
    values = [(b"i0", request("i0"), 0), (b"i1", b"\x93junk", 0), (b"i2", request("i2"), 0)]
    _, events, batches = run_agent(worker, settings, values, n_out=2)
    assert [o.source.offset for o in batches[0]] == [0, 2]
    assert worker.stats.malformed_skipped == 1 and worker.stats.dead_letters == 0
    assert all(e.message.acked for e in events)  # a skipped request is done with, too


def test_a_failing_batch_is_never_acknowledged_and_stops_the_agent(settings):
    worker = EchoWorker(settings, fail_on="i4")
    values = [(f"i{n}".encode(), request(f"i{n}"), 0) for n in range(9)]
    agent, events, batches = run_agent(worker, settings, values, n_out=3)
    assert [len(b) for b in batches] == [3]  # i0..i2; the batch with i4 failed
    assert isinstance(agent.failure, RuntimeError) and agent.stopping
    assert [e.message.acked for e in events] == [True] * 3 + [False] * 6  # nothing after is lost


def test_a_stopping_agent_takes_no_new_batch(settings):
    worker = EchoWorker(settings)
    batches: list = []

    async def sink(outputs):
        batches.append(outputs)

    async def main():
        agent = EnrichAgent(worker, settings, sink=sink)
        agent.stopping = True  # as after SIGTERM: the next batch is left to the restart
        return await drive(agent, [(b"i0", request("i0"), 0)], batches, n_out=1)

    events = asyncio.run(main())
    assert batches == [] and not events[0].message.acked and worker.stats.batches == 0


def test_faust_settings_follow_the_project_settings(settings):
    agent = EnrichAgent(EchoWorker(settings.replace(topic_prefix="t1.", worker_id="pod-7")), settings.replace(topic_prefix="t1."))
    conf = agent.app.conf
    assert agent.topic.get_topic_name() == "t1.items.enrich"
    assert conf.processing_guarantee.value == "exactly_once" and not conf.web_enabled
    assert conf.id == "streamrec-enrich-echo" and conf.consumer_group_instance_id.startswith("streamrec-enrich-echo-")
    assert conf.topic_disable_leader and not conf.topic_allow_declare
    assert broker_urls("a:1,b:2") == ["kafka://a:1", "kafka://b:2"]
    sasl = credentials(settings.replace(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
                                        kafka_sasl_password="p", kafka_sasl_mechanism="SCRAM-SHA-256"))
    assert (sasl.username, sasl.password, sasl.mechanism.value) == ("u", "p", "SCRAM-SHA-256")
    assert credentials(settings) is None
