"""What the read API needs in Redis beside the lists: item records for filters, users' seen items,
and similar-item lists.

Why the stream worker writes them, at its refresh and not per message: it alone sees every
catalogue change and every event in order, and writing at the refresh keeps Redis off the
per-event path (a Redis outage costs staleness, never learning: what is owed stays owed until a
write succeeds, like the users' lists).

- ``item:{item}``: the latest catalogue record without its text (title, attributes, ``deleted``),
  so a reader can filter by attribute (category); the set ``deleted`` holds the deleted items,
  so a reader drops them from any list, also from lists written before the delete, with one
  SMISMEMBER (re-upserting an item takes it out of the set; the set's TTL is renewed at each
  catalogue change).
- ``seen:{user}``: the user's most recent distinct items (:data:`MAX_SEEN` at most), written with
  the user's list, so the fallback for a user without a personal list leaves them out.
- ``sim:{item}``: the item's top-K neighbours (:meth:`Recommender.similar_items`: co-occurrence
  and embedding, deleted items removed), rewritten for items whose neighbourhood changed since the
  last write (interacted with, or a new embedding), and for every item in turn by a rolling
  cursor over the catalogue (:class:`~streamrec.streams.similar.Sweep`) that visits each item at
  least once per ``cycle_s`` (``STREAMREC_SIMILAR_CYCLE_S``): an item whose neighbours changed
  because of *other* items, or that was never touched, still gets a fresh list. At most ``budget``
  lists a write: up to half of it for the cursor when it is due, the rest for touched items (the
  rest stay owed). A deleted item's list, or one without neighbours any more, is removed. The
  TTL (a week) is at least twice the longest cycle, so it only matters when no worker runs; the
  cursor starts again at the first row after a restart.

Every key has its TTL (:class:`RedisKeys`); every command touches one key (cluster-safe).

>>> from streamrec.schemas.events import Item
>>> state = ServingState(similar_k=5, budget=2)
>>> state.item(Item("i1", "Heat", "long text", {"category": "film"}, ts=1.0))
>>> state.item(Item("i2", deleted=True, ts=2.0))
>>> [state.touched(i) for i in ("i3", "i4", "i5")] and sorted(state.owed_similar)
['i1', 'i2', 'i3', 'i4', 'i5']
>>> state.pending_items["i1"].text, state.pending_items["i2"].deleted
('', True)
>>> again = ServingState(); again.restore(state.to_meta()); again.pending_items == state.pending_items
True
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from streamrec.schemas.codec import decode, encode
from streamrec.schemas.events import MAX_SEEN, Item, SeenItems, SimilarItems
from streamrec.schemas.keys import RedisKeys
from streamrec.streams.similar import Sweep

BATCH = 500


class ServingState:
    """Buffers what changed since the last write; :meth:`write` puts it in Redis in one pass."""

    def __init__(self, similar_k: int = 20, budget: int = 500, seen_limit: int = MAX_SEEN,
                 enabled: bool = True, cycle_s: float = 3600.0):  # fmt: skip
        #: off for replays, which read lists only: nothing is buffered then
        self.enabled = enabled
        self.similar_k = similar_k
        self.budget = budget
        self.seen_limit = min(seen_limit, MAX_SEEN)
        #: latest catalogue record per item, text dropped (only what filters and readers need)
        self.pending_items: dict[str, Item] = {}
        #: items whose similar-item list is due (insertion order: the oldest first)
        self.owed_similar: dict[Hashable, None] = {}
        #: the rolling cursor over every item, so untouched items' lists are refreshed too
        self.sweep = Sweep(cycle_s)

    def to_meta(self) -> list[bytes]:
        """The catalogue records not yet in Redis, for the checkpoint (they must survive a restart:
        the offsets past them are checkpointed). Owed similar lists are not kept: they come back
        with the next interactions, and the old lists live until their TTL."""
        return [encode(r) for r in self.pending_items.values()]

    def restore(self, meta: Iterable[bytes]) -> None:
        """Take back :meth:`to_meta`'s records."""
        for data in meta:
            self.item(decode(data, Item))

    def item(self, record: Item) -> None:
        """A catalogue upsert or delete: its record is due in Redis, its neighbourhood changed."""
        if not self.enabled:
            return
        self.pending_items[record.item] = Item(record.item, record.title, "", record.attributes,
                                               ts=record.ts, deleted=record.deleted)  # fmt: skip
        self.touched(record.item)

    def touched(self, item: Hashable) -> None:
        """``item`` was interacted with or enriched: its similar-item list is due."""
        if self.enabled and self.similar_k > 0:
            self.owed_similar[item] = None

    def _due(self, model, now: float) -> tuple[list[Hashable], list[Hashable]]:
        """(touched items due, items the cursor visits), ``budget`` at most together."""
        catalogue = model.index.items if self.similar_k > 0 else []
        swept = [catalogue[r] for r in self.sweep.take(len(catalogue), now, max(1, self.budget // 2))]
        due = []
        for item in self.owed_similar:
            if len(due) + len(swept) >= self.budget:
                break
            due.append(item)
        chosen = set(due)
        return due, [item for item in swept if item not in chosen]

    def write(self, client, keys: RedisKeys, model, users: Iterable[str], now: float,
              model_version: str, digest: str) -> int:  # fmt: skip
        """Write item records, the seen lists of ``users`` and the due similar-item lists; forget
        them only once Redis has taken them (a Redis error propagates, nothing is lost). Returns
        the number of similar-item lists written."""
        pipe = client.pipeline(transaction=False)
        items = dict(self.pending_items)
        for item, record in items.items():
            pipe.set(keys.item(item), encode(record), ex=keys.item_ttl_s)
            if record.deleted:
                pipe.sadd(keys.deleted(), item)
            else:
                pipe.srem(keys.deleted(), item)
        if items:
            pipe.expire(keys.deleted(), keys.item_ttl_s)
            pipe.incr(keys.deleted_version())  # after the set's writes: readers' copies reload
            pipe.expire(keys.deleted_version(), keys.item_ttl_s)
        for user in users:
            seen = [str(i) for i in model.seen_items(user, self.seen_limit)]
            if seen:
                pipe.set(keys.seen(user), encode(SeenItems(user, tuple(seen), now)), ex=keys.seen_ttl_s)
            if len(pipe) >= BATCH:
                pipe.execute()
        due, swept = self._due(model, now)
        written = 0
        for item in due + swept:
            record = items.get(item)
            gone = (record is not None and record.deleted) or not model.is_available(item)
            neighbours = [] if gone else model.similar_items(item, self.similar_k)
            if neighbours:
                lst = SimilarItems(str(item), tuple((str(i), float(s)) for i, s in neighbours),
                                   model_version, now, digest)  # fmt: skip
                pipe.set(keys.similar(str(item)), encode(lst), ex=keys.similar_ttl_s)
                written += 1
            else:  # deleted, or no neighbours any more
                pipe.delete(keys.similar(str(item)))
            if len(pipe) >= BATCH:
                pipe.execute()
        if len(pipe):
            pipe.execute()
        for item, record in items.items():
            if self.pending_items.get(item) is record:
                del self.pending_items[item]
        for item in due:
            self.owed_similar.pop(item, None)
        return written
