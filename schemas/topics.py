"""Topic names and their shape, defined once.

Every name takes an optional prefix so several tenants can share one cluster. Clicks and ratings
are keyed by user so one user's events stay ordered on one partition; the item topics are keyed by
item and compacted, because only the latest version of an item (or of its enrichment) matters.

>>> Topics().clicks
'events.clicks'
>>> Topics(prefix="shop1.").ratings
'shop1.events.ratings'
>>> sorted(t.name for t in Topics().specs() if t.compacted)
['catalog.items', 'items.embeddings', 'items.tags']
"""

from __future__ import annotations

from dataclasses import dataclass

CLICKS = "events.clicks"
RATINGS = "events.ratings"
ITEMS = "catalog.items"
ENRICH = "items.enrich"
EMBEDDINGS = "items.embeddings"
TAGS = "items.tags"
DEADLETTER = "events.deadletter"

#: base name -> (compacted, what the key is)
LAYOUT: dict[str, tuple[bool, str]] = {
    CLICKS: (False, "user id"),
    RATINGS: (False, "user id"),
    ITEMS: (True, "item id"),
    ENRICH: (False, "item id"),
    EMBEDDINGS: (True, "item id"),
    TAGS: (True, "item id"),
    DEADLETTER: (False, "original key"),
}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    compacted: bool

    def config(self) -> dict[str, str]:
        """Topic-level configs given to the AdminClient on creation."""
        if self.compacted:
            return {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
        return {"cleanup.policy": "delete"}


@dataclass(frozen=True, slots=True)
class Topics:
    """The resolved topic names for one deployment."""

    prefix: str = ""

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def clicks(self) -> str:
        return self.name(CLICKS)

    @property
    def ratings(self) -> str:
        return self.name(RATINGS)

    @property
    def items(self) -> str:
        return self.name(ITEMS)

    @property
    def enrich(self) -> str:
        return self.name(ENRICH)

    @property
    def embeddings(self) -> str:
        return self.name(EMBEDDINGS)

    @property
    def tags(self) -> str:
        return self.name(TAGS)

    @property
    def deadletter(self) -> str:
        return self.name(DEADLETTER)

    def specs(self, partitions: int = 6, replication: int = 1) -> list[TopicSpec]:
        return [
            TopicSpec(self.name(base), partitions, replication, compacted)
            for base, (compacted, _key) in LAYOUT.items()
        ]
