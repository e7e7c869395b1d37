"""The verifier's HTTP API and pages, in process, over a replica synced from static tile copies."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import verifier.app
from ledger.credential.qr import render_png
from ledger.errors import StorageError
from ledger.replica.store import ReplicaStore
from tests.fixtures.consortium import POLICY, all_credentials
from tests.verifier_world import World
from verifier.app import Limits, create_app
from verifier.service import ReplicaService
from verifier.verdict import Code

CREDENTIALS = all_credentials()
LICENCE = CREDENTIALS["business_licence"]
TEXT = LICENCE.to_qr_text(["uscc", "name", "legal_representative"])
CODES = {c.value for c in Code}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaService]:
    root = tmp_path_factory.mktemp("world")
    world = World(root)
    with ReplicaStore.open(root / "replica.db") as store:
        s = world.service(store)
        assert all(r.ok for r in s.sync())
        yield s
    world.close()


def _client(service: ReplicaService, **limits: object) -> TestClient:
    lim = Limits(**{"rate": 1000.0, "burst": 1000, **limits})  # type: ignore[arg-type]
    return TestClient(create_app(service=service, limits=lim))


@pytest.fixture(scope="module")
def client(service: ReplicaService) -> Iterator[TestClient]:
    with _client(service) as c:
        yield c


def _png(text: str, scale: int = 4) -> bytes:
    return render_png(text, scale=scale)


def _jpeg(png: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


# -- text ---------------------------------------------------------------------------


def test_verify_json_returns_the_verdict_with_claims_and_issuer(client: TestClient) -> None:
    r = client.post("/v1/verify", json={"text": TEXT})
    assert r.status_code == 200
    v = r.json()
    assert v["code"] == "VALID" and v["class"] == "valid"
    assert v["issuer"] == {"id": "hangzhou-xihu-amr", "name": "杭州市西湖区市场监督管理局"}
    assert v["cert_id"] == LICENCE.cert_id
    assert [c["name"] for c in v["claims"]] == ["uscc", "name", "legal_representative"]
    assert v["claims"][1] == {"name": "name", "label": "名称", "value": LICENCE.claims["name"]}
    assert "address" in v["hidden"]
    assert v["reason"]["zh"] and v["reason"]["en"]


def test_verify_plain_text_and_scanner_line_ends(client: TestClient) -> None:
    for body in (TEXT, TEXT + "\r\n", "\ufeff" + TEXT + "\n"):
        r = client.post("/v1/verify", content=body.encode(), headers={"content-type": "text/plain"})
        assert r.status_code == 200 and r.json()["code"] == "VALID", body[-3:]


def test_forged_certificate_is_bad_signature(client: TestClient) -> None:
    other = CREDENTIALS["food_business_permit"].present(None)
    forged = dataclasses.replace(LICENCE.present(None), signature=other.signature)
    r = client.post("/v1/verify", json={"text": forged.to_text()})
    assert r.status_code == 200
    assert r.json()["code"] == "BAD_SIGNATURE"
    assert "signature does not verify" in r.json()["reason"]["en"]


@pytest.mark.parametrize(
    "garbage", ["hello", "", " ", "CL1:", "CL2:ABC", "HC1:6BF+70790T9WJWG.FKY*4GO0", "😀" * 50]
)
def test_garbage_text_is_malformed(client: TestClient, garbage: str) -> None:
    r = client.post("/v1/verify", json={"text": garbage})
    assert r.status_code == 200
    assert r.json()["code"] == "MALFORMED" and r.json()["class"] == "invalid"


def test_full_width_input_from_an_ime_is_called_mangled(client: TestClient) -> None:
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in TEXT)
    for text in (wide, TEXT[:30] + "：" + TEXT[31:], TEXT[:30] + "\u3000" + TEXT[31:]):
        v = client.post("/v1/verify", json={"text": text}).json()
        assert v["code"] == "MALFORMED"
        assert v["warnings"] == ["input_mangled"]
        assert v["reason"]["zh"].startswith("输入被改动") and v["reason"]["en"].startswith("input mangled")
        assert "input method" in v["reason"]["en"]


def test_caps_lock_lower_case_is_called_mangled(client: TestClient) -> None:
    for text in (TEXT.lower(), TEXT[:4] + TEXT[4:].swapcase()):
        v = client.post("/v1/verify", json={"text": text}).json()
        assert v["code"] == "MALFORMED" and v["warnings"] == ["input_mangled"]
        assert "Caps Lock" in v["reason"]["en"]


def test_a_character_outside_base45_is_called_mangled(client: TestClient) -> None:
    v = client.post("/v1/verify", json={"text": TEXT[:40] + "#" + TEXT[41:]}).json()
    assert v["code"] == "MALFORMED" and v["warnings"] == ["input_mangled"]
    assert "'#'" in v["reason"]["en"]


def test_text_body_over_the_cap_is_refused_before_reading(client: TestClient) -> None:
    r = client.post("/v1/verify", content=b"A" * (8 * 1024 + 1), headers={"content-type": "text/plain"})
    assert r.status_code == 413
    assert r.json()["code"] == "MALFORMED" and "over 8192 bytes" in r.json()["reason"]["en"]


def test_text_body_over_the_cap_without_length_is_refused_while_streaming(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"A" * 1024

    r = client.post("/v1/verify", content=chunks(), headers={"content-type": "text/plain"})
    assert r.status_code == 413 and r.json()["code"] == "MALFORMED"


@pytest.mark.parametrize(
    ("body", "ctype", "status", "message"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"text": "CL1:", "x": 1}', "application/json", 400, "purpose optional"),
        (b'{"text": 5}', "application/json", 400, "purpose optional"),
        (b"[]", "application/json", 400, "purpose optional"),
        (b"\xff\xfe", "text/plain", 400, "not UTF-8"),
        (b"CL1:", "application/xml", 415, "unsupported content type"),
    ],
)
def test_bad_requests_end_in_a_named_verdict(
    client: TestClient, body: bytes, ctype: str, status: int, message: str
) -> None:
    r = client.post("/v1/verify", content=body, headers={"content-type": ctype})
    assert r.status_code == status
    assert r.json()["code"] == "MALFORMED" and message in r.json()["reason"]["en"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=300), st.text(alphabet="CL1:0123456789ABCXYZ $%*+-./", max_size=300)))
def test_any_text_ends_in_a_named_verdict(client: TestClient, text: str) -> None:
    r = client.post("/v1/verify", json={"text": text})
    assert r.status_code == 200
    assert r.json()["code"] in CODES


# -- images -------------------------------------------------------------------------


def test_png_and_jpeg_photos_are_read_and_verified(client: TestClient) -> None:
    png = _png(TEXT)
    for body, ctype in ((png, "image/png"), (_jpeg(png), "image/jpeg")):
        r = client.post("/v1/verify/image", content=body, headers={"content-type": ctype})
        assert r.status_code == 200, r.text
        assert r.json()["code"] == "VALID" and r.json()["cert_id"] == LICENCE.cert_id


def test_image_without_a_qr_code(client: TestClient) -> None:
    out = io.BytesIO()
    Image.new("L", (200, 200), 255).save(out, format="PNG")
    r = client.post("/v1/verify/image", content=out.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 422
    assert r.json()["code"] == "MALFORMED" and r.json()["reason"]["en"].startswith("no QR code found")


def test_qr_code_that_is_not_a_certificate(client: TestClient) -> None:
    r = client.post(
        "/v1/verify/image", content=_png("https://example.com/"), headers={"content-type": "image/png"}
    )
    assert r.status_code == 200 and r.json()["code"] == "MALFORMED"


def test_two_certificate_codes_in_one_photo_are_refused(client: TestClient) -> None:
    a = Image.open(io.BytesIO(_png(TEXT, 3)))
    b = Image.open(io.BytesIO(_png(CREDENTIALS["health_certificate"].to_qr_text(["holder_name"]), 3)))
    both = Image.new("L", (a.width + b.width, max(a.height, b.height)), 255)
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    out = io.BytesIO()
    both.save(out, format="PNG")
    r = client.post("/v1/verify/image", content=out.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 422 and "more than one certificate QR code" in r.json()["reason"]["en"]


def test_other_image_formats_and_non_images_are_refused(client: TestClient) -> None:
    gif = io.BytesIO()
    Image.new("L", (10, 10)).save(gif, format="GIF")
    for body in (gif.getvalue(), b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20):
        r = client.post("/v1/verify/image", content=body, headers={"content-type": "image/png"})
        assert r.status_code == 415 and r.json()["code"] == "MALFORMED"
        assert "not a PNG or JPEG" in r.json()["reason"]["en"]


def test_pixel_bomb_is_refused_from_its_header(service: ReplicaService) -> None:
    bomb = io.BytesIO()
    Image.new("1", (5000, 5000), 1).save(bomb, format="PNG")  # 25 MP in a few kilobytes
    assert len(bomb.getvalue()) < 100_000
    with _client(service) as c:
        r = c.post("/v1/verify/image", content=bomb.getvalue(), headers={"content-type": "image/png"})
    assert r.status_code == 413
    assert "5000x5000 pixels is over the 16777216-pixel limit" in r.json()["reason"]["en"]


def test_image_body_over_the_cap_is_refused(service: ReplicaService) -> None:
    with _client(service, max_image_body=1000) as c:
        r = c.post("/v1/verify/image", content=_png(TEXT), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "over 1000 bytes" in r.json()["reason"]["en"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_images_end_in_a_named_verdict(client: TestClient, data: st.DataObject) -> None:
    from tests.helpers import mutate

    seed = _png(TEXT, 2)
    body = mutate(data, seed, max_ops=4, max_insert=8)
    r = client.post("/v1/verify/image", content=body, headers={"content-type": "image/png"})
    assert r.status_code in (200, 413, 415, 422)
    assert r.json()["code"] in CODES


# -- rate limit -----------------------------------------------------------------------


def test_rate_limit_per_client_with_retry_after(service: ReplicaService) -> None:
    with _client(service, rate=0.5, burst=3) as c:
        codes = [c.post("/v1/verify", json={"text": "x"}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.post("/v1/verify", json={"text": "x"})
        assert r.status_code == 429
        assert r.headers["retry-after"] == "2"
        assert r.json()["code"] == "MALFORMED" and r.json()["reason"]["en"].startswith("too many requests")
        assert c.get("/healthz").status_code == 200  # liveness probes are not limited


# -- status, stats, pages ---------------------------------------------------------------


def test_status_and_stats(client: TestClient) -> None:
    s = client.get("/v1/status").json()
    p = s["policy"]
    assert (p["version"], p["expires"], p["expired"]) == (1, POLICY.expires, False)
    assert p["following"] is False and p["last_check"] is None and p["last_refusal"] is None
    assert [m["id"] for m in s["members"]] == [m.id for m in POLICY.members]
    assert [m["fresh"] for m in s["members"]] == [True, True, True]
    st_ = client.get("/v1/stats").json()
    assert st_["days"][-2:] == ["2024-06-01", "2024-06-02"]
    assert st_["members"][0]["issued"][-2:] == [2, 0] and st_["members"][0]["revoked"][-2:] == [1, 0]


def test_pages_are_served_bilingual_with_local_assets_only(client: TestClient) -> None:
    index = client.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "证照核验" in index.text and "Certificate check" in index.text
    assert index.text.index("证照核验") < index.text.index("Certificate check")
    assert 'capture="environment"' in index.text
    consortium = client.get("/consortium")
    assert "联盟状态" in consortium.text and "Consortium status" in consortium.text
    docs = client.get("/docs")
    for page in (index.text, consortium.text, docs.text):
        for url in re.findall(r"""(?:src|href)=["']([^"']+)["']""", page):
            assert url.startswith("/"), url  # no CDN: every asset from this server
            assert client.get(url).status_code == 200, url
    assert "content-security-policy" in index.headers
    assert "default-src 'self'" in index.headers["content-security-policy"]


def test_vendored_scripts_and_their_licences_are_served(client: TestClient) -> None:
    for path in (
        "/static/vendor/jsQR.js",
        "/static/vendor/jsQR.LICENSE",
        "/static/vendor/chart.umd.min.js",
        "/static/vendor/chart.js.LICENSE.md",
        "/static/verify.js",
        "/static/consortium.js",
        "/static/style.css",
    ):
        assert client.get(path).status_code == 200, path


def test_openapi_documents_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/verify", "/v1/verify/image", "/v1/status", "/v1/stats", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/verify/image"]["post"]["requestBody"]["content"]
    assert set(body) == {"image/png", "image/jpeg"}


def test_purpose_needs_its_claims_disclosed(client: TestClient) -> None:
    shown = LICENCE.to_qr_text(["uscc", "name"])
    ok = client.post("/v1/verify", json={"text": shown, "purpose": "identity"}).json()
    assert ok["code"] == "VALID"
    short = client.post("/v1/verify", json={"text": shown, "purpose": "contracting"}).json()
    assert short["code"] == "CLAIM_MISMATCH"
    plain = client.post(
        "/v1/verify?purpose=contracting", content=shown, headers={"content-type": "text/plain"}
    ).json()
    assert plain["code"] == "CLAIM_MISMATCH"
    png = render_png(shown, scale=4)
    r = client.post("/v1/verify/image?purpose=identity", content=png, headers={"content-type": "image/png"})
    assert r.json()["code"] == "VALID"
    bad = client.post("/v1/verify", json={"text": shown, "purpose": "../x"})
    assert bad.status_code == 400 and bad.json()["reason"]["en"].startswith("purpose must be")


def test_verify_route_answers_alike_mounted_and_with_query_purpose(service: ReplicaService) -> None:
    """POST /v1/verify is served before FastAPI's routing: same verdicts, refusals and
    headers, also when the application is mounted under a prefix."""
    outer = create_app(service=service, limits=Limits(rate=1000.0, burst=1000))
    outer.mount("/under", create_app(service=service, limits=Limits(rate=1000.0, burst=1000)))
    shown = LICENCE.to_qr_text(["uscc", "name"])
    with TestClient(outer) as c:
        for prefix in ("", "/under"):
            ok = c.post(
                f"{prefix}/v1/verify?purpose=identity", content=shown, headers={"content-type": "text/plain"}
            )
            assert ok.status_code == 200 and ok.json()["code"] == "VALID"
            assert "nosniff" in ok.headers["x-content-type-options"]
            assert "content-security-policy" in ok.headers
            bad = c.post(
                f"{prefix}/v1/verify?purpose=", content=shown, headers={"content-type": "text/plain"}
            )
            assert bad.status_code == 400 and bad.json()["reason"]["en"].startswith("purpose must be")
            odd = c.post(f"{prefix}/v1/verify", content=b"x", headers={"content-type": "image/gif"})
            assert odd.status_code == 415 and odd.json()["code"] == "MALFORMED"
        assert c.get("/v1/verify").status_code == 405


def test_declared_verify_route_answers_like_the_served_one(service: ReplicaService) -> None:
    """The FastAPI route kept for the OpenAPI document hands requests to the same endpoint:
    reached through FastAPI's routing (the layer serving the route first taken out), it
    answers alike."""
    app = create_app(service=service, limits=Limits(rate=1000.0, burst=1000))
    routed = create_app(service=service, limits=Limits(rate=1000.0, burst=1000))
    routed.user_middleware = [m for m in routed.user_middleware if m.cls is not verifier.app._FastRoute]
    shown = LICENCE.to_qr_text(["uscc", "name"])
    with TestClient(app) as served, TestClient(routed) as declared:
        for c in (served, declared):
            ok = c.post("/v1/verify?purpose=identity", content=shown, headers={"content-type": "text/plain"})
            assert ok.status_code == 200 and ok.json()["code"] == "VALID"
            assert ok.headers["content-type"] == "application/json"
            assert ok.headers.get_list("x-content-type-options") == ["nosniff"]  # once
            assert "content-security-policy" in ok.headers
            big = c.post("/v1/verify", content=b"A" * 9000, headers={"content-type": "text/plain"})
            assert big.status_code == 413 and "over 8192 bytes" in big.json()["reason"]["en"]


def _raw_post(app: Any, messages: list[dict[str, Any]], headers: list[tuple[bytes, bytes]]) -> list[Any]:
    """POST /v1/verify as a server would pass it to the application; the messages sent back."""
    incoming = iter(messages)
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/verify",
        "raw_path": b"/v1/verify",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    anyio.run(app, scope, receive, send)
    return sent


def test_client_gone_before_its_body_gets_no_answer(service: ReplicaService) -> None:
    """A client that disconnects while sending its body is not answered and raises nothing."""
    app = create_app(service=service, limits=Limits(rate=1000.0, burst=1000))
    sent = _raw_post(
        app,
        [{"type": "http.request", "body": b'{"text": "CL1:', "more_body": True}, {"type": "http.disconnect"}],
        [(b"content-type", b"application/json")],
    )
    assert sent == []


def test_non_ascii_digits_in_content_length_are_not_read_as_a_length(service: ReplicaService) -> None:
    """'²' is a digit to str.isdigit but no length: the cap is kept while reading instead."""
    app = create_app(service=service, limits=Limits(rate=1000.0, burst=1000))
    headers = [(b"content-type", b"text/plain"), (b"content-length", "²".encode("latin-1"))]
    ok = _raw_post(app, [{"type": "http.request", "body": TEXT.encode()}], headers)
    assert ok[0]["status"] == 200 and b'"code":"VALID"' in ok[1]["body"]
    big = _raw_post(app, [{"type": "http.request", "body": b"A" * 9000}], headers)
    assert big[0]["status"] == 413


# -- resources ------------------------------------------------------------------------


def test_a_body_that_trickles_in_is_refused_in_time(service: ReplicaService) -> None:
    app = create_app(service=service, limits=Limits(rate=1000.0, burst=1000, body_seconds=0.5))

    async def slowly() -> AsyncIterator[bytes]:
        for _ in range(20):
            await asyncio.sleep(0.1)
            yield b"A"

    async def main() -> tuple[httpx.Response, float]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://v") as c:
            t = time.monotonic()
            r = await c.post("/v1/verify", content=slowly(), headers={"content-type": "text/plain"})
            return r, time.monotonic() - t

    r, _ = asyncio.run(main())  # the whole body would have taken 2 s
    assert r.status_code == 408 and "did not arrive within 0.5 s" in r.json()["reason"]["en"]


def test_images_are_decoded_a_few_at_a_time(service: ReplicaService, monkeypatch: pytest.MonkeyPatch) -> None:
    # The pixel cap bounds one decode (~120 MB at 4096 x 4096); many at once must queue.
    active, peak = 0, 0
    lock = threading.Lock()
    real = verifier.app._qr_texts

    def counted(body: bytes, lim: Limits) -> list[str]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            time.sleep(0.1)
            return real(body, lim)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(verifier.app, "_qr_texts", counted)
    app = create_app(service=service, limits=Limits(rate=1000.0, burst=1000, decodes=2))
    png = _png(TEXT)

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://v") as c:
            rs = await asyncio.gather(
                *(
                    c.post("/v1/verify/image", content=png, headers={"content-type": "image/png"})
                    for _ in range(6)
                )
            )
        return [r.status_code for r in rs]

    assert asyncio.run(main()) == [200] * 6
    assert peak == 2


def test_status_when_the_replica_cannot_be_read_is_a_503_verdict(
    service: ReplicaService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> dict[str, object]:
        raise StorageError("replica.db: database disk image is malformed")

    with _client(service) as c:
        for path, name in (("/v1/status", "status"), ("/v1/stats", "stats")):
            monkeypatch.setattr(service, name, broken)
            r = c.get(path)
            assert r.status_code == 503 and r.json()["code"] == "STALE"
            assert "cannot read its ledger replica" in r.json()["reason"]["en"]
