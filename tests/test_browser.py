"""The verifier's page in real headless Chromium (Debian's package), driven by Playwright.

The verifier runs under uvicorn on 127.0.0.1 (ephemeral port) in a thread. Chromium
runs with background networking off, so the only address it contacts is that one.
Outside CI the test skips when /usr/bin/chromium is absent; in CI it must run (the
README's test command installs Chromium).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ledger.credential.qr import render_png
from ledger.replica.store import ReplicaStore
from tests.browser import ARGS, CHROMIUM, Server, require_chromium
from tests.fixtures.consortium import POLICY, all_credentials
from tests.verifier_world import REVOKED, UNLOGGED, World
from verifier.app import Limits, create_app

pytestmark = pytest.mark.slow

require_chromium()

from playwright.sync_api import Page, sync_playwright  # noqa: E402

CREDENTIALS = all_credentials()
LICENCE = CREDENTIALS["business_licence"]
TEXT = LICENCE.to_qr_text(["uscc", "name", "legal_representative"])
PHONE = {"width": 390, "height": 844}


def _y4m(png: bytes, path: Path, *, width: int = 640, height: int = 480, frames: int = 5) -> None:
    """A YUV4MPEG2 (4:2:0) video of the QR code on a white frame, for Chromium's fake camera."""
    from io import BytesIO

    qr = Image.open(BytesIO(png)).convert("L")
    side = min(width, height) - 40
    qr = qr.resize((side, side), Image.Resampling.NEAREST)
    frame = Image.new("L", (width, height), 255)
    frame.paste(qr, ((width - side) // 2, (height - side) // 2))
    y = frame.tobytes()
    chroma = bytes([128]) * (width // 2) * (height // 2)
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + y + chroma + chroma)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("world")
    world = World(root)
    with ReplicaStore.open(root / "replica.db") as store:
        service = world.service(store)
        assert all(r.ok for r in service.sync())
        with Server(
            create_app(service=service, limits=Limits(rate=1000.0, burst=1000)), what="the verifier"
        ) as s:
            yield s
    world.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("browser")
    png = render_png(TEXT, scale=6)
    (d / "licence.png").write_bytes(png)
    (d / "revoked.png").write_bytes(render_png(REVOKED.to_qr_text(["uscc", "name"]), scale=6))
    (d / "unlogged.jpg").write_bytes(_jpeg(render_png(UNLOGGED.to_qr_text(["uscc", "name"]), scale=6)))
    _y4m(png, d / "licence.y4m")
    return {
        "png": d / "licence.png",
        "revoked": d / "revoked.png",
        "unlogged": d / "unlogged.jpg",
        "y4m": d / "licence.y4m",
        "dir": d,
    }


def _jpeg(png: bytes) -> bytes:
    from io import BytesIO

    out = BytesIO()
    Image.open(BytesIO(png)).convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


def _reset(page: Page) -> None:
    page.evaluate("document.getElementById('verdict').dataset.code = ''")


def _verdict(page: Page) -> tuple[str, str]:
    page.wait_for_function(
        "() => { const c = document.getElementById('verdict').dataset.code; return c && c !== ''; }",
        timeout=20_000,
    )
    return (
        page.get_attribute("#verdict", "data-code") or "",
        page.inner_text("#verdict-sub"),
    )


def _launch(p: Any, extra: list[str] = ()) -> Any:  # type: ignore[assignment]
    return p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra], headless=True)


def test_upload_valid_then_revoked(server: Server, files: dict[str, Path]) -> None:
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport=PHONE)
            page.goto(server.url + "/")
            assert page.inner_text("#verdict-title") == "请出示二维码"

            page.set_input_files("#upload-input", str(files["png"]))
            assert _verdict(page) == ("VALID", "VALID")
            assert page.inner_text("#verdict-title") == "有效"
            assert page.get_attribute("#verdict", "class") == "verdict valid"
            assert LICENCE.claims["name"] in page.inner_text("#d-claims")
            assert "杭州市西湖区市场监督管理局" in page.inner_text("#d-issuer")
            assert "witnessed by hangzhou-health, hangzhou-psb" in page.inner_text("#d-ledger")
            page.screenshot(path=str(files["dir"] / "valid.png"), full_page=True)

            _reset(page)
            page.set_input_files("#upload-input", str(files["revoked"]))
            assert _verdict(page) == ("REVOKED", "REVOKED")
            assert page.inner_text("#verdict-title") == "已撤销"
            assert page.get_attribute("#verdict", "class") == "verdict invalid"
            page.screenshot(path=str(files["dir"] / "revoked.png"), full_page=True)

            _reset(page)
            page.set_input_files("#upload-input", str(files["unlogged"]))
            assert _verdict(page) == ("NOT_IN_LEDGER", "NOT IN LEDGER")
            assert page.get_attribute("#verdict", "class") == "verdict unsure"
        finally:
            browser.close()


def test_paste_scanner_and_mangled_input(server: Server) -> None:
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport=PHONE)
            page.goto(server.url + "/")
            _reset(page)
            page.fill("#text-input", "not a certificate")
            page.press("#text-input", "Enter")
            assert _verdict(page) == ("MALFORMED", "MALFORMED")
            assert page.get_attribute("#verdict", "class") == "verdict invalid"

            # a keyboard-wedge scanner typing through a Chinese input method: full-width text
            _reset(page)
            page.fill("#text-input", "ＣＬ１：" + TEXT[4:])
            page.press("#text-input", "Enter")
            assert _verdict(page)[0] == "MANGLED"
            assert "输入被改动" in page.inner_text("#reason-zh")
            assert "input mangled" in page.inner_text("#reason-en")
            assert page.get_attribute("#verdict", "class") == "verdict unsure"

            # the scanner types fast and ends with Enter
            _reset(page)
            page.fill("#text-input", "")
            page.type("#text-input", TEXT[:200], delay=0)
            page.fill("#text-input", TEXT)
            page.press("#text-input", "Enter")
            assert _verdict(page)[0] == "VALID"
        finally:
            browser.close()


def test_a_wedge_scanner_scanning_twice_gets_two_verdicts_and_two_requests(server: Server) -> None:
    # The second scan's keystrokes must replace the first code, not join it (which read as
    # MALFORMED), and a scan ending with Enter must not be sent again by the idle timer.
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport=PHONE)
            posts: list[str] = []
            page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
            page.goto(server.url + "/")
            page.click("#text-input")
            for scan in (1, 2):
                _reset(page)
                page.keyboard.type(TEXT, delay=0)
                page.keyboard.press("Enter")
                assert _verdict(page)[0] == "VALID", f"scan {scan}"
            page.wait_for_timeout(800)  # longer than the idle timer
            assert len(posts) == 2, posts
        finally:
            browser.close()


def test_consortium_page(server: Server, files: dict[str, Path]) -> None:
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/consortium")
            page.wait_for_selector("#members tr")
            rows = page.inner_text("#members")
            for m in POLICY.members:
                assert m.name in rows and m.id in rows
            page.wait_for_function("() => window.Chart && Chart.getChart('chart') !== undefined")
            labels = page.evaluate("Chart.getChart('chart').data.datasets.map(d => d.label)")
            assert len(labels) == 2 * len(POLICY.members)
            assert errors == []
            page.screenshot(path=str(files["dir"] / "consortium.png"), full_page=True)
        finally:
            browser.close()


def test_camera_reads_a_fake_video_stream(server: Server, files: dict[str, Path]) -> None:
    fake = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={files['y4m']}",
    ]
    with sync_playwright() as p:
        browser = _launch(p, fake)
        try:
            page = browser.new_page(viewport=PHONE)
            page.goto(server.url + "/")
            page.click("#camera-start")
            code, _ = _verdict(page)
            assert code == "VALID", page.inner_text("#camera-note")
            assert LICENCE.claims["name"] in page.inner_text("#d-claims")
        finally:
            browser.close()
