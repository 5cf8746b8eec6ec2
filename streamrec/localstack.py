"""The local stack without Docker: a real Apache Kafka broker (KRaft) and a Redis server.

Kafka comes from its official jars on Maven Central, resolved once by Maven (``deploy/local/pom.xml``)
into the local Maven repository, and runs as ``kafka.Kafka`` on the installed Java. Redis is Debian's
``redis-server``; a server that already answers at the configured URL is reused.

Everything lives under one state directory (``STREAMREC_STATE_DIR``)::

    kafka/server.properties  kafka/data/  kafka/kafka.log  kafka/classpath-<version>.txt
    redis/  redis/redis.log
    kafka.json  redis.json      # what `up` started: pid, address, version

``up`` is idempotent and ``down`` stops only what ``up`` started, found by pid and checked against
the process's command line so a recycled pid is never killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from streamrec.settings import Settings, redact_url

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "local"


class StackError(RuntimeError):
    """The local stack could not be brought up; the message says why and what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    running: bool
    managed: bool  # started by `streamrec up` (and so stopped by `down`)
    version: str
    pid: int | None = None

    def line(self) -> str:
        state = "running" if self.running else "not running"
        owner = f"started by streamrec, pid {self.pid}" if self.managed else "not managed by streamrec"
        if not self.running:
            owner = "-"
        return f"{self.name:<6} {self.address:<28} {state:<12} {self.version:<10} {owner}"


def _log(msg: str) -> None:
    print(f"[streamrec] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- process bookkeeping


def _record_path(settings: Settings, name: str) -> Path:
    return settings.state_dir / f"{name}.json"


def _read_record(settings: Settings, name: str, marker: str) -> dict | None:
    """The record of a process we started, if that process still runs."""
    path = _record_path(settings, name)
    try:
        record = json.loads(path.read_text())
        cmdline = Path(f"/proc/{record['pid']}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError, KeyError):
        return None
    return record if marker in cmdline else None


def _stop_pid(pid: int, name: str, timeout_s: float = 30.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    _log(f"{name} (pid {pid}) did not stop in {timeout_s:.0f}s; killing it")
    os.kill(pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


# ---------------------------------------------------------------- Kafka


def _bootstrap_first(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.kafka_bootstrap.split(",")[0].strip().rpartition(":")
    return host, int(port)


def kafka_answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": _quiet_logger()})
    try:
        admin.list_topics(timeout=timeout_s)
        return True
    except Exception:  # KafkaException on timeout or transport failure
        return False


def _quiet_logger():
    import logging

    logger = logging.getLogger("streamrec.librdkafka")
    logger.setLevel(logging.CRITICAL)
    return logger


def kafka_classpath(settings: Settings, pom_name: str = "pom.xml", what: str = "broker") -> list[Path]:
    """The broker's jars, resolved by Maven once per version and remembered in the state dir."""
    stem = "classpath" if pom_name == "pom.xml" else f"classpath-{Path(pom_name).stem}"
    cache = settings.state_dir / "kafka" / f"{stem}-{settings.kafka_version}.txt"
    if cache.exists():
        jars = [Path(p) for p in cache.read_text().strip().split(os.pathsep) if p]
        if jars and all(j.exists() for j in jars):
            return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(f"Maven (`mvn`) is needed to fetch the Kafka {what} jars; install Maven 3")
    pom = DEPLOY_DIR / pom_name
    if not pom.exists():
        raise StackError(f"{pom} is missing: run streamrec from a checkout of the repository")
    cache.parent.mkdir(parents=True, exist_ok=True)
    _log(f"resolving Apache Kafka {settings.kafka_version} ({what}) from Maven Central (once per version)")
    cmd = [
        mvn, "-B", "-q", "-f", str(pom), f"-Dkafka.version={settings.kafka_version}",
        "dependency:build-classpath", f"-Dmdep.outputFile={cache}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not cache.exists():
        raise StackError(
            f"Maven could not resolve Kafka {settings.kafka_version}:\n"
            + (result.stdout + result.stderr)[-3000:]
        )
    return kafka_classpath(settings, pom_name, what)


def kafka_tools_classpath(settings: Settings) -> list[Path]:
    """Kafka's command-line tools (``org.apache.kafka.tools.ConsoleProducer`` and friends), which
    Kafka 4 ships apart from the broker: resolved the same way, from ``tools-pom.xml``."""
    return kafka_classpath(settings, "tools-pom.xml", "command-line tools")


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise StackError("Java 17 or newer is needed to run the Kafka broker; install OpenJDK 17")
    return java


def kafka_up(settings: Settings) -> ServiceStatus:
    record = _read_record(settings, "kafka", "kafka.Kafka")
    if record:
        return kafka_status(settings)
    if kafka_answers(settings.kafka_bootstrap):
        _log(f"a Kafka broker already answers at {settings.kafka_bootstrap}; reusing it")
        return kafka_status(settings)

    home = settings.state_dir / "kafka"
    data_dir = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    host, port = _bootstrap_first(settings)
    props = (DEPLOY_DIR / "server.properties.in").read_text().format(
        host=host, port=port, controller_port=port + 1, data_dir=data_dir
    )
    (home / "server.properties").write_text(props)
    classpath = os.pathsep.join(str(p) for p in kafka_classpath(settings))
    java = _java()
    log4j = f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}"

    if not (data_dir / "meta.properties").exists():
        cluster_id = subprocess.run(
            [java, log4j, "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"],
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        fmt = subprocess.run(
            [java, log4j, "-cp", classpath, "kafka.tools.StorageTool", "format",
             "-t", cluster_id, "-c", str(home / "server.properties")],
            capture_output=True, text=True,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
        _log(f"formatted KRaft storage in {data_dir} (cluster id {cluster_id})")

    log_path = home / "kafka.log"
    cmd = [
        java, f"-Xmx{settings.kafka_heap}", f"-Xms{settings.kafka_heap}", "-XX:+UseG1GC",
        "-Djava.awt.headless=true", log4j, "-cp", classpath, "kafka.Kafka",
        str(home / "server.properties"),
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _record_path(settings, "kafka").write_text(
        json.dumps(
            {"pid": proc.pid, "address": settings.kafka_bootstrap, "version": settings.kafka_version}
        )
    )
    _log(f"starting Apache Kafka {settings.kafka_version} (pid {proc.pid}), log: {log_path}")
    deadline = time.monotonic() + settings.kafka_start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if kafka_answers(settings.kafka_bootstrap, timeout_s=1.0):
            return kafka_status(settings)
        time.sleep(0.5)
    if proc.poll() is None:
        _stop_pid(proc.pid, "kafka", timeout_s=10)
    _record_path(settings, "kafka").unlink(missing_ok=True)
    raise StackError(
        f"the Kafka broker did not answer at {settings.kafka_bootstrap} within "
        f"{settings.kafka_start_timeout_s:.0f}s (exit code {proc.poll()}); log tail:\n{_tail(log_path)}"
    )


def kafka_status(settings: Settings) -> ServiceStatus:
    record = _read_record(settings, "kafka", "kafka.Kafka")
    running = kafka_answers(settings.kafka_bootstrap)
    version = record["version"] if record else ("unknown" if running else "-")
    return ServiceStatus(
        "kafka", settings.kafka_bootstrap, running, record is not None, version,
        record["pid"] if record else None,
    )  # fmt: skip


# ---------------------------------------------------------------- Redis


def redis_version(settings: Settings, refused=None) -> str | None:
    """The server's version, or None when nothing answers at the settings' Redis URL.

    Asked with the settings' own credentials (:func:`streamrec.connect.redis_client`: the user and
    password of ``STREAMREC_REDIS_USERNAME`` / ``STREAMREC_REDIS_PASSWORD``, the TLS CA), so a
    password-protected Redis whose password is not in the URL is reported as up. Always a plain
    client to the URL's node, also for a cluster: its INFO says whether that node runs. A server
    that refuses the credentials counts as not answering, unless ``refused(settings)`` is given
    (it is called instead: ``up`` raises there).
    """
    import redis

    from streamrec.connect import redis_client

    client = redis_client(settings.replace(redis_cluster=False), socket_connect_timeout=1, socket_timeout=2)
    try:
        return str(client.info("server")["redis_version"])
    except redis.AuthenticationError:
        return None if not refused else refused(settings)
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _refused(settings: Settings) -> str:
    """`up` against a Redis that answers but refuses our credentials: starting a second server on
    its port cannot work, so say what to check instead."""
    raise StackError(f"a Redis server answers at {redact_url(settings.redis_url)} but refuses the "
                     "credentials; check STREAMREC_REDIS_USERNAME / STREAMREC_REDIS_PASSWORD (or the "
                     "URL's user and password)")  # fmt: skip


def _redis_server_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _log("redis-server is missing; installing Debian's redis-server with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "redis-server"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            result = subprocess.run(install, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise StackError(f"apt-get install redis-server failed:\n{result.stderr[-2000:]}")
        return _redis_server_binary()
    raise StackError(
        "redis-server is not installed. Install it (Debian/Ubuntu: `sudo apt-get install "
        "redis-server`) or point STREAMREC_REDIS_URL at a running Redis."
    )


def redis_up(settings: Settings) -> ServiceStatus:
    if _read_record(settings, "redis", "redis-server"):
        return redis_status(settings)
    if redis_version(settings, refused=_refused):
        _log(f"a Redis server already answers at {redact_url(settings.redis_url)}; reusing it")
        return redis_status(settings)
    url = urlparse(settings.redis_url)
    if url.scheme != "redis":
        raise StackError("can only start a local Redis for redis:// URLs, not "
                         f"{redact_url(settings.redis_url)}")
    home = settings.state_dir / "redis"
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "redis.log"
    cmd = [
        _redis_server_binary(), "--bind", url.hostname or "127.0.0.1", "--port", str(url.port or 6379),
        "--dir", str(home), "--appendonly", "yes", "--appendfsync", "everysec",
        "--daemonize", "no", "--logfile", str(log_path),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        version = redis_version(settings)
        if version:
            _record_path(settings, "redis").write_text(
                json.dumps({"pid": proc.pid, "address": redact_url(settings.redis_url),
                            "version": version})
            )
            _log(f"started Redis {version} (pid {proc.pid}), log: {log_path}")
            return redis_status(settings)
        time.sleep(0.1)
    if proc.poll() is None:
        _stop_pid(proc.pid, "redis", timeout_s=5)
    raise StackError(f"redis-server did not answer at {redact_url(settings.redis_url)}; log tail:\n"
                     f"{_tail(log_path)}")


def redis_status(settings: Settings) -> ServiceStatus:
    record = _read_record(settings, "redis", "redis-server")
    version = redis_version(settings)
    return ServiceStatus(
        "redis", redact_url(settings.redis_url), version is not None, record is not None, version or "-",
        record["pid"] if record else None,
    )  # fmt: skip


# ---------------------------------------------------------------- the stack


def up(settings: Settings) -> list[ServiceStatus]:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return [redis_up(settings), kafka_up(settings)]


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started (Kafka first, so it never loses Redis mid-write); report each."""
    stopped = []
    for name, marker in (("kafka", "kafka.Kafka"), ("redis", "redis-server")):
        record = _read_record(settings, name, marker)
        if record:
            _stop_pid(record["pid"], name)
            stopped.append(f"stopped {name} (pid {record['pid']})")
        _record_path(settings, name).unlink(missing_ok=True)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    return [redis_status(settings), kafka_status(settings)]
