"""The LLM workers as faust-streaming agents, with exactly-once outputs.

One agent per worker kind reads ``items.enrich`` (consumer group ``{enrich_group_id}-{kind}``)::

    stream.noack_take(embed_batch_size, within=embed_batch_wait_s)
    ─► stage.process(batch) in a one-thread executor (the model never blocks the event loop)
    ─► (the group rebalanced meanwhile? drop the batch unsent and unacked: the new owners redo it)
    ─► each output into the transaction of its request's partition, awaited until the broker has it
    ─► commit: outputs and offsets, one Kafka transaction per input partition (after every
       batch, or once enrich_commit_interval_s has passed; at once when idle) ─► ack the events

SIGTERM/SIGINT, ``--burst`` and ``--max-seconds`` stop the worker between batches only; a batch
whose model step fails stops it without committing that batch. An output the broker refuses or
does not acknowledge stops nothing: the open transactions are dropped and every uncommitted output
is produced again after a backoff, in this process, until it goes through (:mod:`.delivery`:
the retries, the health and metric they show in).

Why it is ordered this way. faust's ``processing_guarantee="exactly_once"`` runs one transactional
producer per assigned input partition and commits offsets with ``send_offsets_to_transaction``,
but it picks a record's transaction by the partition the record *lands on*, which matches the
input only for co-partitioned topics the app itself consumes, and it commits on a timer, in the
middle of a batch. So the agent names the transaction itself (the one of the request's partition,
through faust's ``Producer.send(..., transactional_id=...)``), turns faust's periodic commits off and
commits only between batches, when every record in the open transactions belongs to an acked
event. A kill -9 at any moment leaves an open transaction that the restarted worker's producer
(same transactional id) aborts on start; its offsets were never committed, so the batch is redone
once. Consumers of the output topics must read with ``isolation.level=read_committed``.

Restarts do not wait out the session timeout: the consumer joins with static membership
(``group.instance.id`` = ``{group}-{worker_id}``), so a restarted worker gets its partitions back
at once. Two workers of one kind on one host need distinct ``STREAMREC_WORKER_ID`` values.

faust's web server, leader topic and topic creation are off; topic names come from the settings'
:class:`~streamrec.schemas.topics.Topics` (with the prefix), and its data directory sits under
the state dir.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from streamrec.settings import Settings
from streamrec.workers.burst import Quiet, drained
from streamrec.workers.common import EnrichWorker, Message, Output, WorkerError, WorkerStats, partition_for
from streamrec.workers.delivery import Outbox, Undelivered, origin

log = logging.getLogger("streamrec.workers.agents")
TICK_S = 0.1
NEVER = 10**9  # faust's commit timer and commit-every-n, switched off: commits are ours


def broker_urls(bootstrap: str) -> list[str]:
    """faust's broker URLs for a bootstrap list.

    >>> broker_urls("k1:9092, k2:9092")
    ['kafka://k1:9092', 'kafka://k2:9092']
    """
    return [f"kafka://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip()]


def credentials(settings: Settings):
    """faust's credentials for the settings' Kafka security (``None`` for PLAINTEXT)."""
    import ssl

    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location or None)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=settings.kafka_sasl_username,
                                 password=str(settings.kafka_sasl_password),
                                 ssl_context=context, mechanism=settings.kafka_sasl_mechanism)  # fmt: skip


class Repeats(logging.Filter):
    """Lets each message of the client libraries through at most once per ``every_s`` seconds.

    With the broker away aiokafka logs every failed connection, fetch and metadata request at
    ERROR, hundreds of lines a second; the worker says what matters itself (its degraded health,
    one warning per retry). Messages are told apart by logger and template, so each kind of
    trouble is still shown, once per period. Records of other loggers pass untouched.

    >>> f, rec = Repeats(every_s=30.0), logging.makeLogRecord
    >>> [f.filter(rec({"name": "aiokafka", "msg": "Unable connect to node %s", "created": t}))
    ...  for t in (0.0, 1.0, 29.0, 31.0)]
    [True, False, False, True]
    >>> f.filter(rec({"name": "streamrec.workers", "msg": "Unable connect to node %s", "created": 2.0}))
    True
    """

    def __init__(self, every_s: float = 30.0, prefixes: tuple[str, ...] = ("aiokafka", "faust", "mode")):
        super().__init__()
        self.every_s, self.prefixes = every_s, prefixes
        self.last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        last = self.last.get(key)
        if last is not None and record.created - last < self.every_s:
            return False
        self.last[key] = record.created
        return True


def quiet_faust(settings: Settings) -> None:
    """faust, mode and aiokafka narrate every service start and stop at INFO; keep them to
    warnings unless the settings ask for DEBUG, and each repeated message to one per 30 s
    (:class:`Repeats`)."""
    level = logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
    for name in ("faust", "mode", "aiokafka"):
        logging.getLogger(name).setLevel(level)
    if level != logging.DEBUG:
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, Repeats) for f in handler.filters):
                handler.addFilter(Repeats())


def _headers(headers) -> tuple:
    """faust gives a message's headers as a list of pairs or as a mapping; the stages take pairs.

    >>> _headers({"content-type": b"application/json"}), _headers(None)
    ((('content-type', b'application/json'),), ())
    """
    if not headers:
        return ()
    return tuple(headers.items()) if hasattr(headers, "items") else tuple(headers)


def make_app(settings: Settings, worker: EnrichWorker):
    """The faust app of one worker kind (connects nothing until it starts)."""
    import faust

    return faust.App(
        worker.group, broker=broker_urls(settings.kafka_bootstrap),
        broker_credentials=credentials(settings), processing_guarantee="exactly_once",
        consumer_group_instance_id=f"{worker.group}-{settings.worker_id}",
        broker_session_timeout=10.0, broker_heartbeat_interval=3.0,
        broker_commit_interval=NEVER, broker_commit_every=NEVER, stream_wait_empty=False,
        consumer_auto_offset_reset="earliest", producer_acks=-1,
        producer_request_timeout=settings.enrich_delivery_timeout_s,
        web_enabled=False, topic_disable_leader=True, topic_allow_declare=False, store="memory://",
        datadir=str(settings.state_dir / "workers" / worker.name / "faust"),
    )  # fmt: skip


class EnrichAgent:
    """A stage (:class:`~streamrec.workers.common.EnrichWorker`) as a faust agent.

    ``sink`` writes a batch's outputs (default: into the Kafka transactions, see the module
    docstring); unit tests pass their own and drive the agent with ``agent.test_context()``.
    """

    def __init__(self, worker: EnrichWorker, settings: Settings, sink=None, partitions=None):
        self.worker, self.settings = worker, settings
        self.app = make_app(settings, worker)
        self.topic = self.app.topic(worker.topics.enrich, key_type=bytes, value_type=bytes,
                                    key_serializer="raw", value_serializer="raw")  # fmt: skip
        self.agent = self.app.agent(self.topic, name=f"streamrec-{worker.name}")(self._consume)
        self.transactional = sink is None  # a test's sink: nothing to commit
        self.sink = sink or self._send
        self.partitions = dict(partitions or {})  # output topic -> partition count
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"{worker.name}-model")
        self.busy = False  # a batch is between being taken and being delivered
        self.stopping = False
        self.failure: BaseException | None = None
        self.last_batch = time.monotonic()
        self.quiet = Quiet(hold_s=settings.embed_batch_wait_s + 1.0)  # see caught_up
        self.outbox = Outbox(worker, settings, self.sink, self._tid,
                             producer=(lambda: self.app.producer) if self.transactional else None,
                             group_id=self.app.conf.id, report=self._report,
                             generation=lambda: self.app.consumer_generation_id)  # fmt: skip
        self.hard_exit = False  # run() sets it: a failure mid-send ends the process (see fail)

    # ------------------------------------------------------------ the agent

    async def _consume(self, stream):
        loop = asyncio.get_running_loop()
        self.outbox.stream = stream
        size, wait_s = self.settings.embed_batch_size, self.settings.embed_batch_wait_s
        async for events in stream.noack_take(size, within=wait_s):
            if self.stopping:  # never acked: the next owner (or the restart) processes them
                continue
            self.worker.timeline.setdefault("first_batch", time.time())
            self.busy = True
            try:
                generation = self.app.consumer_generation_id
                msgs = [Message(e.message.topic, e.message.partition, e.message.offset,
                                e.message.key, e.message.value, _headers(e.message.headers))
                        for e in events]  # fmt: skip
                outputs = await loop.run_in_executor(self.executor, self.worker.process, msgs)
                if self.app.consumer_generation_id != generation or self.app.rebalancing:
                    # the partitions moved meanwhile: nothing sent, nothing acked; the owners
                    # (this worker again, perhaps) read the batch anew from the committed offsets
                    log.info("%s: group rebalanced during a batch; left to the new assignment",
                             self.worker.name)  # fmt: skip
                    continue
                await self.deliver(events, msgs, outputs)
                if "first_output" not in self.worker.timeline:  # say so now: restart monitoring
                    self.worker.timeline["first_output"] = time.time()
                    self._report()
            except Exception as exc:  # noqa: BLE001: any failure stops the worker uncommitted
                self.fail(exc, bool(self.outbox.pending) and not self.outbox.broken)
            finally:
                self.busy = False
                self.last_batch = time.monotonic()

    async def deliver(self, events: list, msgs: list[Message], outputs: list[Output]) -> None:
        """Put a batch into the transactions of its partitions and commit when due. An output
        that cannot be delivered is retried here, with backoff, until it goes through or the
        worker stops (no new batch is taken meanwhile; nothing uncommitted is ever acked)."""
        await self.outbox.put(events, msgs, outputs)
        while not await self.outbox.settle(due=True) and not self.stopping:
            await asyncio.sleep(max(0.0, min(TICK_S, self.outbox.retry_at - time.monotonic())))

    def fail(self, exc: BaseException, sent: bool) -> None:
        """Stop without committing the failed batch. Once part of it is in the open transaction a
        clean stop would commit that part, so the process ends at once (the restart aborts it)."""
        self.failure, self.stopping = exc, True
        log.error("%s worker stops: %s", self.worker.name, exc)
        if sent and self.hard_exit:
            sys.stderr.write(f"error: {self.worker.name} worker: {exc}\n")
            sys.stderr.flush()
            os._exit(2)

    def transactional_id(self, msg: Message) -> str:
        """The transaction of ``msg``'s partition, named as faust's TransactionManager names it."""
        group = self.app.assignor.group_for_topic(msg.topic)
        return f"{self.app.conf.id}-{group}-{msg.partition}"

    def _tid(self, msg: Message) -> str:
        return self.transactional_id(msg) if self.transactional else f"{msg.topic}-{msg.partition}"

    async def _send(self, outputs: list[Output]) -> None:
        """Produce ``outputs`` into their transactions and wait until the broker has every one."""
        producer, sent = self.app.producer, []
        for out in outputs:
            partition = partition_for(out.key, self.partitions[out.topic])
            try:
                fut = await producer.send(out.topic, out.key, out.value, partition, None, None,
                                          transactional_id=self.transactional_id(out.source))  # fmt: skip
            except Exception as exc:  # noqa: BLE001: refused before it left (too large, no producer)
                raise Undelivered(f"{origin(out)}: {exc!r}") from exc
            fut.add_done_callback(_retrieve)
            sent.append((out, fut))
        if not sent:
            return
        timeout = self.settings.enrich_delivery_timeout_s
        _, waiting = await asyncio.wait([f for _, f in sent], timeout=timeout)
        for out, fut in sent:
            if fut in waiting:
                raise Undelivered(f"{origin(out)}: not acknowledged within {timeout:g}s")
            if fut.exception() is not None:
                raise Undelivered(f"{origin(out)}: {fut.exception()!r}")

    # ------------------------------------------------------------ the timer: health, burst, stop

    def assigned(self) -> list:
        return [tp for tp in self.app.consumer.assignment() if tp.topic == self.topic.get_topic_name()]

    def depth(self) -> int:
        """Requests waiting in our partitions (from the last fetch responses)."""
        total = 0
        for tp in self.assigned():
            high = self.app.consumer.highwater(tp)
            if high is not None and high >= 0:
                total += max(0, high - self.done.get((tp.topic, tp.partition), high))
        return total

    @property
    def done(self) -> dict[tuple[str, int], int]:
        """Next offset to process, per partition (committed)."""
        return self.outbox.done

    def _depth(self) -> int:
        return self.depth() if self.transactional and self.app.consumer else 0

    def _report(self) -> None:
        self.worker.heartbeat(time.monotonic(), self._depth(), force=True)

    async def caught_up(self) -> bool:
        """Everything fetched is processed and committed, and has been for a quiet spell (see
        :mod:`.burst`: the fetch position alone runs ahead of the batches)."""
        ends = []
        for tp in self.assigned():
            ends.append((await self.app.consumer.position(tp), self.app.consumer.highwater(tp)))
        handed = sum(not m.acked for m in self.app.consumer.unacked)  # faust leaves some acked ones in
        done = drained(self.busy, self.outbox.broken, handed, self.outbox.events, ends)
        now = time.monotonic()
        return self.quiet.observe(done, self.last_batch, now)

    async def tick(self, burst: bool, deadline: float | None, shutdown, stop=None) -> None:
        now = time.monotonic()
        if stop is not None and stop.is_set():
            self.stopping = True
        try:
            self.worker.heartbeat(now, self._depth())
        except Exception as exc:  # noqa: BLE001: the heartbeat must not stop the worker
            log.debug("heartbeat: %s", exc)
        if self.busy:
            return
        if not self.stopping and (burst and await self.caught_up() or deadline and now > deadline):
            self.stopping = True
        if self.stopping:
            if not await self.outbox.settle() and self.failure is None:
                self.failure = Undelivered(f"stopped with {self.outbox.outputs} outputs not delivered "
                                           f"(the restart produces them): {self.worker.delivery.error}")  # fmt: skip
            shutdown()
        elif now - self.last_batch > self.settings.embed_batch_wait_s:
            await self.outbox.settle()  # idle: the last batches are visible at once, whatever the interval
        else:
            await self.outbox.settle(due=True)


def _retrieve(fut) -> None:
    """Read a delivery future's outcome, so that one nobody awaits any more logs no warning."""
    if not fut.cancelled():
        fut.exception()


def output_partitions(settings: Settings, worker: EnrichWorker) -> dict[str, int]:
    """Partition counts of the input and output topics; a clear error when one is missing."""
    from streamrec.schemas.admin import TopicAdminError, admin_for

    try:
        metadata = admin_for(settings).list_topics(timeout=30)
    except TopicAdminError as exc:
        raise WorkerError(str(exc)) from None
    counts = {}
    for name in [worker.topics.enrich, *worker.output_topics]:
        info = metadata.topics.get(name)
        if info is None or info.error is not None:
            raise WorkerError(f"topic {name!r} does not exist; run `streamrec topics create`")
        counts[name] = len(info.partitions)
    return counts


def run(worker: EnrichWorker, burst: bool = False, max_seconds: float | None = None,
        stop: threading.Event | None = None) -> WorkerStats:
    """Run ``worker`` as a faust agent until SIGTERM/SIGINT (or ``stop`` is set), or with ``burst``
    until caught up. Off the main thread (a benchmark's) signals are left to the caller."""
    import faust

    from streamrec.metrics import serve

    settings = worker.settings
    quiet_faust(settings)
    partitions = output_partitions(settings, worker)
    agent = EnrichAgent(worker, settings, partitions=partitions)
    agent.hard_exit = True
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    class Worker(faust.Worker):
        """Signals ask the agent to stop between batches instead of stopping it mid-batch."""

        def install_signal_handlers(self) -> None:
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self.loop.add_signal_handler(sig, agent_stop)

        def shutdown(self) -> None:
            self._schedule_shutdown(signal.SIGTERM)

    def agent_stop() -> None:
        agent.stopping = True

    fworker = Worker(agent.app, loop=loop, quiet=True, override_logging=False,
                     redirect_stdouts=False)  # fmt: skip
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None

    @agent.app.timer(TICK_S)
    async def _tick() -> None:
        await agent.tick(burst, deadline, fworker.shutdown, stop)

    if settings.metrics_port:
        serve(worker.metrics, settings.metrics_port, worker.healthy)
    (settings.state_dir / "workers" / worker.name).mkdir(parents=True, exist_ok=True)
    worker.timeline["consumer_start"] = time.time()
    try:
        fworker.execute_from_commandline()
    except SystemExit as exc:  # faust's worker always ends with one; non-zero: it crashed
        if exc.code not in (0, None) and agent.failure is None:
            agent.failure = RuntimeError(f"the faust worker exited with status {exc.code} (see above)")
    finally:
        agent.executor.shutdown(wait=True)
        asyncio.set_event_loop(None)
    worker.heartbeat(time.monotonic(), force=True)
    if agent.failure is not None:
        raise WorkerError(f"{worker.name} worker stopped: {agent.failure}")
    return worker.stats
