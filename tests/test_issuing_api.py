"""The clerks' issuing API in-process: authorisation, validation, idempotency, status, privacy, trail."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.credential.credential import Credential
from ledger.credential.qr import read_qr_codes
from ledger.errors import StorageError
from ledger.log.audit import audit
from ledger.log.statement import Entry
from ledger.log.store import LogStore
from node import trail
from node.app import create_app
from node.issuing_api import MAX_BODY
from node.private import PrivateStore
from tests import nodes, window
from tests.fixtures import consortium as fx

LOOPBACK = ("127.0.0.1", 50000)


class Desk:
    """One node's app with clerks of every role."""

    def __init__(self, data: Path, client: TestClient, tokens: dict[str, str]) -> None:
        self.data = data
        self.client = client
        self.tokens = tokens

    def h(self, role: str | None, **extra: str) -> dict[str, str]:
        out = dict(extra)
        if role is not None:
            out["Authorization"] = f"Bearer {self.tokens[role]}"
        return out

    def issue(self, n: int, role: str = "issue", **extra: str) -> dict[str, Any]:
        r = self.client.post(
            "/v1/certificates",
            json={"type": "food_business_permit", "claims": window.food_claims(n)},
            headers=self.h(role, **extra),
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def trail(self) -> list[trail.TrailRecord]:
        store = PrivateStore(self.data / "private.db")
        try:
            with store.reader() as conn:
                return list(trail.read(conn))
        finally:
            store.close()


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    tmp = tmp_path_factory.mktemp("desk")
    data = window.make_node(tmp)
    tokens = {role: window.add_clerk(data, f"clerk-{role}", role) for role in ("issue", "revoke", "admin")}
    other = window.make_node(tmp, nodes.B)
    tokens["other-node"] = window.add_clerk(other, "clerk-admin", "admin")
    app = create_app(config=nodes.config(data, submit=False))
    with TestClient(app, client=LOOPBACK) as client:
        yield Desk(data, client, tokens)


def test_issue_one_gives_credential_qr_text_and_links(desk: Desk) -> None:
    got = desk.issue(1)
    cred = Credential.from_json(got["credential"])
    assert cred.cert_id == got["cert_id"]
    assert cred.claims["name"] == window.food_claims(1)["name"]
    assert str(got["qr_text"]).startswith("CL1:")
    assert Credential.from_qr_text(str(got["qr_text"]), policy=fx.POLICY).cert_id == cred.cert_id
    links = got["links"]
    assert isinstance(links, dict)
    png = desk.client.get(links["qr_png"], headers=desk.h("issue"))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert read_qr_codes(png.content) == [got["qr_text"]]
    svg = desk.client.get(links["qr_svg"] + "?reveal=licence_no,name", headers=desk.h("revoke"))
    assert svg.status_code == 200 and svg.content.startswith(b"<?xml")
    assert cred.statement.operator.startswith("op:")


def test_claims_that_do_not_fit_give_422_naming_field_and_rule(desk: Desk) -> None:
    claims = {**window.food_claims(2), "uscc": "lower-case", "seats": "many", "colour": "red"}
    del claims["name"]
    r = desk.client.post(
        "/v1/certificates", json={"type": "food_business_permit", "claims": claims}, headers=desk.h("issue")
    )
    assert r.status_code == 422
    problems = {(p["field"], p["rule"]) for p in r.json()["problems"]}
    assert ("claims.uscc", "a code is upper-case letters A-Z and digits only") in problems
    assert ("claims.name", "required") in problems
    assert ("claims.colour", "food_business_permit has no such claim") in problems
    assert ("claims.seats", "expected an integer, got str") in problems


def test_bodies_of_the_wrong_shape_are_422_naming_the_item_and_field(desk: Desk) -> None:
    r = desk.client.post(
        "/v1/certificates", json={"type": 5, "claims": window.food_claims(1)}, headers=desk.h("issue")
    )
    assert r.status_code == 422
    assert [(p["item"], p["field"]) for p in r.json()["problems"]] == [(0, "type")]
    items = [{"claims": window.food_claims(1)}, {"claims": window.food_claims(2), "valid_from": "soon"}]
    r = desk.client.post(
        "/v1/certificates/batch",
        json={"type": "food_business_permit", "items": items},
        headers=desk.h("issue"),
    )
    assert r.status_code == 422
    assert [(p["item"], p["field"]) for p in r.json()["problems"]] == [(1, "valid_from")]
    assert "soon" not in r.text  # refusals never echo what was sent
    r = desk.client.post("/v1/certificates", content=b'{"type": ', headers=desk.h("issue"))
    assert r.status_code == 400 and r.json()["error"] == "the request body is not valid JSON"


def test_issue_endpoints_document_their_body_and_key(desk: Desk) -> None:
    spec = desk.client.get("/openapi.json").json()
    for path, fields in (
        ("/v1/certificates", {"type", "claims"}),
        ("/v1/certificates/batch", {"type", "items"}),
    ):
        op = spec["paths"][path]["post"]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert fields <= set(schema["properties"]) and "$ref" not in str(schema)
        assert [p["name"] for p in op["parameters"]] == ["Idempotency-Key"]


def test_validity_longer_than_the_type_allows_is_422(desk: Desk) -> None:
    r = desk.client.post(
        "/v1/certificates",
        json={
            "type": "food_business_permit",
            "claims": window.food_claims(3),
            "valid_from": 0,
            "valid_until": 10**9,
        },
        headers=desk.h("issue"),
    )
    assert r.status_code == 422
    assert r.json()["problems"][0]["field"] == "valid_until"


def test_idempotency_key_returns_the_same_certificate_never_a_second(desk: Desk) -> None:
    first = desk.issue(4, **{"Idempotency-Key": "window-4"})
    size = LogStore.open(desk.data / "log.db", readonly=True).size
    again = desk.client.post(
        "/v1/certificates",
        json={"type": "food_business_permit", "claims": window.food_claims(4)},
        headers=desk.h("admin", **{"Idempotency-Key": "window-4"}),
    )
    assert again.status_code == 200
    assert again.json()["cert_id"] == first["cert_id"] and again.json()["replayed"] is True
    assert again.json()["credential"] == first["credential"]
    assert LogStore.open(desk.data / "log.db", readonly=True).size == size
    other = desk.client.post(
        "/v1/certificates",
        json={"type": "food_business_permit", "claims": window.food_claims(5)},
        headers=desk.h("issue", **{"Idempotency-Key": "window-4"}),
    )
    assert other.status_code == 409
    assert "used for a different request" in other.json()["error"]


def test_batch_is_all_or_none_and_retries_return_the_same(desk: Desk) -> None:
    items = [{"claims": window.food_claims(100 + n)} for n in range(5)]
    bad = [*items[:2], {"claims": {**window.food_claims(105), "issue_date": "2024-13-01"}}, *items[2:]]
    r = desk.client.post(
        "/v1/certificates/batch", json={"type": "food_business_permit", "items": bad}, headers=desk.h("issue")
    )
    assert r.status_code == 422
    assert [(p["item"], p["field"]) for p in r.json()["problems"]] == [(2, "claims.issue_date")]
    body = {"type": "food_business_permit", "items": items}
    r1 = desk.client.post(
        "/v1/certificates/batch", json=body, headers=desk.h("issue", **{"Idempotency-Key": "b1"})
    )
    r2 = desk.client.post(
        "/v1/certificates/batch", json=body, headers=desk.h("issue", **{"Idempotency-Key": "b1"})
    )
    assert r1.status_code == 201 and r2.status_code == 200
    ids = [c["cert_id"] for c in r1.json()["certificates"]]
    assert ids == [c["cert_id"] for c in r2.json()["certificates"]] and len(set(ids)) == 5


def test_status_changes_and_history(desk: Desk) -> None:
    cid = desk.issue(10)["cert_id"]
    base = f"/v1/certificates/{cid}"
    assert desk.client.post(base + "/reinstate", headers=desk.h("revoke")).status_code == 409
    s = desk.client.post(base + "/suspend", json={"reason": "under_investigation"}, headers=desk.h("revoke"))
    assert s.status_code == 200 and s.json()["status"] == "suspended"
    assert (
        desk.client.post(
            base + "/reinstate", json={"reason": "resolved"}, headers=desk.h("revoke")
        ).status_code
        == 200
    )
    r = desk.client.post(
        base + "/revoke",
        json={"reason": "holder_request"},
        headers=desk.h("revoke", **{"Idempotency-Key": "rv"}),
    )
    assert r.status_code == 200
    again = desk.client.post(
        base + "/revoke",
        json={"reason": "holder_request"},
        headers=desk.h("revoke", **{"Idempotency-Key": "rv"}),
    )
    assert (
        again.status_code == 200 and again.json()["index"] == r.json()["index"] and again.json()["replayed"]
    )
    assert desk.client.post(base + "/revoke", headers=desk.h("revoke")).status_code == 409
    got = desk.client.get(base, headers=desk.h("issue")).json()
    assert got["status"] == "revoked"
    assert [h["event"] for h in got["history"]] == ["issue", "suspend", "reinstate", "revoke"]
    assert got["history"][1]["reason"] == "under_investigation"
    assert bad_reason(desk, cid).status_code == 422


def bad_reason(desk: Desk, cid: str) -> Any:
    return desk.client.post(
        f"/v1/certificates/{cid}/suspend", json={"reason": "whim"}, headers=desk.h("revoke")
    )


def test_replace_issues_the_next_edition(desk: Desk) -> None:
    old = desk.issue(20)["cert_id"]
    r = desk.client.post(
        f"/v1/certificates/{old}/replace",
        json={
            "claims": {**window.food_claims(20), "address": "杭州市西湖区新址1号"},
            "reason": "information_changed",
        },
        headers=desk.h("issue"),
    )
    assert r.status_code == 201, r.text
    new = r.json()["cert_id"]
    assert new.split(".")[-3] == old.split(".")[-3] and new.split(".")[-2] == "002"
    assert desk.client.get(f"/v1/certificates/{old}", headers=desk.h("issue")).json()["status"] == "replaced"
    again = desk.client.post(
        f"/v1/certificates/{old}/replace", json={"claims": window.food_claims(20)}, headers=desk.h("issue")
    )
    assert again.status_code == 409


def test_lookup_of_unknown_certificate_is_404(desk: Desk) -> None:
    r = desk.client.get("/v1/certificates/1.2.156.3005.2.X.Y.1.001.Z", headers=desk.h("issue"))
    assert r.status_code == 404


def test_list_shows_no_claims(desk: Desk) -> None:
    desk.issue(30)
    got = desk.client.get(
        "/v1/certificates?type=food_business_permit&limit=5", headers=desk.h("revoke")
    ).json()
    assert got["certificates"] and set(got["certificates"][0]) == {
        "cert_id",
        "type",
        "created",
        "status",
        "links",
    }


# ---------------------------------------------------------------- authorisation


def _endpoints(desk: Desk) -> list[tuple[str, str, dict[str, Any], str, int]]:
    """(method path, json, role needed, success status) for every write endpoint, with fresh targets."""
    cids = [desk.issue(200 + n)["cert_id"] for n in range(3)]
    suspended = desk.issue(210)["cert_id"]
    desk.client.post(f"/v1/certificates/{suspended}/suspend", headers=desk.h("revoke"))
    return [
        (
            "/v1/certificates",
            "",
            {"type": "food_business_permit", "claims": window.food_claims(220)},
            "issue",
            201,
        ),
        (
            "/v1/certificates/batch",
            "",
            {"type": "food_business_permit", "items": [{"claims": window.food_claims(221)}]},
            "issue",
            201,
        ),
        (f"/v1/certificates/{cids[0]}/revoke", cids[0], {"reason": "holder_request"}, "revoke", 200),
        (f"/v1/certificates/{cids[1]}/suspend", cids[1], {}, "revoke", 200),
        (f"/v1/certificates/{suspended}/reinstate", suspended, {}, "revoke", 200),
        (f"/v1/certificates/{cids[2]}/replace", cids[2], {"claims": window.food_claims(222)}, "issue", 201),
    ]


def test_authorisation_matrix(desk: Desk) -> None:
    before = len(desk.trail())
    wrong = {"issue": "revoke", "revoke": "issue"}
    expected_refusals: list[tuple[int, str]] = []
    successes = 0
    for path, _target, body, role, ok in _endpoints(desk):
        cases = [(None, 401), ("other-node", 401), (wrong[role], 403), (role, ok)]
        for who, status in cases:
            r = desk.client.post(path, json=body, headers=desk.h(who))
            assert r.status_code == status, (path, who, r.text)
            if status in (401, 403):
                expected_refusals.append((status, path))
                if status == 401:
                    assert r.headers["www-authenticate"] == "Bearer"
            else:
                successes += 1
        admin = desk.client.post(path, json=body, headers=desk.h("admin"))
        assert admin.status_code in (200, 201, 409), (path, admin.text)  # admin may do anything
    events = desk.trail()[before:]
    refused = [(e.event.status, e.event.detail) for e in events if e.event.action == "refused"]
    assert len(refused) == len(expected_refusals)
    for (status, path), (got_status, detail) in zip(expected_refusals, refused, strict=True):
        assert got_status == status and f"POST {path} from 127.0.0.1" in detail
    changes = [e for e in events if e.event.action != "refused" and e.event.actor.startswith("clerk-")]
    assert len(changes) >= successes
    assert {e.event.action for e in changes} >= {
        "issue",
        "issue-batch",
        "revoke",
        "suspend",
        "reinstate",
        "replace",
    }


def test_other_departments_token_says_so(desk: Desk) -> None:
    r = desk.client.post("/v1/certificates", json={}, headers=desk.h("other-node"))
    assert r.status_code == 401 and "not a token of this department's node" in r.json()["error"]


def test_clerk_of_another_department_relabelled_as_this_one_is_401(desk: Desk) -> None:
    _, _, number, secret = desk.tokens["other-node"].split(".")
    forged = f"clk1.{nodes.A}.{number}.{secret}"
    r = desk.client.post("/v1/certificates", json={}, headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and "not valid here" in r.json()["error"]


def test_type_outside_the_mandate_is_403(desk: Desk) -> None:
    r = desk.client.post(
        "/v1/certificates",
        json={"type": "health_certificate", "claims": {"holder_name": "张三"}},
        headers=desk.h("admin"),
    )
    assert r.status_code == 403 and "outside this department's mandate" in r.json()["error"]
    last = desk.trail()[-1]
    assert last.event.action == "refused" and last.event.status == 403 and last.event.actor == "clerk-admin"


@pytest.mark.parametrize(
    ("allow", "base_url", "status"),
    [(False, "http://testserver", 403), (False, "https://testserver", 201), (True, "http://testserver", 201)],
)
def test_bearer_token_over_plain_http_from_another_host(
    tmp_path: Path, allow: bool, base_url: str, status: int
) -> None:
    data = window.make_node(tmp_path)
    token = window.add_clerk(data, "a", "issue")
    app = create_app(config=nodes.config(data, submit=False, allow_plain_http=allow))
    with TestClient(app, client=("192.0.2.7", 40000), base_url=base_url) as remote:
        r = remote.post(
            "/v1/certificates",
            json={"type": "food_business_permit", "claims": window.food_claims(1)},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == status, r.text
        if status == 403:
            assert "refused over plain HTTP" in r.json()["error"]
            events = Desk(data, remote, {}).trail()
            assert events[-1].event.action == "refused" and "from 192.0.2.7" in events[-1].event.detail


# ---------------------------------------------------------------- privacy and durability


def test_claims_and_salts_stay_in_the_private_store(desk: Desk) -> None:
    got = desk.issue(400)
    cred = got["credential"]
    assert isinstance(cred, dict)
    secret = bytes.fromhex(cred["salt_secret"])
    name = str(window.food_claims(400)["name"]).encode()
    log_bytes = b"".join(
        p.read_bytes() for p in desk.data.iterdir() if p.name.startswith(("log.db", "node.db", "witness.db"))
    )
    assert secret not in log_bytes and name not in log_bytes and secret.hex().encode() not in log_bytes
    for n in range(LogStore.open(desk.data / "log.db", readonly=True).size):
        entry = LogStore.open(desk.data / "log.db", readonly=True).entry(n)
        assert name not in entry
    for name in ("private.db", "private.db-wal", "private.db-shm"):
        assert stat.S_IMODE(os.stat(desk.data / name).st_mode) == 0o600, name
    conn = sqlite3.connect(desk.data / "private.db")
    assert conn.execute("SELECT count(*) FROM records WHERE cert_id = ?", (got["cert_id"],)).fetchone() == (
        1,
    )
    conn.close()


def test_every_logged_statement_carries_the_clerks_operator_id(desk: Desk) -> None:
    desk.issue(500, role="issue")
    desk.issue(501, role="admin")
    store = LogStore.open(desk.data / "log.db", readonly=True)
    operators = {Entry.from_bytes(store.entry(n)).signed.statement.operator for n in range(store.size)}
    private = PrivateStore(desk.data / "private.db")
    try:
        ids = {o for (o,) in private.query("SELECT operator FROM clerks")}
    finally:
        private.close()
    assert operators <= ids and len(operators) >= 2
    assert audit(store, keys=[fx.AMR_KEY.public_key]).size == store.size


def _fail_the_first_append(app: Any, why: str) -> None:
    """Make the node's first log append fail with StorageError(``why``), as a full disk would."""
    real = app.state.node.sequencer.append
    calls = {"n": 0}

    async def failing_once(statements: Any) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StorageError(why)
        return await real(statements)  # type: ignore[no-any-return]

    app.state.node.sequencer.append = failing_once


def test_log_append_failing_after_the_private_commit_is_healed_by_the_retry(tmp_path: Path) -> None:
    data = window.make_node(tmp_path)
    token = window.add_clerk(data, "a", "admin")
    app = create_app(config=nodes.config(data, submit=False))
    h = {"Authorization": f"Bearer {token}"}
    with TestClient(app, client=LOOPBACK) as client:
        _fail_the_first_append(app, "disk full")
        body = {"type": "food_business_permit", "claims": window.food_claims(1)}
        first = client.post("/v1/certificates", json=body, headers={**h, "Idempotency-Key": "k"})
        assert first.status_code == 503 and "disk full" in first.json()["error"]
        again = client.post("/v1/certificates", json=body, headers={**h, "Idempotency-Key": "k"})
        assert again.status_code == 200 and again.json()["replayed"] is True
        cid = again.json()["cert_id"]
        st = client.post(f"/v1/certificates/{cid}/suspend", headers={**h, "Idempotency-Key": "s"})
        assert st.status_code == 200
    store = LogStore.open(data / "log.db", readonly=True)
    ids = [Entry.from_bytes(e).signed.statement.cert_id for e in store.entries()]
    assert ids.count(cid) == 2  # issued once, suspended once


def test_a_failed_append_followed_by_a_good_one_is_still_appended_at_start(tmp_path: Path) -> None:
    # The failed append must hold the recovery watermark back: a later successful issue
    # moved it past the unlogged statement, which then stayed in the private store only.
    data = window.make_node(tmp_path)
    token = window.add_clerk(data, "a", "issue")
    h = {"Authorization": f"Bearer {token}"}
    app = create_app(config=nodes.config(data, submit=False))
    with TestClient(app, client=LOOPBACK) as client:
        _fail_the_first_append(app, "disk I/O error")
        for n in (1, 2):
            body = {"type": "food_business_permit", "claims": window.food_claims(n)}
            assert client.post("/v1/certificates", json=body, headers=h).status_code == (
                503 if n == 1 else 201
            )
    # starting the node again appends what was committed privately but never logged
    with TestClient(create_app(config=nodes.config(data, submit=False)), client=LOOPBACK) as client:
        assert client.get("/healthz").status_code == 200
    store = LogStore.open(data / "log.db", readonly=True)
    private = PrivateStore(data / "private.db")
    logged = {Entry.from_bytes(e).signed.statement.cert_id for e in store.entries()}
    assert logged == {row[0] for row in private.query("SELECT cert_id FROM statements")}
    assert len(logged) == 2


def test_statements_committed_privately_but_not_logged_are_appended_at_start(tmp_path: Path) -> None:
    data = window.make_node(tmp_path)
    token = window.add_clerk(data, "a", "issue")
    app = create_app(config=nodes.config(data, submit=False))
    h = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k"}
    body = {"type": "food_business_permit", "claims": window.food_claims(1)}
    with TestClient(app, client=LOOPBACK) as client:

        async def lost(statements: Any) -> list[int]:
            raise StorageError("power cut")

        app.state.node.sequencer.append = lost
        assert client.post("/v1/certificates", json=body, headers=h).status_code == 503
    assert LogStore.open(data / "log.db", readonly=True).size == 0
    again = create_app(config=nodes.config(data, submit=False))
    with TestClient(again, client=LOOPBACK) as client:
        assert LogStore.open(data / "log.db", readonly=True).size == 1  # before any request
        r = client.post("/v1/certificates", json=body, headers=h)
        assert r.status_code == 200 and r.json()["index"] == 0
    assert LogStore.open(data / "log.db", readonly=True).size == 1


# ---------------------------------------------------------------- hostile input

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/v1/certificates", "/v1/certificates/batch"]),
    body=st.one_of(
        _json_values,
        st.fixed_dictionaries({"type": st.just("food_business_permit"), "claims": _json_values}),
        st.fixed_dictionaries(
            {
                "type": st.just("food_business_permit"),
                "items": st.lists(st.fixed_dictionaries({"claims": _json_values}), max_size=3),
            }
        ),
    ),
)
def test_random_bodies_are_refused_cleanly(desk: Desk, path: str, body: object) -> None:
    r = desk.client.post(path, json=body, headers=desk.h("issue"))
    assert r.status_code in (201, 400, 409, 422), r.text
    assert "error" in r.json() or "detail" in r.json() or r.status_code == 201


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120))
def test_random_authorization_headers_are_401(desk: Desk, header: str) -> None:
    r = desk.client.post("/v1/certificates", json={}, headers={"Authorization": header})
    assert r.status_code == 401


def test_oversized_body_is_413_before_it_is_read(desk: Desk) -> None:
    huge = b"{" + b" " * (MAX_BODY + 1) + b"}"
    r = desk.client.post("/v1/certificates/batch", content=huge, headers=desk.h("issue"))
    assert r.status_code == 413 and "over" in r.json()["error"]

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // (1 << 20) + 2):
            yield b" " * (1 << 20)

    r = desk.client.post("/v1/certificates/batch", content=chunks(), headers=desk.h("issue"))
    assert r.status_code == 413


def test_a_status_change_is_refused_while_the_nodes_log_key_is_not_valid(tmp_path: Path) -> None:
    """After a rotation the old key stops being valid: the node must not sign with it."""
    data = window.make_node(tmp_path)
    h = {"Authorization": f"Bearer {window.add_clerk(data, 'clerk-admin', 'admin')}"}
    with TestClient(create_app(config=nodes.config(data, submit=False)), client=LOOPBACK) as client:
        r = client.post(
            "/v1/certificates",
            json={"type": "food_business_permit", "claims": window.food_claims(1)},
            headers=h,
        )
        assert r.status_code == 201, r.text
        cid = r.json()["cert_id"]
    config = nodes.config(data, submit=False)
    key = next(k for k in config.member.log_keys if k.public_key == config.log_key.public_key)
    before = dataclasses.replace(config, clock=lambda: key.valid_from - 3600)
    with TestClient(create_app(config=before), client=LOOPBACK) as client:
        r = client.post(f"/v1/certificates/{cid}/revoke", json={"reason": "holder_request"}, headers=h)
    assert r.status_code == 503, r.text
    assert "log key is not a valid log key" in r.text and "install the new log key" in r.text


def test_types_lists_the_status_change_reasons_in_both_languages(desk: Desk) -> None:
    doc = desk.client.get("/v1/types").json()
    assert [t["code"] for t in doc["types"]] == ["business_licence", "food_business_permit"]
    reasons = {r["name"]: (r["zh"], r["en"]) for r in doc["reasons"]}
    assert reasons["holder_request"] == ("持证人申请", "at the holder's request")
    assert len(reasons) == 10


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_revoke_and_replace_racing_on_one_certificate_never_both_succeed(
    tmp_path: Path, anyio_backend: str
) -> None:
    # A certificate revoked for fraud must not live on as a valid replacement.
    data = window.make_node(tmp_path)
    token = window.add_clerk(data, "a", "admin")
    h = {"Authorization": f"Bearer {token}"}
    app = create_app(config=nodes.config(data, submit=False))
    transport = httpx.ASGITransport(app=app, client=LOOPBACK)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://node", headers=h) as c,
    ):
        for n in range(8):
            r = await c.post(
                "/v1/certificates", json={"type": "food_business_permit", "claims": window.food_claims(n)}
            )
            cid = r.json()["cert_id"]
            claims = {**window.food_claims(n), "seats": 7}
            revoke, replace = await asyncio.gather(
                c.post(f"/v1/certificates/{cid}/revoke", json={"reason": "obtained_by_fraud"}),
                c.post(f"/v1/certificates/{cid}/replace", json={"claims": claims}),
            )
            assert sorted([revoke.status_code, replace.status_code]) in ([200, 409], [201, 409]), (
                revoke.text,
                replace.text,
            )


def test_a_lone_surrogate_in_a_replace_body_is_400(desk: Desk) -> None:
    cid = desk.issue(900)["cert_id"]
    good = json.dumps(window.food_claims(900))
    for claims in (good[:-1] + ', "\\ud800": "x"}', good.replace('"name": "', '"name": "\\ud800')):
        for extra in ({}, {"Idempotency-Key": "surrogate"}):
            r = desk.client.post(
                f"/v1/certificates/{cid}/replace",
                content=('{"claims": ' + claims + "}").encode(),
                headers={**desk.h("admin", **extra), "Content-Type": "application/json"},
            )
            assert r.status_code == 400 and "not valid UTF-8" in r.json()["error"]
