"""The online MF's state apart from its learning: one user at a time and the item side as
additive deltas (partitioned state), user rows apart from the rest (snapshots and delta
checkpoints).

Why a module of its own: what a worker exchanges with its peers and writes to a checkpoint is
one stage, learning and scoring another; :class:`~streamrec.streams.model.OnlineMF` takes these
methods from :class:`MFState` and keeps its factor matrices, which both stages read.

>>> from streamrec.streams.model import MFConfig, OnlineMF
>>> mf = OnlineMF(MFConfig(n_factors=2, n_negatives=0)); mf.track_deltas()
>>> mf.learn_one("ann", "a", 1.0); rows, change = mf.take_delta()
>>> rows.tolist(), change.shape, mf.take_delta()[0].tolist()   # the draw is no change, the step is
([0], (1, 2), [])
"""

from __future__ import annotations

from typing import Hashable

import numpy as np

from streamrec.streams.itemdelta import apply_rows, rows_of
from streamrec.streams.snapshot import pack_ids, unpack_ids
from streamrec.streams.state import grow, key_rows


class MFState:
    """Partitioned-state and snapshot methods of :class:`~streamrec.streams.model.OnlineMF`."""

    # -- partitioned state: one user at a time, the item side as additive deltas -----------------

    def user_state(self, user: Hashable) -> tuple[np.ndarray, float] | None:
        """``user``'s factor row and bias (copies); ``None`` if never learned."""
        u = self.users.get(user)
        return None if u is None else (self._P[u].astype(np.float32), float(self._bu[u]))

    def set_user_state(self, user: Hashable, factors: np.ndarray, bias: float) -> None:
        u = self.users.get(user)
        if u is None:
            u = self.users[user] = len(self.users)
            self._P, self._bu = grow(self._P, u + 1), grow(self._bu, u + 1)
        self._P[u] = factors
        self._bu[u] = bias

    def retain_users(self, keep) -> None:
        """Drop every user for whom ``keep(user)`` is false; the factor rows are compacted."""
        kept = [(user, u) for user, u in self.users.items() if keep(user)]
        rows = np.asarray([u for _, u in kept], dtype=np.int64)
        self._P, self._bu = grow(self._P[rows], 16), grow(self._bu[rows], 16)
        self.users = {user: k for k, (user, _) in enumerate(kept)}
        self._id_cache = None

    def track_deltas(self) -> None:
        """From now on :meth:`take_delta` returns what learning changed in the item factors."""
        if self._Qb is None:
            self._Qb = self._Q.copy()

    def _base(self, n: int) -> np.ndarray:
        if len(self._Qb) < n:
            self._Qb = grow(self._Qb, max(n, len(self._Q)))
        return self._Qb

    def take_delta(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, their factor changes) learned here since the last call."""
        n = min(len(self.index), len(self._has))
        base = self._base(n)
        d = self._Q[:n] - base[:n]
        rows = np.flatnonzero(d.any(axis=1))
        base[rows] = self._Q[rows]
        return rows, d[rows].astype(np.float32)

    def add_delta(self, rows: np.ndarray, change: np.ndarray) -> None:
        """Add another worker's item-factor changes; an item without factors gets its own draw."""
        top = int(rows.max()) + 1 if len(rows) else 0
        if top > len(self._has):
            self._item(top - 1)  # grows every array (and draws that row's factors)
        for r in rows[~self._has[rows]].tolist():
            self._item(r)
        base = self._base(len(self._Q))
        self._Q[rows] += change
        base[rows] += change

    # -- snapshots (see :mod:`streamrec.streams.snapshot`): user rows apart from the rest -----------

    def users_state(self, users: list[Hashable] | None = None) -> dict:
        """Factor rows of ``users`` (all when ``None``; unknown ones skipped), in row order."""
        if users is None:
            nu = len(self.users)
            return {"ids": pack_ids(list(self.users)), "P": self._P[:nu], "bu": self._bu[:nu]}
        rows = sorted(u for u in map(self.users.get, users) if u is not None)
        ids = [self._ids()[u] for u in rows]
        r = np.asarray(rows, dtype=np.int64)
        return {"ids": pack_ids(ids), "P": self._P[r], "bu": self._bu[r]}

    def _ids(self) -> list[Hashable]:
        cache = getattr(self, "_id_cache", None)
        if cache is None or len(cache) != len(self.users):
            cache = self._id_cache = list(self.users)
        return cache

    def load_users(self, state: dict) -> None:
        """Insert or overwrite the user rows of :meth:`users_state` (new users are appended)."""
        rows = key_rows(self.users, unpack_ids(state["ids"]))
        n = len(self.users)
        self._P, self._bu = grow(self._P, n), grow(self._bu, n)
        self._P[rows] = state["P"].reshape(-1, self.config.n_factors)
        self._bu[rows] = state["bu"]

    def items_state(self, changed_only: bool = False) -> dict:
        """Everything but the user rows: item factors, the initialiser and sampler states, config;
        with ``changed_only`` only the item rows changed since :meth:`checkpointed`."""
        state = self.to_state(with_index=False)
        for key in ("users", "P", "bu"):
            del state[key]
        state["rng"] = [state["rng"][0], np.asarray(state["rng"][1], np.int64), state["rng"][2]]
        if changed_only:
            n = len(state["has"])
            rows = self._ck.changed(n, Q=state["Q"], bi=state["bi"], has=state["has"])
            for key in ("Q", "bi", "has"):
                state[key] = rows_of(state[key], rows, n)
        return state

    def checkpointed(self) -> None:
        """The item rows as they are now are durable: :meth:`items_state` diffs against them."""
        n = min(len(self.index), len(self._has))
        self._ck.reset(Q=self._Q[:n], bi=self._bi[:n], has=self._has[:n])

    def load_items(self, state: dict) -> None:
        f = self.config.n_factors
        if isinstance(state["Q"], dict):  # a delta: the rows changed since the snapshot before
            self._Q = apply_rows(self._Q, state["Q"])
            self._has, self._bi = apply_rows(self._has, state["has"]), apply_rows(self._bi, state["bi"])
        else:
            self._Q, self._has, self._bi = state["Q"].reshape(-1, f), state["has"], state["bi"]
        self._Q, self._has, self._bi = grow(self._Q, 16), grow(self._has, 16), grow(self._bi, 16)
        self._mean_n, self._mean = state["mean"]
        key, pos, has_gauss, gauss = state["init"]
        self._init.set_state(("MT19937", np.asarray(key, np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state["rng"]
        self._rng.setstate((version, tuple(int(x) for x in internal), gauss_next))
        self._pool, self._pool_pos = [int(x) for x in state["pool"]], state["pool_pos"]
        if self._Qb is not None:  # deltas count from the loaded factors
            self._Qb = self._Q.copy()

