"""The transitions' state apart from their learning: the pairs as additive deltas and a user's
window on its own (partitioned state), the users' windows apart from the item side (snapshots and
delta checkpoints).

Why a module of its own: what a worker exchanges with its peers and writes to a checkpoint is one
stage, learning and scoring another (as :mod:`streamrec.streams.mf_state` is for the MF);
:class:`~streamrec.streams.transitions.Transitions` takes these methods from
:class:`TransitionState` and keeps the counts and windows, which both stages read.

>>> from streamrec.streams.transitions import Transitions
>>> tr = Transitions(); tr.learn_click("ann", "a", 1.0); tr.learn_click("ann", "b", 2.0)
>>> tr.checkpointed(); tr.learn_click("bob", "a", 3.0); tr.learn_click("bob", "c", 4.0)
>>> delta = tr.items_state(changed_only=True)        # only the pairs counted since: a -> c
>>> delta["log_ts"].tolist(), delta["log_lens"].tolist()
([4.0], [1])
>>> back = Transitions.from_state(tr.to_state()); round(back.count("a", "c"), 9), back.window("bob")
(1.0, ['a', 'c'])
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Hashable

import numpy as np

from streamrec.streams.snapshot import Chunks, chunked, pack_ids, pack_rows, unpack_ids, unpack_rows


def in_time_order(rows: list[int], times: list[float]) -> tuple[list[int], list[float]]:
    """A window sorted by time, equal times in their given order (how
    :meth:`~streamrec.streams.transitions.Transitions.learn` keeps it, so the items strictly
    before an event are a prefix found by bisection).

    >>> in_time_order([7, 8, 9], [5.0, 3.0, 5.0])
    ([8, 7, 9], [3.0, 5.0, 5.0])
    """
    if all(a <= b for a, b in zip(times, times[1:])):
        return rows, times
    order = sorted(range(len(times)), key=times.__getitem__)
    return [rows[i] for i in order], [times[i] for i in order]


class TransitionState:
    """The state methods of :class:`~streamrec.streams.transitions.Transitions` (its ``_pairs``,
    ``_win``, ``_log`` and ``_sent``, set up there)."""

    # -- partitioned state: the pairs as additive deltas, a user's window on its own -------------

    def track_deltas(self) -> None:
        """From now on every learned ``a_rows -> b`` is also kept for :meth:`take_delta`."""
        if self._sent is None:
            self._sent = []

    def take_delta(self) -> list[tuple[list[int], int, float]]:
        out, self._sent = self._sent or [], [] if self._sent is not None else None
        return out

    def add_delta(self, entries) -> None:
        """Count another worker's ``(a_rows, b, ts)`` entries (order does not matter: see add_pairs)."""
        for a_rows, b, ts in entries:
            self.add_pairs(a_rows, b, ts)

    def user_state(self, user: Hashable) -> tuple[list[int], list[float]] | None:
        win = self._win.get(user)
        return None if win is None else (list(win[0]), list(win[1]))

    def set_user_state(self, user: Hashable, rows: list[int], times: list[float]) -> None:
        self._win[user] = in_time_order(list(rows), [float(t) for t in times])

    def retain_users(self, keep) -> None:
        self._win = {u: w for u, w in self._win.items() if keep(u)}

    # -- state ----------------------------------------------------------------------------------

    def _clock_state(self) -> dict:
        n, pairs = len(self.index), self._pairs
        pairs.fold()
        out, inn = np.zeros(n), np.zeros(n)
        o, i = pairs.out[:n], pairs.inn[:n]
        out[: len(o)], inn[: len(i)] = o, i
        return {"config": asdict(self.config), "out": out, "in": inn,
                "ref": self._ref, "now": self.now, "touched": np.flatnonzero(pairs.touched).astype(np.int64),
                "since_sweep": self._since_sweep}  # fmt: skip

    def users_state(self, users: list[Hashable] | None = None) -> dict:
        win = self._win
        ids = list(win) if users is None else [u for u in users if u in win]
        rows = [win[u][0] for u in ids]
        lens = np.fromiter(map(len, rows), np.int64, len(rows))
        return {"ids": pack_ids(ids), "rows": pack_rows(rows, lens),
                "times": chunked(np.float64, [win[u][1] for u in ids], lens)}  # fmt: skip

    def load_users(self, state: dict) -> None:
        t = np.asarray(state["times"], np.float64)
        times, ends = t.tolist(), np.cumsum(state["rows"]["lens"])
        # windows are kept in time order; a checkpoint from before that rule may hold arrival order
        fix = set(np.searchsorted(ends, np.flatnonzero(np.diff(t) < 0), side="right").tolist())
        start = 0
        for u, (user, rows) in enumerate(zip(unpack_ids(state["ids"]), unpack_rows(state["rows"]))):
            ts = times[start : start + len(rows)]
            self._win[user] = in_time_order(rows, ts) if u in fix else (rows, ts)
            start += len(rows)

    def items_state(self, changed_only: bool = False) -> dict:
        """The item side; with ``changed_only`` (after :meth:`checkpointed`) the pairs counted
        since, in order: an event adds pairs to ``window`` rows, so rows written whole would hold
        most of the catalogue after a few thousand events where the pairs take a few bytes each."""
        if changed_only and self._log is not None:
            log = self._log
            one = np.fromiter((type(b) is int for _, b, _ in log), bool, len(log))
            lens = np.fromiter((len(a) for a, _, _ in log), np.int64, len(log))
            blens = np.where(one, 1, lens)
            return {"config": asdict(self.config), "now": self.now, "log_one": one, "log_lens": lens,
                    "log_a": chunked(np.int32, [a for a, _, _ in log], lens),
                    "log_b": chunked(np.int32, [[b] if o else b for (_, b, _), o in zip(log, one.tolist())], blens),
                    "log_ts": np.fromiter((t for _, _, t in log), np.float64, len(log))}  # fmt: skip
        pairs = self._pairs
        rows, lens = pairs.live_rows()
        total = int(lens.sum())
        return {**self._clock_state(), "rows": rows, "lens": lens,  # the entries streamed, a block of rows at a time
                "keys": Chunks(np.int32, total, lambda: (b for _, b, _ in pairs.entry_blocks())),
                "vals": Chunks(np.float64, total, lambda: (v for _, _, v in pairs.entry_blocks()))}  # fmt: skip

    def checkpointed(self) -> None:
        self._log = []

    def load_items(self, state: dict) -> None:
        """The item side of :meth:`items_state` (each row's entries in insertion order); a delta's
        pairs are counted again on top of the state they followed."""
        if "log_a" in state:
            a, b = state["log_a"].tolist(), state["log_b"].tolist()
            i = j = 0
            for one, n, ts in zip(state["log_one"].tolist(), state["log_lens"].tolist(), state["log_ts"].tolist()):
                self.add_pairs(a[i : i + n], b[j] if one else b[j : j + n], ts)
                i, j = i + n, j + (1 if one else n)
            self.now = state["now"]
            return
        self._pairs.load(state["rows"], state["lens"], state["keys"], state["vals"], state["out"], state["in"],
                         state["touched"])  # fmt: skip
        self._ref, self.now = state["ref"], state["now"]
        self._since_sweep = int(state["since_sweep"])

    def to_state(self, with_index: bool = True) -> dict:
        rows, lens, keys, vals = self._pairs.entries()
        wins = list(self._win.items())
        wl = np.fromiter((len(w[0]) for _, w in wins), np.int64, len(wins))
        return {**self._clock_state(), "items": list(self.index.items) if with_index else None,
                "rows": rows, "lens": lens, "keys": keys, "vals": vals,
                "users": [u for u, _ in wins], "win_lens": wl,
                "win_rows": np.fromiter((r for _, w in wins for r in w[0]), np.int64, int(wl.sum())),
                "win_times": np.fromiter((t for _, w in wins for t in w[1]), np.float64, int(wl.sum()))}  # fmt: skip
