"""``certledger demo``: the whole story runs offline, says what it checks, and leaves a
usable consortium behind with ``--dir``."""

from __future__ import annotations

import fnmatch
import json
import os
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from certledger.cli import cli
from certledger.cli.demo import _Demo, _Out, _Witness
from ledger.credential.presentation import check_presentation
from ledger.errors import ProofError
from ledger.keys import PublicKey, SigningKey
from ledger.log import checkpoint, tlogproof
from ledger.log.certid import CertId
from ledger.log.store import LogStore
from ledger.trust.consortium import KeyRequest, genesis, read_toml
from ledger.trust.policy_doc import parse_document
from ledger.trust.trust import TrustedPolicy
from tests.fixtures.consortium import BUSINESS_LICENCE, HEALTH_CERTIFICATE, reference_licence
from tests.helpers import issue

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "certledger" / "data"
AMR, PSB, HEALTH = "hangzhou-xihu-amr", "hangzhou-psb", "hangzhou-health"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def flat(text: str) -> str:
    """The output with line wrapping undone (whitespace runs become one space)."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One demo run with --dir: the directory and the output."""
    work = tmp_path_factory.mktemp("demo") / "kept"
    result = run("demo", "--dir", work)
    assert result.exit_code == 0, result.output
    return work, result.output


# -- the story ---------------------------------------------------------------------------


def test_the_steps_are_numbered_and_the_output_is_readable(kept: tuple[Path, str]) -> None:
    _, out = kept
    steps = [line for line in out.splitlines() if line[:1].isdigit()]
    assert [s.split(".")[0] for s in steps] == ["1", "2", "3", "4", "5", "6", "7"]
    assert 60 <= len(out.splitlines()) <= 120
    note_lines = [line for line in out.splitlines() if line.lstrip().startswith("—")]
    assert all(
        len(line) <= 100 for line in out.splitlines() if line not in note_lines and "certledger " not in line
    )


def test_step_1_the_consortium_and_its_policy(kept: tuple[Path, str]) -> None:
    out = flat(kept[1])
    assert "member hangzhou-xihu-amr 杭州市西湖区市场监督管理局" in out
    assert "member hangzhou-psb 杭州市公安局" in out
    assert "member hangzhou-health 杭州市卫生健康委员会" in out
    assert "type business_licence 营业执照, 11 claims, issued by hangzhou-xihu-amr" in out
    assert "type health_certificate 健康证明, 8 claims, issued by hangzhou-health" in out
    assert (
        "version 1 (policy-v1.note) signed by 2 of its 3 governance keys (gov.amr.example.gov.cn, "
        "gov.psb.example.gov.cn); threshold 2: verified and pinned" in out
    )
    assert (
        "version 2 (policy-v2.note, add-type=food-permit-type.toml) adds the type food_business_permit "
        "食品经营许可证; signed by gov.psb.example.gov.cn and gov.health.example.gov.cn: 2 of version 1's "
        "keys and 2 of its own, threshold 2 each; walked to from the pinned version 1" in out
    )


def test_steps_2_and_3_logs_issue_and_witnesses(kept: tuple[Path, str]) -> None:
    out = flat(kept[1])
    assert "255 earlier statements; checkpoint 255 cosigned by hangzhou-psb, hangzhou-health" in out
    assert (
        "no statements (issues none yet); checkpoint 0 cosigned by hangzhou-xihu-amr, hangzhou-health" in out
    )
    assert "40 earlier statements; checkpoint 40 cosigned by hangzhou-xihu-amr, hangzhou-psb" in out
    assert "杭州云栖数字科技有限公司 (统一社会信用代码 91330106MA2J8K7Q5L)" in out
    assert reference_licence()["cert_id"] in out
    assert "appended at index 255; checkpoint 256 signed; each witness checked a consistency proof" in out
    assert "witness quorum of policy version 2 met: 2/2 (hangzhou-psb, hangzhou-health)" in out
    lines = kept[1].splitlines()
    origin = lines.index("     ledger.example.gov.cn/hangzhou-xihu-amr")
    assert lines[origin + 1] == "     256" and lines[origin + 3] == ""
    assert lines[origin + 4].startswith("     — ledger.example.gov.cn/hangzhou-xihu-amr ")
    assert lines[origin + 5].startswith("     — ledger.example.gov.cn/hangzhou-psb/witness ")
    assert lines[origin + 6].startswith("     — ledger.example.gov.cn/hangzhou-health/witness ")


def test_steps_4_and_5_present_and_verify(kept: tuple[Path, str]) -> None:
    out = flat(kept[1])
    assert "full disclosure, all 11 claims: " in out and "→ licence-full.png, .svg" in out
    assert "selective, name and uscc: " in out and "→ licence-identity.png, .svg" in out
    assert "read licence-identity.png back with the QR decoder (zxing-cpp): the same text, CL1:" in out
    assert "✓ parsed strictly; issuer hangzhou-xihu-amr" in out
    assert "mandate: may issue business_licence" in out
    assert "2 disclosed claims match their digests, 9 stay hidden; purpose 'identity' needs uscc, name" in out
    assert "mirror/hangzhou-xihu-amr.db audited against the policy's log key: 256 entries" in out
    assert (
        "✓ entry 255 is in the tree of size 256: licence.tlog-proof (c2sp.org/tlog-proof, 8 hashes) "
        "verified against the checkpoint, cosigned by 2/2 witnesses" in out
    )
    assert "核验通过 VERIFIED: a genuine 营业执照 of 杭州市西湖区市场监督管理局, in its witnessed log:" in out
    assert "统一社会信用代码 uscc: 91330106MA2J8K7Q5L" in out and "名称 name: 杭州云栖数字科技有限公司" in out
    assert "the verifier service will judge: it is not built yet" in out


def test_step_6_every_attack_is_refused_with_the_projects_error(kept: tuple[Path, str]) -> None:
    out = flat(kept[1])
    expected = [
        "a) the name in the QR is changed to 杭州云栖数字科技集团有限公司; the verifier: → refused, "
        "SignatureError: statement signature does not verify: a disclosed value, a salt, a digest or the "
        "signature was altered, or the certificate is forged (issuer hangzhou-xihu-amr, key",
        "certledger's issuing code: → refused, PolicyError: mandate: hangzhou-health may not issue "
        "business_licence (allowed to issue: hangzhou-xihu-amr)",
        "the verifier: → refused, PolicyError: mandate: hangzhou-health may not issue business_licence under "
        "policy version 2 (allowed to issue: hangzhou-xihu-amr) (issuer hangzhou-health found; signature "
        "not checked)",
        "c) policy version 1 is served again to a verifier that trusts version 2: → refused, PolicyError: "
        "rollback: the document is version 1, not newer than the trusted version 2 [document 1 of 1; still "
        "trusting version 2]",
        "witness hangzhou-psb: → refused, ProofError: witness hangzhou-psb refuses to cosign "
        "hangzhou-xihu-amr at size 257: the tree does not extend the one of size 256 it cosigned before "
        "(consistency proof failed: root hash mismatch)",
        "the fork passes an audit on its own (257 entries)",
        "→ refused, SignatureError: checkpoint is cosigned by 0/2 required witnesses (verified: none; 2 "
        "witness key(s) trusted)",
        "e) the regulator rewrites entry 255 in a copy of its database (another registered capital, validly "
        "signed); the audit: → refused, AuditError: entry 255: stored hash 502 (level 0, subtree 255) does "
        "not match the hash recomputed from the entries",
    ]
    for text in expected:
        assert text in out
    assert out.count("→ refused, ") == 7


def test_step_7_revocation_and_audits(kept: tuple[Path, str]) -> None:
    out = flat(kept[1])
    assert (
        "revoke statement (reason: 持证主体注销或终止, the holder has ceased to exist) at index 256; "
        "checkpoint 257 cosigned by hangzhou-psb, hangzhou-health, each after a consistency proof from "
        "size 256"
    ) in out
    assert (
        "✓ entry 256 is in the tree of size 257: revocation.tlog-proof (c2sp.org/tlog-proof, 1 hash)" in out
    )
    assert "audit of hangzhou-xihu-amr passed: 257 entries, 3 checkpoints" in out
    assert "audit of hangzhou-psb passed: 0 entries, 1 checkpoint" in out
    assert "audit of hangzhou-health passed: 40 entries, 1 checkpoint" in out
    assert "not built yet: the verifier service" in out and "REVOKED verdict" in out


# -- what --dir keeps --------------------------------------------------------------------


def test_kept_policy_chain_verifies_with_the_consortium_command(kept: tuple[Path, str]) -> None:
    work, out = kept
    result = run("consortium", "verify", "--pinned", work / "policy-v1.note", work / "policy-v2.note", "-q")
    assert result.exit_code == 0, result.output
    assert "OK 验证通过: policy version 2 verified from pinned version 1 (1 update(s))" in result.output
    assert f"certledger consortium verify --pinned {work / 'policy-v1.note'} {work / 'policy-v2.note'}" in out


def test_kept_logs_audit_with_the_log_command(kept: tuple[Path, str]) -> None:
    work, _ = kept
    policy = parse_document((work / "policy-v2.note").read_bytes()).policy
    for member, size in ((AMR, 257), (PSB, 0), (HEALTH, 40)):
        m = policy.require_member(member)
        key = str(m.log_verifier_key(m.log_keys[0]))
        result = run("log", "audit", work / "logs" / f"{member}.db", "--key", key)
        assert result.exit_code == 0, result.output
        assert f"log {m.origin}: audit passed" in result.output and f"{size} entries" in result.output


def test_kept_checkpoints_proofs_and_qr_codes_verify(kept: tuple[Path, str]) -> None:
    work, _ = kept
    trusted = TrustedPolicy((work / "policy-v1.note").read_bytes())
    policy = trusted.update((work / "policy-v2.note").read_bytes(), now=int(time.time()))
    amr = policy.require_member(AMR)
    log_key = amr.log_verifier_key(amr.log_keys[0])
    witnesses = list(policy.witness_keys(AMR).values())
    opened = checkpoint.open_checkpoint(
        (work / "logs" / f"{AMR}.checkpoint").read_bytes(), log_key=log_key, witnesses=witnesses
    )
    assert opened.checkpoint.size == 257 and len(opened.cosignatures) == 2
    with LogStore.open(work / "logs" / f"{AMR}.db", readonly=True) as store:
        for name, index in (("licence", 255), ("revocation", 256)):
            proof = tlogproof.parse((work / f"{name}.tlog-proof").read_bytes())
            assert proof.index == index
            tlogproof.verify(proof, log_key=log_key, leaf=store.entry(index), witnesses=witnesses, quorum=2)
    decoded = run("qr", "decode", work / "licence-identity.png")
    assert decoded.exit_code == 0
    presented = CliRunner().invoke(
        cli, ["present", str(work / "licence.credential.json"), "--reveal", "name,uscc"]
    )
    assert presented.exit_code == 0
    assert decoded.output.splitlines()[0] == presented.stdout.strip()
    checked = check_presentation(decoded.output.strip(), policy=policy, purpose="identity")
    assert checked.values() == {"uscc": "91330106MA2J8K7Q5L", "name": "杭州云栖数字科技有限公司"}
    altered = run("qr", "decode", work / "attacks" / "altered-name.png").output.strip()
    with pytest.raises(Exception, match="statement signature does not verify"):
        check_presentation(altered, policy=policy)


def test_kept_private_files_are_private(kept: tuple[Path, str]) -> None:
    work, _ = kept
    assert stat.S_IMODE((work / "keys").stat().st_mode) == 0o700
    keys = sorted(p.name for p in (work / "keys").iterdir())
    assert len(keys) == 9 and "governance-gov.amr.example.gov.cn.pem" in keys and f"{AMR}-log.pem" in keys
    for p in (work / "keys").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    for name in ("licence.credential.json", "licence-full.png", "licence-full.svg"):
        assert stat.S_IMODE((work / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((work / "licence-identity.png").stat().st_mode) == 0o644


def test_dir_must_be_new_or_empty(kept: tuple[Path, str], tmp_path: Path) -> None:
    work, _ = kept
    again = run("demo", "--dir", work)
    assert again.exit_code == 1
    assert f"Error: {work} is not an empty directory; give a new or empty --dir" in again.output
    (tmp_path / "empty").mkdir()
    assert run("demo", "--dir", tmp_path / "empty", "--quiet").exit_code == 0


# -- running it --------------------------------------------------------------------------


def test_quiet_prints_one_summary_line(tmp_path: Path) -> None:
    result = run("demo", "-q")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("certledger demo: OK in ")
    for part in (
        "policy version 2 (3 members, 3 types)",
        "cosigned by 2/2 witnesses",
        "read back) and verified offline",
        "5 attacks refused",
        "3 log audits passed",
    ):
        assert part in lines[0]


def test_help() -> None:
    result = run("demo", "--help")
    assert result.exit_code == 0
    assert "--dir DIRECTORY" in result.output and "-q, --quiet" in result.output
    assert "Run the whole system offline" in result.output


def test_the_real_command_in_a_subprocess_in_a_temporary_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "certledger", "demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = flat(done.stdout)
    assert "核验通过 VERIFIED" in out and out.count("→ refused, ") == 7
    assert out.count("passed: ") == 3
    assert "The temporary directory is removed; keep the files with --dir DIR." in out
    assert list(tmp_path.iterdir()) == []


def test_an_attack_that_is_not_refused_fails_the_demo(tmp_path: Path) -> None:
    d = _Demo(tmp_path, _Out(True))
    with pytest.raises(
        click.ClickException, match="expected a split view to be refused, but it was accepted"
    ):
        d.refused("d", "a split view", ProofError, lambda: None)


# -- the witness stand-in ----------------------------------------------------------------


def test_the_witness_refuses_a_shrinking_log_and_a_second_root(tmp_path: Path) -> None:
    spec = read_toml((DATA / "demo-consortium.toml").read_bytes())
    keys: dict[tuple[str | None, str], SigningKey] = {}

    def make_key(request: KeyRequest) -> PublicKey:
        key = SigningKey.generate()
        keys[(request.member, request.role)] = key
        return key.public_key

    policy = genesis(spec, now=int(time.time()), make_key=make_key)
    amr, psb = policy.require_member(AMR), policy.require_member(PSB)
    log_key, key = amr.log_verifier_key(amr.log_keys[0]), keys[(AMR, "log")]
    witness = _Witness(psb, keys[(PSB, "witness")])
    with (
        LogStore.create(tmp_path / "a.db", origin=amr.origin) as a,
        LogStore.create(tmp_path / "b.db", origin=amr.origin) as b,
    ):
        a.append([issue(i) for i in range(5)], key=key)
        b.append([issue(i) for i in range(3)], key=key)
        five = witness.cosign(a.checkpoint(key), log=amr, log_key=log_key, prove=a.consistency_proof, now=1)
        assert checkpoint.open_checkpoint(
            five, log_key=log_key, witnesses=[psb.witness_key]
        ).cosignatures == {psb.witness_key.name: 1}
        with pytest.raises(
            ProofError, match="at size 3: it cosigned size 5 already, and a log never shrinks"
        ):
            witness.cosign(b.checkpoint(key), log=amr, log_key=log_key, prove=b.consistency_proof, now=2)
        b.append([issue(9), issue(10)], key=key)
        with pytest.raises(ProofError, match="at size 5: it cosigned another root for that size"):
            witness.cosign(b.checkpoint(key), log=amr, log_key=log_key, prove=b.consistency_proof, now=3)
        a.append([issue(5)], key=key)  # the honest log still gets cosigned: nothing was remembered
        witness.cosign(a.checkpoint(key), log=amr, log_key=log_key, prove=a.consistency_proof, now=4)
        assert witness.seen[amr.origin].size == 6


# -- the shipped data --------------------------------------------------------------------


def test_the_shipped_licence_is_the_reference_licence_with_a_valid_id() -> None:
    shipped = json.loads((DATA / "business_licence.json").read_text(encoding="utf-8"))
    ref = reference_licence()
    assert shipped == ref["document"]  # the fixture's content, with the check character recomputed
    assert shipped["licence_id"] == ref["cert_id"] != ref["fixture_id"]
    assert str(CertId.parse(shipped["licence_id"])) == shipped["licence_id"]
    assert len(shipped["claims"]) == 11


def test_the_shipped_spec_has_the_tests_claim_schemas() -> None:
    spec = read_toml((DATA / "demo-consortium.toml").read_bytes())
    policy = genesis(spec, now=int(time.time()), make_key=lambda _: SigningKey.generate().public_key)
    licence = policy.require_type("business_licence")
    assert licence.claims == BUSINESS_LICENCE.claims and licence.purposes == BUSINESS_LICENCE.purposes
    assert policy.require_type("health_certificate").claims == HEALTH_CERTIFICATE.claims
    assert [m.id for m in policy.members] == [AMR, PSB, HEALTH]
    assert policy.witness_quorum == 2 and policy.governance_threshold == 2


def test_the_shipped_data_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["certledger"]
    shipped = sorted(p.name for p in DATA.iterdir() if p.is_file())
    assert shipped == ["business_licence.json", "demo-consortium.toml", "demo-food-permit.toml"]
    for name in shipped:
        assert any(fnmatch.fnmatch(f"data/{name}", pattern) for pattern in patterns), name
