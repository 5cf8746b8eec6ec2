"""Client configuration for Kafka and Redis, built once from the settings.

Every Kafka client in streamrec (publisher, admin, consumers, workers) takes its connection and
security options from :func:`kafka_config`, and every Redis client comes from :func:`redis_client`,
so SASL (PLAIN, SCRAM) over TLS or plaintext, Redis ACL users, passwords and TLS are configured in
one place. Secrets are read from the settings (environment or a Kubernetes Secret) and are never
logged: :class:`~streamrec.settings.Secret` hides itself in reprs.

>>> from streamrec.settings import Settings
>>> cfg = kafka_config(Settings.from_env({}))
>>> cfg["bootstrap.servers"], cfg["log_level"], cfg["logger"].name
('127.0.0.1:9092', 0, 'streamrec.kafka')
>>> cfg = kafka_config(Settings.from_env({"STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
...     "STREAMREC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "STREAMREC_KAFKA_SASL_USERNAME": "app",
...     "STREAMREC_KAFKA_SASL_PASSWORD": "s3cret"}))
>>> cfg["security.protocol"], cfg["sasl.mechanism"], cfg["sasl.username"], cfg["sasl.password"]
('SASL_SSL', 'SCRAM-SHA-512', 'app', <secret>)
"""

from __future__ import annotations

import logging

from streamrec.settings import Settings, SettingsError

#: librdkafka's own log lines, through Python logging (text or JSON like every other line)
KAFKA_LOG = logging.getLogger("streamrec.kafka")


def kafka_config(settings: Settings) -> dict:
    """librdkafka options shared by every Kafka client: bootstrap servers, security, logging.

    librdkafka logs every failed connection attempt, several a second while a broker is away; the
    clients' errors reach the workers through their own calls anyway, so its log is silenced
    unless ``STREAMREC_LOG_LEVEL=DEBUG`` asks for it (then at every librdkafka level).
    """
    cfg: dict = {"bootstrap.servers": settings.kafka_bootstrap, "logger": KAFKA_LOG,
                 "log_level": 7 if settings.log_level == "DEBUG" else 0}  # fmt: skip
    protocol = settings.kafka_security_protocol
    if protocol != "PLAINTEXT":
        cfg["security.protocol"] = protocol
    if protocol.startswith("SASL"):
        if not settings.kafka_sasl_username:
            raise SettingsError(
                f"STREAMREC_KAFKA_SASL_USERNAME: required with security protocol {protocol}"
            )
        cfg["sasl.mechanism"] = settings.kafka_sasl_mechanism
        cfg["sasl.username"] = settings.kafka_sasl_username
        cfg["sasl.password"] = settings.kafka_sasl_password
    if protocol in ("SSL", "SASL_SSL") and settings.kafka_ssl_ca_location:
        cfg["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return cfg


class KafkaUnreachable(RuntimeError):
    """No broker answered, or it refused our credentials; the message says which."""


def check_kafka(config: dict, timeout_s: float = 10.0):
    """An AdminClient that has answered a metadata request; a clear error otherwise.

    Authentication failures are reported as such (librdkafka otherwise only says "transport
    failure"), and librdkafka's own retry chatter is kept out of the output.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list = []
    admin = AdminClient({**config, "error_cb": errors.append})
    try:
        admin.list_topics(timeout=timeout_s)
        return admin
    except KafkaException as exc:
        admin.poll(0)  # serve the error callbacks queued meanwhile
        bootstrap = config.get("bootstrap.servers")
        auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        if auth:
            raise KafkaUnreachable(
                f"Kafka at {bootstrap} refused the credentials ({auth[0].str()}); check "
                "STREAMREC_KAFKA_SASL_USERNAME / STREAMREC_KAFKA_SASL_PASSWORD / _MECHANISM"
            ) from None
        reason = exc.args[0].str() if exc.args else str(exc)
        raise KafkaUnreachable(
            f"no Kafka broker answers at {bootstrap} ({reason}); is it running (`streamrec status`)?"
        ) from None


def redis_client(settings: Settings, **kwargs):
    """A Redis client for ``settings.redis_url`` with the configured user, password and TLS CA.

    With ``STREAMREC_REDIS_CLUSTER`` it is a cluster client (:class:`LazyRedisCluster`) seeded by
    the URL's node, with the same options. Every command streamrec sends touches one key or is a
    non-transactional pipeline of such commands, which a cluster client splits by node.
    """
    import redis

    options = {"socket_connect_timeout": 2, "socket_timeout": 5, **kwargs}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password:
        options["password"] = str(settings.redis_password)
    if settings.redis_url.startswith("rediss://") and settings.redis_ssl_ca_location:
        options["ssl_ca_certs"] = settings.redis_ssl_ca_location
    if settings.redis_cluster:
        return LazyRedisCluster(settings.redis_url, **options)
    return redis.Redis.from_url(settings.redis_url, **options)


def async_redis_client(settings: Settings, **kwargs):
    """:func:`redis_client`'s asyncio twin (same URL, user, password, TLS and cluster switch), for
    ``streamrec serve``. Like the sync one it connects on first use, not here."""
    from redis import asyncio as aioredis

    options = {"socket_connect_timeout": 2, "socket_timeout": 5, **kwargs}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password:
        options["password"] = str(settings.redis_password)
    if settings.redis_url.startswith("rediss://") and settings.redis_ssl_ca_location:
        options["ssl_ca_certs"] = settings.redis_ssl_ca_location
    if settings.redis_cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(settings.redis_url, **options)
    return aioredis.Redis.from_url(settings.redis_url, **options)


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis client raises when Redis is away or refuses us: catch these to retry later.

    A cluster client reports an unreachable cluster as ``RedisClusterException``, which is not a
    ``RedisError``; without it here a worker would die where it should keep learning and retry.
    """
    import redis
    from redis.exceptions import RedisClusterException

    return (redis.RedisError, RedisClusterException, OSError)


class LazyRedisCluster:
    """A ``redis.cluster.RedisCluster`` built on first use, and built again after a failed build.

    Building a cluster client already asks the cluster for its slot map and fails when no node
    answers; a plain client connects lazily. Deferring the build keeps the workers' promise that
    they start, learn and retry while Redis is down, on a cluster as on a plain Redis.
    """

    def __init__(self, url: str, **options):
        self._url, self._options, self._client = url, options, None

    @property
    def client(self):
        if self._client is None:
            from redis.cluster import RedisCluster

            self._client = RedisCluster.from_url(self._url, **self._options)
        return self._client

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
