"""The content model's state: checkpoints (whole, or users apart from items with only the changed
embeddings) and partitioned state (one user's profile at a time, moved with their partition).

Why a module of its own: what is durable, and how it is cut for incremental checkpoints and
rebalances, changes for other reasons than how profiles are learned or scored
(:mod:`streamrec.streams.content`). Profile rows go apart from the item side, so a delta
checkpoint carries the changed users and the embeddings set since the last one, not the catalogue.

>>> from streamrec.streams.content import ContentConfig, ContentModel
>>> cm = ContentModel(ContentConfig())
>>> cm.set_embedding(cm.index.add("a"), [1.0, 0.0]); cm.learn("ann", 0)
>>> other = ContentModel(ContentConfig()); other.load_items(cm.items_state())
>>> other.set_user_state("ann", cm.user_state("ann")); other.profile("ann").tolist()
[1.0, 0.0]
"""

from __future__ import annotations

from typing import Hashable

import numpy as np

from streamrec.streams.snapshot import pack_ids, unpack_ids
from streamrec.streams.state import ItemIndex, grow, key_rows


class ContentState:
    """Snapshots and partitioned state of :class:`~streamrec.streams.content.ContentModel` (a base
    class: it reads and restores the model's arrays)."""

    def user_state(self, user: Hashable) -> dict | None:
        u = self.users.get(user)
        tags = self.tags.user_state(user)
        if u is None and tags is None:
            return None
        P = self._P[u].copy() if u is not None and self.dim else None
        return {"P": P, "n": int(self._pn[u]) if u is not None else 0, "tags": tags}

    def set_user_state(self, user: Hashable, state: dict) -> None:
        if state["P"] is not None and self.dim:
            u = self._profile_row(user)
            self._P[u] = state["P"]
            self._pn[u] = state["n"]
            self.ann.user_changed(u)
        if state["tags"] is not None:
            self.tags.set_user_state(user, *state["tags"])

    def retain_users(self, keep) -> None:
        """Drop the profiles of users for whom ``keep(user)`` is false (rows compacted)."""
        kept = [(user, u) for user, u in self.users.items() if keep(user)]
        rows = np.asarray([u for _, u in kept], dtype=np.int64)
        self._P, self._pn = grow(self._P[rows], 16), grow(self._pn[rows], 16)
        self.users = {user: k for k, (user, _) in enumerate(kept)}
        self._user_ids = [user for user, _ in kept]
        self.ann.users_moved()
        self.tags.retain_users(keep)

    def users_state(self, users: list[Hashable] | None = None) -> dict:
        if users is None:
            nu = len(self.users)
            ids, r = list(self._user_ids), slice(0, nu)
        else:
            rows = sorted(u for u in map(self.users.get, users) if u is not None)
            ids, r = [self._user_ids[u] for u in rows], np.asarray(rows, dtype=np.int64)
        return {"ids": pack_ids(ids), "P": self._P[r] if self.dim else None, "pn": self._pn[r],
                "tags": self.tags.users_state(users)}  # fmt: skip

    def load_users(self, state: dict) -> None:
        rows = key_rows(self.users, unpack_ids(state["ids"]), self._user_ids.append)
        n = len(self.users)
        if self.dim:
            if self._P.shape[1] != self.dim:
                self._P = np.zeros((max(16, n), self.dim), dtype=np.float32)
            self._P = grow(self._P, n)
            self._P[rows] = state["P"].reshape(-1, self.dim)
        self._pn = grow(self._pn, n)
        self._pn[rows] = state["pn"]
        self.tags.load_users(state["tags"])

    def items_state(self, changed_only: bool = False) -> dict:
        """The item side; with ``changed_only`` only the embeddings set since :meth:`checkpointed`."""
        n = len(self.index)
        self._rows(n)
        E: dict | None = None
        if self.dim:
            if changed_only:
                rows = np.asarray(sorted(self._E_changed), dtype=np.int64)
                E = {"rows": rows, "vals": self._E[rows]}
            else:
                E = {"all": self._E[:n]}
        return {"dim": self.dim, "E": E, "has": self._has[:n], "born": self._born[:n], "now": self.now,
                "tags": self.tags.items_state()}  # fmt: skip

    def load_items(self, state: dict) -> None:
        self.dim = dim = state["dim"]
        n = len(state["has"])
        self._has = grow(state["has"], 16)
        self._born = grow(state["born"], 16, fill=np.nan)
        self.now = state["now"]
        self.n_embedded = int(self._has.sum())
        if dim:
            E = state["E"]
            if "all" in E:
                self._E = grow(E["all"].reshape(-1, dim), len(self._has))
            else:
                if self._E.shape[1] != dim:
                    self._E = np.zeros((len(self._has), dim), dtype=np.float32)
                self._E = grow(self._E, max(n, len(self._has)))
                self._E[E["rows"]] = E["vals"].reshape(-1, dim)
            if self._P.shape[1] != dim:
                self._P = np.zeros((max(16, len(self._pn)), dim), dtype=np.float32)
        else:
            self._E = np.zeros((len(self._has), 0), dtype=np.float32)
        self.tags.load_items(state["tags"], len(self._has))

    def checkpointed(self) -> None:
        """A snapshot was made durable: changes are counted from here."""
        self._E_changed = set()

    def to_state(self) -> dict:
        n = len(self.index)
        self._rows(n)
        nu = len(self.users)
        return {
            "dim": self.dim,
            "E": self._E[:n] if self.dim else None,
            "has": self._has[:n], "born": self._born[:n], "now": self.now,
            "users": list(self.users),
            "P": self._P[:nu] if self.dim else None, "pn": self._pn[:nu],
            **self.tags.to_state(),
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict | None, config: ContentConfig, index: ItemIndex) -> ContentModel:
        self = cls(config, index)
        if not state:  # a checkpoint from before content existed
            return self
        self.dim = dim = state["dim"]
        self._has = grow(state["has"].copy(), 16)
        self._born = grow(state["born"].copy(), 16, fill=np.nan)
        self.now = state["now"]
        self.n_embedded = int(self._has.sum())
        if dim:
            self._E = grow(state["E"].reshape(-1, dim).copy(), len(self._has))
            self._P = grow(state["P"].reshape(-1, dim).copy(), 16)
        else:
            self._E = np.zeros((len(self._has), 0), dtype=np.float32)
        for u in state["users"]:
            self.users[u] = len(self.users)
        self._user_ids = list(state["users"])
        self._pn = grow(state["pn"].copy(), len(self._P))
        self.tags.load_state(state, len(self._has))
        return self
