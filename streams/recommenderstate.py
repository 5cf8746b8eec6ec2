"""The recommender's checkpoints: a whole state (format 1, ``to_bytes``) and snapshot documents
(format 2, whole or by changed users, see :mod:`streamrec.streams.snapshot`).

Why a module of its own: what is durable, and how it is cut for incremental checkpoints, changes
for other reasons than how the model learns or ranks (:mod:`streamrec.streams.recommender`). A
delta carries the users learned from since :meth:`RecommenderState.checkpointed`, the items added
and the item rows that changed; it is applied on top of the snapshots before it.

>>> from streamrec.streams.recommender import Recommender
>>> rec = Recommender(seed=1); rec.learn_click("ann", "x", ts=0.0)
>>> Recommender.from_bytes(rec.to_bytes()).n_learned("ann")
1
>>> rec.checkpointed(); rec.learn_click("bob", "x", ts=1.0)
>>> rec.n_changed_users, rec.snapshot(delta=True)["delta"]
(1, True)
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Sequence

import numpy as np

from streamrec.streams.content import ContentModel
from streamrec.streams.cooccur import Cooccurrence
from streamrec.streams.popularity import Popularity
from streamrec.streams.model import OnlineMF
from streamrec.streams.blendlearner import BlendLearner
from streamrec.streams.recommenderconfig import RecommenderConfig
from streamrec.streams.snapshot import pack_ids, pack_rows, unpack_ids, unpack_rows
from streamrec.streams.state import FORMAT, ItemIndex, dumps, grow, loads
from streamrec.streams.transitions import Transitions

if TYPE_CHECKING:  # pragma: no cover
    from streamrec.streams.recommender import Recommender

#: the snapshot document's format (``to_bytes`` checkpoints are ``FORMAT``, still readable)
SNAPSHOT_FORMAT = 2


class RecommenderState:
    """Checkpoints of :class:`~streamrec.streams.recommender.Recommender` (a base class: it reads
    and restores the model's parts, seen sets and counts)."""

    def to_state(self) -> dict:
        return {
            "config": asdict(self.config),
            "items": list(self.index.items),
            "available": self.allowed(),
            "mf": self.mf.to_state(with_index=False),
            "cooccur": self.cooccur.to_state(with_index=False),
            "popularity": self.popularity.to_state(with_index=False),
            "transitions": self.transitions.to_state(with_index=False),
            "seen": {u: list(s) for u, s in self._seen.items()},
            "learned": self._learned,
            "content": self.content.to_state(),
            "blend": self.blend.to_state() if self.blend is not None else None,
        }

    @classmethod
    def from_state(cls, state: dict) -> Recommender:
        self = cls(RecommenderConfig.from_dict(state["config"]))
        self.index = index = ItemIndex(state["items"])
        self.mf = OnlineMF.from_state(state["mf"], index)
        self.cooccur = Cooccurrence.from_state(state["cooccur"], index)
        self.popularity = Popularity.from_state(state["popularity"], index)
        if state.get("transitions") is not None:  # checkpoints from before transitions have none
            self.transitions = Transitions.from_state(state["transitions"], index)
        else:
            self.transitions = Transitions(self.config.transitions, index)
        self._available = grow(state["available"].copy(), 16, fill=True)
        self._seen = {u: dict.fromkeys(rows) for u, rows in state["seen"].items()}
        self._learned = dict(state["learned"])
        self.content = ContentModel.from_state(state.get("content"), self.config.content, index)
        if self.blend is not None:
            self.blend = BlendLearner.from_state(state.get("blend"), self.config.learn_blend)
        return self

    def to_bytes(self) -> bytes:
        return dumps({"kind": self.KIND, "format": FORMAT, "state": self.to_state()})

    @classmethod
    def from_bytes(cls, data: bytes) -> Recommender:
        doc = loads(data)
        if doc.get("kind") != cls.KIND or doc.get("format") != FORMAT:
            raise ValueError(f"not a {cls.KIND} checkpoint (format {FORMAT})")
        return cls.from_state(doc["state"])

    # -- snapshots: checkpoint format 2 (see streams/snapshot.py), whole or by changed users ------

    def snapshot(self, delta: bool = False, with_users: bool = True) -> dict:
        """The state as a snapshot document: whole, or with ``delta`` only what changed since
        :meth:`checkpointed`: the users learned from, the items added, and the item rows whose
        neighbours, transitions, factors, counts or embeddings changed (a delta is applied on top
        of the snapshots before it; :attr:`needs_full` says when one cannot describe the change)."""
        if delta and self._need_full:
            raise ValueError("a full snapshot is needed (embeddings were reset)")
        users = sorted(self._dirty, key=self.mf.users.__getitem__) if delta else None
        if not with_users:  # the item side alone (partitioned state: for workers with no checkpoint)
            users = []
        ids = list(self._seen) if users is None else [u for u in users if u in self._seen]
        learned = self._learned
        first = min(self._ck_items, len(self.index)) if delta else 0  # ids of the items added since
        return {
            "kind": self.KIND, "format": SNAPSHOT_FORMAT, "delta": delta,
            "config": asdict(self.config), "items": pack_ids(self.index.items[first:]), "items_from": first,
            "available": self.allowed(),
            "mf": self.mf.items_state(changed_only=delta), "cooccur": self.cooccur.items_state(changed_only=delta),
            "popularity": self.popularity.items_state(changed_only=delta),
            "transitions": self.transitions.items_state(changed_only=delta),
            "content": self.content.items_state(changed_only=delta),
            "blend": self.blend.to_state() if self.blend is not None else None,
            "users": {"ids": pack_ids(ids), "seen": pack_rows([self._seen[u] for u in ids]),
                      "learned": np.fromiter((learned.get(u, 0) for u in ids), np.int64, len(ids)),
                      "mf": self.mf.users_state(users), "cooccur": self.cooccur.users_state(users),
                      "transitions": self.transitions.users_state(users),
                      "content": self.content.users_state(users)},
        }  # fmt: skip

    @property
    def needs_full(self) -> bool:
        return self._need_full

    @property
    def n_changed_users(self) -> int:
        """Users learned from since the last :meth:`checkpointed`."""
        return len(self._dirty)

    def checkpointed(self) -> None:
        """The last :meth:`snapshot` is durable: count changes from here."""
        self._dirty = set()
        self._need_full = False
        self.content.checkpointed()
        for part in (self.mf, self.cooccur, self.popularity, self.transitions):
            part.checkpointed()
        self._ck_items = len(self.index)

    @classmethod
    def from_checkpoint(cls, model) -> Recommender:
        """The model of a loaded checkpoint: format-2 snapshots (``base`` and ``deltas``) or
        format-1 bytes (:meth:`from_bytes`)."""
        if isinstance(model, (bytes, bytearray)):
            return cls.from_bytes(model)
        return cls.from_snapshots(model.base, model.deltas)

    @classmethod
    def from_snapshots(cls, base: dict, deltas: Sequence[dict] = ()) -> Recommender:
        """The model a full snapshot and the deltas after it describe."""
        if base.get("kind") != cls.KIND or base.get("format") != SNAPSHOT_FORMAT or base.get("delta"):
            raise ValueError(f"not a full {cls.KIND} snapshot (format {SNAPSHOT_FORMAT})")
        self = cls(RecommenderConfig.from_dict(base["config"]))
        for doc in (base, *deltas):
            self._load(doc)
        self.checkpointed()  # the model is what the checkpoint holds: later deltas count from it
        return self

    def load_snapshot(self, doc: dict) -> None:
        """Apply a snapshot document on top of this model (a fresh one: the state it describes)."""
        self._load(doc)

    def _load(self, doc: dict) -> None:
        if doc.get("kind") != self.KIND or doc.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"not a {self.KIND} snapshot (format {SNAPSHOT_FORMAT})")
        self.config = cfg = RecommenderConfig.from_dict(doc["config"])
        first = doc.get("items_from", 0)  # a delta names the items added since the snapshot before
        if first > len(self.index):
            raise ValueError(f"a snapshot starting at item {first} on a model of {len(self.index)} items")
        for item in unpack_ids(doc["items"])[len(self.index) - first :]:
            self.index.add(item)
        self._available = grow(doc["available"], 16, fill=True)
        self.mf.load_items(doc["mf"])
        self.cooccur.load_items(doc["cooccur"])
        if isinstance(doc["popularity"]["counts"], dict):  # a delta's changed counts
            self.popularity.load_items(doc["popularity"])
        else:
            self.popularity = Popularity.from_state(doc["popularity"], self.index)
        if "transitions" in doc:  # snapshots from before transitions have none
            self.transitions.load_items(doc["transitions"])
        self.content.load_items(doc["content"])
        if self.blend is not None:
            self.blend = BlendLearner.from_state(doc.get("blend"), cfg.learn_blend)
        u = doc["users"]
        for user, rows, n in zip(unpack_ids(u["ids"]), unpack_rows(u["seen"]), u["learned"].tolist()):
            self._seen[user] = dict.fromkeys(rows)
            self._learned[user] = n
        self.mf.load_users(u["mf"])
        self.cooccur.load_users(u["cooccur"])
        if "transitions" in u:
            self.transitions.load_users(u["transitions"])
        self.content.load_users(u["content"])
