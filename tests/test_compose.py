"""docker-compose.yml and the Dockerfile, checked against the code (no Docker engine needed).

The static tests read the compose file and ask the click command objects whether each
service's command, options and ``CERTLEDGER_*`` variables exist, and check ports,
healthchecks, volumes, dependencies and the image's build steps. The slow test runs
every service's command from the file as a local process on 127.0.0.1, in the order
``depends_on`` gives, and waits for each healthcheck to pass.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import yaml

from certledger.cli import cli
from ledger.keys import SIG_TYPE_ED25519, SigningKey, key_id
from ledger.log.certid import CertId
from ledger.log.checkpoint import open_checkpoint
from ledger.log.statement import Kind, SignedStatement, Statement
from ledger.replica.fetch import mirror_prefix
from ledger.trust.trust import verify_pinned

ROOT = Path(__file__).parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
HEALTH_URL = re.compile(r"http://127\.0\.0\.1:([0-9]+)/healthz")


# -- reading the compose file ----------------------------------------------------------


def resolve(argv: list[str]) -> tuple[click.Command, list[str]]:
    """The click command that ``argv`` names, and the arguments left for it."""
    assert argv[0] == "certledger", f"{argv}: not the certledger console script"
    command: click.Command = cli
    rest = list(argv[1:])
    words = ["certledger"]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        words.append(rest.pop(0))
        sub = command.get_command(click.Context(command), words[-1])
        assert sub is not None, f"no command {' '.join(words)!r}"
        command = sub
    return command, rest


def parse(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[click.Command, dict[str, Any]]:
    """Parse the service's command as click would in its container, its variables set."""
    service = SERVICES[name]
    for var in [v for v in os.environ if v.startswith("CERTLEDGER_")]:
        monkeypatch.delenv(var)
    for var, value in environment(name).items():
        monkeypatch.setenv(var, value)
    command, rest = resolve(service["command"])
    ctx = command.make_context(name, rest)
    return command, ctx.params


def environment(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment", {})
    assert isinstance(env, dict), f"{name}: write environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def envvars(command: click.Command) -> set[str]:
    """The variables the command reads: its options' envvars, and those its module reads itself."""
    source = inspect.getsource(sys.modules[command.callback.__module__]) if command.callback else ""
    out = set(re.findall(r'os\.environ\.get\("(CERTLEDGER_[A-Z_]+)"\)', source))
    for p in command.params:
        if isinstance(p.envvar, str):
            out.add(p.envvar)
        elif p.envvar:
            out.update(p.envvar)
    return out


def mounts(name: str) -> dict[str, str]:
    """Mount target → source (a named volume, or a path relative to the repository)."""
    out = {}
    for spec in SERVICES[name].get("volumes", []):
        source, target, *_ = spec.split(":")
        out[target] = source
    return out


def listen_port(name: str, monkeypatch: pytest.MonkeyPatch) -> int | None:
    _, params = parse(name, monkeypatch)
    if "listen" not in params:
        return None
    host, _, port = params["listen"].rpartition(":")
    assert host == "0.0.0.0", f"{name}: listen on every interface of the container"
    return int(port)


def bootstrap_pairs(option: str) -> dict[str, str]:
    argv = SERVICES["bootstrap"]["command"]
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == option)


def node_services() -> list[str]:
    return [n for n, s in SERVICES.items() if s["command"][1:3] == ["node", "run"]]


def dockerfile_lines() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def run_steps() -> list[str]:
    return [line[4:] for line in dockerfile_lines() if line.startswith("RUN ")]


# -- the compose file against the command line -----------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_command_and_variable_is_one_the_cli_reads(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    command, params = parse(name, monkeypatch)
    unknown = set(environment(name)) - envvars(command)
    assert not unknown, f"{name}: {sorted(unknown)} are not read by {SERVICES[name]['command'][:3]}"
    assert all(v.startswith("CERTLEDGER_") for v in environment(name))
    # Every file or directory the command is given lies in one of the service's mounts.
    paths = [v for v in params.values() if isinstance(v, Path)]
    paths += [Path(v) for v in bootstrap_pairs("--node").values()] if name == "bootstrap" else []
    for path in paths:
        assert any(path.is_relative_to(t) for t in mounts(name)), f"{name}: {path} is in no volume"


def test_the_parsed_values_are_the_intended_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in node_services():
        _, params = parse(name, monkeypatch)
        assert params["data"] == Path("/data") and params["listen"] == "0.0.0.0:8080"
    _, params = parse("verifier", monkeypatch)
    assert params["policy_file"] == Path("/consortium/policy-v1.note")
    assert params["sync_interval"] == 60.0 and not params["offline"]


def test_ports_and_healthchecks_match_the_listen_address(monkeypatch: pytest.MonkeyPatch) -> None:
    published = []
    for name, service in SERVICES.items():
        port = listen_port(name, monkeypatch)
        if port is None:
            assert "healthcheck" not in service and "ports" not in service
            assert service.get("restart") == "no", f"{name}: a one-shot service must not restart"
            continue
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"]
        assert [int(p) for p in HEALTH_URL.findall(test[3])] == [port], f"{name}: healthcheck port"
        for spec in service.get("ports", []):
            host_ip, host_port, container = spec.split(":")
            assert host_ip == "127.0.0.1", f"{name}: publish on the host's loopback only"
            assert int(container) == port
            published.append(int(host_port))
    assert len(published) == len(set(published)) == len(node_services()) + 1


def test_volumes_are_declared_used_and_owned_by_the_image_user() -> None:
    declared = set(COMPOSE["volumes"])
    used = set()
    created, owned = set(), set()
    for line in run_steps():
        for step in line.split("&&"):
            words = shlex.split(step)
            if words[:2] == ["mkdir", "-p"]:
                created.update(words[2:])
            if words[:1] == ["chown"]:
                owned.update(words[2:])
    for name in SERVICES:
        for target, source in mounts(name).items():
            if source.startswith("./"):
                assert (ROOT / source).is_file(), f"{name}: {source} is not in the repository"
                continue
            assert source in declared, f"{name}: volume {source} is not declared"
            used.add(source)
            assert target in created and target in owned, f"{target}: not made for the image's user"
    assert used == declared


def test_dependencies_start_things_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = node_services()
    assert len(nodes) == 3
    for name, service in SERVICES.items():
        for dep, cond in service.get("depends_on", {}).items():
            assert dep in SERVICES, f"{name} depends on a missing service {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dep]
            else:
                assert cond["condition"] == "service_completed_successfully"
                assert SERVICES[dep].get("restart") == "no"
    for name in nodes:
        assert SERVICES[name]["depends_on"] == {"bootstrap": {"condition": "service_completed_successfully"}}
    assert SERVICES["verifier"]["depends_on"] == {n: {"condition": "service_healthy"} for n in nodes}


def test_bootstrap_sets_up_exactly_the_node_services(monkeypatch: pytest.MonkeyPatch) -> None:
    _, params = parse("bootstrap", monkeypatch)
    spec = mounts("bootstrap")[str(params["spec"])]
    members = re.findall(r'^id = "([a-z0-9-]+)"', (ROOT / spec).read_text(encoding="utf-8"), re.M)
    nodes = node_services()
    dirs = bootstrap_pairs("--node")
    assert sorted(dirs) == sorted(members) == sorted(nodes)  # a node service is named by its member id
    urls = bootstrap_pairs("--base-url")
    for member in nodes:
        # The directory bootstrap fills is the volume the node runs on.
        assert mounts("bootstrap")[dirs[member]] == mounts(member)["/data"]
        assert urls[member] == f"http://{member}:{listen_port(member, monkeypatch)}/"
    # The verifier pins the policy bootstrap writes, and syncs from every node.
    policy_volume = mounts("bootstrap")[str(params["out_dir"])]
    assert mounts("verifier")["/consortium"] == policy_volume
    assert "consortium:/consortium:ro" in SERVICES["verifier"]["volumes"]
    assert environment("verifier")["CERTLEDGER_NODES"].split(",") == [urls[n] for n in nodes]
    # The governance keys stay with the one-shot service.
    governance = mounts("bootstrap")[str(params["keys_dir"])]
    assert [n for n in SERVICES if governance in mounts(n).values()] == ["bootstrap"]


# -- the image ---------------------------------------------------------------------------


def test_the_image_installs_the_project_as_the_readme_does() -> None:
    lines = dockerfile_lines()
    assert lines[0] == "FROM python:3.11-slim"
    steps = [s for s in run_steps() if "pip install" in s]
    assert steps == ["python3 -m venv /opt/certledger && /opt/certledger/bin/pip install -q ."]
    # The README's own command, with the image's venv and without editable mode.
    readme_step = steps[0].replace("/opt/certledger", ".venv").replace("install -q .", "install -q -e .")
    assert readme_step in README
    assert f"`{steps[0]}`" in README  # and the Deploying section names the image's step
    assert "ENV" in DOCKERFILE and "PATH=/opt/certledger/bin:$PATH" in DOCKERFILE
    copied = {w for line in lines if line.startswith("COPY ") for w in line.split()[1:-1]}
    packages = {"certledger", "ledger", "node", "verifier"}
    assert packages | {"pyproject.toml", "README.md"} <= copied


def test_the_image_runs_as_a_user_without_privileges() -> None:
    users = [line.split()[1] for line in dockerfile_lines() if line.startswith("USER ")]
    assert users == ["certledger"]
    assert any(s.startswith("useradd --system") for s in run_steps())
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv"} <= set(ignored)


def test_the_readme_explains_the_deployment() -> None:
    section = README.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    assert "docker compose up" in section
    for name in [*SERVICES, *COMPOSE["volumes"]]:
        assert f"`{name}`" in section, f"README's Deploying section does not name {name}"


# -- the commands as real processes ------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Topology:
    """The compose services as local processes: volumes are directories, names are ports."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.listen = {n: listen_port(n, monkeypatch) for n in SERVICES}
        servers = [n for n, p in self.listen.items() if p is not None]
        self.ports = dict(zip(servers, free_ports(len(servers)), strict=True))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for volume in COMPOSE["volumes"]:
            (tmp / "volumes" / volume).mkdir(parents=True)

    def host_path(self, name: str, value: str) -> str | None:
        for target in sorted(mounts(name), key=len, reverse=True):
            if value == target or value.startswith(target + "/"):
                source = mounts(name)[target]
                base = ROOT / source if source.startswith("./") else self.tmp / "volumes" / source
                return str(base) + value[len(target) :]
        return None

    def substitute(self, name: str, value: str) -> str:
        """A value from the compose file as it reads on this machine."""
        if "," in value:
            return ",".join(self.substitute(name, v) for v in value.split(","))
        url = re.fullmatch(r"http://([a-z0-9-]+):([0-9]+)(/.*)?", value)
        if url and url[1] in SERVICES:
            assert int(url[2]) == self.listen[url[1]]
            return f"http://127.0.0.1:{self.ports[url[1]]}{url[3] or ''}"
        if value.startswith("0.0.0.0:"):
            return f"127.0.0.1:{self.ports[name]}"
        path = self.host_path(name, value)
        if path is not None:
            return path
        key, sep, rest = value.partition("=")
        if sep and not key.startswith("-"):
            return f"{key}={self.substitute(name, rest)}"
        return value

    def start(self, name: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "certledger"]
        argv += [self.substitute(name, a) for a in SERVICES[name]["command"][1:]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTLEDGER_")}
        env.update({k: self.substitute(name, v) for k, v in environment(name).items()})
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def output(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def complete(self, name: str) -> None:
        proc = self.start(name)
        assert proc.wait(timeout=60) == 0, self.output(name)

    def healthy(self, name: str) -> bool:
        test = SERVICES[name]["healthcheck"]["test"]
        code = test[3].replace(f"127.0.0.1:{self.listen[name]}/", f"127.0.0.1:{self.ports[name]}/")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=10).returncode == 0

    def wait_healthy(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.procs[name].poll() is None, f"{name} exited:\n{self.output(name)}"
            if self.healthy(name):
                return
            time.sleep(0.2)
        raise AssertionError(f"{name} did not become healthy:\n{self.output(name)}")

    def up(self, before: Callable[[str], None] = lambda name: None) -> list[str]:
        """Start every service once its dependencies are met, calling ``before(name)`` first;
        returns the order."""
        order: list[str] = []
        while len(order) < len(SERVICES):
            ready = [
                n
                for n in SERVICES
                if n not in order and all(d in order for d in SERVICES[n].get("depends_on", {}))
            ]
            assert ready, "depends_on has a cycle"
            for name in ready:
                before(name)
                if self.listen[name] is None:
                    self.complete(name)
                else:
                    self.start(name)
            for name in ready:
                if self.listen[name] is not None:
                    self.wait_healthy(name)
            order += ready
        return order

    def down(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            assert proc.wait(timeout=30) in (0, -signal.SIGTERM), f"{name}:\n{self.output(name)}"

    def kill(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def topology(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Topology]:
    t = Topology(tmp_path, monkeypatch)
    try:
        yield t
    finally:
        t.kill()


def url(topology: Topology, name: str, path: str) -> str:
    return f"http://127.0.0.1:{topology.ports[name]}/{path}"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def issue_at(topology: Topology, member_id: str, count: int) -> int:
    """Append ``count`` issue statements to a node's log, signed with the key in its volume,
    and wait until its checkpoint is witnessed and another node mirrors the entries.
    Returns the log's size then (the node logs its policy's hash first)."""
    volume = topology.tmp / "volumes" / mounts(member_id)["/data"]
    policy = verify_pinned((topology.tmp / "volumes" / "consortium" / "policy-v1.note").read_bytes()).policy
    member = policy.require_member(member_id)
    key = SigningKey.load(volume / "log.key")
    kid = key_id(member.origin, SIG_TYPE_ED25519, key.public_key.raw)
    licence = policy.require_type("business_licence")
    now = int(time.time())
    body = []
    for serial in range(count):
        cert = CertId(
            type_code=licence.national_code, issuer_code=member.issuer_code, serial=str(serial), version="001"
        )
        statement = Statement(
            kind=Kind.ISSUE,
            issuer=member_id,
            cert_id=str(cert),
            cert_type=licence.code,
            time=now,
            operator="op:compose",
            valid_from=now,
            valid_until=now + 365 * 86400,
            claim_digests={
                c.key: hashlib.sha256(f"{serial}/{c.key}".encode()).digest() for c in licence.claims
            },
        )
        signed = SignedStatement.sign(statement, key=key, key_id=kid)
        body.append(
            {
                "statement": base64.b64encode(signed.statement_bytes).decode(),
                "key_id": kid.hex(),
                "signature": base64.b64encode(signed.signature).decode(),
            }
        )
    start = httpx.get(url(topology, member_id, "healthz"), timeout=10).json()["size"]
    r = httpx.post(url(topology, member_id, "v1/statements"), json={"statements": body}, timeout=10)
    assert r.status_code == 200 and r.json()["indexes"] == list(range(start, start + count)), r.text
    size = start + count
    log_vkey = member.log_verifier_key(member.log_keys[0])
    others = [m for m in policy.members if m.id != member_id]

    def witnessed() -> bool:
        note = httpx.get(url(topology, member_id, "checkpoint"), timeout=10).content
        opened = open_checkpoint(note, log_key=log_vkey, witnesses=[m.witness_key for m in others])
        return opened.checkpoint.size == size and len(opened.cosignatures) >= policy.witness_quorum

    wait_for(witnessed, f"{member_id}'s checkpoint of size {size} cosigned by the other nodes")

    def mirrored() -> bool:
        r = httpx.get(url(topology, others[0].id, mirror_prefix(member.origin) + "checkpoint"), timeout=10)
        return r.status_code == 200 and open_checkpoint(r.content, log_key=log_vkey).checkpoint.size == size

    wait_for(mirrored, f"{others[0].id}'s mirror of {member_id}'s log")
    return size


@pytest.mark.slow
def test_the_compose_commands_start_and_stop_as_processes(topology: Topology) -> None:
    nodes = node_services()
    issuer = next(m for m in nodes if m.endswith("-amr"))

    sizes: dict[str, int] = {}

    def before(name: str) -> None:
        if name == "verifier":  # the nodes reach each other by the base URLs bootstrap wrote
            sizes[issuer] = issue_at(topology, issuer, 5)

    order = topology.up(before)
    assert order[0] == "bootstrap" and order[-1] == "verifier"
    # The verifier synced every member's log from the nodes at its start.
    status = httpx.get(url(topology, "verifier", "v1/status"), timeout=10).json()
    synced = {m["id"]: (m["log_size"], m["witnessed_size"]) for m in status["members"]}
    assert synced[issuer] == (sizes[issuer], sizes[issuer]) and sorted(synced) == sorted(nodes)
    # A second `docker compose up` runs bootstrap again: it finds the consortium, changes nothing.
    before_bytes = (topology.tmp / "volumes" / "consortium" / "policy-v1.note").read_bytes()
    (topology.tmp / "bootstrap.log").unlink()
    topology.complete("bootstrap")
    assert "nothing to do" in topology.output("bootstrap")
    assert (topology.tmp / "volumes" / "consortium" / "policy-v1.note").read_bytes() == before_bytes
    topology.down()
