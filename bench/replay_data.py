"""Datasets for ``streamrec bench replay``: MovieLens (two layouts) and the synthetic generator.

Every loader returns a :class:`Dataset`: the catalogue as wire :class:`~streamrec.schemas.Item`
records (title, plus genres and, where the dataset has them, user tags as text) and the events as
:class:`Event` tuples sorted by timestamp with a stable tie-break (the order of the source file),
so the same files always give the same stream.

Layouts:

- **ml-latest-small** (and the other ``ml-latest*`` / ``ml-25m`` style exports): ``ratings.csv``
  (``userId,movieId,rating,timestamp``, UTF-8, sorted by user rather than time), ``movies.csv``
  (``movieId,title,genres`` with ``|``-separated genres) and optionally ``tags.csv``
  (``userId,movieId,tag,timestamp``): a movie's distinct user tags (case-insensitively, first
  spelling wins, in file order) are joined into its text.
- **ml-100k**: ``u.data`` (tab-separated ``user item rating timestamp``) and ``u.item``
  (latin-1, ``|``-separated: id, title, release date, video release date, IMDb URL, then 19 genre
  flags in the order of ``u.genre``).
- **synthetic**: :func:`streamrec.synth.generate`; clicks and ratings alike are interactions.

The implicit protocol: every rating, whatever its value, is an interaction; the rating is kept on
the event only for reference. Events that name an item missing from the catalogue are kept (the
model learns them like any other) and counted in :attr:`Dataset.unknown_items`.

Where the MovieLens directory is: ``--path``, else ``STREAMREC_MOVIELENS_DIR``, else
``../shared/data/ml-latest-small`` next to the repository (see :func:`default_movielens_dir`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from streamrec.schemas.events import Item

#: ml-100k's genres in flag order, used when ``u.genre`` is absent
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
NO_GENRES = "(no genres listed)"
#: at most this many user tags go into one movie's text (a handful of movies carry hundreds)
MAX_USER_TAGS = 30


class Event(NamedTuple):
    """One interaction of the replayed stream (``rating`` is None for clicks)."""

    user: str
    item: str
    ts: float
    rating: float | None = None


@dataclass
class Dataset:
    name: str
    items: list[Item]
    events: list[Event]
    #: "rating": published as Rating records; "click": as Click records (one topic either way)
    kind: str = "rating"
    unknown_items: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len({e.user for e in self.events})

    def head(self, n: int | None) -> Dataset:
        """The first ``n`` events (in time order) with the whole catalogue."""
        if n is None or n >= len(self.events):
            return self
        return Dataset(self.name, self.items, self.events[:n], self.kind, self.unknown_items,
                       {**self.meta, "limit": n})  # fmt: skip

    def summary(self) -> dict:
        return {"name": self.name, "events": len(self.events), "users": self.n_users,
                "items": len(self.items), "kind": self.kind, **self.meta}  # fmt: skip


def sort_events(events: list[Event]) -> list[Event]:
    """By timestamp; equal timestamps keep their input order (``sorted`` is stable).

    >>> [e.item for e in sort_events([Event("u", "b", 2.0), Event("u", "a", 1.0), Event("v", "c", 1.0)])]
    ['a', 'c', 'b']
    """
    return sorted(events, key=lambda e: e.ts)


def default_movielens_dir(repo_root: Path | None = None, settings=None) -> Path:
    """``STREAMREC_MOVIELENS_DIR`` if set, else ``../shared/data/ml-latest-small`` beside the repo."""
    from streamrec.settings import Settings

    configured = (settings or Settings.from_env()).movielens_dir
    if configured:
        return configured
    root = repo_root or Path(__file__).resolve().parent.parent
    return root.parent / "shared" / "data" / "ml-latest-small"


def detect_layout(path: Path) -> str:
    """``"ml-latest"`` (ratings.csv + movies.csv) or ``"ml-100k"`` (u.data + u.item)."""
    path = Path(path)
    if (path / "ratings.csv").is_file() and (path / "movies.csv").is_file():
        return "ml-latest"
    if (path / "u.data").is_file() and (path / "u.item").is_file():
        return "ml-100k"
    raise FileNotFoundError(
        f"{path} holds neither ratings.csv + movies.csv (ml-latest-small) nor u.data + u.item "
        "(ml-100k); download MovieLens from https://grouplens.org/datasets/movielens/"
    )


def load_movielens(path: Path | str, user_tags: bool = True) -> Dataset:
    path = Path(path)
    layout = detect_layout(path)
    if layout == "ml-100k":
        return load_ml100k(path)
    return load_ml_latest(path, user_tags=user_tags)


def _text(genres: list[str], tags: list[str]) -> str:
    """The text of a movie next to its title: genres, then user tags (no labels, which the tag
    worker would take for keyphrases of every movie).

    >>> _text(["Comedy", "Drama"], ["pixar", "funny"])
    'Comedy, Drama. pixar, funny.'
    >>> _text([], [])
    ''
    """
    return " ".join(", ".join(part) + "." for part in (genres, tags) if part)


def _ts_before(events: list[Event]) -> float:
    """The catalogue's timestamp: one second before the first event (the catalogue comes first)."""
    return (events[0].ts if events else 1_000_000_000.0) - 1.0


def _finish(name: str, items: list[Item], events: list[Event], kind: str, meta: dict) -> Dataset:
    known = {it.item for it in items}
    unknown = sum(1 for e in events if e.item not in known)
    return Dataset(name, items, events, kind, unknown, meta)


def load_ml_latest(path: Path | str, user_tags: bool = True) -> Dataset:
    path = Path(path)
    events = []
    with open(path / "ratings.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            events.append(Event(row["userId"], row["movieId"], float(row["timestamp"]), float(row["rating"])))
    events = sort_events(events)
    tags: dict[str, dict[str, str]] = {}
    tags_file = path / "tags.csv"
    if user_tags and tags_file.is_file():
        with open(tags_file, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                tag = " ".join(row["tag"].split())
                if tag:
                    tags.setdefault(row["movieId"], {}).setdefault(tag.lower(), tag)
    ts = _ts_before(events)
    items = []
    with open(path / "movies.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            genres = [g for g in row["genres"].split("|") if g and g != NO_GENRES]
            movie_tags = list(tags.get(row["movieId"], {}).values())[:MAX_USER_TAGS]
            title = row["title"].strip() or f"movie {row['movieId']}"
            items.append(Item(row["movieId"], title, _text(genres, movie_tags), ts=ts))
    meta = {"layout": "ml-latest", "user_tags": bool(user_tags and tags)}
    return _finish(path.name or "movielens", items, events, "rating", meta)


def _genres_100k(path: Path) -> list[str]:
    genre_file = path / "u.genre"
    if not genre_file.is_file():
        return list(ML100K_GENRES)
    pairs = []
    for line in genre_file.read_text(encoding="latin-1").splitlines():
        if "|" in line:
            name, _, idx = line.rpartition("|")
            pairs.append((int(idx), name))
    return [name for _, name in sorted(pairs)]


def load_ml100k(path: Path | str) -> Dataset:
    path = Path(path)
    events = []
    with open(path / "u.data", encoding="latin-1") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4:
                user, item, rating, ts = parts[:4]
                events.append(Event(user, item, float(ts), float(rating)))
    events = sort_events(events)
    genre_names = _genres_100k(path)
    ts = _ts_before(events)
    items = []
    with open(path / "u.item", encoding="latin-1") as f:
        for line in f:
            fields = line.rstrip("\r\n").split("|")
            if len(fields) < 5:
                continue
            flags = fields[5:]
            genres = [g for g, flag in zip(genre_names, flags) if flag.strip() == "1" and g != "unknown"]
            title = fields[1].strip() or f"movie {fields[0]}"
            items.append(Item(fields[0], title, _text(genres, []), ts=ts))
    return _finish(path.name or "ml-100k", items, events, "rating", {"layout": "ml-100k"})


_SPACES = re.compile(r"\s+")


def load_synthetic(n_users: int = 200, n_items: int = 1000, n_events: int = 20_000, seed: int = 0,
                   mean_gap_s: float = 2.0) -> Dataset:  # fmt: skip
    """:mod:`streamrec.synth` data; every event (click or rating) is an interaction."""
    from streamrec.synth import SynthConfig, generate

    cfg = SynthConfig(n_users=n_users, n_items=n_items, n_events=n_events, seed=seed, mean_gap_s=mean_gap_s)
    data = generate(cfg)
    events = sort_events([Event(e["user"], e["item"], float(e["ts"]), e.get("rating")) for e in data.events])
    ts = _ts_before(events)
    items = [Item(r["item"], r["title"], _SPACES.sub(" ", r["text"]).strip(),
                  {"topic": r["attributes"]["topic"]}, ts=ts) for r in data.items]  # fmt: skip
    meta = {"layout": "synthetic", "n_users": n_users, "n_items": n_items, "seed": seed}
    return _finish("synthetic", items, events, "click", meta)
