"""Bulk import of an existing register through a real node on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from certledger.cli import cli
from certledger.cli.importer import decode_csv, read_rows
from ledger.credential.credential import Credential
from ledger.credential.qr import read_qr_file
from ledger.errors import MalformedError
from ledger.log.audit import audit
from ledger.log.statement import Entry, Kind
from ledger.log.store import LogStore
from tests import window
from tests.fixtures import consortium as fx

HEADER = [
    "许可证编号",
    "经营者名称",
    "uscc",
    "法定代表人（负责人）",
    "经营场所",
    "主体业态",
    "经营项目",
    "签发日期",
    "就餐座位数",
    "有效期至",
]
BAD_KINDS: list[tuple[str, Callable[[list[str]], object]]] = [
    ("lower-case licence number", lambda r: r.__setitem__(0, r[0].lower())),
    ("no name", lambda r: r.__setitem__(1, "")),
    ("impossible date", lambda r: r.__setitem__(7, "2024-02-30")),
    ("seats not a number", lambda r: r.__setitem__(8, "三十")),
    ("missing cell", lambda r: r.pop()),
    ("address too long", lambda r: r.__setitem__(4, "很长的地址" * 50)),
]


def register(rows: int, bad_share: float, seed: int = 1, start: int = 0) -> tuple[str, set[int]]:
    """A register as CSV text (CRLF lines) and the line numbers of its bad rows."""
    rng = random.Random(seed)
    bad = set(rng.sample(range(rows), int(rows * bad_share)))
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(HEADER)
    bad_lines = set()
    for n in range(rows):
        row = [
            f"JY{13301060000000 + start + n}",
            f"杭州西溪小馆餐饮管理有限公司{start + n}号店",
            "91330106MA2H3B4C5D",
            "陈晓明",
            "浙江省杭州市西湖区文三路100号",
            "餐饮服务经营者",
            "热食类食品制售",
            "2024/3/5" if n % 2 else "2024-03-05",
            str(n % 200) if n % 3 else "",
            "2029-03-04",
        ]
        if n in bad:
            BAD_KINDS[n % len(BAD_KINDS)][1](row)
            bad_lines.add(n + 2)
        w.writerow(row)
    return out.getvalue(), bad_lines


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[window.NodeProcess, str]]:
    tmp = tmp_path_factory.mktemp("import")
    data = window.make_node(tmp)
    token = window.add_clerk(data, "登记员", "issue")
    proc = window.NodeProcess(data).start()
    try:
        yield proc, token
    finally:
        proc.stop()


def importer(node: tuple[window.NodeProcess, str], file: Path, out: Path, *extra: str) -> str:
    proc, token = node
    r = CliRunner().invoke(
        cli,
        [
            "import",
            str(file),
            "--type",
            "food_business_permit",
            "--node",
            proc.url,
            "--token",
            token,
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ],
    )
    assert r.exit_code == 0, r.output
    return r.output


def error_lines(out: Path) -> dict[int, str]:
    with (out / "errors.csv").open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["line", "reason"]
    return {int(line): reason for line, reason in rows[1:]}


def log_cert_ids(proc: window.NodeProcess) -> list[str]:
    store = LogStore.open(proc.data / "log.db", readonly=True)
    try:
        return [
            s.cert_id
            for e in store.entries()
            if (s := Entry.from_bytes(e).signed.statement).kind == Kind.ISSUE
        ]
    finally:
        store.close()


@pytest.mark.slow
def test_ten_thousand_gb18030_rows_with_three_percent_bad(
    node: tuple[window.NodeProcess, str], tmp_path: Path
) -> None:
    text, bad = register(10_000, 0.03)
    file = tmp_path / "登记簿.csv"
    file.write_bytes(text.encode("gb18030"))
    out = tmp_path / "out"
    before = len(log_cert_ids(node[0]))
    msg = importer(node, file, out, "--qr", "none", "--batch", "1000")
    assert "(gb18030): 9700 issued, 0 already imported, 300 bad row(s)" in msg
    errors = error_lines(out)
    assert set(errors) == bad
    assert any("claims.licence_no" in why for why in errors.values())
    assert any("claims.name: required" in why for why in errors.values())
    assert any("is not a whole number" in why for why in errors.values())
    assert any("cells, but the header has 10 columns" in why for why in errors.values())
    ids = log_cert_ids(node[0])[before:]
    assert len(ids) == 9700 == len(set(ids))
    assert len(list(out.glob("*.json"))) == 9700
    again = importer(node, file, out, "--qr", "none", "--batch", "1000")
    assert "0 issued, 9700 already imported, 300 bad row(s)" in again
    assert set(error_lines(out)) == bad
    assert len(log_cert_ids(node[0])) == before + 9700


def test_utf8_with_bom_claim_names_and_qr_images(
    node: tuple[window.NodeProcess, str], tmp_path: Path
) -> None:
    text, bad = register(30, 0.1, seed=7, start=100_000)
    text = text.replace("许可证编号", "licence_no", 1)
    file = tmp_path / "bom.csv"
    file.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    out = tmp_path / "out"
    msg = importer(node, file, out, "--qr", "both")
    assert "(utf-8-sig): 27 issued" in msg and "3 bad row(s)" in msg
    assert set(error_lines(out)) == bad
    one = sorted(out.glob("*.json"))[0]
    cred = Credential.load(one)
    assert cred.claims["legal_representative"] == "陈晓明"
    [qr] = read_qr_file(one.with_suffix(".png"))
    assert Credential.from_qr_text(qr, policy=fx.POLICY).cert_id == cred.cert_id
    assert one.with_suffix(".svg").read_bytes().startswith(b"<?xml")
    # the files carry the holders' claims: the operator's alone, none left half-written
    outputs = [p for p in out.iterdir() if p.suffix in (".json", ".png", ".svg")]
    assert len(outputs) == 27 * 3
    assert {p.stat().st_mode & 0o777 for p in outputs} == {0o600}
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_interrupted_import_resumes_without_issuing_twice(
    node: tuple[window.NodeProcess, str], tmp_path: Path
) -> None:
    proc, token = node
    text, bad = register(3000, 0.03, seed=3, start=200_000)
    file = tmp_path / "big.csv"
    file.write_bytes(text.encode("gb18030"))
    out = tmp_path / "out"
    before = len(log_cert_ids(proc))
    args = [sys.executable, "-c", "from certledger.cli import main; main()", "import", str(file)]
    args += ["--type", "food_business_permit", "--node", proc.url, "--token", token, "--out", str(out)]
    args += ["--qr", "none", "--batch", "200", "--no-progress"]
    child = subprocess.Popen(args, cwd=window.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            log = out / "imported.csv"
            if log.exists() and log.read_text(encoding="utf-8").count("\n") > 400:
                break
            assert child.poll() is None, "the import finished before it could be interrupted"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    done_before = log.read_text(encoding="utf-8").count("\n") - 1
    assert 0 < done_before < 3000 - len(bad)
    # Lose the last recorded rows too: the node has them, the importer no longer knows.
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    log.write_text("".join(lines[:-50]), encoding="utf-8")
    msg = importer(node, file, out, "--qr", "none", "--batch", "500")
    assert f"{len(bad)} bad row(s)" in msg
    issued = int(msg.split(": ")[1].split(" issued")[0])
    replayed = int(msg.split("issued, ")[1].split(" already")[0])
    assert issued + replayed == 3000 - len(bad)
    assert replayed >= done_before - 50
    ids = log_cert_ids(proc)[before:]
    assert len(ids) == 3000 - len(bad) == len(set(ids))
    assert set(error_lines(out)) == bad
    assert audit(proc.data / "log.db", keys=[fx.AMR_KEY.public_key]).size >= len(log_cert_ids(proc))


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        ("名称\n甲".encode(), "utf-8"),
        (b"\xef\xbb\xbf" + "名称\n甲".encode(), "utf-8-sig"),
        ("名称\n甲".encode("gb18030"), "gb18030"),
    ],
)
def test_encodings_detected(raw: bytes, encoding: str) -> None:
    assert decode_csv(raw) == ("名称\n甲", encoding)


def test_bom_then_not_utf8_refused() -> None:
    with pytest.raises(MalformedError, match="starts like UTF-8"):
        decode_csv(b"\xef\xbb\xbf\xff\xfe")


def test_unknown_column_aborts_before_anything_is_issued(
    node: tuple[window.NodeProcess, str], tmp_path: Path
) -> None:
    proc, token = node
    file = tmp_path / "x.csv"
    file.write_text("许可证编号,颜色\nJY1,红\n", encoding="utf-8")
    r = CliRunner().invoke(
        cli,
        [
            "import",
            str(file),
            "--type",
            "food_business_permit",
            "--node",
            proc.url,
            "--token",
            token,
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 1 and "column '颜色' is neither a claim name nor a label" in r.output


_SCHEMA = {
    "code": "food_business_permit",
    "claims": [
        {"name": c.name, "label": c.label, "kind": c.kind, "required": c.required, "max_length": c.max_length}
        for c in fx.FOOD_PERMIT.claims
    ],
}


_FRAGMENTS = [
    "许可证编号",
    "licence_no",
    "name",
    "经营者名称",
    ",",
    '"',
    "\r\n",
    "\n",
    "\r",
    " ",
    "a",
    "1",
    "-",
    "/",
    "年",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=60).map("".join))
def test_random_csv_text_gives_rows_or_a_named_refusal(text: str) -> None:
    try:
        rows = list(read_rows(text, _SCHEMA))
    except MalformedError as e:
        assert str(e)
        return
    for row in rows:
        assert row.line >= 2
        assert (row.problem is None) == bool(row.key)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_are_refused(raw: bytes) -> None:
    try:
        text, encoding = decode_csv(raw)
    except MalformedError:
        return
    assert encoding in ("utf-8", "utf-8-sig", "gb18030") and isinstance(text, str)
