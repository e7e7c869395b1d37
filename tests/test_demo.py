"""``certledger demo``: the whole story runs offline, the verifier's verdicts are the
real ones (VALID, STALE, REVOKED and the attacks' codes), and ``--dir`` leaves a usable
consortium and replica behind."""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import shlex
import stat
import subprocess
import sys
import time
import tomllib
import unicodedata
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from certledger.cli import cli
from certledger.cli.demo import LATER, _Demo, tell
from certledger.cli.story import Out as _Out
from ledger.credential.presentation import check_presentation
from ledger.errors import ProofError
from ledger.keys import SigningKey
from ledger.log import checkpoint, tlogproof
from ledger.log.alert import check_alert
from ledger.log.certid import CertId
from ledger.log.store import LogStore
from ledger.replica.fetch import mirror_prefix
from ledger.replica.store import ReplicaStore
from ledger.trust.consortium import genesis, read_toml
from ledger.trust.policy_doc import parse_document
from ledger.trust.trust import TrustedPolicy
from node.witness import Witness
from tests.fixtures.consortium import BUSINESS_LICENCE, HEALTH_CERTIFICATE, reference_licence
from verifier.verdict import Code, Verdict
from verifier.verifier import Verifier, node_sources

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "certledger" / "data"
AMR, PSB, HEALTH = "hangzhou-xihu-amr", "hangzhou-psb", "hangzhou-health"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _wide(c: str) -> bool:
    return unicodedata.east_asian_width(c) in "WF"


def flat(text: str) -> str:
    """The output with line wrapping undone: whitespace runs become one space, except at a
    line break between two Chinese characters (where the demo breaks without a space)."""
    out = ""
    for line in (" ".join(x.split()) for x in text.splitlines()):
        if not line:
            continue
        joint = "" if not out or (_wide(out[-1]) and _wide(line[0])) else " "
        out += joint + line
    return out


def bare(text: str) -> str:
    """The output with all whitespace removed (Chinese text wraps between any two characters)."""
    return "".join(text.split())


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, _Demo]:
    """One run of the story in a kept directory: the directory, the output, the finished demo."""
    work = tmp_path_factory.mktemp("demo") / "kept"
    work.mkdir()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        demo = tell(work, _Out(False))
    return work, out.getvalue(), demo


@pytest.fixture(scope="module")
def kept(story: tuple[Path, str, _Demo]) -> tuple[Path, str]:
    """The directory and the output of that run."""
    return story[0], story[1]


# -- the story ---------------------------------------------------------------------------


def test_the_steps_are_numbered_and_the_output_is_readable(kept: tuple[Path, str]) -> None:
    _, out = kept
    steps = [line for line in out.splitlines() if line[:1].isdigit()]
    assert [s.split(".")[0] for s in steps] == ["1", "2", "3", "4", "5", "6", "7"]
    assert 100 <= len(out.splitlines()) <= 180
    note_lines = [line for line in out.splitlines() if line.lstrip().startswith("—")]
    columns = {  # terminal columns: a Chinese character takes two
        line: sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)
        for line in out.splitlines()
        if line not in note_lines
    }
    assert max(columns.values()) <= 100, max(columns, key=columns.__getitem__)
    assert "not built yet" not in out


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


def verdicts(story: tuple[Path, str, _Demo]) -> list[tuple[str, Verdict]]:
    return story[2].verdicts


def test_the_verifier_answers_in_the_order_of_the_story(story: tuple[Path, str, _Demo]) -> None:
    assert [(what, v.code) for what, v in verdicts(story)] == [
        ("the selective licence", Code.VALID),
        ("the licence with an old replica", Code.STALE),
        ("the licence after a sync", Code.VALID),
        ("an altered claim", Code.BAD_SIGNATURE),
        ("a certificate outside the mandate", Code.NOT_AUTHORISED),
        ("a licence kept out of the log", Code.NOT_IN_LEDGER),
        ("the licence revoked without the mandate", Code.VALID),
        ("the revoked licence", Code.REVOKED),
    ]


def test_every_verdict_is_printed_with_both_reasons(story: tuple[Path, str, _Demo]) -> None:
    out = bare(story[1])
    marks = {"valid": "✓", "invalid": "✗", "unsure": "?"}
    for _, v in verdicts(story):
        assert bare(f"→ {marks[v.verdict_class]} {v.code.value} {v.reason_zh} {v.reason_en}") in out
    assert out.count(bare("→ ✓ VALID 有效：")) == 3


def test_step_5_valid_at_another_department_then_stale_then_valid_again(
    story: tuple[Path, str, _Demo],
) -> None:
    (_, valid), (_, stale), (_, fresh) = verdicts(story)[:3]
    # the first check: the licence is in the regulator's witnessed log, as of the witnesses' time
    assert valid.issuer_id == AMR and valid.cert_id == reference_licence()["cert_id"]
    assert [(c.name, c.value) for c in valid.claims] == [
        ("uscc", "91330106MA2J8K7Q5L"),
        ("name", "杭州云栖数字科技有限公司"),
    ]
    assert len(valid.hidden) == 9
    assert valid.evidence is not None
    assert (valid.evidence.entry_index, valid.evidence.checkpoint_size) == (255, 256)
    assert valid.evidence.cosigners == (HEALTH, PSB)
    assert valid.as_of == valid.checked_at
    # the clock moved on past the freshness limit with nothing synced
    assert stale.checked_at - valid.checked_at == LATER > 86_400
    assert stale.as_of == valid.as_of and stale.verdict_class == "unsure"
    assert "25 h old" in stale.reason_en and "over the policy's limit of 24 h" in stale.reason_en
    assert "25 小时" in stale.reason_zh
    # re-witnessed and synced: fresh again, as of the new cosignatures
    assert fresh.as_of == fresh.checked_at == stale.checked_at
    out = flat(story[1])
    assert "its verifier holds only policy version 2 (walked to from its pin) and a replica" in out
    assert "hangzhou-xihu-amr 256, hangzhou-psb 0, hangzhou-health 40 entries" in out
    assert "统一社会信用代码 uscc: 91330106MA2J8K7Q5L" in out and "名称 name: 杭州云栖数字科技有限公司" in out
    assert "evidence: entry 255 under checkpoint 256, witnessed by hangzhou-health, hangzhou-psb" in out
    assert "25 hours later" in out and "the policy allows 24 hours" in out


def test_step_4_present(kept: tuple[Path, str]) -> None:
    out = flat(kept[1])
    assert "full disclosure, all 11 claims: " in out and "→ licence-full.png, .svg" in out
    assert "selective, name and uscc: " in out and "→ licence-identity.png, .svg" in out
    assert "read licence-identity.png back with the QR decoder (zxing-cpp): the same text, CL1:" in out
    assert (
        "✓ licence.tlog-proof (c2sp.org/tlog-proof, 8 hashes): entry 255 is in the tree of size 256, "
        "checked against the checkpoint cosigned by 2/2 witnesses" in out
    )


def test_step_6_attacks_get_their_verdicts(story: tuple[Path, str, _Demo]) -> None:
    by_name = dict(verdicts(story))
    altered = by_name["an altered claim"]
    assert "statement signature does not verify" in altered.reason_en
    rogue = by_name["a certificate outside the mandate"]
    assert "mandate: hangzhou-health may not issue business_licence" in rogue.reason_en
    secret = by_name["a licence kept out of the log"]
    assert secret.issuer_id == AMR and secret.cert_id != reference_licence()["cert_id"]
    assert "not in hangzhou-xihu-amr's log" in secret.reason_en
    assert any("synced hangzhou-xihu-amr's log on demand" in w for w in secret.warnings)
    ignored = by_name["the licence revoked without the mandate"]
    assert ignored.code == Code.VALID
    assert any(
        "ignored the revoke in entry 40 of hangzhou-health's log" in w and "may not revoke" in w
        for w in ignored.warnings
    )
    assert story[2].caught == set("abcdefg")


def test_step_6_every_attack_is_refused_with_the_projects_error(kept: tuple[Path, str]) -> None:
    out = flat(kept[1])
    expected = [
        "a) the name in the QR is changed to 杭州云栖数字科技集团有限公司; the verifier: → ✗ BAD_SIGNATURE",
        "certledger's issuing code: → refused, PolicyError: mandate: hangzhou-health may not issue "
        "business_licence (allowed to issue: hangzhou-xihu-amr)",
        "signs one with the health log key; the verifier: → ✗ NOT_AUTHORISED",
        "keeps it out of the log; the verifier syncs the regulator's log again before saying so: → ? "
        "NOT_IN_LEDGER",
        "note: synced hangzhou-xihu-amr's log on demand from the static copy public/: not there either",
        "(its entry 40, witnessed); the replica syncs, and the verifier ignores it: → ✓ VALID",
        "e) policy version 1 is served again to a verifier that trusts version 2: → refused, PolicyError: "
        "rollback: the document is version 1, not newer than the trusted version 2 [document 1 of 1; still "
        "trusting version 2]",
        "its log key's memory: → refused, ConflictError: this key already signed size 256 with root",
        "(rule: signer-fork): the log was rewritten or restored; refusing to sign a contradicting checkpoint",
        "witness hangzhou-psb: → refused, 422: size 256 was cosigned with another root: fork kept as "
        "evidence (both signed checkpoints of size 256, in witnesses/hangzhou-psb.db)",
        "for the verifier to sync from: → refused by the replica: checkpoint refused: witness-quorum: "
        "checkpoint of hangzhou-xihu-amr is cosigned by 0/2 other members' witnesses",
        "g) the regulator rewrites entry 255 in a copy of its database (another registered capital, validly "
        "signed); the audit: → refused, AuditError: entry 255: stored hash 502 (level 0, subtree 255) does "
        "not match the hash recomputed from the entries",
    ]
    for text in expected:
        assert text in out
    assert out.count("→ refused, ") == 5


def test_step_7_revoked_and_audited(story: tuple[Path, str, _Demo]) -> None:
    _, revoked = verdicts(story)[-1]
    assert revoked.code == Code.REVOKED and revoked.verdict_class == "invalid"
    assert revoked.cert_id == reference_licence()["cert_id"]
    assert "revoked by hangzhou-xihu-amr" in revoked.reason_en and "the holder has ceased to exist" in (
        revoked.reason_en
    )
    assert "持证主体注销或终止" in revoked.reason_zh
    out = flat(story[1])
    assert (
        "revoke statement (reason: 持证主体注销或终止, the holder has ceased to exist) at index 256; "
        "checkpoint 257 cosigned by hangzhou-psb, hangzhou-health, each after a consistency proof from "
        "size 256"
    ) in out
    assert (
        "✓ revocation.tlog-proof (c2sp.org/tlog-proof, 1 hash): entry 256 is in the tree of size 257" in out
    )
    assert "public security's replica syncs (hangzhou-xihu-amr 257, hangzhou-psb 0, hangzhou-health 41" in out
    assert "audit of hangzhou-xihu-amr passed: 257 entries, 3 checkpoints with their cosignatures" in out
    assert "audit of hangzhou-psb passed: 0 entries, 1 checkpoint with their cosignatures" in out
    assert "audit of hangzhou-health passed: 41 entries, 2 checkpoints with their cosignatures" in out


def test_a_verdict_the_story_does_not_expect_fails_the_demo(tmp_path: Path) -> None:
    d = _Demo(tmp_path, _Out(True))
    try:
        d.consortium()
        d.logs()
        d.issue()
        d.present()
        d.sync()
        with pytest.raises(
            click.ClickException,
            match="the demo expected the licence to be REVOKED, but the verifier answered VALID: valid: a "
            "business_licence issued by hangzhou-xihu-amr",
        ):
            d.check("the licence", d.scanned, Code.REVOKED)
    finally:
        d.close()


# -- what --dir keeps --------------------------------------------------------------------


def test_kept_policy_chain_verifies_with_the_consortium_command(kept: tuple[Path, str]) -> None:
    work, _ = kept
    result = run("consortium", "verify", "--pinned", work / "policy-v1.note", work / "policy-v2.note", "-q")
    assert result.exit_code == 0, result.output
    assert "OK 验证通过: policy version 2 verified from pinned version 1 (1 update(s))" in result.output


def test_kept_logs_audit_with_the_log_command(kept: tuple[Path, str]) -> None:
    work, _ = kept
    policy = parse_document((work / "policy-v2.note").read_bytes()).policy
    for member, size in ((AMR, 257), (PSB, 0), (HEALTH, 41)):
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
    published = work / "public" / mirror_prefix(amr.origin) / "checkpoint"
    opened = checkpoint.open_checkpoint(published.read_bytes(), log_key=log_key, witnesses=witnesses)
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
    keys = sorted(p.name for p in (work / "keys").glob("*.pem"))
    assert len(keys) == 9 and "governance-gov.amr.example.gov.cn.pem" in keys and f"{AMR}-log.pem" in keys
    for p in (work / "keys").glob("*.pem"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    # each log key remembers the last checkpoint it signed, beside the key file
    for member, size in ((AMR, 257), (PSB, 0), (HEALTH, 41)):
        state = json.loads((work / "keys" / f"{member}-log.pem.last-checkpoint").read_text())
        assert state["size"] == size
    for name in ("licence.credential.json", "licence-full.png", "licence-full.svg"):
        assert stat.S_IMODE((work / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((work / "licence-identity.png").stat().st_mode) == 0o644


def test_the_kept_replica_answers_revoked_with_the_verify_command(kept: tuple[Path, str]) -> None:
    work, _ = kept
    args: list[str | Path] = [
        "verify",
        "--offline",
        "--policy",
        work / "policy-v2.note",
        "--replica",
        work / "verifier",
    ]
    result = run(*args, "--image", work / "licence-identity.png")
    assert result.exit_code == 10, result.output  # REVOKED
    assert result.output.startswith("✗ REVOKED  已撤销：杭州市西湖区市场监督管理局于 ")


def test_a_new_verifier_syncing_the_kept_static_copy_agrees(kept: tuple[Path, str], tmp_path: Path) -> None:
    """Anyone can check the story: a verifier of its own, synced from the published tiles."""
    work, _ = kept
    trusted = TrustedPolicy((work / "policy-v1.note").read_bytes())
    now = int(time.time())
    policy = trusted.update((work / "policy-v2.note").read_bytes(), now=now)
    text = run("qr", "decode", work / "licence-identity.png").output.strip()
    with ReplicaStore.open(tmp_path / "replica.db") as store:
        verifier = Verifier(
            policy=policy, store=store, sources=node_sources([str(work / "public")]), clock=lambda: now
        )
        assert [(r.member_id, r.size, r.ok) for r in verifier.sync()] == [
            (AMR, 257, True),
            (PSB, 0, True),
            (HEALTH, 41, True),
        ]
        assert verifier.verify(text, purpose="identity").code == Code.REVOKED
        # a revocation already seen outranks freshness: an old replica still says REVOKED
        assert verifier.verify(text, now=now + LATER).code == Code.REVOKED
        altered = run("qr", "decode", work / "attacks" / "altered-name.png").output.strip()
        assert verifier.verify(altered).code == Code.BAD_SIGNATURE


def test_dir_must_be_new_or_empty(kept: tuple[Path, str], tmp_path: Path) -> None:
    work, _ = kept
    again = run("demo", "--offline", "--dir", work)
    assert again.exit_code == 1
    assert f"Error: {work} is not an empty directory; give a new or empty --dir" in again.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("demo", "--offline", "--dir", empty)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == f"certledger demo: the whole system in one offline run, files in {empty}"
    assert lines[-6].startswith("Done in ") and lines[-6].endswith(f"s. The files are kept in {empty}. Try:")
    tries = [shlex.split(line) for line in lines[-5:]]
    assert [t[:2] for t in tries] == [
        ["certledger", "consortium"],
        ["certledger", "log"],
        ["certledger", "present"],
        ["certledger", "qr"],
        ["certledger", "verify"],
    ]
    for t in tries:  # each suggested command works on the kept files
        done = run(*t[1:])
        assert done.exit_code == (10 if t[1] == "verify" else 0), (t, done.output)


# -- running it --------------------------------------------------------------------------


def test_quiet_prints_one_summary_line(tmp_path: Path) -> None:
    result = run("demo", "--offline", "-q")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("certledger demo: OK in ")
    for part in (
        "policy version 2 (3 members, 3 types)",
        "cosigned by 2/2 witnesses",
        "read back) and verified at another department's verifier",
        "7 attacks refused",
        "verdicts VALID, STALE, VALID, BAD_SIGNATURE, NOT_AUTHORISED, NOT_IN_LEDGER, VALID, REVOKED",
        "3 log audits passed",
    ):
        assert part in lines[0]


def test_help() -> None:
    result = run("demo", "--help")
    assert result.exit_code == 0
    for option in ("--dir DIRECTORY", "--exit", "--offline", "-q, --quiet"):
        assert option in result.output
    assert "Run a consortium of three departments and a verifier on this machine" in result.output


def test_the_real_command_in_a_subprocess_in_a_temporary_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "certledger", "demo", "--offline"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = flat(done.stdout)
    assert out.count("→ ✓ VALID") == 3 and "→ ? STALE" in out and "→ ✗ REVOKED" in out
    assert out.count("→ refused, ") == 5
    assert out.count("passed: ") == 3
    assert "The temporary directory is removed; keep the files with --dir DIR." in out
    assert list(tmp_path.iterdir()) == []


def test_an_attack_that_is_not_refused_fails_the_demo(tmp_path: Path) -> None:
    d = _Demo(tmp_path, _Out(True))
    with pytest.raises(
        click.ClickException, match="expected a split view to be refused, but it was accepted"
    ):
        d.refused("d", "a split view", ProofError, lambda: None)


# -- the witnesses -----------------------------------------------------------------------


def test_the_witnesses_kept_what_they_cosigned_and_the_fork_as_evidence(kept: tuple[Path, str]) -> None:
    work, _ = kept
    trusted = TrustedPolicy((work / "policy-v1.note").read_bytes())
    now = int(time.time())
    policy = trusted.update((work / "policy-v2.note").read_bytes(), now=now)
    keys = {m: SigningKey.load(work / "keys" / f"{m}-witness.pem") for m in (AMR, PSB, HEALTH)}
    witnesses = {
        m: Witness(path=work / "witnesses" / f"{m}.db", member_id=m, key=k, policy=lambda: policy)
        for m, k in keys.items()
    }
    try:
        origin = policy.require_member(AMR).origin
        # both other departments cosigned the regulator's log, up to the revocation
        sizes = [w.latest(origin) for w in (witnesses[PSB], witnesses[HEALTH])]
        assert [s[0] if s else None for s in sizes] == [257, 257]
        assert witnesses[AMR].latest(origin) is None  # a log is never its own witness
        # public security kept the split view as evidence anyone can check with the policy alone
        [evidence] = witnesses[PSB].alerts()
        alert = check_alert(evidence, policy)
        assert (alert.kind, alert.origin, alert.observed_by) == ("same-size", origin, PSB)
        assert witnesses[HEALTH].alerts() == []
    finally:
        for w in witnesses.values():
            w.close()


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
    assert shipped == [
        "business_licence.json",
        "demo-consortium.toml",
        "demo-food-permit.toml",
        "demo-network.toml",
    ]
    for name in shipped:
        assert any(fnmatch.fnmatch(f"data/{name}", pattern) for pattern in patterns), name
