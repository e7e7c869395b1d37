"""`certledger consortium`: the ceremony through the command line (click's CliRunner)."""

from __future__ import annotations

import dataclasses
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from certledger.cli import cli
from ledger.keys import SigningKey, VerifierKey
from ledger.trust.policy_doc import parse_document, parse_proposal, sign_proposal

SPEC = Path(__file__).parent / "data" / "consortium-spec.toml"
NOW = "2025-01-20T00:00:00Z"
GOV = ["gov.amr.example.gov.cn", "gov.psb.example.gov.cn", "gov.health.example.gov.cn"]


def run(*args: str, ok: bool = True, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, ["consortium", *args], input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def fail(*args: str, code: int = 1) -> str:
    result = run(*args, ok=False)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.output


def gov_key(out: Path, name: str) -> str:
    return str(out / "keys" / f"governance-{name}.pem")


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    r = run("init", str(SPEC), "--out", str(out), "--now", "2025-01-01T00:00:00Z")
    assert "version 1: ✓ signed by 3/3 of its own governance keys; threshold 2" in r.output
    return out / "policy-v1.note"


def test_init_writes_a_signed_version_and_private_keys(v1: Path) -> None:
    keys = sorted(p.name for p in (v1.parent / "keys").iterdir())
    assert keys == sorted(
        [f"governance-{n}.pem" for n in GOV]
        + ["hz-amr-log.pem", "hz-amr-witness.pem", "hz-psb-log.pem", "hz-psb-witness.pem"]
    )
    for p in (v1.parent / "keys").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE((v1.parent / "keys").stat().st_mode) == 0o700
    doc = parse_document(v1.read_bytes())
    assert doc.policy.version == 1 and len(doc.signatures) == 3
    amr = doc.policy.require_member("hz-amr")
    log = SigningKey.load(v1.parent / "keys" / "hz-amr-log.pem")
    assert amr.log_keys[0].public_key == log.public_key
    assert amr.log_keys[0].valid_from == 1_735_689_600  # --now
    assert doc.policy.expires == 1_735_689_600 + 365 * 86_400  # "+365d"
    fail("init", str(SPEC), "--out", str(v1.parent), "--now", NOW)  # never overwrites


def test_ceremony_init_propose_sign_verify_show(tmp_path: Path, v1: Path) -> None:
    out = v1.parent
    new_log = run("keygen", "--name", "ledger.example.gov.cn/hz-amr", "--out", str(tmp_path / "log2.pem"))
    vk = VerifierKey.parse(new_log.output.strip())
    assert stat.S_IMODE((tmp_path / "log2.pem").stat().st_mode) == 0o600
    v2 = tmp_path / "v2.note"
    r = run(
        "propose",
        "--current",
        str(v1),
        f"rotate-log-key=hz-amr:{vk}@2025-02-01T00:00:00Z",
        "compromise=hz-psb:" + _kid(v1, "hz-psb") + "@2025-01-15T00:00:00Z",
        "revokers=business_licence:hz-amr,hz-psb",
        "expires=2026-01-15T00:00:00Z",
        "--out",
        str(v2),
        "--now",
        NOW,
    )
    assert "unsigned proposal of version 2 (4 change(s))" in r.output
    assert "needs signatures from 2 of version 1's governance keys and 2 of its own" in r.output
    assert parse_proposal(v2.read_bytes()).version == 2

    d = run("diff", str(v1), str(v2)).output
    assert '+          "compromised_at": "2025-01-15T00:00:00Z"' in d
    assert '-      "revokers": ["hz-amr"],' in d
    # hz-psb may revoke from the proposal's time on, not before: a mandate is judged at a
    # statement's time
    assert '+        {"member": "hz-psb", "valid_from": "2025-01-20T00:00:00Z", "valid_until": null}' in d

    shown = run("show", str(v2)).output
    assert "未签名提案 Unsigned proposal" in shown and "已泄露 COMPROMISED at 2025-01-15T00:00:00Z" in shown

    r = run("sign", str(v2), "--key", gov_key(out, GOV[0]), "--name", GOV[0])
    assert "✗ signed by 1/3 of its own governance keys; threshold 2" in r.output
    # one signature is not enough: verify says which rule, exit status 1
    msg = fail("verify", "--pinned", str(v1), str(v2), "--now", NOW)
    assert "Error: old-threshold: version 2 is signed by 1/3 of version 1's governance keys" in msg
    assert f"[{v2} (document 1 of 1); still trusting version 1]" in msg
    r = run("sign", str(v2), "--key", gov_key(out, GOV[1]), "--name", GOV[1])
    assert "✓ signed by 2/3 of its own governance keys; threshold 2" in r.output
    msg = fail("sign", str(v2), "--key", gov_key(out, GOV[1]), "--name", GOV[1])
    assert "already carries a signature by key gov.psb.example.gov.cn+" in msg

    r = run("verify", "--pinned", str(v1), str(v1), str(v2), "--now", NOW)
    assert "skipped 1 document(s) not newer than the pinned version 1" in r.output
    assert "OK 验证通过: policy version 2 verified from pinned version 1 (1 update(s))" in r.output
    assert "撤销 Revokers: hz-amr, hz-psb [2025-01-20T00:00:00Z, open-ended)" in r.output
    assert "信任策略 Trust policy: hangzhou.example.gov.cn 版本 version 2" in r.output
    assert "发布 Issued: 2025-01-20T00:00:00Z" in r.output
    assert run("verify", "--pinned", str(v1), str(v2), "--now", NOW, "-q").output.count("\n") == 1

    shown = run("show", str(v2)).output
    assert "签名 Signatures: 2 (not verified here" in shown
    assert GOV[0] in shown and "杭州市市场监督管理局" in shown

    # the rotated key is in force from its start time
    p2 = parse_document(v2.read_bytes()).policy
    m = p2.require_member("hz-amr")
    assert m.log_keys[1].public_key == vk.public_key
    assert p2.log_key("hz-amr", vk.key_id, at=1_738_368_000, witnessed_at=None).public_key == vk.public_key


def _kid(doc: Path, member: str) -> str:
    p = parse_document(doc.read_bytes()).policy
    m = p.require_member(member)
    return m.log_key_id(m.log_keys[0]).hex()


def _v2(tmp_path: Path, v1: Path, *changes: str, signers: tuple[int, ...] = (0, 1)) -> Path:
    v2 = tmp_path / "v2.note"
    run("propose", "--current", str(v1), *changes, "--out", str(v2), "--now", NOW)
    for i in signers:
        run("sign", str(v2), "--key", gov_key(v1.parent, GOV[i]), "--name", GOV[i])
    return v2


def test_verify_failures_name_the_rule(tmp_path: Path, v1: Path) -> None:
    v2 = _v2(tmp_path, v1, "freshness=7200")
    v3 = tmp_path / "v3.note"
    run("propose", "--current", str(v2), "freshness=3600", "--out", str(v3), "--now", NOW)
    for i in (0, 1):
        run("sign", str(v3), "--key", gov_key(v1.parent, GOV[i]), "--name", GOV[i])
    # a skipped version
    msg = fail("verify", "--pinned", str(v1), str(v3), "--now", NOW)
    assert "Error: skipped-version: the document is version 3, but only version 2 can follow" in msg
    # rollback: pinned at 3, nothing older is accepted (older documents are skipped, not walked)
    r = run("verify", "--pinned", str(v3), str(v1), str(v2), "--now", NOW)
    assert (
        "skipped 2 document(s)" in r.output and "policy version 3 verified from pinned version 3" in r.output
    )
    # expired newest version (freeze)
    msg = fail("verify", "--pinned", str(v1), str(v2), str(v3), "--now", "2026-01-02T00:00:00Z")
    assert "Error: expired: the newest version, 3, expired at 2026-01-01T00:00:00Z" in msg
    # a tampered document
    bad = tmp_path / "tampered.note"
    bad.write_bytes(v2.read_bytes().replace("杭州市公安局".encode(), "杭州市公安厅".encode()))
    msg = fail("verify", "--pinned", str(v1), str(bad), "--now", NOW)
    assert "Error: bad-signature: version 2: invalid signature by trusted key gov.amr" in msg
    # two different documents claiming one version
    (tmp_path / "other").mkdir()
    other = _v2(tmp_path / "other", v1, "freshness=600")
    msg = fail("verify", "--pinned", str(v1), str(v2), str(other), "--now", NOW)
    assert "are different documents for version 2" in msg
    # garbage
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 10)
    assert f"Error: {junk}: policy document:" in fail("verify", "--pinned", str(v1), str(junk))
    assert f"Error: {junk}: policy" in fail("show", str(junk))
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * (1024 * 1024 + 1))
    assert "larger than the 1048576-byte limit" in fail("verify", "--pinned", str(huge))


def test_removed_key_signs_only_with_previous(tmp_path: Path, v1: Path) -> None:
    out = v1.parent
    v2 = _v2(tmp_path, v1, f"remove-governance-key={GOV[2]}", signers=(0,))
    msg = fail("sign", str(v2), "--key", gov_key(out, GOV[2]), "--name", GOV[2])
    assert "is not a governance key of version 2 (a key of the previous version only? pass --previous)" in msg
    r = run("sign", str(v2), "--key", gov_key(out, GOV[2]), "--name", GOV[2], "--previous", str(v1))
    assert "(version 1)" in r.output
    assert "✗ signed by 1/2 of its own governance keys; threshold 2" in r.output
    assert "✓ signed by 2/3 of version 1's governance keys; threshold 2" in r.output
    msg = fail("verify", "--pinned", str(v1), str(v2), "--now", NOW)
    assert "own-threshold: version 2 is signed by 1/2 of its own governance keys" in msg
    run("sign", str(v2), "--key", gov_key(out, GOV[1]), "--name", GOV[1])
    run("verify", "--pinned", str(v1), str(v2), "--now", NOW)
    # version 3 signed by the removed key does not count for version 2's threshold
    v3 = tmp_path / "v3.note"
    run("propose", "--current", str(v2), "threshold=1", "--out", str(v3), "--now", NOW)
    run("sign", str(v3), "--key", gov_key(out, GOV[2]), "--name", GOV[2], "--previous", str(v1), ok=False)
    run("sign", str(v3), "--key", gov_key(out, GOV[0]), "--name", GOV[0])
    key3 = SigningKey.load(gov_key(out, GOV[2]))
    from ledger.trust.policy_doc import add_signature

    v3.write_bytes(add_signature(v3.read_bytes(), GOV[2], key3))
    msg = fail("verify", "--pinned", str(v1), str(v2), str(v3), "--now", NOW)
    assert "old-threshold: version 3 is signed by 1/2 of version 2's governance keys" in msg
    assert "not counted: signatures by gov.health.example.gov.cn+" in msg


def test_init_with_keys_held_elsewhere_writes_a_proposal(tmp_path: Path) -> None:
    holders = {}
    for n in GOV:
        r = run("keygen", "--name", n, "--out", str(tmp_path / f"{n}.pem"))
        holders[n] = r.output.strip()
    spec = SPEC.read_text(encoding="utf-8")
    for n in GOV:
        spec = spec.replace(f'{{ name = "{n}" }}', f'{{ name = "{n}", key = "{holders[n]}" }}')
    assert spec.count(", key = ") == 3
    (tmp_path / "spec.toml").write_text(spec, encoding="utf-8")
    r = run("init", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "o"), "--now", NOW)
    assert "version 1 is unsigned" in r.output
    proposal = tmp_path / "o" / "policy-v1.proposal"
    assert "governance-" not in " ".join(p.name for p in (tmp_path / "o" / "keys").iterdir())
    for n in GOV[:2]:
        run("sign", str(proposal), "--key", str(tmp_path / f"{n}.pem"), "--name", n)
    r = run("verify", "--pinned", str(proposal), "--now", NOW)
    assert "policy version 1 verified from pinned version 1 (0 update(s))" in r.output


def test_encrypted_keys(tmp_path: Path) -> None:
    r = run(
        "keygen", "--name", "gov.x", "--out", str(tmp_path / "k.pem"), "--encrypt", input="s3cret\ns3cret\n"
    )
    assert b"ENCRYPTED" in (tmp_path / "k.pem").read_bytes()
    assert r.output.strip().splitlines()[-1].startswith("gov.x+")
    out = tmp_path / "o"
    run("init", str(SPEC), "--out", str(out), "--encrypt", "--now", NOW, input="pw\npw\n")
    key = out / "keys" / f"governance-{GOV[0]}.pem"
    assert (
        b"ENCRYPTED" in key.read_bytes()
        and b"ENCRYPTED" not in (out / "keys" / "hz-amr-log.pem").read_bytes()
    )
    v2 = tmp_path / "v2"
    run("propose", "--current", str(out / "policy-v1.note"), "freshness=60", "--out", str(v2), "--now", NOW)
    run("sign", str(v2), "--key", str(key), "--name", GOV[0], input="pw\n")
    msg = fail("sign", str(v2), "--key", str(out / "keys" / f"governance-{GOV[1]}.pem"), "--name", GOV[1])
    assert "wrong passphrase" in msg or "Aborted" in msg


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (["bogus=1"], "expected KIND=VALUE with KIND one of: add-member"),
        (["threshold=4"], "change threshold=4: governance threshold must be between 1 and"),
        (["threshold=x"], "expected a whole number"),
        (["issuers=nope:hz-amr"], "no certificate type 'nope'"),
        (["issuers=business_licence:hz-nobody"], "names unknown member 'hz-nobody'"),
        (["compromise=hz-amr:00000000@2025-01-01T00:00:00Z"], "has 0 log keys with ID 00000000"),
        (["compromise=hz-amr:zz@"], "compromise=MEMBER:KEYID@TIME"),
        (["rotate-log-key=hz-amr:notakey"], "expected a verifier key named 'ledger.example.gov.cn/hz-amr'"),
        (["expires=2025-01-01T00:00:00Z"], "would already be expired"),
        (["remove-governance-key=gov.none"], "has no governance key of that name"),
        (["add-member=missing.toml"], "missing.toml: cannot read"),
        (
            ["witness-quorum=0"],
            "change witness-quorum=0: quorum-bound: version 2 has 2 members and witness quorum 0",
        ),
        (["freshness=2592001"], "freshness-bound: version 2 sets a freshness limit of 2592001 s; at most"),
        (
            ["expires=+367d"],
            "change expires=+367d: expiry-bound: version 2 expires at 2026-01-22T00:00:00Z, more",
        ),
    ],
)
def test_propose_errors(tmp_path: Path, v1: Path, changes: list[str], message: str) -> None:
    msg = fail("propose", "--current", str(v1), *changes, "--out", str(tmp_path / "v2"), "--now", NOW)
    assert message in msg
    assert not (tmp_path / "v2").exists()


def test_propose_adds_a_member_and_a_type(tmp_path: Path, v1: Path) -> None:
    log = run("keygen", "--name", "ledger.example.gov.cn/hz-health", "--out", str(tmp_path / "l.pem")).output
    wit = run(
        "keygen", "--name", "witness.example.gov.cn/hz-health", "--out", str(tmp_path / "w.pem"), "--witness"
    ).output
    (tmp_path / "member.toml").write_text(
        'id = "hz-health"\nname = "杭州市卫生健康委员会"\norigin = "ledger.example.gov.cn/hz-health"\n'
        'issuer_code = "11330100002489111B"\nbase_url = "https://hz-health.example.gov.cn/ledger"\n'
        f'log_key = "{log.strip()}"\nwitness_name = "witness.example.gov.cn/hz-health"\n'
        f'witness_key = "{wit.strip()}"\n',
        encoding="utf-8",
    )
    (tmp_path / "type.toml").write_text(
        'code = "health_cert"\nname = "健康证明"\nnational_code = "11100000MB0143212A001"\n'
        'issuers = ["hz-health"]\nrevokers = ["hz-health"]\nmax_validity_days = 365\n'
        'claims = [{ key = 0, name = "holder", label = "姓名" }]\n',
        encoding="utf-8",
    )
    v2 = _v2(tmp_path, v1, f"add-member={tmp_path / 'member.toml'}", f"add-type={tmp_path / 'type.toml'}")
    r = run("verify", "--pinned", str(v1), str(v2), "--now", NOW)
    assert "hz-health  杭州市卫生健康委员会" in r.output and "health_cert  健康证明" in r.output
    (tmp_path / "bad.toml").write_text('id = "x"\nnmae = "typo"\n', encoding="utf-8")
    msg = fail(
        "propose",
        "--current",
        str(v1),
        f"add-member={tmp_path / 'bad.toml'}",
        "--out",
        str(tmp_path / "n"),
        "--now",
        NOW,
    )
    assert "unknown field 'nmae'" in msg


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense = [", "not valid TOML"),
        ('members = []\n[governance]\nthreshold = 1\nkeys = [{ name = "a" }]\nextra = 1\n', "unknown field"),
        ("members = []\n", "missing field 'governance'"),
        (
            'members = []\nexpires = 2025-01-01\n[governance]\nthreshold = 1\nkeys = [{ name = "a" }]\n',
            "full date",
        ),
        ('members = []\n[governance]\nthreshold = 2\nkeys = [{ name = "a" }]\n', "governance threshold"),
        ('members = []\n[governance]\nthreshold = 1\nkeys = [{ name = "a b" }]\n', "contains a space"),
    ],
)
def test_init_spec_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "s.toml").write_text(text, encoding="utf-8")
    out = str(tmp_path / "o")
    msg = fail("init", str(tmp_path / "s.toml"), "--out", out, "--now", NOW, "--consortium", "c.example")
    assert message in msg
    assert not (tmp_path / "o").exists()  # nothing written for a bad spec


def test_init_needs_the_consortium_name(tmp_path: Path) -> None:
    unnamed = SPEC.read_text(encoding="utf-8").replace('consortium = "hangzhou.example.gov.cn"\n', "")
    assert "consortium =" not in unnamed
    (tmp_path / "s.toml").write_text(unnamed, encoding="utf-8")
    msg = fail("init", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--now", NOW)
    assert 'consortium: name the consortium (consortium = "…" in the spec)' in msg
    assert not (tmp_path / "o").exists()
    run(
        "init",
        str(tmp_path / "s.toml"),
        "--out",
        str(tmp_path / "o"),
        "--now",
        NOW,
        "--consortium",
        "staging.example",
    )
    assert (
        parse_document((tmp_path / "o" / "policy-v1.note").read_bytes()).policy.consortium
        == "staging.example"
    )
    msg = fail(
        "init", str(SPEC), "--out", str(tmp_path / "p"), "--now", NOW, "--consortium", "staging.example"
    )
    assert "consortium: the spec names 'hangzhou.example.gov.cn', but 'staging.example' was given" in msg


def test_verify_refuses_a_staging_version_signed_by_the_same_governance_keys(
    tmp_path: Path, v1: Path
) -> None:
    """Cross-consortium replay: a staging consortium run with the same governance keys
    publishes a version 2, validly signed by them, that names the staging consortium."""
    prod = parse_document(v1.read_bytes()).policy
    staging_v2 = dataclasses.replace(prod, consortium="staging.example.gov.cn", version=2)
    keys = [(n, SigningKey.load(gov_key(v1.parent, n))) for n in GOV]
    s2 = tmp_path / "staging-v2.note"
    s2.write_bytes(sign_proposal(staging_v2, keys))
    msg = fail("verify", "--pinned", str(v1), str(s2), "--now", NOW)
    assert (
        "Error: consortium: the document is version 2 of consortium 'staging.example.gov.cn', not of" in msg
    )
    assert "the trusted consortium 'hangzhou.example.gov.cn'" in msg


@pytest.mark.parametrize("command", ["init", "propose", "sign", "verify", "show", "diff", "keygen"])
def test_help(command: str) -> None:
    r = run(command, "--help")
    assert "Usage: cli consortium " + command in r.output or "Usage: certledger consortium" in r.output
    assert len(r.output.splitlines()) > 5


def test_group_help_and_usage_errors() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert "consortium" in r.output
    r = run("--help")
    assert "The ceremony:" in r.output and re.search(r"sign\s+Add your governance signature", r.output)
    assert "rotate-log-key=MEMBER:KEY[@TIME]" in run("propose", "--help").output
    fail("propose", "--current", "x", "--out", "y", code=2)  # no CHANGE


def test_propose_warns_when_a_member_is_left_without_a_key(tmp_path: Path, v1: Path) -> None:
    kid = _kid(v1, "hz-psb")
    r = run(
        "propose",
        "--current",
        str(v1),
        f"compromise=hz-psb:{kid}@2025-01-15T00:00:00Z",
        "issuers=business_licence:",
        "expires=+10d",
        "--out",
        str(tmp_path / "v2"),
        "--now",
        NOW,
    )
    assert "warning: member hz-psb has no uncompromised log key valid now or later" in r.output
    assert "warning: nobody may issue certificate type business_licence" in r.output
    assert "warning: version 2 expires soon, at 2025-01-30T00:00:00Z" in r.output
