"""The clerk's page in real headless Chromium (Debian's package), driven by Playwright.

A department node runs under uvicorn on 127.0.0.1 (ephemeral port) in a thread, with
clerks made by ``certledger node add-clerk``. Chromium runs with background networking
off, so the only address it contacts is that one. Outside CI the test skips when
/usr/bin/chromium is absent; in CI it must run (the README's test command installs Chromium).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.app import create_app
from tests import nodes, window
from tests.browser import ARGS, CHROMIUM, Server, require_chromium

pytestmark = pytest.mark.slow

require_chromium()

from playwright.sync_api import Page, sync_playwright  # noqa: E402

DESKTOP = {"width": 1000, "height": 1400}


class Desk:
    """The running node and an admin clerk's token."""

    def __init__(self, server: Server, token: str, shots: Path) -> None:
        self.url = server.url
        self.token = token
        self.shots = shots


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    tmp = tmp_path_factory.mktemp("clerk-page")
    data = window.make_node(tmp)
    token = window.add_clerk(data, "王芳", "admin")
    with Server(create_app(config=nodes.config(data, submit=False)), what="the node") as s:
        yield Desk(s, token, tmp)


def _launch(p: Any, extra: list[str] = ()) -> Any:  # type: ignore[assignment]
    return p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra], headless=True)


def _sign_in(page: Page, desk: Desk, token: str) -> None:
    page.goto(desk.url + "/clerk/")
    page.fill("#token", token)
    page.click("#signin")


def _fill_food_permit(page: Page, n: int) -> None:
    for name, value in window.food_claims(n).items():
        page.fill(f"#f-{name}", str(value))


def test_page_is_served_with_a_strict_csp(desk: Desk) -> None:
    r = httpx.get(desk.url + "/clerk/")
    assert r.status_code == 200 and "窗口办理" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    js = httpx.get(desk.url + "/clerk/clerk.js")
    assert js.status_code == 200 and "Authorization" in js.text
    assert httpx.get(desk.url + "/clerk").headers["location"] == "/clerk/"


def test_wrong_token_is_refused(desk: Desk) -> None:
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport=DESKTOP)
            _sign_in(page, desk, desk.token[:-4] + "AAAA")
            page.wait_for_function("() => document.getElementById('signin-msg').textContent !== ''")
            assert "登录失败" in page.inner_text("#signin-msg")
            assert page.is_hidden("#desk")
        finally:
            browser.close()


def test_issue_reject_revoke_and_qr(desk: Desk) -> None:
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport=DESKTOP)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            _sign_in(page, desk, desk.token)
            page.wait_for_selector("#type option[value=food_business_permit]", state="attached")
            assert page.is_visible("#desk")
            assert page.get_attribute("#f-uscc", "maxlength") == "18"  # the first type: business licence
            page.select_option("#type", "food_business_permit")
            assert page.get_attribute("#f-issue_date", "type") == "date"
            assert page.get_attribute("#f-seats", "type") == "number"
            assert "许可证编号" in page.inner_text("label[for=f-licence_no]")
            assert "*" in page.inner_text("label[for=f-name]")
            assert "*" not in page.inner_text("label[for=f-seats]")

            # a bad field: the API's 422 rule appears next to it
            _fill_food_permit(page, 1)
            page.fill("#f-uscc", "lower-case")
            page.click("#issue-submit")
            page.wait_for_function("() => document.getElementById('err-uscc').textContent !== ''")
            assert page.inner_text("#err-uscc") == "a code is upper-case letters A-Z and digits only"
            assert page.inner_text("#err-name") == ""
            assert page.inner_text("#issued-id") == ""

            # corrected: issued, and shown with its history
            page.fill("#f-uscc", str(window.food_claims(1)["uscc"]))
            page.click("#issue-submit")
            page.wait_for_function("() => document.getElementById('issued-id').textContent !== ''")
            cert_id = page.inner_text("#issued-id")
            assert page.inner_text("#err-uscc") == ""
            page.wait_for_function("() => document.getElementById('cert-status').textContent === 'valid'")
            assert "issue" in page.inner_text("#history")
            assert window.food_claims(1)["name"] in page.inner_text("#claims")

            # the QR code, fetched with the token, shown from a blob URL
            page.check("#reveal-licence_no")
            page.check("#reveal-name")
            page.click("#qr-show")
            page.wait_for_function("() => document.getElementById('qr-img').naturalWidth > 0")
            assert (page.get_attribute("#qr-img", "src") or "").startswith("blob:")
            assert page.get_attribute("#qr-png", "download") == f"{cert_id}-partial.png"
            assert "licence_no, name" in page.inner_text("#qr-msg")
            page.screenshot(path=str(desk.shots / "clerk.png"), full_page=True)

            # replace it: the form comes back filled with its claims
            page.select_option("#reason", "information_changed")
            page.click("#replace")
            assert page.input_value("#f-name") == window.food_claims(1)["name"]
            assert page.is_visible("#replace-note") and page.inner_text("#replacing") == cert_id
            page.fill("#f-name", "杭州西溪小馆餐饮有限公司")
            page.click("#issue-submit")
            page.wait_for_function(
                "id => { const t = document.getElementById('issued-id').textContent; return t && t !== id; }",
                arg=cert_id,
            )
            old_id, cert_id = cert_id, page.inner_text("#issued-id")
            assert "已换发" in page.inner_text("#issue-msg") and page.is_hidden("#replace-note")
            page.wait_for_function(
                "id => document.getElementById('cert-type').textContent.endsWith(id)", arg=cert_id
            )
            assert "杭州西溪小馆餐饮有限公司" in page.inner_text("#claims")
            assert "replace" in page.inner_text("#history")

            # revoke with a reason from the API's list
            page.select_option("#reason", "obtained_by_fraud")
            page.click("#revoke")
            page.wait_for_function("() => document.getElementById('cert-status').textContent === 'revoked'")
            history = page.inner_text("#history")
            assert "revoke" in history and "obtained_by_fraud" in history
            assert page.inner_text("#cert-status") == "revoked"

            # a second revocation is refused with the API's reason
            page.click("#revoke")
            page.wait_for_function("() => document.getElementById('action-msg').className === 'msg bad'")
            assert "未能办理" in page.inner_text("#action-msg")

            # the replaced edition, looked up by hand
            page.fill("#lookup-id", old_id)
            page.click("#lookup")
            page.wait_for_function("() => document.getElementById('cert-status').textContent === 'replaced'")
            assert "information_changed" in page.inner_text("#history")
            assert errors == []
        finally:
            browser.close()
