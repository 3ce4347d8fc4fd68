"""deploy/: the systemd units, the Docker image and compose file, and the
Kubernetes manifests, checked without systemd, a Docker engine or a
cluster.

* systemd: ``systemd-analyze verify`` (and ``security --offline``) where
  the tool exists; the unit's ``ExecStart`` with the sample configuration
  passes ``onlinel1 serve --check``, and run for real it stops cleanly on
  SIGTERM with a final snapshot that the next start and the replica unit's
  ``ExecStart`` serve.
* Docker: the wheel the Dockerfile's build stage makes is built (from the
  build context the Dockerfile and its .dockerignore define) and works;
  every command the Dockerfile and compose.yaml run parses with the real
  argument parser, and the ports, volumes and health checks agree.
* Kubernetes: the manifests parse, their commands parse, and the fields
  that tie them together agree (mounts and --snapshot-dir/--model, probe
  ports, Service ports and selectors, the claim name). The probes are
  HTTP GETs of /healthz and /readyz on the --http-endpoint port, which a
  live HttpServer answers; the Prometheus annotations and the
  ServiceMonitor lead to /metrics on that port.
* Grafana: every query of the dashboard uses only metric and label names
  that a live /metrics (tests/test_http.py's fake daemon) exports.
"""
from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from conftest import free_port, wait_for
from onlinel1.cli import build_parser
from onlinel1.cli.serve import daemon_config
from onlinel1.server.http import parse_http_endpoint

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
DOCKER = DEPLOY / "docker"
KUBERNETES = DEPLOY / "kubernetes"
GRAFANA = DEPLOY / "grafana"
EXAMPLES = ROOT / "clients" / "python" / "examples"
ONLINEL1 = [sys.executable, "-m", "onlinel1"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), e.get("PYTHONPATH")]))
    return e


def parse_cli(argv: list[str]):
    """``onlinel1 ARGS`` parsed by the real parser; a failure names the command."""
    assert argv and argv[0] == "onlinel1", argv
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"the CLI rejects {shlex.join(argv)}: {err.getvalue().strip()} ({exc.code})")


HTTP_FLAG = "--http-endpoint"


def http_endpoint(argv: list[str]) -> tuple[str, int]:
    """(host, port) of the command's --http-endpoint, which it must have."""
    value = flag(argv, HTTP_FLAG)
    assert value, f"{shlex.join(argv)}: no {HTTP_FLAG}"
    return parse_http_endpoint(value)


def effective_config(argv: list[str], toml_text: str | None = None):
    """(args, DaemonConfig) of an ``onlinel1 serve`` command, with the file
    given to --config read from ``toml_text``, merged by the daemon's code."""
    args = parse_cli(argv)
    assert args.command == "serve", argv
    table = tomllib.loads(toml_text).get("daemon", {}) if toml_text is not None else {}
    return args, daemon_config(args, table)


def port_of(endpoint: str) -> int:
    match = re.fullmatch(r"tcp://[^:/]+:(\d+)", endpoint)
    assert match, f"not a tcp://host:port endpoint: {endpoint}"
    return int(match.group(1))


def host_of(endpoint: str) -> str:
    return endpoint.split("://", 1)[1].rsplit(":", 1)[0]


def flag(argv: list[str], name: str) -> str | None:
    if name in argv:
        return argv[argv.index(name) + 1]
    return None


def assert_health_probe(argv: list[str], endpoint: str) -> None:
    """``onlinel1 health --connect tcp://127.0.0.1:PORT`` on the daemon's request port."""
    args = parse_cli(argv)
    assert args.command == "health"
    assert host_of(args.connect) in ("127.0.0.1", "localhost"), args.connect
    assert port_of(args.connect) == port_of(endpoint), (argv, endpoint)
    assert args.timeout > 0


# ================================================================ systemd

def parse_unit(path: pathlib.Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def unit_value(unit: dict, section: str, key: str) -> str:
    values = [v for k, v in unit[section] if k == key]
    assert values, f"[{section}] {key}= missing"
    return values[-1]


def exec_start(unit_path: pathlib.Path) -> list[str]:
    argv = shlex.split(unit_value(parse_unit(unit_path), "Service", "ExecStart"))
    assert pathlib.PurePath(argv[0]).name == "onlinel1", argv
    return ["onlinel1", *argv[1:]]


def runnable(argv: list[str]) -> list[str]:
    """An ``onlinel1 ...`` command line run with this Python (its HTTP
    endpoint, if any, on a free loopback port)."""
    assert argv[0] == "onlinel1"
    argv = list(argv)
    if HTTP_FLAG in argv:
        argv[argv.index(HTTP_FLAG) + 1] = "127.0.0.1:0"
    return [*ONLINEL1, *argv[1:]]


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit or "s"]
    return total


UNITS = ["onlinel1.service", "onlinel1-replica.service"]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                           reason="systemd-analyze is not installed here")


def local_unit(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    """A copy of the unit whose ExecStart runs this checkout's onlinel1 with
    this Python (/opt/onlinel1/bin/onlinel1 does not exist on this machine)."""
    source = SYSTEMD / name
    text = source.read_text()
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(line[len("ExecStart="):])
    local = f"ExecStart={shlex.join([*ONLINEL1, *argv[1:]])}"
    copy = tmp_path / name
    copy.write_text(text.replace(line, local))
    return copy


def systemd_analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60)


@needs_systemd_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify(tmp_path, name):
    proc = systemd_analyze("verify", str(local_unit(tmp_path, name)))
    # verify exits 0 even for unknown keys or bad values; it reports them
    # on stderr. A clean unit gives no output at all.
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    # The unit as shipped: its one complaint on this machine is the binary
    # of the install instructions (/opt/onlinel1), absent here.
    shipped = systemd_analyze("verify", str(SYSTEMD / name))
    other = [line for line in shipped.stderr.splitlines()
             if line.strip() and "/opt/onlinel1/bin/onlinel1" not in line]
    assert other == [], shipped.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_sandbox_exposure(tmp_path, name):
    proc = systemd_analyze("security", "--offline=yes", "--no-pager", str(local_unit(tmp_path, name)))
    if proc.returncode != 0 and "offline" in proc.stderr:
        pytest.skip(f"systemd-analyze security --offline is not supported here: {proc.stderr}")
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    # 0 = fully locked down, 10 = unprotected; systemd calls < 2 "OK".
    assert float(match.group(1)) < 2.0, proc.stdout


def test_systemd_unit_settings():
    unit = parse_unit(SYSTEMD / "onlinel1.service")
    service = dict(unit["Service"])
    for key, value in {"DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "NoNewPrivileges": "yes", "PrivateTmp": "yes", "Restart": "on-failure",
                       "KillSignal": "SIGTERM", "StateDirectory": "onlinel1"}.items():
        assert unit_value(unit, "Service", key) == value, key
    assert seconds(service["TimeoutStopSec"]) >= 60
    argv = exec_start(SYSTEMD / "onlinel1.service")
    args = parse_cli(argv)
    assert args.command == "serve" and not args.predict_only
    assert args.snapshot_dir == "/var/lib/" + service["StateDirectory"]
    assert args.config.startswith("/etc/" + service["ConfigurationDirectory"] + "/")
    _, config = effective_config(argv, (SYSTEMD / "onlinel1.toml").read_text())
    assert config.snapshot_every_seconds > 0 and config.keep >= 2
    assert config.snapshot_dir == "/var/lib/onlinel1"

    replica = parse_unit(SYSTEMD / "onlinel1-replica.service")
    replica_argv = exec_start(SYSTEMD / "onlinel1-replica.service")
    replica_args, replica_config = effective_config(replica_argv)
    assert replica_args.predict_only and replica_args.model == args.snapshot_dir
    # The same dynamic user, so that both units may use the state directory.
    assert unit_value(replica, "Service", "User") == service["User"]
    assert unit_value(replica, "Service", "StateDirectory") == service["StateDirectory"]
    trainer_config = tomllib.loads((SYSTEMD / "onlinel1.toml").read_text())["daemon"]
    assert replica_config.request_endpoint not in (trainer_config["request_endpoint"],
                                                   trainer_config["train_endpoint"])


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that nothing listens on (all
    held at once while choosing, so that no two are the same)."""
    import socket
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def local_config(tmp_path: pathlib.Path, toml_text: str,
                 ports: list[int] | None = None) -> tuple[pathlib.Path, str, str]:
    """The TOML with its endpoints moved to free loopback ports."""
    train, request = (f"tcp://127.0.0.1:{port}" for port in (ports or free_ports(2)))
    text = re.sub(r'(?m)^train_endpoint\s*=.*$', f'train_endpoint = "{train}"', toml_text)
    text = re.sub(r'(?m)^request_endpoint\s*=.*$', f'request_endpoint = "{request}"', text)
    path = tmp_path / "onlinel1.toml"
    path.write_text(text)
    return path, train, request


def localize(argv: list[str], config: pathlib.Path | None, snapshot_dir: pathlib.Path) -> list[str]:
    out = list(argv)
    for name, value in (("--config", config), ("--snapshot-dir", snapshot_dir),
                        ("--model", snapshot_dir)):
        if name in out and value is not None:
            out[out.index(name) + 1] = str(value)
    return out


def test_systemd_execstart_passes_check(tmp_path):
    argv = exec_start(SYSTEMD / "onlinel1.service")
    config, train, request = local_config(tmp_path, (SYSTEMD / "onlinel1.toml").read_text())
    snapshots = tmp_path / "state"
    proc = subprocess.run(runnable(localize(argv, config, snapshots) + ["--check"]),
                          capture_output=True, text=True, timeout=60, env=env())
    assert proc.returncode == 0, proc.stderr
    assert f"configuration ok: training on {train}, requests on {request}" in proc.stderr
    assert snapshots.is_dir()


SANDBOX = r'''
import ctypes, runpy, sys
libc = ctypes.CDLL(None, use_errno=True)
# PR_SET_NO_NEW_PRIVS (NoNewPrivileges=yes) and, where the kernel has it
# (Linux >= 6.3), PR_SET_MDWE (MemoryDenyWriteExecute=yes).
assert libc.prctl(38, 1, 0, 0, 0) == 0
mdwe = libc.prctl(65, 1, 0, 0, 0) == 0
print(f"sandbox: no_new_privs=on mdwe={'on' if mdwe else 'unsupported'}", file=sys.stderr, flush=True)
sys.argv = ["onlinel1", *sys.argv[1:]]
runpy.run_module("onlinel1", run_name="__main__", alter_sys=True)
'''


def start_unit_command(argv: list[str], tmp_path: pathlib.Path, log_name: str):
    """Run an ExecStart (made local) as systemd would, under
    NoNewPrivileges and, if the kernel supports it, MemoryDenyWriteExecute."""
    wrapper = tmp_path / "sandbox.py"
    wrapper.write_text(SANDBOX)
    log = open(tmp_path / log_name, "w+")
    proc = subprocess.Popen([sys.executable, str(wrapper), *argv[1:]], stdout=subprocess.DEVNULL,
                            stderr=log, env=env(), cwd=tmp_path)
    return proc, log


def stop(proc: subprocess.Popen, timeout: float) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise
    return proc.returncode


def test_systemd_units_run_stop_cleanly_and_resume(tmp_path):
    """The trainer unit's command learns, stops on SIGTERM (KillSignal)
    within TimeoutStopSec with a final snapshot, resumes from it, and the
    replica unit's command serves it."""
    from onlinel1.client import Client, Producer
    unit = parse_unit(SYSTEMD / "onlinel1.service")
    stop_timeout = seconds(unit_value(unit, "Service", "TimeoutStopSec"))
    train_port, request_port, replica_port = free_ports(3)
    config, train, request = local_config(tmp_path, (SYSTEMD / "onlinel1.toml").read_text(),
                                          [train_port, request_port])
    snapshots = tmp_path / "state"
    trainer_argv = localize(exec_start(SYSTEMD / "onlinel1.service"), config, snapshots)
    replica_argv = localize(exec_start(SYSTEMD / "onlinel1-replica.service"), None, snapshots)
    replica_argv[replica_argv.index("--request-endpoint") + 1] = f"tcp://127.0.0.1:{replica_port}"
    rows = [{"features": {f"f{i % 7}": 1.0, "bias": 1.0}, "label": 1 if i % 7 < 3 else -1}
            for i in range(500)]
    procs = []
    try:
        trainer, log = start_unit_command(trainer_argv, tmp_path, "trainer.log")
        procs.append(trainer)
        with Client(request, timeout=2) as client:
            wait_for(lambda: _healthy(client), bool, 30, "the trainer's health",
                     interval=0.02)
            with Producer(train, producer="unit-test", linger=10) as producer:
                for row in rows:
                    producer.add(row["features"], row["label"])
            wait_for(client.stats, lambda s: s["examples"] == len(rows), 30, "learning",
                     interval=0.02)
            before = client.predict(rows[:10])["predictions"]
        start = time.monotonic()
        assert stop(trainer, stop_timeout) == 0
        assert time.monotonic() - start < stop_timeout
        log.seek(0)
        text = log.read()
        assert "sandbox: no_new_privs=on" in text, text
        assert "snapshot-000000000001.ol1 written" in text, text
        assert (snapshots / "default" / "snapshot-000000000001.ol1").is_file()

        # Restarted (Restart=, or an upgrade): it resumes from the snapshot.
        trainer, log = start_unit_command(trainer_argv, tmp_path, "trainer2.log")
        procs.append(trainer)
        replica, replica_log = start_unit_command(replica_argv, tmp_path, "replica.log")
        procs.append(replica)
        with Client(request, timeout=2) as client:
            wait_for(lambda: _healthy(client), bool, 30, "the resumed trainer's health",
                     interval=0.02)
            stats = client.stats()
            assert stats["examples"] == len(rows)
            assert stats["producers"] == {"unit-test": 1}
            assert client.predict(rows[:10])["predictions"] == before
        with Client(f"tcp://127.0.0.1:{replica_port}", timeout=2) as client:
            health = wait_for(lambda: _healthy(client), bool, 30, "the replica's health",
                              interval=0.02)
            assert health["mode"] == "predict-only"
            assert client.predict(rows[:10])["predictions"] == before
        for proc in (replica, trainer):
            assert stop(proc, stop_timeout) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def _healthy(client) -> dict | None:
    from onlinel1.client import ClientError
    try:
        health = client.health()
    except ClientError:
        return None
    return health if health.get("status") == "ok" else None


def test_health_command_exit_status(start_daemon):
    """The health check every deployment file uses: 0 when the daemon
    answers, 1 with one line on stderr when it does not."""
    daemon = start_daemon()
    ok = subprocess.run([*ONLINEL1, "health", "--connect", daemon.request, "--timeout", "5"],
                        capture_output=True, text=True, timeout=60, env=env())
    assert ok.returncode == 0 and ok.stdout.startswith("ok "), ok.stderr
    down = subprocess.run([*ONLINEL1, "health", "--connect", f"tcp://127.0.0.1:{free_port()}",
                           "--timeout", "0.3"], capture_output=True, text=True, timeout=60,
                          env=env())
    assert down.returncode == 1 and len(down.stderr.strip().splitlines()) == 1, down.stderr


# ================================================================= Docker

def dockerfile_instructions(path: pathlib.Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        instruction, _, rest = line.partition(" ")
        out.append((instruction.upper(), rest.strip()))
    return out


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


class Dockerfile:
    def __init__(self, path: pathlib.Path) -> None:
        self.instructions = dockerfile_instructions(path)
        self.args = {}
        self.stages: list[list[tuple[str, str]]] = []
        for instruction, rest in self.instructions:
            if instruction == "ARG" and not self.stages:
                name, _, default = rest.partition("=")
                self.args[name] = default
            if instruction == "FROM":
                self.stages.append([])
            if self.stages:
                self.stages[-1].append((instruction, rest))

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: self.args[m.group(1)], text)

    def last(self, stage: list, instruction: str) -> str:
        found = [rest for i, rest in stage if i == instruction]
        assert found, f"no {instruction}"
        return found[-1]

    @property
    def runtime(self):
        return self.stages[-1]

    def command(self) -> list[str]:
        return exec_form(self.last(self.runtime, "ENTRYPOINT")) + \
            exec_form(self.last(self.runtime, "CMD"))

    def healthcheck(self) -> list[str]:
        rest = self.last(self.runtime, "HEALTHCHECK")
        return exec_form(rest[rest.index("CMD ") + 4:])


DOCKERFILE = DOCKER / "Dockerfile"


def dockerignore() -> tuple[list[str], list[str]]:
    """(re-included paths, excluded basename patterns) of the Dockerfile's
    own ignore file."""
    included, excluded = [], []
    for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line == "*":
            continue
        if line.startswith("!"):
            included.append(line[1:].rstrip("/"))
        elif line.startswith("**/"):
            excluded.append(line[3:])
        else:
            pytest.fail(f"unexpected .dockerignore pattern {line!r}")
    return included, excluded


def test_dockerfile_structure():
    docker = Dockerfile(DOCKERFILE)
    assert len(docker.stages) >= 2, "multi-stage"
    build, runtime = docker.stages[0], docker.runtime
    assert docker.expand(build[0][1]).startswith("python:3.11-slim AS ")
    assert docker.expand(runtime[0][1]) == "python:3.11-slim"
    # pip wheel of the checkout with the http extra (--http-endpoint needs it),
    # installed so in the runtime stage.
    assert any(i == "RUN" and "pip wheel" in rest and
               re.search(r""" (\.|"\.\[http\]"|'\.\[http\]')$""", rest.rstrip())
               for i, rest in build), "the build stage runs pip wheel .[http]"
    assert any(i == "RUN" and re.search(r"""pip install .*["']onlinel1\[http\]["']$""",
                                        rest.rstrip()) for i, rest in runtime), \
        "the runtime stage installs onlinel1[http]"
    assert not any(i == "RUN" and "build-essential" in rest for i, rest in runtime), \
        "no compiler in the runtime image"
    user = docker.last(runtime, "USER").split(":")[0]
    assert user not in ("0", "root")
    command = docker.command()
    args, config = effective_config(command)
    assert args.command == "serve" and config.snapshot_dir
    assert f'"{config.snapshot_dir}"' in docker.last(runtime, "VOLUME")
    exposed = {int(p) for p in docker.last(runtime, "EXPOSE").split()}
    http_host, http_port = http_endpoint(command)
    assert exposed == {port_of(config.train_endpoint), port_of(config.request_endpoint), http_port}
    assert host_of(config.train_endpoint) == host_of(config.request_endpoint) == "0.0.0.0"
    assert http_host == "0.0.0.0", "published ports reach the container's own address"
    assert docker.last(runtime, "STOPSIGNAL") == "SIGTERM"
    assert_health_probe(docker.healthcheck(), config.request_endpoint)
    # Every COPY source exists and is in the build context the ignore file leaves.
    included, excluded = dockerignore()
    # The status page is package data: an *.html pattern must let it through.
    page = "onlinel1/server/status_page.html"
    assert (ROOT / page).is_file()
    assert page in included or not any(fnmatch.fnmatch("status_page.html", x) for x in excluded)
    for stage in docker.stages:
        for instruction, rest in stage:
            if instruction == "COPY" and not rest.startswith("--from"):
                for source in rest.split()[:-1]:
                    assert (ROOT / source).exists(), source
                    assert any(source == inc or source.startswith(inc + "/") for inc in included), \
                        f"{source} is excluded from the build context by Dockerfile.dockerignore"


def compose() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the compose file and manifests")
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def example_parser(script: str):
    """The argparse parser of a clients/python/examples script."""
    import importlib.util
    path = EXAMPLES / pathlib.PurePath(script).name
    assert path.is_file(), script
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def service_command(service: dict, docker: Dockerfile) -> list[str]:
    """What a compose service runs: Docker's ENTRYPOINT/CMD rules."""
    if "entrypoint" in service:     # a new entrypoint drops the image's CMD
        return list(service["entrypoint"]) + list(service.get("command", []))
    entrypoint = exec_form(docker.last(docker.runtime, "ENTRYPOINT"))
    cmd = service.get("command", exec_form(docker.last(docker.runtime, "CMD")))
    assert isinstance(cmd, list), "exec form"
    return entrypoint + list(cmd)


def split_volume(spec: str) -> tuple[str, str, bool]:
    """(source, target, read-only) of a short-syntax compose volume (the
    source may hold ${VAR:-default})."""
    read_only = spec.endswith(":ro")
    if spec.endswith((":ro", ":rw")):
        spec = spec[:-3]
    source, _, target = spec.rpartition(":")
    return source, target, read_only


def volume_target(service: dict, volume: str) -> tuple[str, bool]:
    for spec in service.get("volumes", []):
        source, target, read_only = split_volume(spec)
        if source == volume:
            return target, read_only
    pytest.fail(f"volume {volume} is not mounted")


def published(service: dict) -> dict[int, int]:
    out = {}
    for spec in service.get("ports", []):
        *host, container = spec.split(":")
        assert host and host[0] == "127.0.0.1", f"{spec}: publish on loopback only"
        out[int(container)] = int(host[-1])
    return out


def test_compose_commands_exist_in_the_cli():
    docker = Dockerfile(DOCKERFILE)
    services = compose()["services"]
    assert {"trainer", "replica", "producer"} <= set(services)
    seen = 0
    for name, service in services.items():
        argv = service_command(service, docker)
        if argv[0] == "onlinel1":
            parse_cli(argv)
        else:
            assert argv[0] == "python" and argv[1].startswith("/opt/onlinel1/examples/"), argv
            with contextlib.redirect_stderr(io.StringIO()):
                try:
                    example_parser(argv[1]).parse_args(argv[2:])
                except SystemExit:
                    pytest.fail(f"{name}: {argv[1]} rejects {argv[2:]}")
        seen += 1
        check = service.get("healthcheck", {})
        if check and not check.get("disable"):
            assert check["test"][0] == "CMD"
            parse_cli(check["test"][1:])
    assert seen == len(services)


def test_compose_services_agree():
    docker = Dockerfile(DOCKERFILE)
    spec = compose()
    services = spec["services"]
    trainer, replica, producer = (services[n] for n in ("trainer", "replica", "producer"))
    t_args, t_config = effective_config(service_command(trainer, docker))
    r_args, r_config = effective_config(service_command(replica, docker))
    assert not t_args.predict_only and r_args.predict_only
    # One volume: the trainer writes its snapshots there, the replica reads it.
    volume = next(iter(spec["volumes"]))
    target, read_only = volume_target(trainer, volume)
    assert target == t_config.snapshot_dir and not read_only
    target, read_only = volume_target(replica, volume)
    assert target == r_args.model and read_only
    assert t_config.snapshot_every_seconds or t_config.snapshot_every_examples
    # Published ports lead to the endpoints; the host ports do not clash.
    t_ports, r_ports = published(trainer), published(replica)
    t_http, r_http = (http_endpoint(service_command(s, docker)) for s in (trainer, replica))
    assert t_http[0] == r_http[0] == "0.0.0.0"
    assert set(t_ports) == {port_of(t_config.train_endpoint), port_of(t_config.request_endpoint),
                            t_http[1]}
    assert set(r_ports) == {port_of(r_config.request_endpoint), r_http[1]}
    assert not set(t_ports.values()) & set(r_ports.values())
    # A clean stop has time for the final snapshot.
    assert trainer["stop_signal"] == "SIGTERM" and seconds(trainer["stop_grace_period"]) >= 60
    # The image's HEALTHCHECK fits the trainer; the replica's own fits it.
    assert_health_probe(docker.healthcheck(), t_config.request_endpoint)
    assert_health_probe(replica["healthcheck"]["test"][1:], r_config.request_endpoint)
    # The producer pushes to the trainer's service name and training port.
    argv = service_command(producer, docker)
    p_args = example_parser(argv[1]).parse_args(argv[2:])
    assert p_args.train_endpoint == f"tcp://trainer:{port_of(t_config.train_endpoint)}"
    assert p_args.request_endpoint == f"tcp://trainer:{port_of(t_config.request_endpoint)}"
    (data_mount,) = [split_volume(v) for v in producer["volumes"]]
    assert data_mount[2] and str(p_args.data).startswith(data_mount[1] + "/")
    default = re.fullmatch(r"\$\{CRITEO_DATA:-(.+)\}", data_mount[0]).group(1)
    assert (DOCKER / default).resolve() == (ROOT.parent / "shared" / "datasets" /
                                            "ctr_criteo_8k").resolve()
    for name in ("trainer", "replica", "producer"):
        assert services[name]["image"] == f"onlinel1:{_version()}"
        assert services[name]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert (DOCKER / services[name]["build"]["context"]).resolve() == ROOT


def _version() -> str:
    import onlinel1
    return onlinel1.__version__


def build_context(tmp_path: pathlib.Path) -> pathlib.Path:
    """The build stage's sources as the Dockerfile copies them into the
    image, filtered by Dockerfile.dockerignore (no locally built files)."""
    docker = Dockerfile(DOCKERFILE)
    included, excluded = dockerignore()
    context = tmp_path / "src"
    context.mkdir()
    for instruction, rest in docker.stages[0]:
        if instruction != "COPY":
            continue
        *sources, destination = rest.split()
        for source in sources:
            path = ROOT / source
            target = context / (source if destination.endswith("/") or len(sources) > 1
                                else destination)
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns(*excluded))
                # Files the ignore file lets back in (the last matching line wins).
                for inc in included:
                    if inc.startswith(source + "/") and (ROOT / inc).is_file():
                        shutil.copy2(ROOT / inc, target / inc[len(source) + 1:])
            else:
                shutil.copy2(path, context / path.name)
    return context


def _have_build_requirements() -> bool:
    import importlib.util
    return all(importlib.util.find_spec(m) for m in ("setuptools", "wheel", "Cython", "numpy"))


def test_wheel_of_the_docker_build_stage(tmp_path):
    """``pip wheel .`` as in the build stage (dependencies left out): the
    compiled kernels are in the wheel, and the wheel alone runs onlinel1.
    Compiles the four Cython extensions: about a minute."""
    context = build_context(tmp_path)
    assert not list(context.rglob("*.so")) and not list(context.rglob("*.c"))
    out = tmp_path / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-cache-dir",
               "--wheel-dir", str(out), "--quiet"]
    if _have_build_requirements():
        # The build requirements are installed here: use them rather than
        # fetching them (the Docker build fetches them in isolation).
        command.append("--no-build-isolation")
    proc = subprocess.run(command, cwd=context, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = list(out.glob("onlinel1-*.whl"))
    assert len(wheels) == 1, list(out.iterdir())
    wheel = wheels[0]
    assert wheel.name.startswith(f"onlinel1-{_version()}-cp{sys.version_info[0]}{sys.version_info[1]}-")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        for kernel in ("store", "sgd", "hashing", "parse"):
            assert any(re.fullmatch(rf"onlinel1/_kernels/{kernel}\.cpython-.*\.so", n)
                       for n in names), kernel
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        assert re.search(r"^onlinel1 = onlinel1\.cli:main$", entry_points, re.M), entry_points
        metadata = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
        for dependency in ("numpy", "pyzmq", "msgpack"):
            assert re.search(rf"^Requires-Dist: {dependency}\b", metadata, re.M), dependency
        # The http extra, and the status page it serves.
        assert re.search(r"^Provides-Extra: http$", metadata, re.M), metadata
        assert re.search(r"""^Requires-Dist: prometheus-client\b.*; extra == "http"$""",
                         metadata, re.M), metadata
        assert "onlinel1/server/status_page.html" in names
        unpacked = tmp_path / "site"
        zf.extractall(unpacked)
    # The wheel's own onlinel1 (not this checkout's) imports its kernels and runs.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    clean["PYTHONPATH"] = str(unpacked)
    probe = subprocess.run(
        [sys.executable, "-c", "import onlinel1, onlinel1._kernels.sgd as s; "
                               "import onlinel1.server.http as h; h._load_page(); "
                               "print(onlinel1.__file__); print(s.__file__); print(h.__file__)"],
        capture_output=True, text=True, timeout=60, env=clean, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert all(line.startswith(str(unpacked)) for line in probe.stdout.split()), probe.stdout
    version = subprocess.run([sys.executable, "-m", "onlinel1", "--version"], capture_output=True,
                             text=True, timeout=60, env=clean, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"onlinel1 {_version()}"


# ============================================================= Kubernetes

#: Manifests kept out of kustomization.yaml, and why.
OUTSIDE_KUSTOMIZATION = {"servicemonitor.yaml": "needs the Prometheus Operator's CRDs"}


def manifests() -> dict[tuple[str, str], dict]:
    """Every manifest, those of kustomization.yaml and those kept out of it."""
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the compose file and manifests")
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = kustomization["resources"]
    assert sorted(files) == sorted(p.name for p in KUBERNETES.glob("*.yaml")
                                   if p.name != "kustomization.yaml"
                                   and p.name not in OUTSIDE_KUSTOMIZATION)
    out = {}
    for name in files + sorted(OUTSIDE_KUSTOMIZATION):
        for doc in yaml.safe_load_all((KUBERNETES / name).read_text()):
            if doc:
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in out, key
                out[key] = doc
    return out


def container(workload: dict, name: str = "onlinel1") -> dict:
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def mount_of(c: dict, volume: str) -> dict:
    return next(m for m in c["volumeMounts"] if m["name"] == volume)


@contextlib.contextmanager
def live_http():
    """An HttpServer over tests/test_http.py's fake daemon (two models, all
    well), on a free loopback port, with a latency of each kind observed."""
    from onlinel1.server.http import HttpServer
    from onlinel1.server.metrics import RequestMetrics
    from test_http import FakeSource
    metrics = RequestMetrics()
    metrics.observe("ctr", "predict", 0.001)
    metrics.observe_batch("ctr", 1000, 0.01)
    server = HttpServer("127.0.0.1:0", FakeSource(), metrics, sample_interval=3600.0)
    server.start()
    try:
        yield server
    finally:
        server.close()


#: What each probe asks: liveness and start-up whether the daemon's loop
#: answers, readiness whether it has a model and no failing snapshot.
PROBE_PATHS = {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}


def check_http_probes(c: dict) -> int:
    """The probes are HTTP GETs of the container's --http-endpoint port,
    which the kubelet reaches on the pod IP; return that port."""
    host, port = http_endpoint(c["command"])
    assert host == "0.0.0.0", "the kubelet probes the pod IP: the pod binds its own addresses"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == port
    from test_http import get
    with live_http() as server:
        for probe, path in PROBE_PATHS.items():
            assert probe in c and "exec" not in c[probe], probe
            request = c[probe]["httpGet"]
            assert request["path"] == path, probe
            assert request["port"] in ("http", port), probe
            assert request.get("scheme", "HTTP") == "HTTP", probe
            # Answered by the real server (a healthy daemon: 200).
            status, _, body = get(server.address, request["path"])
            assert status == 200, (probe, body)
            # A slow loop gets its 503 (after the 2 s read timeout) before
            # the kubelet gives up.
            assert c[probe]["timeoutSeconds"] > server.read_timeout, probe
    start = c["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= 300, "5 minutes to resume"
    return port


def check_scrape_annotations(workload: dict, port: int) -> None:
    """prometheus.io/* annotations on the pods lead to /metrics on ``port``."""
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert all(isinstance(v, str) for v in annotations.values()), "annotations are strings"


def check_pod_security(workload: dict) -> None:
    pod = workload["spec"]["template"]["spec"]
    docker_uid = Dockerfile(DOCKERFILE).last(Dockerfile(DOCKERFILE).runtime, "USER").split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == docker_uid
    for c in pod.get("initContainers", []) + pod["containers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["image"] == f"onlinel1:{_version()}"


def test_kubernetes_trainer_statefulset(tmp_path):
    found = manifests()
    sts = found[("StatefulSet", "onlinel1-trainer")]
    assert sts["spec"]["replicas"] == 1, "one trainer per model"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    headless = found[("Service", sts["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    c = container(sts)
    config_volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"]
                         if v["name"] == mount_of(c, "config")["name"])
    configmap = found[("ConfigMap", config_volume["configMap"]["name"])]
    args = parse_cli(c["command"])
    config_path = pathlib.PurePosixPath(args.config)
    assert str(config_path.parent) == mount_of(c, "config")["mountPath"]
    toml_text = configmap["data"][config_path.name]
    args, config = effective_config(c["command"], toml_text)
    assert not args.predict_only
    # The snapshots: the claim template, mounted where --snapshot-dir points.
    (template,) = sts["spec"]["volumeClaimTemplates"]
    assert mount_of(c, template["metadata"]["name"])["mountPath"] == config.snapshot_dir
    assert not mount_of(c, template["metadata"]["name"]).get("readOnly")
    assert "ReadWriteMany" in template["spec"]["accessModes"]
    assert config.snapshot_every_seconds or config.snapshot_every_examples
    # Ports and probes.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"train": port_of(config.train_endpoint),
                     "request": port_of(config.request_endpoint),
                     "http": http_endpoint(c["command"])[1]}
    assert host_of(config.train_endpoint) == host_of(config.request_endpoint) == "0.0.0.0"
    check_scrape_annotations(sts, check_http_probes(c))
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    check_pod_security(sts)
    # The command with the ConfigMap as its config passes serve --check.
    config_file, train, request = local_config(tmp_path, toml_text)
    argv = localize(c["command"], config_file, tmp_path / "snapshots")
    argv[argv.index("--train-endpoint") + 1] = train
    argv[argv.index("--request-endpoint") + 1] = request
    proc = subprocess.run(runnable(argv + ["--check"]), capture_output=True, text=True,
                          timeout=60, env=env())
    assert proc.returncode == 0, proc.stderr


def test_kubernetes_replicas_read_the_trainer_claim():
    found = manifests()
    sts = found[("StatefulSet", "onlinel1-trainer")]
    deployment = found[("Deployment", "onlinel1-replica")]
    assert deployment["spec"]["replicas"] >= 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    c = container(deployment)
    args, config = effective_config(c["command"])
    assert args.predict_only and args.model
    # Its snapshots volume is the trainer's claim (<template>-<statefulset>-0), read-only.
    pod = deployment["spec"]["template"]["spec"]
    (template,) = sts["spec"]["volumeClaimTemplates"]
    claim = f"{template['metadata']['name']}-{sts['metadata']['name']}-0"
    volume = next(v for v in pod["volumes"] if v.get("persistentVolumeClaim"))
    assert volume["persistentVolumeClaim"]["claimName"] == claim
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    mount = mount_of(c, volume["name"])
    assert mount["mountPath"] == args.model and mount["readOnly"] is True
    # The init container waits for a snapshot in that same directory.
    (init,) = pod["initContainers"]
    assert f"{args.model}/snapshot-*.ol1" in " ".join(init["command"])
    assert mount_of(init, volume["name"])["mountPath"] == args.model
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"request": port_of(config.request_endpoint),
                     "http": http_endpoint(c["command"])[1]}
    check_scrape_annotations(deployment, check_http_probes(c))
    check_pod_security(deployment)


def test_kubernetes_services_reach_the_endpoints():
    found = manifests()
    workloads = [doc for (kind, _), doc in found.items() if kind in ("StatefulSet", "Deployment")]
    services = [doc for (kind, _), doc in found.items() if kind == "Service"]
    assert {s["metadata"]["name"] for s in services} >= {"onlinel1-trainer", "onlinel1-predict"}
    for service in services:
        selector = service["spec"]["selector"]
        targets = [w for w in workloads
                   if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        # One workload each, but the metrics Service: every pod.
        expected = len(workloads) if service["metadata"]["name"] == "onlinel1-metrics" else 1
        assert len(targets) == expected, service["metadata"]["name"]
        for target in targets:
            ports = {p["name"]: p["containerPort"] for p in container(target)["ports"]}
            for port in service["spec"]["ports"]:
                target_port = port["targetPort"]
                number = ports[target_port] if isinstance(target_port, str) else target_port
                assert number in ports.values(), (service["metadata"]["name"], port)
                assert port["port"] == number, "the Service keeps the daemon's port numbers"
    trainer = found[("Service", "onlinel1-trainer")]
    assert {p["name"] for p in trainer["spec"]["ports"]} == {"train", "request"}
    predict = found[("Service", "onlinel1-predict")]
    assert {p["name"] for p in predict["spec"]["ports"]} == {"request"}
    assert trainer["spec"].get("type", "ClusterIP") == predict["spec"].get("type", "ClusterIP") \
        == "ClusterIP", "no authentication: not exposed outside the cluster"
    metrics = found[("Service", "onlinel1-metrics")]
    assert [p["name"] for p in metrics["spec"]["ports"]] == ["http"]
    assert metrics["spec"]["clusterIP"] == "None"
    # Scraped while not ready: a failing snapshot makes a pod unready.
    assert metrics["spec"]["publishNotReadyAddresses"] is True


def test_kubernetes_servicemonitor_scrapes_every_pod():
    found = manifests()
    (monitor,) = [doc for (kind, _), doc in found.items() if kind == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [doc for (kind, _), doc in found.items() if kind == "Service"
                and selector.items() <= doc["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in services] == ["onlinel1-metrics"]
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in services[0]["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert endpoint["path"] == "/metrics" and endpoint.get("scheme", "http") == "http"
    assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])
    for workload in (found[("StatefulSet", "onlinel1-trainer")],
                     found[("Deployment", "onlinel1-replica")]):
        c = container(workload)
        assert {p["name"]: p["containerPort"] for p in c["ports"]}[port["targetPort"]] == \
            http_endpoint(c["command"])[1]
        for label in monitor["spec"].get("podTargetLabels", []):
            assert label in workload["spec"]["template"]["metadata"]["labels"]
    # The path it scrapes is the real server's metrics.
    from test_http import get
    with live_http() as server:
        status, headers, body = get(server.address, endpoint["path"])
    assert status == 200 and b"onlinel1_examples_total" in body


# ================================================================ Grafana

#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(query, legend) of every panel target and template variable."""
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((target["expr"], target.get("legendFormat", "")))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            out.append((query["query"] if isinstance(query, dict) else query, ""))
    return out


def test_grafana_dashboard_queries_what_the_daemon_exports():
    """Each query of the dashboard names only metrics, and labels of those
    metrics, that a live /metrics exports."""
    from prometheus_client.parser import text_string_to_metric_families
    from test_http import get
    dashboard = json.loads((GRAFANA / "onlinel1-dashboard.json").read_text())
    with live_http() as server:
        status, _, body = get(server.address, "/metrics")
    assert status == 200
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 10
    for expr, legend in queries:
        names = set(re.findall(r"\bonlinel1_\w+", expr))
        assert names, f"no onlinel1 metric in {expr!r}"
        unknown = names - set(labels)
        assert not unknown, f"{expr!r} uses {sorted(unknown)}, which /metrics does not export"
        used = set()
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            used |= {name.strip() for name in group.split(",") if name.strip()}
        for matchers in re.findall(r"\{([^}]*)\}", expr):
            used |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
        used |= set(re.findall(r"label_values\(\s*\w+\s*,\s*(\w+)\s*\)", expr))
        used |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        known = set().union(*(labels[n] for n in names)) | TARGET_LABELS
        assert used <= known, f"{expr!r} / {legend!r}: no label {sorted(used - known)}"
    # The panels the dashboard is for.
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for wanted in ("Throughput", "Progressive loss", "Non-zero weights", "latency p50 / p99",
                   "Errors", "Snapshot age"):
        assert wanted in titles, wanted
    exprs = " ".join(expr for expr, _ in queries)
    for quantile in ("0.5", "0.99"):
        assert re.search(rf"histogram_quantile\({quantile}, sum by \([^)]*\bop\b[^)]*\) "
                         r"\(rate\(onlinel1_request_duration_seconds_bucket", exprs), quantile
    assert "rate(onlinel1_examples_total" in exprs
    assert "time() - max by (model, instance) (onlinel1_last_snapshot_timestamp_seconds" in exprs
    # Every panel asks the dashboard's data source variable.
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def syscall_group(name: str) -> set[str]:
    """The system calls of a systemd group (``@resources``), nested groups
    expanded, as ``systemd-analyze syscall-filter`` lists them."""
    proc = systemd_analyze("syscall-filter", name)
    assert proc.returncode == 0, proc.stderr
    calls: set[str] = set()
    for line in proc.stdout.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= syscall_group(item) if item.startswith("@") else {item}
    return calls


def allowed_syscalls(unit_text: str) -> tuple[str, set[str]]:
    """("allow" or "deny", the set) of the unit's SystemCallFilter= lines,
    combined as systemd.exec(5) says: the first line sets the default (an
    allow list: everything else is refused), each later line adds to or
    removes from that set."""
    mode, chosen = None, set()
    for line in unit_text.splitlines():
        if not line.startswith("SystemCallFilter="):
            continue
        value = line[len("SystemCallFilter="):].strip()
        deny = value.startswith("~")
        items: set[str] = set()
        for item in value.lstrip("~").split():
            items |= syscall_group(item) if item.startswith("@") else {item}
        if mode is None:
            mode, chosen = ("deny" if deny else "allow"), items
        elif (mode == "allow") == deny:
            chosen -= items
        else:
            chosen |= items
    return mode, chosen


@needs_systemd_analyze
@pytest.mark.parametrize("name", UNITS)
def test_systemd_unit_allows_lowering_a_threads_priority(name):
    """Finding 14: ``SystemCallFilter=~@resources`` blocked setpriority, so
    --training-io-nice was silently off under systemd."""
    mode, chosen = allowed_syscalls((SYSTEMD / name).read_text())
    assert mode == "allow"
    assert "setpriority" in chosen
    # The rest of @resources (scheduling policy, rlimits, memory policy) stays refused.
    assert not chosen & (syscall_group("@resources") - {"setpriority"})
    assert not chosen & syscall_group("@privileged")


# ====================================================== the loopback rule

def serve_commands() -> dict[str, list[str]]:
    """Every ``onlinel1 serve`` command the deploy files run, by where."""
    docker = Dockerfile(DOCKERFILE)
    commands = {"Dockerfile": docker.command()}
    for name, service in compose()["services"].items():
        argv = service_command(service, docker)
        if argv[1:2] == ["serve"]:
            commands[f"compose {name}"] = argv
    found = manifests()
    for kind, name in (("StatefulSet", "onlinel1-trainer"), ("Deployment", "onlinel1-replica")):
        commands[f"{kind} {name}"] = container(found[(kind, name)])["command"]
    commands["onlinel1.service"] = exec_start(SYSTEMD / "onlinel1.service")
    commands["onlinel1-replica.service"] = exec_start(SYSTEMD / "onlinel1-replica.service")
    return commands


def test_deploy_commands_follow_the_loopback_rule():
    """A command that binds off loopback says --insecure (the container or
    pod is the boundary; the comments say how to turn CURVE on), and
    without it the daemon would refuse it; the systemd units stay on
    loopback and need none."""
    from onlinel1.cli.common import CommandError
    from onlinel1.server.auth import exposures
    toml = (SYSTEMD / "onlinel1.toml").read_text()
    for where, argv in serve_commands().items():
        _, config = effective_config(argv, toml if "--config" in argv and "service" in where
                                     else None)
        zmq_open, http_open = exposures(config)
        assert config.insecure == bool(zmq_open or http_open), where
        if config.insecure:
            without = [a for a in argv if a != "--insecure"]
            with pytest.raises(CommandError, match="not on loopback.*--insecure"):
                effective_config(without)


# ============================================== Kubernetes with CURVE

KUBERNETES_CURVE = DEPLOY / "kubernetes-curve"


def json_patch(doc: dict, ops: list[dict]) -> dict:
    """``doc`` with the ``add`` operations of an RFC 6902 patch applied
    (the only operation the overlay uses)."""
    import copy
    doc = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "add", op
        *parents, last = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        node = doc
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node[token]
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), copy.deepcopy(op["value"]))
        else:
            assert last not in node, f"{op['path']} exists: add would replace it"
            node[last] = copy.deepcopy(op["value"])
    return doc


def curve_workloads() -> dict[str, dict]:
    """The trainer and replica workloads as deploy/kubernetes-curve patches them."""
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the manifests")
    kustomization = yaml.safe_load((KUBERNETES_CURVE / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../kubernetes"]
    found = manifests()
    out = {}
    for patch in kustomization["patches"]:
        target = patch["target"]
        ops = yaml.safe_load((KUBERNETES_CURVE / patch["path"]).read_text())
        out[target["name"]] = json_patch(found[(target["kind"], target["name"])], ops)
    assert set(out) == {"onlinel1-trainer", "onlinel1-replica"}
    return out


def under(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def curve_layout(workload: dict) -> dict:
    """Where the CURVE keys come from in a patched workload, checked."""
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    c = container(workload)
    args = parse_cli(c["command"])
    assert args.curve_secret_key and args.curve_allow and args.insecure
    key_mount = next(m for m in c["volumeMounts"] if under(args.curve_secret_key, m["mountPath"]))
    assert key_mount.get("readOnly") is True
    assert volumes[key_mount["name"]]["emptyDir"]["medium"] == "Memory"
    allow_mount = next(m for m in c["volumeMounts"] if m["mountPath"] == args.curve_allow)
    assert "configMap" in volumes[allow_mount["name"]] and allow_mount["readOnly"] is True
    # The init container copies the Secret's key into the emptyDir, mode 0600.
    (init,) = [i for i in pod["initContainers"]
               if any(m["name"] == key_mount["name"] for m in i["volumeMounts"])]
    script = init["command"][-1]
    match = re.fullmatch(r"install -m 0600 (\S+) (\S+)", script)
    assert match and init["command"][:2] == ["sh", "-c"], script
    source, destination = match.groups()
    assert destination == args.curve_secret_key
    secret_mount = next(m for m in init["volumeMounts"] if under(source, m["mountPath"]))
    secret = volumes[secret_mount["name"]]["secret"]
    assert secret["secretName"] == "onlinel1-curve" and secret_mount["readOnly"] is True
    assert secret["defaultMode"] & 0o077 == 0
    # Probes, ports and pod security as in the plain manifests.
    check_http_probes(c)
    check_pod_security(workload)
    return {"args": args, "script": script, "source": source, "secret_mount": secret_mount,
            "key_mount": key_mount, "allow": args.curve_allow}


def test_kubernetes_curve_overlay(tmp_path):
    from onlinel1 import curve
    workloads = curve_workloads()
    layouts = {name: curve_layout(w) for name, w in workloads.items()}
    assert len({layout["args"].curve_allow for layout in layouts.values()}) == 1
    if shutil.which("kubectl"):        # kustomize itself renders the same commands and volumes
        proc = subprocess.run(["kubectl", "kustomize", str(KUBERNETES_CURVE)], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        import yaml
        rendered = {d["metadata"]["name"]: d for d in yaml.safe_load_all(proc.stdout) if d}
        for name, workload in workloads.items():
            mine, theirs = workload["spec"]["template"]["spec"], \
                rendered[name]["spec"]["template"]["spec"]
            for key in ("containers", "initContainers", "volumes"):
                assert mine[key] == theirs[key], (name, key)
    # Run the trainer's part for real: the init container's copy of a
    # group-readable key (a Secret under fsGroup), then serve --check.
    layout = layouts["onlinel1-trainer"]
    secret_dir, key_dir, allow_dir = (tmp_path / n for n in ("secret", "key", "allow"))
    for d in (secret_dir, key_dir, allow_dir):
        d.mkdir()
    curve.generate(tmp_path / "server")
    curve.generate(allow_dir / "loader-1")
    (allow_dir / "loader-1.key").unlink()
    source = secret_dir / pathlib.PurePosixPath(layout["source"]).name
    source.write_bytes((tmp_path / "server.key").read_bytes())
    source.chmod(0o440)
    destination = key_dir / pathlib.PurePosixPath(layout["args"].curve_secret_key).name
    script = layout["script"].replace(layout["source"], str(source)).replace(
        layout["args"].curve_secret_key, str(destination))
    subprocess.run(["sh", "-c", script], check=True, timeout=60)
    assert stat_mode(destination) == 0o600 and destination.read_bytes() == source.read_bytes()
    sts = workloads["onlinel1-trainer"]
    c = container(sts)
    found = manifests()
    config_volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"]
                         if v["name"] == mount_of(c, "config")["name"])
    toml_text = found[("ConfigMap", config_volume["configMap"]["name"])]["data"][
        pathlib.PurePosixPath(parse_cli(c["command"]).config).name]
    config_file, train, request = local_config(tmp_path, toml_text)
    argv = localize(c["command"], config_file, tmp_path / "snapshots")
    for flag_name, value in (("--train-endpoint", train), ("--request-endpoint", request),
                             ("--curve-secret-key", str(destination)),
                             ("--curve-allow", str(allow_dir))):
        argv[argv.index(flag_name) + 1] = value
    proc = subprocess.run(runnable(argv + ["--check"]), capture_output=True, text=True,
                          timeout=60, env=env())
    assert proc.returncode == 0, proc.stderr
    assert "CURVE on the training and request sockets: 1 client key(s) admitted" in proc.stderr
    # The Secret's file as mounted (group-readable) would have been refused.
    argv[argv.index("--curve-secret-key") + 1] = str(source)
    proc = subprocess.run(runnable(argv + ["--check"]), capture_output=True, text=True,
                          timeout=60, env=env())
    assert proc.returncode == 1 and "chmod 600" in proc.stderr


def stat_mode(path: pathlib.Path) -> int:
    import stat
    return stat.S_IMODE(path.stat().st_mode)
