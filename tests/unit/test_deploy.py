"""Static checks of the container and Kubernetes material (no Docker engine, cluster or services).

What is checked, and against what:

- ``docker-compose.yml`` validates against the Compose Specification JSON schema, vendored as
  ``tests/data/compose-spec.json`` (compose-spec ``schema/compose-spec.json``, Apache-2.0, as
  shipped in the ``docker-compose`` 1.29.2 wheel at ``compose/config/compose_spec.json``; its
  SHA-256 is pinned below so the file cannot drift or be edited to make a check pass).
- Every command that runs ``streamrec`` (compose commands and health checks, Dockerfile ``CMD`` and
  ``HEALTHCHECK``, Kubernetes container commands and probes) parses with the real
  ``streamrec.cli.build_parser()``, and health checks call ``--health`` of the same worker.
- Every ``STREAMREC_*`` name anywhere in that material is a known setting
  (``Settings.variables()``), and ``Settings.from_env`` accepts each service's whole environment.
- Every file a Dockerfile ``COPY``s exists and is in the build context ``.dockerignore`` leaves.
- The Kubernetes manifests parse, are all listed in ``kustomization.yaml``, have the expected kinds,
  labels that select their pods, resources, probes, and the stream worker's per-pod volumes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import posixpath
import re
import shlex
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

import streamrec
from streamrec.cli import build_parser
from streamrec.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER = ROOT / "deploy" / "docker"
K8S = ROOT / "deploy" / "k8s"
GRAFANA = ROOT / "deploy" / "grafana"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"

DOCKERFILES = {"stream": DOCKER / "Dockerfile.stream", "llm": DOCKER / "Dockerfile.llm"}
IMAGES = {"stream": "streamrec-stream", "llm": "streamrec-llm"}  # repository names
WORKERS = {"streams": "stream", "embed": "llm", "tag": "llm"}  # worker kind -> image
NAME = re.compile(r"STREAMREC_[A-Z0-9_]+")


# ------------------------------------------------------------------------------------ helpers


def parse_streamrec(argv: list[str], where: str):
    """``streamrec ARGV`` parsed by the real parser, or a test failure naming the command."""
    assert argv and Path(argv[0]).name == "streamrec", f"{where}: {argv} does not run streamrec"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return build_parser().parse_args(argv[1:])
    except (SystemExit, argparse.ArgumentError):
        pytest.fail(f"{where}: `{shlex.join(argv)}` is not a streamrec command: {err.getvalue()}")


def shell_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split at ``||``, ``&&``, ``;``, ``|``), no redirects."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current, skip = [], [], False
    for token in lexer:
        if token in ("||", "&&", ";", "|", "&"):
            commands.append(current)
            current, skip = [], False
        elif set(token) <= set("<>&") or skip:
            skip = True  # a redirection: the rest of this command is its target
        else:
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def streamrec_commands(cmd, where: str) -> list:
    """Parsed ``streamrec`` invocations of an exec-form list or a shell-form string."""
    if isinstance(cmd, list) and len(cmd) == 3 and cmd[1] == "-c" and cmd[0] in ("sh", "/bin/sh"):
        cmd = cmd[2]  # ["sh", "-c", "a || b"]
    argvs = [cmd] if isinstance(cmd, list) else shell_commands(cmd)
    return [parse_streamrec(a, where) for a in argvs if a and Path(a[0]).name == "streamrec"]


def worker_kind(args) -> str | None:
    return args.worker if getattr(args, "command", None) == "worker" else None


def is_serve(args) -> bool:
    return getattr(args, "command", None) == "serve" and not args.health


def known() -> set[str]:
    return set(Settings.variables())


def assert_known(names, where: str) -> None:
    unknown = sorted(set(names) - known())
    assert not unknown, f"{where}: unknown settings {unknown} (known: {sorted(known())})"


def from_env_ok(env: dict, where: str) -> Settings:
    env = {k: str(v) for k, v in env.items() if k.startswith("STREAMREC_")}
    assert_known(env, where)
    try:
        return Settings.from_env(env)
    except ValueError as exc:
        pytest.fail(f"{where}: Settings.from_env rejects the environment: {exc}")


# ------------------------------------------------------------------------------- Dockerfiles


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not buf and not stripped):
            continue  # comments (and parser directives), also inside continued instructions
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, f"{path}: ends inside a continued instruction"
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins, rest in dockerfile(path):
        if ins == "FROM":
            result.append([])
        if result:
            result[-1].append((ins, rest))
    return result


def arg_defaults(path: Path) -> dict[str, str]:
    out = {}
    for ins, rest in dockerfile(path):
        if ins == "ARG":
            name, _, default = rest.partition("=")
            out[name.strip()] = default.strip().strip('"')
    return out


def env_of(instructions) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins, rest in instructions:
        if ins != "ENV":
            continue
        tokens = shlex.split(rest)
        if tokens and "=" not in tokens[0]:  # legacy `ENV KEY value`
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            key, _, value = token.partition("=")
            env[key] = value
    return env


def exec_or_shell(rest: str):
    """A ``CMD``/``HEALTHCHECK CMD`` body: a list for the exec (JSON) form, a string otherwise."""
    rest = rest.strip()
    if rest.startswith("["):
        return json.loads(rest)
    return rest


def healthcheck_cmd(instructions):
    for ins, rest in instructions:
        if ins == "HEALTHCHECK":
            options, sep, body = rest.partition(" CMD ")
            assert sep, f"HEALTHCHECK without CMD: {rest}"
            return exec_or_shell(body)
    return None


def copies(path: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY/ADD from the build context (not from other stages)."""
    out = []
    for ins, rest in dockerfile(path):
        if ins not in ("COPY", "ADD"):
            continue
        if rest.startswith("["):
            words = json.loads(rest)
        else:
            words = shlex.split(rest)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        words = [w for w in words if not w.startswith("--")]
        out.append((words[:-1], words[-1]))
    return out


def _glob_re(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            j = pattern.index("]", i)
            out, i = out + pattern[i : j + 1], j + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath((line[1:] if negated else line).strip().lstrip("/"))
        rules.append((negated, _glob_re(pattern)))
    return rules


def ignored(relpath: str, rules=None) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    rules = dockerignore_rules() if rules is None else rules
    parts = relpath.split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    excluded = False
    for negated, rx in rules:
        if any(rx.match(p) for p in prefixes):
            excluded = not negated
    return excluded


def context_files(source: str) -> list[str]:
    path = ROOT / source
    if path.is_file():
        return [source]
    return [
        str(p.relative_to(ROOT))
        for p in sorted(path.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]


def final_stage(kind: str):
    return stages(DOCKERFILES[kind])[-1]


def image_env(kind: str) -> dict[str, str]:
    return env_of(final_stage(kind))


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_copies_exist_inside_the_build_context(kind):
    path = DOCKERFILES[kind]
    rules = dockerignore_rules()
    found = copies(path)
    assert found, f"{path.name} copies nothing from the context"
    for sources, _ in found:
        for source in sources:
            assert (ROOT / source).exists(), f"{path.name}: COPY {source}: no such file in the repo"
            files = context_files(source)
            assert files, f"{path.name}: COPY {source}: nothing to copy"
            left_out = [f for f in files if ignored(f, rules)]
            assert not left_out, f"{path.name}: COPY {source}: .dockerignore drops {left_out[:5]}"


def test_dockerignore_keeps_local_state_and_caches_out():
    rules = dockerignore_rules()
    for path in (".venv/bin/python", ".state/test/kafka/meta.properties", ".git/HEAD",
                 "tests/data/compose-spec.json", "tests/unit/test_deploy.py", ".pytest_cache/v",
                 ".hypothesis/examples/x", "streamrec/__pycache__/cli.cpython-311.pyc",
                 "streamrec.egg-info/PKG-INFO", "bench-results/x.json", "deploy/k8s/stream.yaml",
                 "docker-compose.yml", "streamrec/__pycache__"):  # fmt: skip
        assert ignored(path, rules), f".dockerignore lets {path} into the build context"
    for path in ("pyproject.toml", "README.md", "streamrec/cli.py", "schemas/codec.py",
                 "streams/worker.py", "workers/embed.py", "bench/replay.py"):
        assert not ignored(path, rules), f".dockerignore leaves out {path}"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_images_are_multi_stage_slim_non_root_with_health_and_state(kind):
    path = DOCKERFILES[kind]
    args = arg_defaults(path)
    all_stages = stages(path)
    assert len(all_stages) >= 2, f"{path.name}: not multi-stage"
    bases = [shlex.split(s[0][1])[0] for s in all_stages]
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), b) for b in bases]
    assert bases[-1] == "python:3.11-slim", f"{path.name}: runtime base is {bases[-1]}"
    final = all_stages[-1]

    users = [rest for ins, rest in final if ins == "USER"]
    assert users, f"{path.name}: the runtime stage runs as root (no USER)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{path.name}: runs as {user}"

    env = env_of(final)
    state_dir = env.get("STREAMREC_STATE_DIR")
    assert state_dir == "/var/lib/streamrec", f"{path.name}: STREAMREC_STATE_DIR is {state_dir}"
    volumes = [v for ins, rest in final if ins == "VOLUME" for v in exec_or_shell(rest)]
    assert state_dir in volumes, f"{path.name}: the state dir {state_dir} is not a VOLUME"
    from_env_ok(env, path.name)

    health = healthcheck_cmd(final)
    assert health is not None, f"{path.name}: no HEALTHCHECK"
    checks = streamrec_commands(health, f"{path.name} HEALTHCHECK")
    assert checks and all(a.health for a in checks), f"{path.name}: HEALTHCHECK without --health"
    cmds = [exec_or_shell(rest) for ins, rest in final if ins == "CMD"]
    assert cmds, f"{path.name}: no CMD"
    (cmd,) = streamrec_commands(cmds[-1], f"{path.name} CMD")
    assert WORKERS.get(worker_kind(cmd)) == kind, f"{path.name}: CMD runs {cmds[-1]}"
    served = {worker_kind(a) for a in checks}
    assert served == {w for w, image in WORKERS.items() if image == kind}, (
        f"{path.name}: HEALTHCHECK covers {served}"
    )


def test_stream_image_has_no_llm_extra():
    text = " ".join(rest for ins, rest in dockerfile(DOCKERFILES["stream"]) if ins == "RUN")
    assert "[llm]" not in text and "optional-dependencies" not in text
    assert "download.pytorch.org" not in text and "--index-url" not in text
    for command in shell_commands(text):
        if command[:2] == ["pip", "install"]:
            assert not any("torch" in w for w in command), f"the stream image installs {command}"


def test_llm_image_takes_cpu_torch_by_default_and_stays_offline():
    path = DOCKERFILES["llm"]
    assert arg_defaults(path).get("TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    runs = " ".join(rest for ins, rest in dockerfile(path) if ins == "RUN")
    assert re.search(r'pip install --index-url "?\$\{?TORCH_INDEX_URL\}?"? "?torch', runs), runs
    assert "['optional-dependencies']['llm']" in runs, "the llm extra is not installed"
    assert "https://download.pytorch.org/whl/cu" in path.read_text(), "no CUDA variant documented"
    env = image_env("llm")
    assert env.get("HF_HUB_OFFLINE") == "1" and env.get("TRANSFORMERS_OFFLINE") == "1", env


# ------------------------------------------------------------------------------------ compose


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def streamrec_services(compose: dict) -> dict[str, dict]:
    return {
        name: svc for name, svc in compose["services"].items()
        if str(svc.get("image", "")).split(":")[0] in IMAGES.values()
    }  # fmt: skip


def image_kind(svc: dict) -> str:
    repo = svc["image"].split(":")[0]
    return next(k for k, v in IMAGES.items() if v == repo)


def argv_of(svc: dict) -> list[str]:
    entry = svc.get("entrypoint") or []
    command = svc.get("command") or []
    entry = shlex.split(entry) if isinstance(entry, str) else list(entry)
    command = shlex.split(command) if isinstance(command, str) else list(command)
    return entry + command


def env_dict(environment) -> dict[str, str]:
    if environment is None:
        return {}
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return {k: "" if v is None else str(v) for k, v in environment.items()}


def test_compose_spec_schema_is_the_vendored_original():
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert digest == SCHEMA_SHA256, "tests/data/compose-spec.json differs from the vendored file"


def test_compose_validates_against_the_compose_spec(compose):
    import jsonschema
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"].startswith("http://json-schema.org/draft/2019-09/")
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(map(str, e.path)))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    # ...and the schema does reject what compose would: a typo'd key, an unquoted `restart: no`.
    broken = json.loads(json.dumps(compose))
    broken["services"]["stream"]["comand"] = ["streamrec"]
    broken["services"]["topics"]["restart"] = False
    assert len(list(validator.iter_errors(broken))) >= 2


def test_compose_has_the_stack(compose):
    services = compose["services"]
    for name in ("kafka", "redis", "topics", "stream", "embed", "tag", "serve"):
        assert name in services, f"docker-compose.yml: no {name} service"
    assert services["kafka"]["image"] == f"apache/kafka:{Settings().kafka_version}"
    assert services["redis"]["image"] == "redis:7"
    for name in ("kafka", "redis"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
    kafka_env = env_dict(services["kafka"]["environment"])
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"], "Kafka is not in KRaft mode"

    topics = services["topics"]
    assert topics["restart"] == "no"
    (args,) = streamrec_commands(argv_of(topics), "topics")
    assert (args.command, args.topics_command) == ("topics", "create")
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"

    for name in ("stream", "embed", "tag", "serve"):
        deps = {dep: v["condition"] for dep, v in services[name]["depends_on"].items()}
        assert deps == {"kafka": "service_healthy", "redis": "service_healthy",
                        "topics": "service_completed_successfully"}, f"{name}: depends_on {deps}"
        assert services[name].get("restart") in ("unless-stopped", "always", "on-failure"), name


def test_compose_commands_and_health_checks_are_real(compose):
    for name, svc in streamrec_services(compose).items():
        (args,) = streamrec_commands(argv_of(svc), f"compose service {name}")
        kind = worker_kind(args)
        health = svc.get("healthcheck", {})
        if is_serve(args):
            test = health.get("test")
            body = {"CMD": test[1:], "CMD-SHELL": " ".join(test[1:])}.get(test[0], test)
            checks = streamrec_commands(body, f"compose service {name} healthcheck")
            assert checks and all(a.command == "serve" and a.health for a in checks), (
                f"{name}: the healthcheck does not call `streamrec serve --health`")
            assert image_kind(svc) == "stream", f"{name}: the API runs in the slim image"
            settings = from_env_ok(env_dict(svc.get("environment")), name)
            published = [p.rsplit(":", 1)[-1] for p in svc.get("ports", [])]
            assert str(settings.serve_port) in published and settings.serve_host == "0.0.0.0", (
                f"{name}: listens on {settings.serve_host}:{settings.serve_port}, publishes {published}")
            continue
        if kind is None:
            assert health.get("disable") is True, f"{name}: one-shot, health check on"
            continue
        assert WORKERS[kind] == image_kind(svc), f"{name}: worker {kind} in image {svc['image']}"
        test = health.get("test")
        assert test, f"{name}: no healthcheck"
        body = {"CMD": test[1:], "CMD-SHELL": " ".join(test[1:])}.get(test[0], test)
        checks = streamrec_commands(body, f"compose service {name} healthcheck")
        assert checks and all(a.health and worker_kind(a) == kind for a in checks), (
            f"{name}: the healthcheck does not call `streamrec worker {kind} --health`"
        )
        for key in ("interval", "timeout", "start_period"):
            assert re.fullmatch(r"\d+(ms|s|m|h)", str(health.get(key, "1s"))), f"{name}: {key}"


def test_compose_builds_images_from_the_dockerfiles(compose):
    tags = set()
    for name, svc in streamrec_services(compose).items():
        kind = image_kind(svc)
        tags.add(svc["image"].split(":")[1])
        build = svc.get("build")
        assert isinstance(build, dict), f"{name}: no build section"
        assert (ROOT / build["context"]).resolve() == ROOT, f"{name}: context is not the repo root"
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILES[kind], name
        for arg in (build.get("args") or {}):
            assert arg in arg_defaults(DOCKERFILES[kind]), f"{name}: unknown build arg {arg}"
    assert tags == {streamrec.__version__}, f"image tags {tags} != package version"


def test_compose_environment_is_known_settings(compose):
    services = compose["services"]
    advertised = env_dict(services["kafka"]["environment"])["KAFKA_ADVERTISED_LISTENERS"]
    state_volumes = []
    for name, svc in streamrec_services(compose).items():
        own = env_dict(svc.get("environment"))
        env = {**image_env(image_kind(svc)), **own}
        settings = from_env_ok(env, f"compose service {name}")
        bootstrap = settings.kafka_bootstrap
        assert f"PLAINTEXT://{bootstrap}" in advertised.split(","), (
            f"{name}: STREAMREC_KAFKA_BOOTSTRAP={bootstrap} is not a Kafka listener ({advertised})"
        )
        assert bootstrap.split(":")[0] in services, f"{name}: Kafka is not the compose service"
        assert urlparse(settings.redis_url).hostname in services, f"{name}: Redis is elsewhere"
        if worker_kind(streamrec_commands(argv_of(svc), name)[0]):
            mounts = {m.split(":")[1]: m.split(":")[0] for m in svc.get("volumes", [])}
            volume = mounts.get(str(settings.state_dir))
            assert volume in (compose.get("volumes") or {}), (
                f"{name}: no named volume at its state dir {settings.state_dir}"
            )
            state_volumes.append(volume)
    assert len(state_volumes) == len(set(state_volumes)), "workers share a state volume"


def test_every_streamrec_name_in_deploy_material_is_a_setting():
    paths = [COMPOSE, *DOCKERFILES.values(), *sorted(K8S.glob("*.yaml"))]
    for path in paths:
        assert_known(NAME.findall(path.read_text()), str(path.relative_to(ROOT)))


# --------------------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module")
def manifests() -> dict[str, list[dict]]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        docs[path.name] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def objects(manifests, kind: str | None = None) -> list[dict]:
    return [
        d for name, ds in manifests.items() if name != "kustomization.yaml" for d in ds
        if kind is None or d["kind"] == kind
    ]  # fmt: skip


SECRET_EXAMPLE = K8S / "examples" / "secret.yaml"


def config(manifests) -> tuple[dict, dict]:
    (cm,) = objects(manifests, "ConfigMap")
    secret = yaml.safe_load(SECRET_EXAMPLE.read_text())  # the user creates it; never applied
    secret_env = dict(secret.get("stringData") or {})
    secret_env.update({k: "x" for k in secret.get("data") or {}})  # base64 values: names only
    return cm["data"], secret_env


def test_k8s_manifests_parse_are_listed_and_have_the_kinds(manifests):
    (kustomization,) = manifests["kustomization.yaml"]
    listed = set(kustomization["resources"])
    assert listed == set(manifests) - {"kustomization.yaml"}, "kustomization.yaml resources differ"
    kinds = Counter(d["kind"] for d in objects(manifests))
    expected = {"ConfigMap": 1, "Secret": 0, "StatefulSet": 1, "Deployment": 3, "Job": 1}
    for kind, n in expected.items():
        assert kinds[kind] == n, f"expected {n} {kind}, found {kinds[kind]}"
    assert kinds["Service"] >= 1
    for d in objects(manifests):
        assert d.get("apiVersion") and d.get("metadata", {}).get("name"), d
    images = {c["image"].split(":")[0] for w in workloads(manifests) for c in containers(w)}
    assert images == set(IMAGES.values()), f"Kafka and Redis are external; images: {images}"
    overrides = {i["name"]: str(i.get("newTag")) for i in kustomization.get("images", [])}
    assert overrides == {repo: streamrec.__version__ for repo in IMAGES.values()}, overrides


@pytest.mark.parametrize("version", ["1.28.0", "latest"])
def test_k8s_manifests_validate_against_the_kubernetes_schemas(manifests, version):
    """Strict: an unknown or misspelt field fails, as `kubectl apply --validate=strict` would."""
    import kubernetes_validate as kv
    version = kv.latest_version() if version == "latest" else version
    for doc in objects(manifests):
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): {exc}")


def workloads(manifests) -> list[dict]:
    return [d for d in objects(manifests) if d["kind"] in ("StatefulSet", "Deployment", "Job")]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict) -> list[dict]:
    return pod_spec(workload)["containers"]


def test_k8s_workloads_run_real_commands_with_probes_and_resources(manifests):
    cm, secret = config(manifests)
    names = {(d["kind"], d["metadata"]["name"]) for d in objects(manifests)}
    names.add(("Secret", "streamrec-secrets"))  # created by the user (README), never applied
    state_dir = cm["STREAMREC_STATE_DIR"]
    kinds_run = Counter()
    for w in workloads(manifests):
        where = f"{w['kind']} {w['metadata']['name']}"
        spec, pod = w["spec"], pod_spec(w)
        labels = w["spec"]["template"]["metadata"]["labels"]
        if w["kind"] != "Job":
            selector = spec["selector"]["matchLabels"]
            assert selector.items() <= labels.items(), f"{where}: selector does not match its pods"
        assert pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{where}: root allowed"
        for c in containers(w):
            cwhere = f"{where} container {c['name']}"
            (args,) = streamrec_commands(c.get("command", []) + c.get("args", []), cwhere)
            sources = (("configMapRef", "ConfigMap"), ("secretRef", "Secret"))
            refs = [(k, e[ref]["name"]) for e in c["envFrom"] for ref, k in sources if ref in e]
            assert {k for k, _ in refs} == {"ConfigMap", "Secret"}, f"{cwhere}: envFrom {refs}"
            assert set(refs) <= names, f"{cwhere}: envFrom names something undefined: {refs}"
            env = {**cm, **secret, **{e["name"]: e.get("value", "") for e in c.get("env", [])}}
            from_env_ok(env, cwhere)
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), f"{cwhere}: no {part}"
            kind = worker_kind(args)
            if is_serve(args):
                check_serve_container(w, c, env, cwhere)
                kinds_run["serve"] += 1
                continue
            if kind is None:
                assert w["kind"] == "Job", f"{cwhere}: a one-shot command outside a Job"
                assert (args.command, args.topics_command) == ("topics", "create"), cwhere
                assert pod["restartPolicy"] in ("Never", "OnFailure"), cwhere
                assert c["image"].split(":")[0] == IMAGES["stream"], cwhere
                kinds_run["topics"] += 1
                continue
            kinds_run[kind] += 1
            assert c["image"].split(":")[0] == IMAGES[WORKERS[kind]], f"{cwhere}: {c['image']}"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in c, f"{cwhere}: no {probe}"
                (check,) = streamrec_commands(c[probe]["exec"]["command"], f"{cwhere} {probe}")
                assert check.health and worker_kind(check) == kind, f"{cwhere}: {probe}"
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert state_dir in mounts, f"{cwhere}: nothing mounted at {state_dir}"
            port = cm.get("STREAMREC_METRICS_PORT")
            if port:
                assert int(port) in [p["containerPort"] for p in c.get("ports", [])], cwhere
            if w["kind"] == "StatefulSet":
                claims = [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]]
                assert mounts[state_dir] in claims, f"{cwhere}: the state dir is no per-pod volume"
            else:
                volumes = {v["name"]: v for v in pod.get("volumes", [])}
                assert mounts[state_dir] in volumes, f"{cwhere}: no volume {mounts[state_dir]}"
    assert kinds_run == {"topics": 1, "streams": 1, "embed": 1, "tag": 1, "serve": 1}, kinds_run


def check_serve_container(w: dict, c: dict, env: dict, where: str) -> None:
    """The HTTP API: a Deployment of the slim image, listening on all interfaces at a named port
    that its HTTP probes use: /livez (Redis answers), not /healthz, whose 503 for a stalled stream
    worker must not restart the API nor take every replica out of the Service."""
    assert w["kind"] == "Deployment", f"{where}: the stateless API belongs in a Deployment"
    assert c["image"].split(":")[0] == IMAGES["stream"], f"{where}: {c['image']}"
    settings = from_env_ok(env, where)
    assert settings.serve_host == "0.0.0.0", f"{where}: listens on {settings.serve_host} only"
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/livez", f"{where}: {probe} checks {get['path']}"
        assert ports.get(get["port"], get["port"]) == settings.serve_port, f"{where}: {probe} port"


def test_k8s_serve_has_a_service_on_its_port(manifests):
    (deployment,) = [d for d in objects(manifests, "Deployment") if d["metadata"]["name"] == "streamrec-serve"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (c,) = containers(deployment)
    ports = {p["name"] for p in c["ports"]}
    services = [s for s in objects(manifests, "Service") if s["spec"]["selector"].items() <= labels.items()]
    assert services, "no Service selects the serve pods"
    for svc in services:
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports, "the Service targets no container port"


def test_k8s_stream_worker_is_a_statefulset_sized_by_partitions(manifests):
    cm, _ = config(manifests)
    (sts,) = objects(manifests, "StatefulSet")
    (container,) = containers(sts)
    assert worker_kind(streamrec_commands(container["command"], "StatefulSet")[0]) == "streams"
    replicas = sts["spec"]["replicas"]
    assert 1 <= replicas <= int(cm["STREAMREC_PARTITIONS"]), "more stream workers than partitions"
    services = {s["metadata"]["name"]: s for s in objects(manifests, "Service")}
    service = services.get(sts["spec"]["serviceName"])
    assert service is not None, "the StatefulSet's serviceName names no Service"
    assert service["spec"].get("clusterIP") == "None", "the StatefulSet's Service is not headless"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    for d in objects(manifests, "Deployment"):
        (c,) = containers(d)
        (args,) = streamrec_commands(c["command"], d["metadata"]["name"])
        assert worker_kind(args) in ("embed", "tag") or is_serve(args), d["metadata"]["name"]


def _kustomize_output() -> list[dict]:
    """What `kubectl apply -k deploy/k8s` applies: `kubectl kustomize` where kubectl is installed,
    else the same plain resource list read directly (this kustomization has no generators)."""
    import shutil
    import subprocess

    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        return [d for d in yaml.safe_load_all(out) if d]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [d for name in kustomization["resources"]
            for d in yaml.safe_load_all((K8S / name).read_text()) if d]  # fmt: skip


def test_k8s_apply_never_overwrites_a_secret_and_the_readme_creates_the_one_workloads_read():
    rendered = _kustomize_output()
    assert not [d for d in rendered if d["kind"] == "Secret"], "apply -k would overwrite a Secret"
    refs = {ref["secretRef"]["name"] for d in rendered if d["kind"] in ("StatefulSet", "Deployment", "Job")
            for c in (d["spec"].get("template") or d["spec"]["template"])["spec"]["containers"]
            for ref in c.get("envFrom", []) if "secretRef" in ref}  # fmt: skip
    assert refs == {"streamrec-secrets"}
    readme = (ROOT / "README.md").read_text()
    steps = readme[readme.index("## On Kubernetes"):]
    create = steps.index("kubectl -n streamrec create secret generic streamrec-secrets")
    assert create < steps.index("kubectl apply -k deploy/k8s"), "README: create the Secret first"
    example = yaml.safe_load(SECRET_EXAMPLE.read_text())
    for key in example["stringData"]:  # the README's command names every key the example has
        assert f"--from-literal={key}=" in steps, key
    namespace = {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"}
    assert namespace == {"streamrec"}, namespace


def test_k8s_configuration_and_secrets(manifests):
    cm, secret = config(manifests)
    assert_known(cm, "ConfigMap")
    assert_known(secret, "Secret")
    assert not [k for k in cm if "PASSWORD" in k], "a password in the ConfigMap, not in the Secret"
    assert [k for k in secret if "PASSWORD" in k], "the Secret holds no password"
    settings = from_env_ok({**cm, **secret}, "ConfigMap + Secret")
    for host in [h.rpartition(":")[0] for h in settings.kafka_bootstrap.split(",")]:
        assert host not in ("127.0.0.1", "localhost"), "Kafka is external: not on localhost"
    assert urlparse(settings.redis_url).hostname not in ("127.0.0.1", "localhost")


# ---------------------------------------------------------------------------------- Grafana


def test_grafana_dashboard_uses_exported_metrics():
    from streamrec.metrics import WorkerMetrics

    exported = set()
    for worker in ("streams", "embed", "tag"):
        metrics = WorkerMetrics(worker)
        if worker == "streams":  # the labelled quality gauges appear once the worker has measured
            report = {"window": {"d": {"hr@10": 0.1, "ndcg@10": 0.05, "cold_hr@10": 0.02,
                                       "coverage": 0.5, "evaluated": 9}}}  # fmt: skip
            metrics.quality(report, {"embedding": 0.25})
        for line in metrics.exposition().decode().splitlines():
            if line and not line.startswith("#"):
                exported.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    for path in sorted(GRAFANA.glob("*.json")):
        dashboard = json.loads(path.read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        assert exprs, f"{path.name}: no queries"
        used = {m for e in exprs for m in re.findall(r"\bstreamrec_[a-z0-9_]+", e)}
        assert used and used <= exported, f"{path.name}: not exported: {sorted(used - exported)}"


def _cells(panel) -> set[tuple[int, int]]:
    g = panel["gridPos"]
    return {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}


def test_grafana_panels_fit_the_grid_without_overlapping():
    for path in sorted(GRAFANA.glob("*.json")):
        panels = json.loads(path.read_text())["panels"]
        assert len({p["id"] for p in panels}) == len(panels), f"{path.name}: duplicate panel ids"
        taken: dict[tuple[int, int], str] = {}
        for p in panels:
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{path.name}: {p['title']} is off the grid"
            clash = {taken[c] for c in _cells(p) if c in taken}
            assert not clash, f"{path.name}: {p['title']} overlaps {clash}"
            taken.update(dict.fromkeys(_cells(p), p["title"]))


def test_grafana_shows_malformed_skips_beside_the_dead_letters():
    """The tag worker's skips are the other half of the embedding worker's dead letters: an operator
    should see both together, so a gap between them (one worker behind) stands out."""
    panels = json.loads((GRAFANA / "streamrec.json").read_text())["panels"]

    def panel_using(metric):
        found = [p for p in panels if any(metric in t["expr"] for t in p.get("targets", []))]
        assert found, f"no panel shows {metric}"
        return found[0]

    skipped = panel_using("streamrec_malformed_skipped_total")
    dead = panel_using("streamrec_dead_letters_total")
    if skipped is not dead:
        steps = ((1, 0), (-1, 0), (0, 1), (0, -1))
        neighbours = {(x + dx, y + dy) for x, y in _cells(dead) for dx, dy in steps}
        assert _cells(skipped) & neighbours, "the malformed-skips panel is not next to the dead letters"


def test_grafana_shows_the_live_quality_per_digest_and_the_tuner():
    """Every deployment sees the quality it serves: the four live metrics, split by digest."""
    panels = json.loads((GRAFANA / "streamrec.json").read_text())["panels"]
    exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    for metric in ("streamrec_quality_hr10", "streamrec_quality_ndcg10", "streamrec_quality_cold_hr10",
                   "streamrec_quality_coverage", "streamrec_blend_weight", "streamrec_tuner_promotions_total"):
        assert metric in exprs, metric
    quality = [p for p in panels if any("streamrec_quality_hr10" in t["expr"] for t in p["targets"])]
    assert all("digest" in t["expr"] for p in quality for t in p["targets"])
