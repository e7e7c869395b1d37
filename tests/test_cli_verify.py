"""``certledger verify``: verdicts and exit statuses on the command line."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from certledger.cli import cli
from certledger.cli.verifier import sync_loop
from certledger.cli.verify import EXIT_CODES
from ledger.credential.qr import render_png
from ledger.errors import StorageError
from ledger.log.statement import Kind
from ledger.replica.fetch import mirror_prefix
from ledger.trust.policy_doc import sign_proposal
from tests.fixtures.consortium import AMR, GOVERNANCE_KEY, HEALTH, POLICY, PSB, T0, issue_reference
from tests.replica_fixtures import Net, licence, status
from verifier.verdict import Code


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.net = Net(root / "net")
        self.policy = root / "policy.txt"
        self.policy.write_bytes(sign_proposal(POLICY, [("governance.example.gov.cn", GOVERNANCE_KEY)]))
        self.public = root / "public"
        self.replica = root / "replica"

    def publish(self) -> None:
        """Every log published, witnessed a minute ago, in one directory laid out like a node's mirrors."""
        now = int(time.time())
        for m in (AMR, HEALTH, PSB):
            self.net.publish(m.id, at=now - 60)
            dest = self.public / mirror_prefix(m.origin)
            shutil.rmtree(dest, ignore_errors=True)
            self.net.copy_tiles(m.id, dest)

    def run(self, *args: str, offline: bool = False) -> tuple[int, str, str]:
        where = ["--offline"] if offline else ["--nodes", str(self.public)]
        base = ["verify", "--policy", str(self.policy), "--replica", str(self.replica), *where]
        result = CliRunner().invoke(cli, [*base, *args])
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path)
    s.net.append(AMR.id, [issue_reference().signed])
    s.publish()
    yield s
    s.net.close()


def test_valid_after_sync_from_a_static_copy(setup: Setup) -> None:
    code, out, err = setup.run(issue_reference().to_qr_text())
    assert code == 0, out + err
    assert "✓ VALID" in out and "杭州市西湖区市场监督管理局" in out and "统一社会信用代码" in out
    assert "witnessed by hangzhou-health, hangzhou-psb" in out


def test_revoked_as_json_with_its_exit_status(setup: Setup) -> None:
    ref = issue_reference()
    setup.net.append(AMR.id, [status(AMR.id, ref.cert_id, Kind.REVOKE, time=T0 + 7200)])
    setup.publish()
    code, out, _ = setup.run("--json", ref.to_qr_text())
    assert code == EXIT_CODES[Code.REVOKED] == 10
    verdict = json.loads(out)
    assert verdict["code"] == "REVOKED" and verdict["class"] == "invalid"
    assert verdict["evidence"]["entry_index"] == 0


def test_offline_uses_the_replica_as_it_is(setup: Setup) -> None:
    assert setup.run(issue_reference().to_qr_text())[0] == 0
    shutil.rmtree(setup.public)
    code, out, _ = setup.run(issue_reference().to_qr_text(), offline=True)
    assert code == 0 and "VALID" in out
    code, out, _ = setup.run(licence("2024000404").to_qr_text(), offline=True)
    assert code == EXIT_CODES[Code.NOT_IN_LEDGER] == 20 and "NOT_IN_LEDGER" in out


def test_nodes_unreachable_still_answers_from_the_replica(setup: Setup) -> None:
    assert setup.run(issue_reference().to_qr_text())[0] == 0
    shutil.rmtree(setup.public)
    code, out, err = setup.run(issue_reference().to_qr_text())
    assert code == 0 and "VALID" in out
    assert "sync hangzhou-xihu-amr:" in err and "no file checkpoint" in err


def test_image_input(setup: Setup, tmp_path: Path) -> None:
    png = tmp_path / "qr.png"
    png.write_bytes(render_png(issue_reference().to_qr_text(["uscc", "name"])))
    code, out, _ = setup.run("--image", str(png))
    assert code == 0 and "未出示" in out


def test_image_without_a_qr_code_is_malformed(setup: Setup, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    blank.write_bytes(render_png("x")[:60])
    code, out, _ = setup.run("--image", str(blank))
    assert code == EXIT_CODES[Code.MALFORMED] and "MALFORMED" in out


def test_text_that_is_not_a_certledger_code(setup: Setup) -> None:
    code, out, _ = setup.run("https://example.gov.cn/licence/123")
    assert code == 19 and "MALFORMED" in out and "不是有效的证照二维码" in out


def test_scanner_line_ends_are_trimmed_and_altered_text_is_called_mangled(setup: Setup) -> None:
    text = issue_reference().to_qr_text()
    code, out, _ = setup.run(text + "\r")
    assert code == EXIT_CODES[Code.VALID], out
    for altered in ("ＣＬ１：" + text[4:], text.lower()):
        code, out, err = setup.run(altered)
        assert code == EXIT_CODES[Code.MALFORMED] and "input_mangled" in err, (out, err)


def test_usage_errors(setup: Setup) -> None:
    assert setup.run()[0] == 2
    result = CliRunner().invoke(cli, ["verify", "--help"])
    assert "21  STALE" in result.stdout and "10  REVOKED" in result.stdout


def test_every_verdict_has_its_own_exit_status() -> None:
    assert set(EXIT_CODES) == set(Code)
    assert len(set(EXIT_CODES.values())) == len(Code)
    assert {1, 2}.isdisjoint(EXIT_CODES.values())


def test_policy_replica_and_nodes_from_the_environment(setup: Setup) -> None:
    """A clerk's terminal sets them once (the help text names the variables)."""
    env = {
        "CERTLEDGER_POLICY": str(setup.policy),
        "CERTLEDGER_REPLICA": str(setup.replica),
        "CERTLEDGER_NODES": str(setup.public),
    }
    result = CliRunner().invoke(cli, ["verify", issue_reference().to_qr_text()], env=env)
    assert result.exit_code == EXIT_CODES[Code.VALID], result.output
    assert "VALID" in result.stdout
    help_text = " ".join(CliRunner().invoke(cli, ["verify", "--help"]).stdout.split())
    for name in env:
        assert f"env var: {name}" in help_text


def test_the_sync_loop_survives_a_failing_round(capsys: pytest.CaptureFixture[str]) -> None:
    # A database locked past its timeout made the scheduled sync thread die for good.
    stop = threading.Event()
    rounds: list[int] = []

    class Service:
        def sync(self) -> list[object]:
            rounds.append(len(rounds))
            if len(rounds) == 1:
                raise StorageError("replica.db: cannot write the replica: database is locked")
            stop.set()
            return []

    class Follower:
        policy = POLICY
        last_refusal = None
        last_check = 0

    sync_loop(Service(), Follower(), stop, 0.01)  # type: ignore[arg-type]
    assert rounds == [0, 1]
    assert (
        "sync failed, trying again in 0.01 s: replica.db: cannot write the replica: database is locked"
        in (capsys.readouterr().err)
    )
