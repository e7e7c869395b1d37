"""``certledger node doctor`` and the expiry metrics: what expires soon, what is wrong now."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certledger.cli import cli
from ledger.keys import SigningKey
from node.app import create_app
from node.doctor import DAY, examine, exit_code
from tests import nodes
from tests.fixtures import consortium as fx


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tls_cert(path: Path, *, days: float) -> Path:
    """A self-signed certificate for 127.0.0.1 that expires ``days`` from now."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node.test")])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=400))
        .not_valid_after(now + _dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    doc = nodes.sign_policy(nodes.policy_with_urls({}))
    return nodes.init_node(tmp_path, fx.AMR.id, doc)


def doctor(data: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["node", "doctor", "--data", str(data), *args])
    return r.exit_code, r.output


def test_a_healthy_node_is_all_fine(data: Path) -> None:
    code, out = doctor(data)
    assert code == 0, out
    assert "OK    policy version 1: expires in 1" in out  # about 180 days
    assert "OK    log key: listed" in out and "OK    witness key: listed" in out
    assert "OK    fork alerts: none held" in out
    assert out.rstrip().endswith("all fine")


def test_a_policy_expiring_within_the_warning_period_is_announced(data: Path) -> None:
    code, out = doctor(data, "--warn-days", "200")
    assert code == 1, out
    assert "WARN  policy version 1: expires in" in out
    assert "the consortium must sign the next version before then" in out
    assert out.rstrip().endswith("something to do soon")


def test_a_key_file_others_can_read_is_wrong_now(data: Path) -> None:
    os.chmod(data / "witness.key", 0o644)
    code, out = doctor(data)
    assert code == 2
    assert "FAIL  witness key: " in out and "accessible by others (mode 0644); run chmod 600 on it" in out


def test_a_log_key_the_policy_does_not_list_is_wrong_now(data: Path) -> None:
    (data / "log.key").unlink()
    SigningKey.generate().save(data / "log.key")
    code, out = doctor(data)
    assert code == 2, out
    assert "FAIL  log key: not one of hangzhou-xihu-amr's log keys in policy version 1" in out
    assert out.rstrip().endswith("something is wrong now")


def test_tls_certificate_expiry_soon_and_past(data: Path, tmp_path: Path) -> None:
    code, out = doctor(data, "--tls-cert", str(tls_cert(tmp_path / "soon.pem", days=10)), "--json")
    assert code == 1
    found = {f["what"]: f for f in map(json.loads, out.splitlines())}
    assert found["TLS certificate"]["level"] == "warn"
    assert found["TLS certificate"]["message"].startswith("expires in 9 day(s)") or found["TLS certificate"][
        "message"
    ].startswith("expires in 10 day(s)")
    assert abs(found["TLS certificate"]["expires"] - (time.time() + 10 * DAY)) < 120
    code, out = doctor(data, "--tls-cert", str(tls_cert(tmp_path / "past.pem", days=-3)))
    assert code == 2
    assert "FAIL  TLS certificate: expired 3 day(s) ago" in out
    not_pem = tmp_path / "junk.pem"
    not_pem.write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n")
    code, out = doctor(data, "--tls-cert", str(not_pem))
    assert code == 2 and "not a PEM certificate" in out


def test_an_expired_policy_and_held_alerts_fail(data: Path) -> None:
    later = nodes.NODE_POLICY_EXPIRES + DAY
    findings = examine(data, now=later, alerts=[b"{}"])
    failed = {f.what: f.message for f in findings if f.level == "fail"}
    assert "expired" in failed["policy"] and failed["policy"].endswith("install a current version")
    assert failed["fork alerts"].startswith("1 held: a log showed two histories")
    assert exit_code(findings) == 2


def test_a_mandate_ending_soon_is_announced(tmp_path: Path) -> None:
    soon = int(time.time()) + 5 * DAY
    base = nodes.policy_with_urls({})
    types = tuple(
        dataclasses.replace(
            t,
            issuers=tuple(
                dataclasses.replace(m, valid_until=soon) if m.member == fx.AMR.id else m for m in t.issuers
            ),
        )
        for t in base.types
    )
    doc = nodes.sign_policy(dataclasses.replace(base, types=types))
    data = nodes.init_node(tmp_path, fx.AMR.id, doc)
    code, out = doctor(data)
    assert code == 1, out
    assert re.search(r"WARN  mandate to issue business_licence: ends: expires in [45] day\(s\)", out)


@pytest.mark.anyio
async def test_metrics_show_days_left_for_the_log_key_and_tls_certificate(data: Path, tmp_path: Path) -> None:
    cfg = nodes.config(data, tls_cert=tls_cert(tmp_path / "tls.pem", days=45))
    app = create_app(config=cfg)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
        text = (await c.get("/metrics")).text
    assert "certledger_log_key_days_left +Inf" in text
    [line] = [x for x in text.splitlines() if x.startswith("certledger_tls_certificate_days_left ")]
    assert 44.9 < float(line.split()[1]) <= 45.0
