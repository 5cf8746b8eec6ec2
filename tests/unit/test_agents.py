"""The faust agent of the LLM workers, driven through faust's ``agent.test_context()`` (no broker).

The sink is the test's: it records each batch's outputs, so the tests see what the agent would
write into the Kafka transactions, paired with the request each record answers, and which events
the agent acknowledged (only acknowledged offsets are ever committed).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

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


def test_a_burst_is_caught_up_only_once_what_was_fetched_is_processed(settings):
    """The fetch position reaches the end before the take hands a partial batch over: a request
    still in the take buffer (handed to the stream, unacknowledged) holds the burst off, and
    once none is left it ends only after a quiet spell with no batch in it."""
    from types import SimpleNamespace

    class Consumer:  # what the agent reads of faust's consumer: one partition, fetched to its end
        def __init__(self, topic):
            self.tp = SimpleNamespace(topic=topic, partition=0)
            self.waiting = SimpleNamespace(acked=False)  # a request in the take buffer
            self.unacked = [self.waiting]

        def assignment(self):
            return [self.tp]

        async def position(self, tp):
            return 5

        def highwater(self, tp):
            return 5

    async def main():
        agent = EnrichAgent(EchoWorker(settings), settings.replace(embed_batch_wait_s=0.0), sink=None)
        agent.quiet.hold_s = 0.5
        agent.app.consumer = consumer = Consumer(agent.topic.get_topic_name())
        agent.last_batch = time.monotonic() - 10.0  # started (or idle) long before the fetch
        seen = []
        for _ in range(5):
            seen.append(await agent.caught_up())
            await asyncio.sleep(0.1)
        consumer.waiting.acked = True  # its batch is done and committed
        agent.last_batch = time.monotonic()
        for _ in range(7):
            seen.append(await agent.caught_up())
            await asyncio.sleep(0.1)
        return seen

    seen = asyncio.run(main())
    assert seen[:5] == [False] * 5  # the old check (position at the end, no batch for a while) said True
    assert seen[5:7] == [False] * 2 and seen[-1] is True  # the spell: 0.5 s


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


def test_an_undeliverable_output_is_retried_in_process_with_backoff_and_acked_only_once_delivered(settings):
    """The sink refuses the first two tries (as a broker refusing a record would): the agent keeps
    the batch's outputs, backs off, is degraded meanwhile, acks nothing, and delivers each output
    once when the sink takes them; no new batch is taken while it retries."""
    settings = settings.replace(enrich_retry_min_s=0.05, enrich_retry_max_s=0.1)
    worker = EchoWorker(settings)
    delivered: list = []
    seen: list = []

    async def sink(outputs):
        seen.append((len(outputs), worker.delivery.degraded, [e.message.acked for e in events_ref]))
        if len(seen) <= 2:
            raise RuntimeError("record refused")
        delivered.append(list(outputs))

    events_ref: list = []

    async def main():
        agent = EnrichAgent(worker, settings, sink=sink)
        async with agent.agent.test_context() as tc:
            for n in range(3):
                events_ref.append(await tc.put(request(f"i{n}"), key=f"i{n}".encode(), partition=0, wait=False))
            for _ in range(300):
                if delivered and not agent.busy and not agent.outbox.pending:
                    break
                await asyncio.sleep(0.02)
        return agent

    agent = asyncio.run(main())
    assert [n for n, _, _ in seen] == [3, 3, 3]  # the same batch, three tries
    assert [degraded for _, degraded, _ in seen] == [False, True, True]
    assert all(not any(acked) for _, _, acked in seen)  # nothing acked before its outputs went through
    assert [[o.source.offset for o in b] for b in delivered] == [[0, 1, 2]]
    assert all(e.message.acked for e in events_ref) and agent.failure is None and not agent.stopping
    assert worker.delivery.failures == 2 and not worker.delivery.degraded
    beat = json.loads(worker.health_path.read_text())
    assert beat["output_failures"] == 2 and beat["degraded"] is False


def test_a_degraded_worker_fails_its_health_check_but_not_the_liveness_one(settings, tmp_path):
    from streamrec.metrics import heartbeat_health

    worker = EchoWorker(settings)
    now = time.monotonic()
    worker.delivery.failed("record for items.enrich[0]@7 (to items.tags, 10 bytes): refused", now=now - 4)
    worker.heartbeat(now, force=True)
    ok, line = heartbeat_health(worker.health_path, 30.0)
    assert not ok and line.startswith("degraded (outputs not delivered for 4.0s") and not worker.healthy()
    assert heartbeat_health(worker.health_path, 30.0, live=True)[0]
    worker.delivery.recovered()
    worker.heartbeat(time.monotonic(), force=True)
    assert heartbeat_health(worker.health_path, 30.0)[0] and worker.healthy()


def test_a_rebalance_while_retrying_leaves_the_requests_to_the_new_assignment(settings):
    """faust seeks every assigned partition back to its committed offset after a rebalance, so
    outputs waiting for a retry are given up (never acked, never committed), not produced again
    next to the re-read requests' own."""
    from streamrec.workers.common import Message
    from streamrec.workers.delivery import Outbox

    settings = settings.replace(enrich_retry_min_s=0.01, enrich_retry_max_s=0.01)
    worker = EchoWorker(settings)
    generation = [1]
    sent: list = []
    acked: list = []

    async def sink(outputs):
        sent.append(len(outputs))
        raise RuntimeError("record refused")

    class Stream:
        async def ack(self, event):
            acked.append(event)

    async def main():
        outbox = Outbox(worker, settings, sink, lambda m: f"{m.topic}-{m.partition}",
                        generation=lambda: generation[0])  # fmt: skip
        outbox.stream = Stream()
        msgs = [Message("items.enrich", 0, n, b"k", request(f"i{n}")) for n in range(2)]
        outputs = worker.process(msgs, now=TS)
        await outbox.put(["e0", "e1"], msgs, outputs)
        await asyncio.sleep(0.02)
        assert not await outbox.settle() and worker.delivery.degraded  # retried, refused again
        generation[0] = 2
        assert await outbox.settle()
        return outbox

    outbox = asyncio.run(main())
    assert sent == [2, 2] and acked == [] and outbox.pending == {} and not outbox.broken
    assert not worker.delivery.degraded and worker.delivery.failures == 2
