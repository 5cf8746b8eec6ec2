"""Tags inside the recommender: each item's LLM tags, each user's decayed tag profile.

The tag worker publishes ``ItemTags`` records (``(tag, score)`` pairs); :class:`TagModel` keeps
them as unit vectors over a growing vocabulary with postings lists (tag -> rows), so scoring a
user touches only the items sharing a tag with their profile, never the whole catalogue.

A user's profile is the sum of the (unit) tag vectors of the items they interacted with, halving
an item's say every ``tag_half_life`` tagged interactions. The decay is lazy: instead of scaling
every weight down at each event, the new item is added scaled *up* by ``2 ** (n / half_life)``;
the growth is folded back (and the profile pruned to ``max_user_tags``) before it can overflow.

Scoring weighs each profile tag by its idf, ``log(1 + tagged items / items with the tag)``, so a
tag every item has ("drama") says less than a rare one ("heist"):

>>> tm = TagModel(tag_half_life=1.0, max_user_tags=8)
>>> tm.set_tags(0, [("heist", 1.0)]); tm.set_tags(1, [("heist", 1.0), ("drama", 1.0)])
>>> tm.set_tags(2, [("drama", 1.0)]); tm.set_tags(3, [("drama", 1.0)])
>>> tm.learn("ann", 1)
>>> [round(float(s), 3) for s in tm.scores("ann", 5)]   # row 4 has no tags
[1.554, 1.946, 1.198, 1.198, -inf]

The rare tag counts for more: row 0 (heist only) beats rows 2 and 3 (drama only).
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Hashable, Sequence

import numpy as np

from streamrec.streams.snapshot import pack_ids, unpack_ids
from streamrec.streams.state import grow

_RESCALE = 2.0**30  # lazily decayed tag weights are folded back before they grow past this


def unit_tags(tags: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Distinct tags with positive finite scores, scaled to unit L2 norm (first score of a tag wins).

    >>> unit_tags([("jazz", 3.0), ("live", 4.0), ("jazz", 1.0), ("bad", -1.0)])
    [('jazz', 0.6), ('live', 0.8)]
    """
    out: dict[str, float] = {}
    for tag, score in tags:
        s = float(score)
        if tag not in out and math.isfinite(s) and s > 0:
            out[str(tag)] = s
    norm = math.sqrt(sum(s * s for s in out.values()))
    return [(t, s / norm) for t, s in out.items()] if norm > 0 else []


class TagModel:
    """Item tag vectors, postings lists and user tag profiles, by item row."""

    def __init__(self, tag_half_life: float = 20.0, max_user_tags: int = 64):
        self.max_user_tags = max_user_tags
        # vocabulary, each item's unit tag vector, postings tag -> {row: score}
        self.tag_ids: dict[str, int] = {}
        self._item_tags: dict[int, tuple[tuple[int, float], ...]] = {}
        self._post: dict[int, dict[int, float]] = {}
        self._post_arr: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # cache, not state
        self._has = np.zeros(16, dtype=bool)
        # user profiles: tag -> weight scaled by growth ** n (lazy decay), and [scale, n] per user
        self._ut: dict[Hashable, dict[int, float]] = {}
        self._un: dict[Hashable, list[float]] = {}
        self._growth = 2.0 ** (1.0 / tag_half_life)

    def __bool__(self) -> bool:
        """Whether any item has tags."""
        return bool(self._item_tags)

    def set_tags(self, row: int, tags: Sequence[tuple[str, float]]) -> None:
        """Replace ``row``'s tags (an empty list removes them)."""
        if row >= len(self._has):
            self._has = grow(self._has, row + 1)
        for t, _ in self._item_tags.pop(row, ()):
            del self._post[t][row]
            self._post_arr.pop(t, None)
        pairs = []
        for tag, score in unit_tags(tags):
            t = self.tag_ids.get(tag)
            if t is None:
                t = self.tag_ids[tag] = len(self.tag_ids)
                self._post[t] = {}
            self._post[t][row] = score
            self._post_arr.pop(t, None)
            pairs.append((t, score))
        if pairs:
            self._item_tags[row] = tuple(pairs)
        self._has[row] = bool(pairs)

    def tags_of(self, row: int | None) -> list[tuple[str, float]]:
        names = list(self.tag_ids)
        return [(names[t], s) for t, s in self._item_tags.get(row, ())] if row is not None else []

    def learn(self, user: Hashable, row: int, weight: float = 1.0) -> None:
        """Fold ``row``'s tags (if any) into ``user``'s profile with ``weight``."""
        pairs = self._item_tags.get(row)
        if not pairs:
            return
        d = self._ut.get(user)
        if d is None:
            d = self._ut[user] = {}
            self._un[user] = [1.0, 0.0]
        state = self._un[user]
        scale = state[0] * self._growth
        if scale > _RESCALE:  # fold the growth back into the weights (and prune)
            for t in d:
                d[t] /= scale
            scale = 1.0
        state[0] = scale
        state[1] += 1
        w = weight * scale
        for t, s in pairs:
            d[t] = d.get(t, 0.0) + w * s
        if len(d) > 2 * self.max_user_tags:
            keep = sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_user_tags]
            self._ut[user] = dict(sorted(keep))

    def _contributions(self, user: Hashable) -> tuple[list, list] | None:
        """Each profile tag's posting rows and idf-weighted values (the one sum both
        :meth:`scores` and :meth:`sparse_scores` add up); ``None``: nothing to add."""
        d = self._ut.get(user)
        if not d:
            return None
        n_tagged = len(self._item_tags)
        keys, vals = [], []
        for t, w in d.items():
            if w <= 0:
                continue
            arr = self._post_arr.get(t)
            if arr is None:
                post = self._post[t]
                arr = self._post_arr[t] = (
                    np.fromiter(post, np.int64, len(post)),
                    np.fromiter(post.values(), np.float64, len(post)),
                )
            if len(arr[0]):
                keys.append(arr[0])
                vals.append(arr[1] * (w * math.log(1.0 + n_tagged / len(arr[0]))))
        return (keys, vals) if keys else None

    def scores(self, user: Hashable, n: int) -> np.ndarray | None:
        """Idf-weighted affinity of the user's profile to each of ``n`` rows' unit tag vectors
        (``-inf``: the item has no tags); ``None`` when the user has no tag profile."""
        parts = self._contributions(user)
        if parts is None:
            return None
        keys, vals = parts
        s = np.bincount(np.concatenate(keys), weights=np.concatenate(vals), minlength=n)[:n]
        m = min(n, len(self._has))
        has = np.zeros(n, dtype=bool)
        has[:m] = self._has[:m]
        s[~has] = -np.inf
        return s

    def sparse_scores(self, user: Hashable) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`scores` at the rows sharing a tag with the profile, ``(sorted rows, scores)``;
        every other tagged row scores 0 and an untagged one ``-inf`` (see :meth:`tagged`)."""
        parts = self._contributions(user)
        if parts is None:
            return None
        keys, vals = parts
        rows, inv = np.unique(np.concatenate(keys), return_inverse=True)
        return rows, np.bincount(inv, weights=np.concatenate(vals), minlength=len(rows))

    def tagged(self, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` have tags."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=bool)
        inside = rows < len(self._has)
        out[inside] = self._has[rows[inside]]
        return out

    # -- state ----------------------------------------------------------------------------------

    # -- partitioned state: one user at a time, by tag name (vocabularies differ by worker) --------

    def user_state(self, user: Hashable) -> tuple[dict[str, float], list[float]] | None:
        d = self._ut.get(user)
        if d is None:
            return None
        names = list(self.tag_ids)
        return {names[t]: w for t, w in d.items()}, list(self._un[user])

    def set_user_state(self, user: Hashable, weights: dict[str, float], scale: list[float]) -> None:
        d = {}
        for tag, w in weights.items():
            t = self.tag_ids.get(tag)
            if t is None:  # a tag whose items this worker has not read yet
                t = self.tag_ids[tag] = len(self.tag_ids)
                self._post[t] = {}
            d[t] = float(w)
        self._ut[user] = d
        self._un[user] = [float(scale[0]), float(scale[1])]

    def retain_users(self, keep) -> None:
        self._ut = {u: d for u, d in self._ut.items() if keep(u)}
        self._un = {u: n for u, n in self._un.items() if u in self._ut}

    def to_state(self) -> dict:
        irows = list(self._item_tags)
        ipairs = [p for r in irows for p in self._item_tags[r]]
        uusers = list(self._ut)
        upairs = [p for u in uusers for p in self._ut[u].items()]
        return {
            "tag_names": list(self.tag_ids),
            "item_tags": [np.asarray(irows, np.int64),
                          np.asarray([len(self._item_tags[r]) for r in irows], np.int64),
                          np.asarray([t for t, _ in ipairs], np.int64),
                          np.asarray([s for _, s in ipairs], np.float64)],
            "user_tags": [uusers, np.asarray([len(self._ut[u]) for u in uusers], np.int64),
                          np.asarray([t for t, _ in upairs], np.int64),
                          np.asarray([w for _, w in upairs], np.float64),
                          [self._un[u] for u in uusers]],
        }  # fmt: skip

    def users_state(self, users: list[Hashable] | None = None) -> dict:
        ut = self._ut
        ids = list(ut) if users is None else [u for u in users if u in ut]
        lens = np.fromiter((len(ut[u]) for u in ids), np.int64, len(ids))
        total = int(lens.sum())
        return {
            "ids": pack_ids(ids), "lens": lens,
            "tags": np.fromiter(chain.from_iterable(ut[u] for u in ids), np.int64, total),
            "vals": np.fromiter(chain.from_iterable(ut[u].values() for u in ids), np.float64, total),
            "scales": np.asarray([self._un[u] for u in ids], np.float64).reshape(-1, 2),
        }  # fmt: skip

    def load_users(self, state: dict) -> None:
        tags, vals, start = state["tags"].tolist(), state["vals"].tolist(), 0
        for u, k, sc in zip(unpack_ids(state["ids"]), state["lens"].tolist(), state["scales"].tolist()):
            self._ut[u] = dict(zip(tags[start : start + k], vals[start : start + k]))
            self._un[u] = [float(sc[0]), float(sc[1])]
            start += k

    def items_state(self) -> dict:
        state = self.to_state()
        del state["user_tags"]
        return state

    def load_items(self, state: dict, n_rows: int) -> None:
        users, scales = self._ut, self._un
        self.tag_ids, self._item_tags, self._post, self._post_arr = {}, {}, {}, {}
        empty = {"user_tags": [[], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), []]}
        self.load_state({**state, **empty}, n_rows)
        self._ut, self._un = users, scales

    def load_state(self, state: dict, n_rows: int) -> None:
        """Restore what :meth:`to_state` wrote (keys inside a content checkpoint)."""
        self.tag_ids = {name: t for t, name in enumerate(state["tag_names"])}
        self._post = {t: {} for t in range(len(self.tag_ids))}
        rows, lens, tags, vals = state["item_tags"]
        start = 0
        tags, vals = tags.tolist(), vals.tolist()
        for r, k in zip(rows.tolist(), lens.tolist()):
            pairs = tuple(zip(tags[start : start + k], vals[start : start + k]))
            start += k
            self._item_tags[r] = pairs
            for t, s in pairs:
                self._post[t][r] = s
        self._has = np.zeros(max(16, n_rows, max(self._item_tags, default=-1) + 1), dtype=bool)
        if self._item_tags:
            self._has[list(self._item_tags)] = True
        users, lens, tags, vals, scales = state["user_tags"]
        start = 0
        tags, vals = tags.tolist(), vals.tolist()
        for u, k, sc in zip(users, lens.tolist(), scales):
            self._ut[u] = dict(zip(tags[start : start + k], vals[start : start + k]))
            self._un[u] = [float(sc[0]), float(sc[1])]
            start += k
