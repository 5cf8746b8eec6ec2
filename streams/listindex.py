"""Which items each user's last written list holds, so a delete reaches every list that shows it.

Why: a deleted item is filtered out of every list computed after the delete, but lists are only
recomputed for users who were active; an inactive user's list would show the item until its TTL.
So the worker remembers, for every user whose list it wrote, the items of that list, and on a delete
owes a fresh list to each user holding the item, active or not.

Why this shape: one ``int32`` matrix, a row per user and a column per list position (``-1``
empty), with items as small integer codes. That is 4 bytes a listed item (200 bytes a user at
``top_k`` 50), saved in the checkpoint as raw bytes, and "who holds item X" is one vectorised
comparison over the matrix (a few milliseconds for 100k users) that only deletes pay for. A
per-item set of users would cost tens of bytes a listed item in Python objects, on every write.

>>> ix = ListIndex(k=3)
>>> ix.record("u1", ["a", "b"]); ix.record("u2", ["b", "c"]); ix.record("u3", ["c"])
>>> ix.holders("b"), ix.holders("zzz")
(['u1', 'u2'], [])
>>> ix.record("u1", ["c"]); ix.forget("u2"); ix.holders("b"), ix.holders("c")
([], ['u1', 'u3'])
>>> again = ListIndex.from_meta(ix.to_meta(), k=2)
>>> again.holders("c"), len(again)
(['u1', 'u3'], 2)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np


class ListIndex:
    def __init__(self, k: int):
        self.k = k
        self._rows = np.full((16, k), -1, dtype=np.int32)
        self._user_row: dict[Hashable, int] = {}
        self._row_user: list[Hashable | None] = []
        self._free: list[int] = []
        self._codes: dict[Hashable, int] = {}
        self._items: list[Hashable] = []

    def __len__(self) -> int:
        return len(self._user_row)

    def _code(self, item: Hashable) -> int:
        code = self._codes.get(item)
        if code is None:
            code = self._codes[item] = len(self._items)
            self._items.append(item)
        return code

    def record(self, user: Hashable, items: Iterable[Hashable]) -> None:
        """``user``'s list now holds ``items`` (the first ``k`` are kept)."""
        row = self._user_row.get(user)
        if row is None:
            if self._free:
                row = self._free.pop()
                self._row_user[row] = user
            else:
                row = len(self._row_user)
                self._row_user.append(user)
                if row >= len(self._rows):
                    grown = np.full((2 * len(self._rows), self.k), -1, dtype=np.int32)
                    grown[: len(self._rows)] = self._rows
                    self._rows = grown
            self._user_row[user] = row
        codes = [self._code(i) for i in items][: self.k]
        self._rows[row] = -1
        self._rows[row, : len(codes)] = codes

    def forget(self, user: Hashable) -> None:
        """``user`` has no personal list any more."""
        row = self._user_row.pop(user, None)
        if row is not None:
            self._rows[row] = -1
            self._row_user[row] = None
            self._free.append(row)

    def holders(self, item: Hashable) -> list[Hashable]:
        """The users whose last written list holds ``item``."""
        code = self._codes.get(item)
        if code is None:
            return []
        n = len(self._row_user)
        rows = np.flatnonzero((self._rows[:n] == code).any(axis=1))
        return [self._row_user[r] for r in rows.tolist()]

    # ------------------------------------------------------------ checkpoint

    def to_meta(self) -> dict:
        n = len(self._row_user)
        return {"k": self.k, "users": list(self._row_user), "items": list(self._items),
                "rows": self._rows[:n].astype("<i4").tobytes()}  # fmt: skip

    @classmethod
    def from_meta(cls, meta: dict | None, k: int) -> ListIndex:
        """Restore (``meta`` from :meth:`to_meta`, or None); a different ``k`` pads or cuts rows."""
        self = cls(k)
        if not meta:
            return self
        users, old_k = list(meta["users"]), int(meta["k"])
        rows = np.frombuffer(meta["rows"], dtype="<i4").reshape(len(users), old_k)
        self._items = list(meta["items"])
        self._codes = {item: code for code, item in enumerate(self._items)}
        self._rows = np.full((max(16, len(users)), k), -1, dtype=np.int32)
        width = min(k, old_k)
        self._rows[: len(users), :width] = rows[:, :width]
        self._row_user = users
        for row, user in enumerate(users):
            if user is None:
                self._free.append(row)
            else:
                self._user_row[user] = row
        return self
