"""The stream worker's per-event path: decode at the boundary, learn, or dead-letter with a reason.

Why a stage of its own: this is the code every message runs through, so it is kept apart from the
refresh passes (:mod:`streamrec.streams.passes`) and the Kafka plumbing and loop
(:mod:`streamrec.streams.worker`). :class:`EventPath` is a base class of
:class:`~streamrec.streams.worker.StreamWorker` and works on the worker's own state (model,
schedule, outputs, catalogue, offsets), which the worker sets up.
"""

from __future__ import annotations

import logging

from streamrec.schemas.codec import encode
from streamrec.schemas.deadletters import dead_letter
from streamrec.schemas.events import Click, DeadLetter, Item, ItemEmbedding, ItemTags, Rating

log = logging.getLogger("streamrec.worker")


class EventPath:
    """Learn one message at a time; no single message can stop the worker."""


    def handle(self, topic: str, partition: int, offset: int, key, value, now: float,
               headers=None) -> None:  # fmt: skip
        """Learn one message (or dead-letter it) and advance the partition's position.

        No single message can stop the worker: one whose handling raises is dead-lettered with the
        error (and logged with its traceback), and one named by ``STREAMREC_SKIP_MESSAGES`` is
        passed over (an operator's last resort when even its dead letter cannot be produced).
        """
        position = (topic, partition)
        if offset < self.offsets.get(position, 0):
            return  # already inside the restored state: never learn an event twice
        if self.settings.skip_messages and (topic, partition, offset) in self.settings.skip_messages:
            self.stats.skipped += 1
            log.warning("skipped %s[%d]@%d as STREAMREC_SKIP_MESSAGES says", topic, partition, offset)
        else:
            try:
                record = self._learn(topic, partition, offset, key, value, now, headers)
            except Exception as exc:  # a defect, not bad input: keep the stream going, say why
                log.exception("handling %s[%d]@%d failed", topic, partition, offset)
                self.stats.errors += 1
                record = dead_letter(topic, key, value, f"worker error: {type(exc).__name__}: {exc}",
                                     now, partition, offset)  # fmt: skip
            if type(record) is DeadLetter:
                produced = self.outputs.produce(self.topics.deadletter, key or b"", encode(record),
                                                (topic, partition, offset))  # fmt: skip
                if produced:
                    self.stats.dead_letters += 1
                    log.warning("dead-lettered %s[%d]@%d: %s", topic, partition, offset, record.reason)
        self.offsets[position] = offset + 1

    def _learn(self, topic: str, partition: int, offset: int, key, value, now: float, headers=None):
        """Decode and learn one message; returns the record, a :class:`DeadLetter` if refused."""
        position = (topic, partition)
        if self.state is not None and topic == self.state.items_topic:
            self.state.read_delta(offset, value, key)  # another worker's (this one's are in already)
            return None
        record = self.boundary.decode(topic, key, value, now, partition, offset, headers)
        kind = type(record)
        if kind is Click or kind is Rating:
            if self.logical:
                now = record.ts
                if self.schedule.boundary_reached(now):
                    self.write_active(now)  # the lists as of every earlier event
                    self.schedule.advance_boundary(now)
            if self.observer is not None:
                self.observer(record, self)
            self.served.event(record.user, record.item, self.serves(position))
            if kind is Click:
                self.model.learn_click(record.user, record.item, record.ts)
            else:
                self.model.learn_rating(record.user, record.item, record.rating, record.ts)
            self.stats.learned += 1
            if self.state is not None:
                self.state.learned(record.user, partition)
                self.outputs.mark()
                if self.state.delta_due():
                    self.state.emit_delta(self.outputs)
            self.schedule.touch(record.user, position, now)
            self.serving.touched(record.item)
            self._only_catalogued(record.item)
        elif kind is Item:
            self._item(record, now, (topic, partition, offset))
        elif kind is ItemEmbedding:
            if self.catalog_state.is_current(record.item, record.content_hash):
                try:
                    self.model.set_embedding(record.item, record.vector, record.ts)
                    self.stats.enrichments += 1
                    self.serving.touched(record.item)
                    self._only_catalogued(record.item)
                    # zero-shot cold start: the users it suits get a list with it at the next
                    # refresh, not at their next event (which partition they are on is unknown
                    # here, so every serving worker writes them; writes are idempotent)
                    for user in self.model.users_near(record.item, self.settings.cold_start_users):
                        self.schedule.owe(user)
                except ValueError as exc:  # e.g. another model's dimension: refuse, keep going
                    return dead_letter(topic, key, value, str(exc), now, partition, offset)
        elif kind is ItemTags:
            if self.catalog_state.is_current(record.item, record.content_hash):
                self.model.set_tags(record.item, record.tags, record.ts)
                self.stats.enrichments += 1
                self._only_catalogued(record.item)
        return record

    def _item(self, item: Item, now: float, origin: tuple[str, int, int]) -> None:
        self.serving.item(item)
        if item.deleted:
            self.model.delete_item(item.item)
            self.catalog_state.delete(item.item)
            for user in self.lists.holders(item.item):  # active or not: their lists show it
                self.schedule.owe(user)
            return
        self.model.upsert_item(item.item, item.ts)
        request = self.catalog_state.upsert(item, now)
        if request is not None:  # new or changed content: queue it for the LLM workers
            if self.outputs.produce(self.topics.enrich, item.item.encode(), encode(request), origin):
                self.stats.enrich_requests += 1

    def _only_catalogued(self, item: str) -> None:
        """With STREAMREC_RECOMMEND_UNCATALOGUED=false, an item the catalogue never announced (or
        deleted) is learned from but never recommended, until an upsert makes it available."""
        if not self.settings.recommend_uncatalogued and not self.catalog_state.known(item):
            self.model.delete_item(item)
