"""The catalogue side of the stream worker: item upserts and deletes, the enrichment queue, and
LLM enrichments coming back.

Why here and not in the LLM workers: only the stream app sees every catalogue change in order, so
it decides what needs (re-)enrichment. It remembers each item's content hash (title, text and
attributes) and enqueues an :class:`EnrichRequest` only when the hash is new, so republishing an
unchanged item costs nothing downstream. Enrichments for an outdated hash are ignored (a fresh
one is on its way). All of it is off the per-event path of clicks and ratings: LLM work happens
elsewhere, asynchronously, and the model merely picks up vectors and tags when they arrive.

>>> cat = Catalog()
>>> item = Item(item="i1", title="Heat", text="a heist", ts=1.7e9)
>>> cat.upsert(item, now=1.7e9).content_hash == item.content_hash()
True
>>> cat.upsert(item, now=1.7e9) is None          # unchanged: nothing to enrich
True
>>> cat.is_current("i1", item.content_hash()), cat.is_current("i1", "old")
(True, False)
"""

from __future__ import annotations

from streamrec.schemas.events import EnrichRequest, Item


class Catalog:
    """Content hashes of the live items; decides what to enqueue and which enrichments apply."""

    def __init__(self, hashes: dict[str, str] | None = None):
        self.hashes: dict[str, str] = dict(hashes or {})

    def upsert(self, item: Item, now: float) -> EnrichRequest | None:
        """Record an upsert; return the enrichment request to enqueue, if the content changed."""
        digest = item.content_hash()
        if self.hashes.get(item.item) == digest:
            return None
        self.hashes[item.item] = digest
        return EnrichRequest.for_item(item, now)

    def delete(self, item: str) -> None:
        self.hashes.pop(item, None)

    def known(self, item: str) -> bool:
        """Did the catalogue announce ``item`` (and not delete it since)?"""
        return item in self.hashes

    def is_current(self, item: str, content_hash: str) -> bool:
        """Does an enrichment computed for ``content_hash`` describe the item as it is now?

        Items the catalogue never announced (enrichments published directly) are accepted.
        """
        known = self.hashes.get(item)
        return known is None or known == content_hash
