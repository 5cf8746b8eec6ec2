"""Shared fixtures. Unit tests need nothing; integration tests need the real stack.

Integration tests (everything under ``tests/integration``) run against the Kafka broker and Redis
server named by the ``STREAMREC_*`` settings, which ``make test`` starts. When they are not running
the tests fail with a message saying so: they are never skipped silently.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from streamrec.settings import Settings

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
    # the long fault suite (it restarts the shared stack) runs only when asked for: left out of
    # the run and reported as deselected, never as a skip
    if os.environ.get("FAULT_SUITE") != "long":
        long = [item for item in items if item.get_closest_marker("long")]
        if long:
            items[:] = [item for item in items if not item.get_closest_marker("long")]
            config.hook.pytest_deselected(items=long)


def pytest_report_header(config):
    from streamrec import localstack

    settings = Settings.from_env()
    kafka = localstack.kafka_status(settings)
    redis = localstack.redis_status(settings)
    return [
        f"streamrec stack: Apache Kafka {kafka.version} at {kafka.address} "
        f"({'running' if kafka.running else 'NOT running'}); "
        f"Redis {redis.version} at {redis.address} ({'running' if redis.running else 'NOT running'})"
    ]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def stack(settings):
    """The running Kafka and Redis; fails (not skips) when they are not there."""
    from streamrec import localstack

    kafka, redis = localstack.kafka_status(settings), localstack.redis_status(settings)
    if not (kafka.running and redis.running):
        pytest.fail(
            f"integration tests need Kafka at {settings.kafka_bootstrap} and Redis at "
            f"{settings.redis_url}; run them with `make test` (or `streamrec up` first)"
        )
    print(f"\nrunning against Apache Kafka {kafka.version} and Redis {redis.version}")
    return settings


@pytest.fixture
def prefix() -> str:
    """A fresh topic and key prefix, so tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def topics(stack, prefix):
    """Every streamrec topic, freshly created under a unique prefix (3 partitions each)."""
    from streamrec.schemas.admin import admin_client, create_topics
    from streamrec.schemas.topics import Topics

    t = Topics(prefix=prefix)
    create_topics(admin_client(stack.kafka_bootstrap), t, partitions=3, replication=1)
    return t


@pytest.fixture
def redis_client(stack):
    import redis

    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


@pytest.fixture
def worker_env(topics, stack, prefix, tmp_path):
    """Environment of a stream worker on this test's topics, keys, group and checkpoint dir."""
    return {
        **os.environ,
        "STREAMREC_TOPIC_PREFIX": prefix,
        "STREAMREC_REDIS_PREFIX": prefix,
        "STREAMREC_GROUP_ID": f"{prefix}stream",
        "STREAMREC_REFRESH_INTERVAL_S": "1",  # workerkit.REFRESH_S
        "STREAMREC_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "STREAMREC_LOG_LEVEL": "WARNING",
    }
