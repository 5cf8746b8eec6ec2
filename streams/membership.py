"""Which event partitions this stream worker *serves*: consumer-group membership without consuming.

Scale-out scheme ("replicated learning, partitioned serving"): every stream worker reads and learns
every event partition (learning costs microseconds per event), while the expensive part, ranking
and writing lists, is split by partition through an ordinary Kafka consumer group. A worker writes
the lists of the users whose events arrived on the partitions the group assigned to it.

Why this and not partitioned learning with a periodic merge of item-side parameters: with every
worker learning every event, item-side parameters (co-occurrence counts, popularity, item factors,
embeddings) need no reconciliation at all (counts agree exactly; MF factors agree up to the order
in which partitions interleave), and a worker leaving hands over nothing but partition ownership:
the others already hold every user's state, so no event is lost or re-learned in a handover and
quality is that of a single worker. The limit is learning throughput per worker (tens of thousands
of events/s here), not ranking, which is what grows with users.

The group consumer is paused on every partition it is assigned, so it fetches nothing; polling it
only keeps the membership alive and runs the rebalance callbacks. Membership is static
(``group.instance.id`` = ``STREAMREC_WORKER_ID``): a worker that restarts within the session
timeout (10 s) gets its partitions back without a rebalance; one that is gone longer has its
partitions moved to the others. Every worker therefore needs its own ``STREAMREC_WORKER_ID``
(a StatefulSet's pod names are).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("streamrec.membership")


class Membership:
    def __init__(self, config: dict, group_id: str, instance_id: str, topics: list[str],
                 on_gained: Callable[[set[tuple[str, int]]], None] | None = None,
                 on_revoked: Callable[[set[tuple[str, int]]], None] | None = None):  # fmt: skip
        from confluent_kafka import Consumer

        self.owned: set[tuple[str, int]] = set()
        self._before_revoke: set[tuple[str, int]] = set()
        self.assigned_once = False
        self._on_gained = on_gained
        self._on_revoked = on_revoked
        self.consumer = Consumer({**config, "group.id": group_id, "enable.auto.commit": False,
                                  "auto.offset.reset": "latest", "session.timeout.ms": 10_000,
                                  # static membership: a restarted worker gets its partitions back
                                  # at once instead of waiting out a rebalance
                                  "group.instance.id": instance_id})  # fmt: skip
        self.consumer.subscribe(topics, on_assign=self._assign, on_revoke=self._revoke)

    def _assign(self, consumer, partitions) -> None:
        now_owned = {(tp.topic, tp.partition) for tp in partitions}
        gained = now_owned - self.owned - self._before_revoke  # eager rebalances revoke everything
        consumer.assign(partitions)
        consumer.pause(partitions)  # ownership only: the data comes through the worker's own reader
        self.owned = now_owned
        self._before_revoke = set()
        self.assigned_once = True
        log.info("serving %s", sorted(self.owned))
        if gained and self._on_gained:
            self._on_gained(gained)

    def _revoke(self, consumer, partitions) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self._before_revoke = set(self.owned)
        if self._on_revoked:
            self._on_revoked(lost)
        self.owned -= lost
        log.info("no longer serving %s", sorted(lost))

    def poll(self) -> None:
        """Keep the membership alive and run rebalance callbacks (never returns messages)."""
        self.consumer.poll(0)

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Record our position on the partitions we serve, for lag monitoring (not for recovery)."""
        from confluent_kafka import TopicPartition

        mine = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in self.owned]
        if mine:
            try:
                self.consumer.commit(offsets=mine, asynchronous=False)
            except Exception as exc:  # e.g. mid-rebalance; recovery never depends on these
                log.info("offset commit deferred: %s", exc)

    def close(self) -> None:
        self.consumer.close()
