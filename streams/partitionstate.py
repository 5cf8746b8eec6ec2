"""The recommender's partitioned state (see :mod:`streamrec.streams.partitioned`): a user's whole
record, moved with their partition, and the item-side deltas the workers exchange.

Why a module of its own: with ``STREAMREC_STATE=partitioned`` each worker holds its partitions'
users and every item; what crosses between workers (one user's record, the item-side learning of
an interval with items by id) is cut here, apart from how the model learns and ranks
(:mod:`streamrec.streams.recommender`) and from checkpoints (:mod:`streamrec.streams.recommenderstate`).

>>> from streamrec.streams.recommender import Recommender
>>> a, b = Recommender(seed=1), Recommender(seed=1)
>>> a.learn_click("ann", "x", ts=0.0); a.learn_click("ann", "y", ts=1.0)
>>> b.load_user_record("ann", a.user_record("ann")); sorted(b.seen("ann")), b.n_learned("ann")
(['x', 'y'], 2)
"""

from __future__ import annotations

from typing import Hashable

import numpy as np


class PartitionState:
    """A user's record and the item-side deltas of :class:`~streamrec.streams.recommender.Recommender`
    (a base class: it reads and restores the model's parts, seen sets and counts)."""

    def user_record(self, user: Hashable) -> dict | None:
        """Everything the model holds about ``user`` (items by id), to move it to another worker."""
        seen = self._seen.get(user)
        if seen is None:
            return None
        items = self.index.items
        mf, trans = self.mf.user_state(user), self.transitions.user_state(user)
        return {"seen": [items[r] for r in seen], "n": self._learned.get(user, 0),
                "mf": mf, "hist": [items[r] for r in self.cooccur.history_rows(user)],
                "content": self.content.user_state(user),
                "trans": None if trans is None else [[items[r] for r in trans[0]], trans[1]]}  # fmt: skip

    def load_user_record(self, user: Hashable, record: dict) -> None:
        add = self.index.add
        self._seen[user] = dict.fromkeys(add(i) for i in record["seen"])
        self._learned[user] = int(record["n"])
        if record["mf"] is not None:
            self.mf.set_user_state(user, *record["mf"])
        self.cooccur.set_history(user, [add(i) for i in record["hist"]])
        if record["content"] is not None:
            self.content.set_user_state(user, record["content"])
        if record.get("trans") is not None:
            self.transitions.set_user_state(user, [add(i) for i in record["trans"][0]], record["trans"][1])
        self._dirty.add(user)

    def retain_users(self, keep) -> None:
        """Forget every user for whom ``keep(user)`` is false (their partition moved away)."""
        self._seen = {u: s for u, s in self._seen.items() if keep(u)}
        self._learned = {u: n for u, n in self._learned.items() if u in self._seen}
        self._dirty = {u for u in self._dirty if u in self._seen}
        self.mf.retain_users(keep)
        self.cooccur.retain_users(keep)
        self.content.retain_users(keep)
        self.transitions.retain_users(keep)

    @property
    def n_users(self) -> int:
        return len(self._seen)

    def seen_users(self) -> list[Hashable]:
        """Every user the model holds."""
        return list(self._seen)

    def track_item_deltas(self) -> None:
        """Item-side learning is applied here at once and also kept for :meth:`take_item_delta`,
        which the other workers apply through :meth:`add_item_delta` (each event counted once by
        every worker: immediately by its learner, from the delta log by the others)."""
        self.mf.track_deltas()
        self.cooccur.track_deltas()
        self.popularity.track_deltas()
        self.transitions.track_deltas()

    def take_item_delta(self) -> dict | None:
        """The item-side change learned since the last call, with items by id; ``None``: none.
        Flat arrays of positions into ``items`` (cheap to decode on every worker)."""
        rows, change = self.mf.take_delta()
        pairs, pops = self.cooccur.take_delta(), self.popularity.take_delta()
        trans = self.transitions.take_delta()
        if not len(rows) and not pairs and not pops and not trans:
            return None
        used: dict[int, int] = {}
        ref = used.setdefault
        refs = lambda rs: np.fromiter((ref(r, len(used)) for r in rs), np.int32)  # noqa: E731
        return {"mf_rows": refs(rows.tolist()), "mf": change,
                "pj": refs(j for j, _ in pairs), "plen": np.fromiter((len(w) for _, w in pairs), np.int32),
                "ph": refs(h for _, w in pairs for h in w),
                "pop_rows": refs(r for r, _ in pops),
                "pop_ts": np.asarray([np.nan if t is None else t for _, t in pops], np.float64),
                "ta": refs(a for a_rows, _, _ in trans for a in a_rows),
                "tlen": np.fromiter((len(a_rows) for a_rows, _, _ in trans), np.int32),
                "tb": refs(b for _, b, _ in trans), "tts": np.asarray([t for _, _, t in trans], np.float64),
                "items": [self.index.items[r] for r in used]}  # fmt: skip

    def add_item_delta(self, delta: dict) -> None:
        """Apply another worker's delta of :meth:`take_item_delta`."""
        rows = self.index.add_many(delta["items"])
        if len(delta["mf_rows"]):
            self.mf.add_delta(rows[delta["mf_rows"]], delta["mf"])
        self.cooccur.add_delta(rows[delta["pj"]].tolist(), delta["plen"].tolist(), rows[delta["ph"]].tolist())
        ts = delta["pop_ts"]
        self.popularity.add_delta(rows[delta["pop_rows"]].tolist(),
                                  [None if t != t else t for t in ts.tolist()])  # fmt: skip
        if "tb" in delta and len(delta["tb"]):
            a_rows, start, entries = rows[delta["ta"]].tolist(), 0, []
            for n, b, t in zip(delta["tlen"].tolist(), rows[delta["tb"]].tolist(), delta["tts"].tolist()):
                entries.append((a_rows[start : start + n], b, t))
                start += n
            self.transitions.add_delta(entries)
