"""Secured clusters: a real Kafka broker with a SASL listener (PLAIN and SCRAM) and a Redis server
with a password and an ACL user. The right credentials work end to end; wrong ones fail fast with a
clear error, and no secret ever appears in output."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from streamrec import localstack

KAFKA_ADMIN = ("admin", "admin-secret-1")
APP_PLAIN = ("app", "plain-secret-2")
APP_SCRAM = ("scram-app", "scram-secret-3")
REDIS_USER = ("recs", "redis-secret-4")
SECRETS = [KAFKA_ADMIN[1], APP_PLAIN[1], APP_SCRAM[1], REDIS_USER[1]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sasl_broker(stack, tmp_path_factory):
    """A second, SASL-only broker (KRaft), with PLAIN users and a SCRAM user created at format time."""
    home = tmp_path_factory.mktemp("sasl-kafka")
    port, controller = _free_port(), _free_port()
    jaas = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'username="{KAFKA_ADMIN[0]}" password="{KAFKA_ADMIN[1]}" '
            f'user_{KAFKA_ADMIN[0]}="{KAFKA_ADMIN[1]}" user_{APP_PLAIN[0]}="{APP_PLAIN[1]}";')  # fmt: skip
    props = home / "server.properties"
    props.write_text("\n".join([
        "process.roles=broker,controller", "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners=SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=SASL_PLAINTEXT",
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256",
        "sasl.mechanism.inter.broker.protocol=PLAIN",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}",
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        f"log.dirs={home / 'data'}", "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0", "auto.create.topics.enable=false",
    ]) + "\n")  # fmt: skip
    classpath = os.pathsep.join(map(str, localstack.kafka_classpath(stack)))
    java = localstack._java()
    log4j = f"-Dlog4j2.configurationFile={localstack.DEPLOY_DIR / 'log4j2.properties'}"
    subprocess.run([java, log4j, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t",
                    "sasl-test-cluster-000A", "-c", str(props), "--add-scram",
                    f"SCRAM-SHA-256=[name={APP_SCRAM[0]},password={APP_SCRAM[1]}]"],
                   check=True, capture_output=True)  # fmt: skip
    log = open(home / "kafka.log", "wb")
    proc = subprocess.Popen([java, "-Xmx384m", log4j, "-cp", classpath, "kafka.Kafka", str(props)],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    bootstrap = f"127.0.0.1:{port}"
    try:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                             "sasl.mechanism": "PLAIN", "sasl.username": KAFKA_ADMIN[0],
                             "sasl.password": KAFKA_ADMIN[1]})  # fmt: skip
        deadline = time.monotonic() + 90
        while True:
            try:
                admin.list_topics(timeout=2)
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the SASL broker did not start:\n" + localstack._tail(home / "kafka.log"))
                time.sleep(0.5)
        yield bootstrap
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory):
    port = _free_port()
    home = tmp_path_factory.mktemp("auth-redis")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(home), "--requirepass", "default-secret-5",
                             "--user", f"{REDIS_USER[0]}", "on", f">{REDIS_USER[1]}", "~*", "+@all"],
                            stdout=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.5)
    yield port
    proc.terminate()
    proc.wait(10)


def _cli(env_extra: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_KAFKA_SASL")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "streamrec", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def _env(bootstrap, prefix, user, password, mechanism, redis_port, redis_user, redis_password, tmp):
    return {
        "STREAMREC_KAFKA_BOOTSTRAP": bootstrap, "STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "STREAMREC_KAFKA_SASL_MECHANISM": mechanism, "STREAMREC_KAFKA_SASL_USERNAME": user,
        "STREAMREC_KAFKA_SASL_PASSWORD": password,
        "STREAMREC_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "STREAMREC_REDIS_USERNAME": redis_user, "STREAMREC_REDIS_PASSWORD": redis_password,
        "STREAMREC_TOPIC_PREFIX": prefix, "STREAMREC_REDIS_PREFIX": prefix,
        "STREAMREC_GROUP_ID": f"{prefix}g", "STREAMREC_CHECKPOINT_DIR": str(tmp),
        "STREAMREC_PARTITIONS": "1",
    }  # fmt: skip


@pytest.mark.parametrize("mechanism,creds", [("PLAIN", APP_PLAIN), ("SCRAM-SHA-256", APP_SCRAM)])
def test_right_credentials_work_end_to_end(sasl_broker, password_redis, prefix, tmp_path, mechanism, creds):
    env = _env(sasl_broker, prefix, *creds, mechanism, password_redis, *REDIS_USER, tmp_path)
    created = _cli(env, "topics", "create")
    assert created.returncode == 0, created.stderr
    lines = "\n".join(f'{{"type":"click","user":"u{u % 3}","item":"i{u}"}}' for u in range(12))
    published = subprocess.run([sys.executable, "-m", "streamrec", "publish", "--quiet"], input=lines,
                               env={**os.environ, **env}, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "published 12, rejected 0" in published.stdout, published.stderr
    worker = _cli(env, "worker", "streams", "--burst")
    assert worker.returncode == 0, worker.stderr
    recs = _cli(env, "recs", "u1", "--json")
    assert recs.returncode == 0 and '"personal": true' in recs.stdout, recs.stderr
    shown = _cli(env, "settings")
    for out in (created, published, worker, recs, shown):
        for secret in SECRETS:
            assert secret not in out.stdout + out.stderr, "a secret leaked into the output"
    assert "STREAMREC_KAFKA_SASL_PASSWORD" in shown.stdout and "<secret>" in shown.stdout


def test_wrong_kafka_password_fails_fast_with_a_clear_error(sasl_broker, password_redis, prefix, tmp_path):
    env = _env(sasl_broker, prefix, APP_PLAIN[0], "wrong-password", "PLAIN", password_redis,
               *REDIS_USER, tmp_path)  # fmt: skip
    started = time.monotonic()
    result = _cli(env, "topics", "create", timeout=60)
    assert result.returncode == 2
    assert "Authentication failed" in result.stderr or "authentication" in result.stderr.lower()
    assert time.monotonic() - started < 30
    assert "wrong-password" not in result.stdout + result.stderr


def test_wrong_redis_password_fails_fast_with_a_clear_error(password_redis, prefix):
    env = {"STREAMREC_REDIS_URL": f"redis://127.0.0.1:{password_redis}/0",
           "STREAMREC_REDIS_USERNAME": REDIS_USER[0], "STREAMREC_REDIS_PASSWORD": "nope-6",
           "STREAMREC_REDIS_PREFIX": prefix}  # fmt: skip
    started = time.monotonic()
    result = _cli(env, "recs", "u1", timeout=30)
    assert result.returncode == 2
    assert "Redis" in result.stderr and ("password" in result.stderr or "WRONGPASS" in result.stderr)
    assert time.monotonic() - started < 15
    assert "nope-6" not in result.stdout + result.stderr
