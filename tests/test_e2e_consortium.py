"""The consortium changes while it runs, with real processes on 127.0.0.1: a policy update
adds a fourth department whose certificates the verifier accepts, and a member's log key
is rotated while certificates signed with the old key keep verifying."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from certledger.cli import cli
from certledger.cli.demo_network import AMR, MEMBERS, SAMPLES, Network, _Process, free_ports
from certledger.cli.story import Out
from ledger.keys import SIG_TYPE_ED25519, SigningKey, key_id
from ledger.log.statement import Entry
from ledger.log.store import LogStore
from ledger.trust.trust import verify_pinned

pytestmark = pytest.mark.slow

D = "hangzhou-health"
ORIGIN_AMR = f"ledger.example.gov.cn/{AMR}"
D_ORIGIN = f"ledger.example.gov.cn/{D}"
#: The governance keys the demo generates; its threshold is two.
GOVERNANCE = ("gov.amr.example.gov.cn", "gov.psb.example.gov.cn")


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    """The demo's three nodes and verifier, set up and started; every process stopped at the end."""
    network = Network(tmp_path, Out(quiet=True), qr=False)
    try:
        network.setup()
        network.start_all()
        yield network
    finally:
        for name in [n for n in network.procs if n not in MEMBERS]:  # a node added by the test
            network.stop(name)
        network.stop_all()
        for p in network.procs.values():
            assert p.popen is None or p.popen.poll() is not None


def next_version(net: Network, *changes: str) -> Path:
    """Version 2 proposed with ``changes`` and signed by the governance threshold."""
    v2 = net.work / "policy-v2.note"
    run("consortium", "propose", "--current", str(net.work / "policy.note"), *changes, "--out", str(v2))
    for name in GOVERNANCE:
        run(
            "consortium",
            "sign",
            str(v2),
            "--key",
            str(net.work / "keys" / f"governance-{name}.pem"),
            "--name",
            name,
        )
    return v2


def install(net: Network, doc: Path, timeout: float = 60) -> None:
    """``node update-policy`` at every node; the running verifier adopts the version from
    the nodes on its own (no restart)."""
    for m in MEMBERS:
        assert run("node", "update-policy", str(doc), "--data", str(net.work / "nodes" / m)).strip() == (
            "installed policy version 2"
        )
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(net.url("verifier") + "v1/status", timeout=5, trust_env=False).json()
        if status["policy"]["version"] == 2:
            break
        assert time.monotonic() < deadline, status["policy"]
        time.sleep(0.2)


def issue(net: Network, member: str, token: str, ctype: str, claims: dict[str, str]) -> dict[str, Any]:
    r = httpx.post(
        net.procs[member].url + "v1/certificates",
        json={"type": ctype, "claims": claims},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        trust_env=False,
    )
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def verdict(net: Network, qr_text: str, expected: str = "VALID", timeout: float = 60) -> dict[str, Any]:
    """The verifier's answer, asked until it is ``expected`` (logs and replica catch up in seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        v: dict[str, Any] = httpx.post(
            net.url("verifier") + "v1/verify", json={"text": qr_text}, timeout=10, trust_env=False
        ).json()
        if v["code"] == expected or time.monotonic() > deadline:
            return v
        time.sleep(0.25)


def wait_for_policy(url: str, version: int, timeout: float = 30) -> None:
    """Until the node at ``url`` serves ``version`` as its latest policy (nodes look for an
    installed version every few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(url + "policy/latest", timeout=5, trust_env=False)
        if r.status_code == 200 and verify_pinned(r.content).policy.version == version:
            return
        assert time.monotonic() < deadline, f"{url} still serves {r.status_code} {r.text[:200]}"
        time.sleep(0.2)


def test_a_policy_update_adds_a_fourth_department_whose_certificates_verify(net: Network) -> None:
    assert net.state is not None
    keys = net.work / "keys"
    log = run("consortium", "keygen", "--name", D_ORIGIN, "--out", str(keys / f"{D}-log.pem")).strip()
    wname = f"witness.example.gov.cn/{D}"
    wit = run("consortium", "keygen", "--name", wname, "--out", str(keys / f"{D}-witness.pem"), "--witness")
    [port] = free_ports(1)
    member = net.work / "member.toml"
    member.write_text(
        f'id = "{D}"\nname = "杭州市卫生健康委员会"\norigin = "{D_ORIGIN}"\n'
        f'issuer_code = "11330100002489111B"\nbase_url = "http://127.0.0.1:{port}/"\n'
        f'log_key = "{log}"\nwitness_name = "{wname}"\nwitness_key = "{wit.strip()}"\n',
        encoding="utf-8",
    )
    ctype = net.work / "type.toml"
    ctype.write_text(
        'code = "health_certificate"\nname = "健康证明"\nnational_code = "11100000MB0143212A001"\n'
        f'issuers = ["{D}"]\nrevokers = ["{D}"]\nmax_validity_days = 365\n'
        'claims = [{ key = 0, name = "holder_name", label = "姓名" },'
        ' { key = 1, name = "issue_date", label = "发证日期", kind = "date" }]\n',
        encoding="utf-8",
    )
    # the consortium runs on version 1 first: certificates of the three departments verify
    amr_type, amr_claims = SAMPLES[AMR]
    before = issue(net, AMR, net.state.tokens[AMR], amr_type, amr_claims)
    assert verdict(net, before["qr_text"])["code"] == "VALID"

    v2 = next_version(net, f"add-member={member}", f"add-type={ctype}")
    install(net, v2)
    for m in MEMBERS:
        wait_for_policy(net.procs[m].url, 2)

    # the new department sets up its node pinned to version 2 and a clerk, and starts it
    data = net.work / "nodes" / D
    run(
        *("node", "init", "--policy", str(v2), "--member", D, "--data", str(data)),
        *("--log-key", str(keys / f"{D}-log.pem"), "--witness-key", str(keys / f"{D}-witness.pem")),
    )
    token = (
        run("node", "add-clerk", f"clerk-{D}", "--role", "admin", "--data", str(data))
        .splitlines()[-1]
        .strip()
    )
    d = _Process(
        name=D,
        url=f"http://127.0.0.1:{port}/",
        log=net.work / "logs" / f"{D}.log",
        args=[
            *("node", "run", "--data", str(data), "--listen", f"127.0.0.1:{port}"),
            *("--checkpoint-interval", "0.2", "--mirror-interval", "0.5"),
        ],
    )
    net.procs[D] = d
    net.spawn(d)
    net.wait_healthy(d)

    cert = issue(net, D, token, "health_certificate", {"holder_name": "赵敏", "issue_date": "2026-01-05"})
    v = verdict(net, cert["qr_text"])
    assert v["code"] == "VALID", v
    cosigners = v["evidence"]["cosigners"]
    assert len(cosigners) >= 2 and set(cosigners) <= set(MEMBERS), cosigners
    assert "杭州市卫生健康委员会" in v["reason"]["zh"], v["reason"]
    # the type is D's alone: another department cannot issue it
    r = httpx.post(
        net.procs[AMR].url + "v1/certificates",
        json={"type": "health_certificate", "claims": {"holder_name": "赵敏", "issue_date": "2026-01-05"}},
        headers={"Authorization": f"Bearer {net.state.tokens[AMR]}"},
        timeout=10,
        trust_env=False,
    )
    assert r.status_code != 201, r.text
    # and the certificate issued under version 1 still verifies
    assert verdict(net, before["qr_text"])["code"] == "VALID"


def test_a_rotated_log_key_keeps_old_certificates_valid(net: Network) -> None:
    assert net.state is not None
    amr_type, amr_claims = SAMPLES[AMR]
    token = net.state.tokens[AMR]
    old = issue(net, AMR, token, amr_type, amr_claims)
    assert verdict(net, old["qr_text"])["code"] == "VALID"
    # the old key's window ends when the rotation is proposed (exclusive, in whole seconds):
    # let the clock leave the second the old certificate was issued in
    time.sleep(math.ceil(time.time()) - time.time() + 0.05)

    new_key_file = net.work / "keys" / f"{AMR}-log-2.pem"
    new_key = run("consortium", "keygen", "--name", ORIGIN_AMR, "--out", str(new_key_file))
    v2 = next_version(net, f"rotate-log-key={AMR}:{new_key.strip()}")
    install(net, v2)

    # the key's memory of what it signed belongs to that key alone: stop the node and let
    # 'node rotate-key' switch it to the new key (refused while the node runs), keeping the
    # old key and its memory aside
    amr = net.procs[AMR]
    data = net.work / "nodes" / AMR
    old_kid = key_id(ORIGIN_AMR, SIG_TYPE_ED25519, SigningKey.load(data / "log.key").public_key.raw)
    refused = CliRunner().invoke(cli, ["node", "rotate-key", "--data", str(data), "--key", str(new_key_file)])
    assert refused.exit_code != 0
    assert "rule: node-running" in refused.output
    net.stop(AMR)
    rotated = run("node", "rotate-key", "--data", str(data), "--key", str(new_key_file))
    assert f"kept in {data / 'retired-keys' / old_kid.hex()}" in rotated
    net.spawn(amr)
    net.wait_healthy(amr)

    claims = {**amr_claims, "uscc": "91330106MA2J8K7Q6M", "name": "杭州湖畔信息技术有限公司"}
    new = issue(net, AMR, token, amr_type, claims)
    assert new["index"] > old["index"]
    # the old certificate's entry carries the old key's ID, the new one's the new key's
    new_kid = key_id(ORIGIN_AMR, SIG_TYPE_ED25519, SigningKey.load(new_key_file).public_key.raw)
    with LogStore.open(data / "log.db", readonly=True) as store:
        assert Entry.from_bytes(store.entry(old["index"])).signed.key_id == old_kid
        assert Entry.from_bytes(store.entry(new["index"])).signed.key_id == new_kid
    v_new = verdict(net, new["qr_text"])
    assert v_new["code"] == "VALID", v_new
    v_old = verdict(net, old["qr_text"])
    assert v_old["code"] == "VALID", v_old
