"""``certledger demo``: a consortium of real processes on 127.0.0.1, told step by step.

1. Three Hangzhou departments (market regulation, public security, human resources)
   agree on a trust policy (``certledger/data/demo-network.toml``, each member's base
   URL set to its node's address), signed by a threshold of governance keys.
2. Each department's node is set up with ``certledger node init`` and given a clerk
   (``certledger node add-clerk``); the three nodes (``certledger node run``) and one
   verifier (``certledger verifier run``) start as separate processes, with the
   embedded SQLite stores, on ephemeral ports.
3. A clerk at each node issues a certificate through the clerks' HTTP API; its QR code
   is printed in the terminal and written as a PNG file.
4. The verifier, over HTTP, checks one certificate of each department: VALID.
5. The market regulator's clerk revokes the licence: REVOKED.
6. Public security's node stops; its residence permit still verifies (the verifier's
   replica, and the other nodes' mirrors of its log), then the node starts again.
7. The URLs; the consortium runs until Ctrl-C (``--exit``: it stops at once).

Everything is kept under the data directory; ``demo.json`` there records the ports,
the clerks' tokens and the certificates, so that a second run with the same ``--dir``
starts the same consortium again and re-checks them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import click
import httpx

from certledger.cli.clerk import add_clerk_cmd
from certledger.cli.node import init as node_init
from certledger.cli.story import Out
from ledger.credential.qr import make_qr, render_png
from ledger.files import write_file
from ledger.keys import SigningKey
from ledger.trust.consortium import KeyRequest, genesis, read_toml
from ledger.trust.policy_doc import sign_proposal

__all__ = ["STATE_FILE", "Network"]

AMR, PSB, HRSS = "hangzhou-xihu-amr", "hangzhou-psb", "hangzhou-hrss"
MEMBERS = (AMR, PSB, HRSS)
#: The file in the data directory that lets a second run resume.
STATE_FILE = "demo.json"
_STATE_FORMAT = "certledger-demo/v1"
#: How long to wait for a process to answer, or for a verdict to change.
_TIMEOUT = 60.0
#: Sample certificates, one per department: (type, claims).
SAMPLES: dict[str, tuple[str, dict[str, str]]] = {
    AMR: (
        "business_licence",
        {
            "uscc": "91330106MA2J8K7Q5L",
            "name": "杭州云栖数字科技有限公司",
            "company_type": "有限责任公司（自然人投资或控股）",
            "legal_representative": "陈明远",
            "registered_capital": "伍佰万元整",
            "established": "2019-03-15",
            "term": "2019年03月15日至长期",
            "address": "浙江省杭州市西湖区文三路398号东信大厦12层1205室",
            "business_scope": "一般项目：软件开发；信息技术咨询服务；数据处理服务。",
            "registration_authority": "杭州市西湖区市场监督管理局",
            "issue_date": "2024-06-20",
        },
    ),
    PSB: (
        "residence_permit",
        {
            "holder_name": "李娜",
            "sex": "女",
            "birth_date": "1992-08-03",
            "id_number": "510104199208031427",
            "address": "浙江省杭州市拱墅区湖墅南路186号",
            "issue_date": "2025-02-11",
        },
    ),
    HRSS: (
        "professional_qualification",
        {
            "holder_name": "王强",
            "id_number": "330102198705120019",
            "qualification": "一级造价工程师",
            "level": "一级",
            "certificate_no": "ZJ2024330100123",
            "issue_date": "2024-12-01",
        },
    ),
}


def free_ports(n: int) -> list[int]:
    """``n`` ports on 127.0.0.1 that the system has just handed out as free."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _quietly(command: click.Command, args: list[str]) -> str:
    """Run a certledger command in this process; its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        command.main(args=args, prog_name=f"certledger node {command.name}", standalone_mode=False)
    return out.getvalue()


@dataclass
class _Process:
    """One child process: a node or the verifier."""

    name: str
    url: str
    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class _Certificate:
    member: str
    cert_id: str
    type: str
    qr_text: str
    expected: str = "VALID"


@dataclass
class _State:
    ports: dict[str, int]
    tokens: dict[str, str]
    certificates: list[_Certificate] = field(default_factory=list)

    def to_json(self) -> bytes:
        doc = {
            "format": _STATE_FORMAT,
            "ports": self.ports,
            "tokens": self.tokens,
            "certificates": [c.__dict__ for c in self.certificates],
        }
        return json.dumps(doc, ensure_ascii=False, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> _State:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != _STATE_FORMAT:
            raise click.ClickException(f"{STATE_FILE} is not a certledger demo state file")
        return cls(
            ports={str(k): int(v) for k, v in doc["ports"].items()},
            tokens={str(k): str(v) for k, v in doc["tokens"].items()},
            certificates=[_Certificate(**c) for c in doc["certificates"]],
        )


class Network:
    """The demo consortium under ``work``: set up, started, told, stopped."""

    def __init__(self, work: Path, say: Out, *, qr: bool = True, checkpoint_interval: float = 0.2) -> None:
        self.work = work
        self.checkpoint_interval = checkpoint_interval
        self.say = say
        self.qr = qr
        self.client = httpx.Client(timeout=10.0, trust_env=False)
        self.procs: dict[str, _Process] = {}
        self.verdicts: list[tuple[str, dict[str, Any]]] = []
        self.resumed = (work / STATE_FILE).exists()
        self.state: _State | None = None

    # -- set-up ---------------------------------------------------------------------

    def setup(self) -> None:
        """Step 1 and the first half of 2: policy, keys, node data directories, clerks."""
        say, work = self.say, self.work
        say.step(1, "Three departments agree on a trust policy")
        names = [*MEMBERS, "verifier"]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        spec = read_toml(_data("demo-network.toml"), what="demo-network.toml")
        for m in spec["members"]:
            m["base_url"] = f"http://127.0.0.1:{ports[m['id']]}/"
        made: list[tuple[KeyRequest, SigningKey]] = []

        def make_key(request: KeyRequest) -> Any:
            key = SigningKey.generate()
            made.append((request, key))
            return key.public_key

        policy = genesis(spec, now=int(time.time()), make_key=make_key)
        keys = work / "keys"
        keys.mkdir(mode=0o700)
        files: dict[tuple[str, str], Path] = {}
        for request, key in made:
            stem = (
                f"governance-{request.name}" if request.member is None else f"{request.member}-{request.role}"
            )
            path = keys / f"{stem}.pem"
            key.save(path)
            files[(request.member or request.name, request.role)] = path
        governance = [(r.name, k) for r, k in made if r.role == "governance"]
        doc = sign_proposal(policy, governance[: policy.governance_threshold])
        write_file(work / "policy.note", doc, mode=0o644, what="policy document")
        for m in policy.members:
            types = ", ".join(f"{t.code} {t.name}" for t in policy.types if m.id in t.members_with("issue"))
            say(f"{m.id:<18} {m.name}: issues {types}; node {m.base_url}", 5)
        say(
            f"policy.note: version {policy.version}, signed by {policy.governance_threshold} of "
            f"{len(policy.governance_keys)} governance keys; a checkpoint counts once "
            f"{policy.witness_quorum} other departments' witnesses cosign it"
        )
        say.step(2, "Each department sets up its node and a clerk; three nodes and a verifier start")
        tokens: dict[str, str] = {}
        for m in MEMBERS:
            data = work / "nodes" / m
            _quietly(
                node_init,
                [
                    *("--policy", str(work / "policy.note"), "--member", m, "--data", str(data)),
                    *("--log-key", str(files[(m, "log")]), "--witness-key", str(files[(m, "witness")])),
                ],
            )
            token = _quietly(add_clerk_cmd, [f"clerk-{m}", "--role", "admin", "--data", str(data)]).strip()
            tokens[m] = token
        say(
            "certledger node init --policy policy.note --member MEMBER --data nodes/MEMBER (keys "
            "imported), certledger node add-clerk clerk-MEMBER --role admin (its token is kept in demo.json)"
        )
        self.state = _State(ports=ports, tokens=tokens)
        self.save()

    def load(self) -> None:
        """Read ``demo.json`` of an earlier run."""
        self.state = _State.from_json((self.work / STATE_FILE).read_bytes())
        self.say.step(1, "The consortium of an earlier run, in " + str(self.work))
        self.say.step(2, "Three nodes and a verifier start again")

    def save(self) -> None:
        assert self.state is not None
        write_file(
            self.work / STATE_FILE, self.state.to_json(), mode=0o600, overwrite=True, what="demo state"
        )

    # -- processes ------------------------------------------------------------------

    def url(self, name: str) -> str:
        assert self.state is not None
        return f"http://127.0.0.1:{self.state.ports[name]}/"

    def start_all(self) -> None:
        assert self.state is not None
        (self.work / "logs").mkdir(exist_ok=True)
        for m in MEMBERS:
            self.procs[m] = _Process(
                name=m,
                url=self.url(m),
                log=self.work / "logs" / f"{m}.log",
                args=[
                    *("node", "run", "--data", str(self.work / "nodes" / m)),
                    *("--listen", f"127.0.0.1:{self.state.ports[m]}"),
                    *("--checkpoint-interval", str(self.checkpoint_interval), "--mirror-interval", "0.5"),
                ],
            )
        self.procs["verifier"] = _Process(
            name="verifier",
            url=self.url("verifier"),
            log=self.work / "logs" / "verifier.log",
            args=[
                *("verifier", "run", "--policy", str(self.work / "policy.note")),
                *(
                    "--data",
                    str(self.work / "verifier"),
                    "--listen",
                    f"127.0.0.1:{self.state.ports['verifier']}",
                ),
                *("--sync-interval", "1", "--rate", "100", "--burst", "200"),
            ],
        )
        for p in self.procs.values():
            self.spawn(p)
        for p in self.procs.values():
            self.wait_healthy(p)
            self.say(
                f"{p.name:<18} pid {p.popen.pid if p.popen else '-':<7} {p.url}  (log: logs/{p.log.name})", 5
            )

    def spawn(self, p: _Process) -> None:
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        with p.log.open("ab") as log:
            p.popen = subprocess.Popen(
                [sys.executable, "-m", "certledger", *p.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops them in order
            )

    def wait_healthy(self, p: _Process) -> None:
        deadline = time.monotonic() + _TIMEOUT
        while time.monotonic() < deadline:
            if not p.running:
                raise click.ClickException(f"{p.name} exited at start; its log:\n{_tail(p.log)}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get(p.url + "healthz", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise click.ClickException(
            f"{p.name} did not answer within {_TIMEOUT:.0f}s; its log:\n{_tail(p.log)}"
        )

    def stop(self, name: str) -> None:
        """SIGTERM and wait (a node signs what it acknowledged before it exits); kill if stuck."""
        p = self.procs[name]
        if p.popen is None or p.popen.poll() is not None:
            return
        p.popen.send_signal(signal.SIGTERM)
        try:
            p.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait()

    def stop_all(self) -> None:
        for name in ["verifier", *MEMBERS]:
            if name in self.procs:
                self.stop(name)
        self.client.close()

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.procs.values() if p.popen is not None]

    # -- the story ------------------------------------------------------------------

    def issue(self) -> None:
        assert self.state is not None
        say = self.say
        say.step(3, "A clerk at each department issues a certificate through the node's clerk API")
        (self.work / "certificates").mkdir(exist_ok=True)
        for m in MEMBERS:
            ctype, claims = SAMPLES[m]
            r = self.client.post(
                self.url(m) + "v1/certificates",
                json={"type": ctype, "claims": claims},
                headers={"Authorization": f"Bearer {self.state.tokens[m]}"},
            )
            if r.status_code != 201:
                raise click.ClickException(f"{m}: issuing failed, HTTP {r.status_code}: {r.text}")
            doc = r.json()
            cert = _Certificate(member=m, cert_id=doc["cert_id"], type=ctype, qr_text=doc["qr_text"])
            self.state.certificates.append(cert)
            self.save()
            png = self.work / "certificates" / f"{m}.png"
            write_file(png, render_png(cert.qr_text), mode=0o600, overwrite=True, what="PNG")
            say(
                f"{m}: POST /v1/certificates ({ctype}) → {cert.cert_id}, entry {doc['index']} of its log; "
                f"QR code of {len(cert.qr_text)} characters → certificates/{png.name}"
            )
            if self.qr:
                qr_out = io.StringIO()
                make_qr(cert.qr_text).terminal(out=qr_out, compact=True, border=2)
                say(qr_out.getvalue().rstrip("\n"), 0, wrap=False)

    def verify(self, cert: _Certificate, expected: str, *, why: str) -> dict[str, Any]:
        """Ask the verifier until it answers ``expected`` (the logs and the replica catch up
        within seconds); show the verdict."""
        deadline = time.monotonic() + _TIMEOUT
        url = self.url("verifier") + "v1/verify"
        while True:
            r = self.client.post(url, json={"text": cert.qr_text})
            v: dict[str, Any] = r.json()
            if v.get("code") == expected or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        mark = {"valid": "✓", "invalid": "✗", "unsure": "?"}.get(v.get("class", ""), "?")
        self.say(f"{why}: POST /v1/verify at the verifier", 3)
        self.say(f"→ {mark} {v['code']}  {v['reason']['zh']}", 6, hang=4)
        self.say(v["reason"]["en"], 10)
        if v["code"] != expected:
            raise click.ClickException(
                f"the demo expected {cert.cert_id} to be {expected}, but the verifier answered {v['code']}"
            )
        self.verdicts.append((cert.cert_id, v))
        return v

    def check_all(self, step: int) -> None:
        assert self.state is not None
        say = self.say
        say.step(step, "The verifier, another process, checks one certificate of each department over HTTP")
        for cert in self.state.certificates:
            v = self.verify(cert, cert.expected, why=f"{cert.member}'s {cert.type}")
            if v["code"] == "VALID":
                for c in v["claims"][:3]:
                    say(f"{c['label']} {c['name']}: {c['value']}", 10)

    def revoke(self) -> None:
        assert self.state is not None
        say = self.say
        say.step(5, "The market regulator's clerk revokes the business licence")
        cert = next(c for c in self.state.certificates if c.member == AMR)
        r = self.client.post(
            self.url(AMR) + f"v1/certificates/{cert.cert_id}/revoke",
            json={"reason": "holder_ceased"},
            headers={"Authorization": f"Bearer {self.state.tokens[AMR]}"},
        )
        if r.status_code not in (200, 201):
            raise click.ClickException(f"revoking failed, HTTP {r.status_code}: {r.text}")
        cert.expected = "REVOKED"
        self.save()
        say(f"POST /v1/certificates/{cert.cert_id}/revoke at its node, reason holder_ceased")
        self.verify(cert, "REVOKED", why="the same licence, once the revocation is witnessed and synced")

    def node_down(self) -> None:
        assert self.state is not None
        say = self.say
        say.step(6, "Public security's node stops; its residence permit still verifies")
        self.stop(PSB)
        say(f"{PSB} stopped (SIGTERM; it signed what it had acknowledged and exited)")
        cert = next(c for c in self.state.certificates if c.member == PSB)
        self.verify(cert, "VALID", why="the residence permit, its issuer down")
        self.spawn(self.procs[PSB])
        self.wait_healthy(self.procs[PSB])
        say(f"{PSB} started again, and catches up")

    def urls(self, step: int) -> None:
        say = self.say
        say.step(step, "The consortium's addresses")
        say(f"verifier page       {self.url('verifier')}", 5)
        say(f"consortium page     {self.url('verifier')}consortium", 5)
        for m in MEMBERS:
            say(f"{m:<19} {self.url(m)}clerk/ (the clerk's page; token in demo.json; API at /docs)", 5)

    def watch(self) -> None:
        """Until Ctrl-C (or SIGTERM): report a process that exits on its own."""
        while True:
            for p in self.procs.values():
                if p.popen is not None and p.popen.poll() is not None:
                    raise click.ClickException(f"{p.name} exited; its log:\n{_tail(p.log)}")
            time.sleep(0.5)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM stop the demo the way Ctrl-C does (so every process is stopped)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _data(name: str) -> bytes:
    return resources.files("certledger").joinpath("data", name).read_bytes()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e.strerror})"
