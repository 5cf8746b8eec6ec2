"""Topic administration: create every streamrec topic idempotently.

Creating topics twice is harmless: topics that exist already are reported, not recreated, and
their partition count is checked so a mismatch (say, created by hand with one partition) is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamrec.schemas.topics import Topics, TopicSpec


class TopicAdminError(RuntimeError):
    """A topic could not be created; the message names the topic and the broker's reason."""


@dataclass(frozen=True, slots=True)
class TopicResult:
    spec: TopicSpec
    created: bool
    partitions: int  # as found on the broker after the call


def admin_client(bootstrap: str, extra: dict | None = None, timeout_s: float = 10.0):
    """An AdminClient for a broker that answers; fails fast with a clear error otherwise."""
    from streamrec.connect import KafkaUnreachable, check_kafka

    try:
        return check_kafka({"bootstrap.servers": bootstrap, **(extra or {})}, timeout_s)
    except KafkaUnreachable as exc:
        raise TopicAdminError(str(exc)) from None


def admin_for(settings, timeout_s: float = 10.0):
    """:func:`admin_client` with the deployment's security options."""
    from streamrec.connect import kafka_config

    return admin_client(settings.kafka_bootstrap, kafka_config(settings), timeout_s)


def _ready(admin, names: list[str], timeout_s: float):
    """Metadata once every topic in ``names`` is listed without error and every partition has a
    leader. A freshly created topic can be listed before its leaders are elected, and a worker
    started at that moment would take it for missing; so creating returns only when usable."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=timeout_s)
        waiting = [n for n in names if (t := metadata.topics.get(n)) is None or t.error is not None
                   or not t.partitions or any(p.leader < 0 for p in t.partitions.values())]  # fmt: skip
        if not waiting:
            return metadata
        if time.monotonic() >= deadline:
            raise TopicAdminError(f"topics not ready after {timeout_s:g}s: {', '.join(waiting)}")
        time.sleep(0.1)


def create_topics(
    admin, topics: Topics, partitions: int, replication: int, timeout_s: float = 30.0
) -> list[TopicResult]:
    """Create the missing topics among ``topics.specs()``; return what exists afterwards."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewTopic

    specs = topics.specs(partitions=partitions, replication=replication)
    new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication,
                    config=s.config()) for s in specs]  # fmt: skip
    futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
    created: set[str] = set()
    for name, future in futures.items():
        try:
            future.result()
            created.add(name)
        except Exception as exc:  # KafkaException wrapping a KafkaError
            error = exc.args[0] if exc.args else None
            if getattr(error, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise TopicAdminError(f"creating topic {name!r} failed: {exc}") from exc
    metadata = _ready(admin, [s.name for s in specs], timeout_s)
    results = []
    for spec in specs:
        found = metadata.topics.get(spec.name)
        results.append(TopicResult(spec, spec.name in created, len(found.partitions) if found else 0))
    return results
