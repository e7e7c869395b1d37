"""``certledger present`` and ``certledger qr decode``."""

import io
import json
import stat
from pathlib import Path

import pytest
import segno
from click.testing import CliRunner
from PIL import Image

from certledger.cli import cli
from ledger.credential.credential import Credential, issue_credential
from ledger.credential.presentation import check_presentation
from ledger.credential.qr import read_qr_file, render_png
from tests.fixtures.consortium import (
    AMR,
    AMR_KEY,
    BUSINESS_LICENCE,
    POLICY,
    T0,
    issue_food_permit,
    issue_reference,
)


@pytest.fixture
def licence(tmp_path: Path) -> Path:
    path = tmp_path / "licence.json"
    issue_reference().save(path)
    return path


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_full_disclosure_by_default(licence: Path) -> None:
    code, out, err = _run("present", str(licence))
    assert code == 0, err
    text = out.strip()
    assert text == Credential.load(licence).to_qr_text()
    assert "full disclosure of 11 claims" in err and "QR version 16 (level Q)" in err
    assert f"{len(text)} characters" in err


def test_selective_disclosure_with_images(licence: Path, tmp_path: Path) -> None:
    png, svg = tmp_path / "code.png", tmp_path / "code.svg"
    code, out, err = _run(
        "present", str(licence), "--reveal", "name, uscc", "--png", str(png), "--svg", str(svg)
    )
    assert code == 0, err
    text = out.strip()
    checked = check_presentation(text, policy=POLICY, now=T0 + 86400)
    assert [c.name for c in checked.claims] == ["uscc", "name"]
    assert "selective disclosure of uscc, name (9 hidden)" in err
    assert f"wrote {png}" in err and f"wrote {svg}" in err
    assert read_qr_file(png) == [text]
    assert svg.read_bytes().startswith(b"<?xml")
    assert stat.S_IMODE(png.stat().st_mode) == stat.S_IMODE(svg.stat().st_mode) == 0o644


def test_full_disclosure_images_are_private_and_replaced(licence: Path, tmp_path: Path) -> None:
    png = tmp_path / "code.png"
    png.write_bytes(b"old")
    png.chmod(0o666)
    code, out, err = _run("present", str(licence), "--png", str(png))
    assert code == 0, err
    assert read_qr_file(png) == [out.strip()]
    assert stat.S_IMODE(png.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code.png", "licence.json"]  # no temporary file


def test_error_level_and_scale(licence: Path, tmp_path: Path) -> None:
    png = tmp_path / "code.png"
    code, _, err = _run("present", str(licence), "--error-level", "h", "--scale", "3", "--png", str(png))
    assert code == 0, err
    assert "(level H)" in err
    assert read_qr_file(png)


def test_food_permit_licence_no(tmp_path: Path) -> None:
    path = tmp_path / "permit.json"
    issue_food_permit().save(path)
    code, out, err = _run("present", str(path), "--reveal", "name,licence_no")
    assert code == 0, err
    checked = check_presentation(out.strip(), policy=POLICY, now=T0 + 86400)
    assert checked.values() == {"licence_no": "JY13301060123456", "name": "杭州西溪小馆餐饮管理有限公司"}


def test_present_errors(licence: Path, tmp_path: Path) -> None:
    code, out, err = _run("present", str(licence), "--reveal", "name,licence_no")
    assert code == 1 and out == ""
    assert "Error: this certificate has no claim 'licence_no'; its claims are uscc, name" in err
    code, _, err = _run("present", str(licence), "--reveal", "name,,uscc")
    assert code == 2 and "give claim names separated by commas" in err
    code, _, err = _run("present", str(tmp_path / "missing.json"))
    assert (
        code == 1 and f"Error: {tmp_path / 'missing.json'}: cannot read the credential: No such file" in err
    )
    broken = tmp_path / "broken.json"
    obj = json.loads(licence.read_text())
    obj["claims"]["name"] = "别的公司"
    broken.write_text(json.dumps(obj))
    code, _, err = _run("present", str(broken))
    assert code == 1 and "credential: claim 'name' does not match the digest" in err
    code, _, err = _run("present", str(licence), "--png", str(tmp_path / "no-such-dir" / "x.png"))
    assert (
        code == 1
        and f"Error: {tmp_path / 'no-such-dir' / 'x.png'}: cannot write the PNG: No such file" in err
    )


def test_qr_decode(licence: Path, tmp_path: Path) -> None:
    text = Credential.load(licence).to_qr_text(["name"])
    png = tmp_path / "code.png"
    png.write_bytes(render_png(text))
    code, out, err = _run("qr", "decode", str(png))
    assert code == 0, err
    assert out == text + "\n"


def _qr_png(content: str, path: Path) -> Path:
    out = io.BytesIO()
    segno.make(content, error="q").save(out, kind="png", scale=6)
    path.write_bytes(out.getvalue())
    return path


def test_qr_decode_errors(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    blank.write_bytes(_blank_png())
    code, _, err = _run("qr", "decode", str(blank))
    assert code == 1 and "no QR code found" in err
    other = _qr_png("https://example.gov.cn/", tmp_path / "url.png")
    code, _, err = _run("qr", "decode", str(other))
    assert code == 1 and "found 1 QR code(s), but none holds a certledger presentation" in err
    code, out, _ = _run("qr", "decode", "--any", str(other))
    assert code == 0 and out == "https://example.gov.cn/\n"
    bad = _qr_png("CL1:GGW", tmp_path / "bad.png")
    code, _, err = _run("qr", "decode", str(bad))
    assert code == 1 and "out of range (not canonical Base45)" in err
    code, _, err = _run("qr", "decode", str(tmp_path / "missing.png"))
    assert code == 1 and "cannot read the image" in err


def _blank_png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (200, 200), 255).save(out, "PNG")
    return out.getvalue()


def test_help() -> None:
    code, out, _ = _run("--help")
    assert code == 0 and "present" in out and "Read certificate QR codes from images." in out
    code, out, _ = _run("present", "--help")
    assert code == 0 and "--reveal NAMES" in out and "certledger present licence.json --png" in out
    code, out, _ = _run("qr", "decode", "--help")
    assert code == 0 and "Print the CL1 text" in out


def test_dense_codes_get_a_warning(tmp_path: Path) -> None:
    cred = issue_reference()
    scope = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(300))  # does not compress
    dense = issue_credential(
        cert_type=BUSINESS_LICENCE,
        issuer=AMR,
        key=AMR_KEY,
        serial="77",
        claims={**cred.claims, "business_scope": scope},
        operator="op:1",
        time=T0,
        valid_from=T0,
    )
    path = tmp_path / "dense.json"
    dense.save(path)
    code, _, err = _run("present", str(path))
    assert code == 0, err
    assert "warning: QR version" in err and "is dense" in err
    code, _, err = _run("present", str(path), "--reveal", "name")
    assert code == 0 and "warning" not in err
