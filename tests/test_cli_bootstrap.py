"""`certledger consortium bootstrap`: a whole consortium on one machine, run again safely."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from certledger.cli import cli
from ledger.errors import KeyFileError
from ledger.keys import SigningKey, VerifierKey
from ledger.log.store import LogStore
from ledger.trust.trust import verify_pinned
from node.config import load_config

SPEC = Path(__file__).parent / "data" / "consortium-spec.toml"
DEPLOY_SPEC = Path(__file__).parent.parent / "deploy" / "consortium.toml"
GOV = ["gov.amr.example.gov.cn", "gov.psb.example.gov.cn", "gov.health.example.gov.cn"]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["consortium", "bootstrap", *args], env=env)


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    result = run(*args, env=env)
    assert result.exit_code == 0, result.output
    return result.output


def fail(*args: str, code: int = 1) -> str:
    result = run(*args)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.output


def args(tmp: Path, spec: Path = SPEC) -> list[str]:
    return [
        *(str(spec), "--out", str(tmp / "consortium"), "--keys", str(tmp / "governance")),
        *("--node", f"hz-amr={tmp / 'amr'}", "--node", f"hz-psb={tmp / 'psb'}"),
        *("--base-url", "hz-amr=http://hz-amr:8080/", "--base-url", "hz-psb=http://hz-psb:8080/"),
    ]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_bootstrap_makes_a_policy_and_nodes_that_start(tmp_path: Path) -> None:
    out = ok(*args(tmp_path))
    assert "version 1: ✓ signed by 3/3 of its own governance keys; threshold 2" in out
    doc = (tmp_path / "consortium" / "policy-v1.note").read_bytes()
    policy = verify_pinned(doc).policy
    assert [m.base_url for m in policy.members] == ["http://hz-amr:8080/", "http://hz-psb:8080/"]
    # Governance keys only: the members' keys live in their nodes' data directories alone.
    gov = tmp_path / "governance"
    assert sorted(p.name for p in gov.iterdir()) == sorted(f"governance-{n}.pem" for n in GOV)
    assert stat.S_IMODE(gov.stat().st_mode) == 0o700
    assert list((tmp_path / "consortium").iterdir()) == [tmp_path / "consortium" / "policy-v1.note"]
    for member_id, name in (("hz-amr", "amr"), ("hz-psb", "psb")):
        config = load_config(tmp_path / name)  # what `node run` checks before it starts
        assert config.member_id == member_id
        assert config.policy.document(1) == doc
        assert stat.S_IMODE((tmp_path / name / "log.key").stat().st_mode) == 0o600
        with LogStore.open(tmp_path / name / "log.db", readonly=True) as store:
            assert store.origin == policy.require_member(member_id).origin and store.size == 0


def test_bootstrap_again_changes_nothing(tmp_path: Path) -> None:
    ok(*args(tmp_path))
    before = snapshot(tmp_path)
    out = ok(*args(tmp_path))
    assert "consortium already set up" in out and "nothing to do" in out
    assert snapshot(tmp_path) == before


def test_a_lost_node_is_not_made_again_under_new_keys(tmp_path: Path) -> None:
    ok(*args(tmp_path))
    for p in sorted((tmp_path / "psb").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    out = fail(*args(tmp_path))
    assert "holds no node for hz-psb" in out and "restore the node's data directory from its backup" in out
    assert not (tmp_path / "psb" / "member").exists()


def test_a_node_of_another_consortium_is_refused(tmp_path: Path) -> None:
    ok(*args(tmp_path))
    other = tmp_path / "other"
    other.mkdir()
    ok(*args(other))
    swapped = [a.replace(f"hz-psb={tmp_path / 'psb'}", f"hz-psb={other / 'psb'}") for a in args(tmp_path)]
    out = fail(*swapped)
    assert "pinned to another policy" in out


def test_a_half_finished_bootstrap_is_named(tmp_path: Path) -> None:
    # A node directory exists but the policy was never written: the earlier run stopped.
    ok(*args(tmp_path))
    (tmp_path / "consortium" / "policy-v1.note").unlink()
    out = fail(*args(tmp_path))
    assert "already holds a node" in out and "stopped half-way" in out


@pytest.mark.parametrize(
    ("extra", "message", "code"),
    [
        (["--node", "hz-nobody=x"], "hz-nobody: not a member in", 2),
        (["--base-url", "hz-nobody=http://x/"], "hz-nobody: not a member in", 2),
        (["--node", "hz-amr"], "'hz-amr' is not MEMBER=DIR", 2),
        (["--base-url", "=http://x/"], "'=http://x/' is not MEMBER=URL", 2),
        (["--node", "hz-amr=elsewhere"], "member 'hz-amr' is given twice", 2),
    ],
)
def test_bad_options_are_named(tmp_path: Path, extra: list[str], message: str, code: int) -> None:
    out = fail(*args(tmp_path), *extra, code=code)
    assert message in " ".join(out.split())
    assert not (tmp_path / "consortium" / "policy-v1.note").exists()


def test_a_bad_base_url_is_refused_by_the_policy_rules(tmp_path: Path) -> None:
    bad = [a.replace("hz-psb=http://hz-psb:8080/", "hz-psb=ftp://hz-psb/") for a in args(tmp_path)]
    out = fail(*bad)
    assert "member hz-psb: base_url must be an http(s) URL" in out
    assert not (tmp_path / "amr").exists()


def test_two_members_in_one_directory_are_refused(tmp_path: Path) -> None:
    out = fail(
        str(SPEC),
        "--out",
        str(tmp_path / "c"),
        "--node",
        f"hz-amr={tmp_path}/n",
        "--node",
        f"hz-psb={tmp_path}/n",
        code=2,
    )
    assert "two members share one data directory" in out


def test_governance_keys_held_elsewhere_cannot_be_bootstrapped(tmp_path: Path) -> None:
    held = SigningKey.generate()
    vk = VerifierKey(name="gov.psb.example.gov.cn", public_key=held.public_key)
    spec = SPEC.read_text().replace(
        '{ name = "gov.psb.example.gov.cn" }', f'{{ name = "{vk.name}", key = "{vk}" }}'
    )
    spec = spec.replace('{ name = "gov.health.example.gov.cn" },', "")
    path = tmp_path / "spec.toml"
    path.write_text(spec)
    out = fail(*args(tmp_path, path))
    assert "only 1 of the 2 are generated (threshold 2)" in " ".join(out.split())
    assert not (tmp_path / "amr").exists()


def test_a_member_with_its_own_keys_cannot_get_a_node_here(tmp_path: Path) -> None:
    key = SigningKey.generate()
    vk = VerifierKey(name="ledger.example.gov.cn/hz-amr", public_key=key.public_key)
    spec = SPEC.read_text().replace(
        'base_url = "https://hz-amr.example.gov.cn/ledger"',
        f'base_url = "https://hz-amr.example.gov.cn/ledger"\nlog_key = "{vk}"',
    )
    path = tmp_path / "spec.toml"
    path.write_text(spec)
    out = fail(*args(tmp_path, path))
    assert "member hz-amr gives its own keys" in " ".join(out.split())


def test_keys_are_encrypted_with_the_passphrase_variable(tmp_path: Path) -> None:
    ok(*args(tmp_path), env={"CERTLEDGER_KEY_PASSPHRASE": "correct horse"})
    with pytest.raises(KeyFileError, match="passphrase"):
        load_config(tmp_path / "amr")
    assert load_config(tmp_path / "amr", passphrase=b"correct horse").member_id == "hz-amr"
    SigningKey.load(tmp_path / "governance" / f"governance-{GOV[0]}.pem", passphrase=b"correct horse")


def test_the_deployment_spec_bootstraps(tmp_path: Path) -> None:
    ids = ["hangzhou-amr", "hangzhou-psb", "hangzhou-hrss"]
    out = ok(
        str(DEPLOY_SPEC),
        "--out",
        str(tmp_path / "c"),
        *[a for m in ids for a in ("--node", f"{m}={tmp_path / m}")],
    )
    policy = verify_pinned((tmp_path / "c" / "policy-v1.note").read_bytes()).policy
    assert [m.id for m in policy.members] == ids
    assert {t.code for t in policy.types} == {
        "business_licence",
        "residence_permit",
        "professional_qualification",
    }
    assert "keys" in {p.name for p in (tmp_path / "c").iterdir()}  # --keys defaults to OUT/keys
    assert out.count("node  ") == 3
