"""QR texts of large issuing batches made in render worker processes (node/render.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from ledger.credential.credential import Credential, issue_credential
from ledger.credential.presentation import MAX_INFLATED_SIZE, Presentation
from ledger.errors import LedgerError, TooLargeError
from ledger.log.statement import Reason
from node.app import create_app
from node.render import Renderer, render_here, texts_of
from tests import nodes, window
from tests.fixtures import consortium as fx

ROOT = Path(__file__).resolve().parent.parent


def _permits(count: int, start: int = 1) -> list[Credential]:
    return [
        issue_credential(
            cert_type=fx.FOOD_PERMIT,
            issuer=fx.AMR,
            key=fx.AMR_KEY,
            serial=str(n),
            cert_version="001",
            claims=window.food_claims(n),
            operator="op:render",
            time=fx.T0,
            valid_from=fx.T0,
            valid_until=fx.T0 + 365 * 86400,
        )
        for n in range(start, start + count)
    ]


def _up(r: Renderer, timeout: float = 60.0) -> None:
    """Wait until the workers started by ``r.start()`` answer."""
    deadline = time.monotonic() + timeout
    while not r.running:
        assert r.begin(0) is None
        if time.monotonic() > deadline:
            raise AssertionError("the render workers did not start")
        time.sleep(0.05)


def _workers(r: Renderer) -> list[int]:
    pool = r._pool
    assert pool is not None
    return list(pool._processes or {})  # type: ignore[attr-defined]


def _gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not Path(f"/proc/{pid}").exists() or "Z" in _state(pid):
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _rendered(r: Renderer, creds: list[Credential]) -> tuple[list[str | None], LedgerError | None]:
    """Render ``creds`` through the workers (they must take the batch)."""
    rendering = r.begin(len(creds))
    assert rendering is not None
    for c in creds:
        rendering.add(c)
    return asyncio.run(rendering.texts())


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    r = Renderer(workers=1, min_batch=4, chunk=3)
    r.start()
    _up(r)
    yield r
    r.close()


def _replacement() -> Credential:
    """A replace statement's credential: a serial with a leading zero, a reason, a replaced id."""
    old = fx.issue_food_permit()
    return issue_credential(
        cert_type=fx.FOOD_PERMIT,
        issuer=fx.AMR,
        key=fx.AMR_KEY,
        serial="0007",
        cert_version="002",
        claims={**old.claims, "seats": 80},
        operator="op:51c0de",
        time=fx.T0,
        valid_from=fx.T0,
        valid_until=fx.T0 + 86400 * 365,
        replaces=old.cert_id,
        reason=Reason.INFORMATION_CHANGED,
    )


def test_a_presentation_rebuilt_from_its_fields_is_the_same() -> None:
    for c in [*fx.all_credentials().values(), _replacement(), *_permits(3)]:
        names = [spec.name for spec in c.schema]
        for reveal in (None, names[:2]):
            p = c.present(reveal)
            fields = p.to_fields()
            assert pickle.loads(pickle.dumps(fields)) == fields
            again = Presentation.from_fields(fields)
            assert again == p
            assert again.to_bytes() == p.to_bytes()
            assert again.to_text() == p.to_text()


def test_workers_make_the_texts_made_here(renderer: Renderer) -> None:
    creds = [*fx.all_credentials().values(), _replacement(), *_permits(7)]
    texts, failed = _rendered(renderer, creds)
    assert failed is None
    assert texts == [c.to_qr_text() for c in creds]
    assert asyncio.run(render_here(creds)) == (texts, None)


def test_small_batches_and_no_workers_are_rendered_here(renderer: Renderer) -> None:
    assert renderer.begin(3) is None  # under min_batch
    idle = Renderer(workers=0)
    idle.start()
    assert idle.begin(100_000) is None and not idle.running
    with pytest.raises(ValueError, match="render workers must be 0 or more"):
        Renderer(workers=-1)


def _oversized() -> Credential:
    """A credential whose full disclosure does not fit in a QR code (a claim longer than
    any type allows, which only a changed type could have let through)."""
    cred = _permits(1, start=900)[0]
    values = cred.canonical_values()
    key = min(values)
    values[key] = "许可" * MAX_INFLATED_SIZE
    object.__setattr__(cred, "_canonical", values)
    return cred


def test_a_text_too_large_for_a_qr_code_is_reported_as_made_here(renderer: Renderer) -> None:
    big = _oversized()
    with pytest.raises(TooLargeError):
        big.to_qr_text()
    fine = _permits(1)[0]
    assert texts_of([big.present(None).to_fields(), fine.present(None).to_fields()]) == [
        None,
        fine.to_qr_text(),
    ]
    creds = [*_permits(4), big]
    texts, failed = _rendered(renderer, creds)
    assert texts == [None] * len(creds)
    assert isinstance(failed, TooLargeError)
    assert f"over the {MAX_INFLATED_SIZE}-byte limit" in str(failed)


def test_a_killed_worker_falls_back_to_rendering_here_and_restarts() -> None:
    r = Renderer(workers=1, min_batch=2, chunk=2)
    try:
        r.start()
        _up(r)
        creds = _permits(6, start=100)
        [pid] = _workers(r)
        os.kill(pid, signal.SIGKILL)
        assert _gone(pid)
        rendering = r.begin(len(creds))
        if rendering is not None:  # the pool may not have noticed yet
            for c in creds:
                rendering.add(c)
            texts, failed = asyncio.run(rendering.texts())
            assert failed is None
            assert texts == [c.to_qr_text() for c in creds]
        assert not r.running or _workers(r) != [pid]
        deadline = time.monotonic() + 60
        while not r.running:  # the next large batches start new workers
            assert time.monotonic() < deadline, "no new render worker"
            r.begin(len(creds))
            time.sleep(0.05)
        assert _workers(r) != [pid]
    finally:
        r.close()


def test_workers_that_give_no_texts_in_time_are_replaced_and_the_batch_rendered_here() -> None:
    r = Renderer(workers=1, min_batch=2, chunk=500, timeout=0.0)
    try:
        r.start()
        _up(r)
        [pid] = _workers(r)
        creds = _permits(400, start=200)
        texts, failed = _rendered(r, creds)
        assert failed is None
        assert texts == [c.to_qr_text() for c in creds]
        assert not r.running  # taken for stuck: stopped, and started again with the next batch
        assert _gone(pid)
    finally:
        r.close()


def test_close_stops_the_workers_and_later_batches_are_rendered_here() -> None:
    r = Renderer(workers=2, min_batch=2)
    r.start()
    _up(r)
    pids = _workers(r)
    assert len(pids) >= 1
    r.close()
    assert all(_gone(p) for p in pids)
    assert r.begin(1000) is None and not r.running


_ORPHAN = """
import sys, time
from node.render import Renderer

if __name__ == "__main__":
    r = Renderer(workers=1)
    r.start()
    while not r.running:
        r.begin(0)
        time.sleep(0.05)
    print(*r._pool._processes, flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_workers_exit_when_the_node_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "node_like.py"
    script.write_text(_ORPHAN)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert pids
        proc.kill()
        proc.wait(timeout=30)
        assert all(_gone(p) for p in pids), "a render worker outlived its node"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_node_with_a_render_worker_replies_with_the_same_texts(tmp_path: Path) -> None:
    data = window.make_node(tmp_path)
    token = window.add_clerk(data, "clerk", "issue")
    config = nodes.config(data, submit=False, render_workers=1)
    app = create_app(config=config)
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        renderer: Renderer = app.state.desk.renderer
        _up(renderer)
        [worker] = _workers(renderer)
        body: dict[str, Any] = {
            "type": fx.FOOD_PERMIT.code,
            "items": [{"claims": window.food_claims(n)} for n in range(300)],
        }
        r = client.post(
            "/v1/certificates/batch", content=orjson.dumps(body), headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 201, r.text
        got = r.json()["certificates"]
        assert len(got) == 300
        for item in got:
            cred = Credential.from_json(item["credential"])
            assert item["qr_text"] == cred.to_qr_text()
            assert Credential.from_qr_text(item["qr_text"], policy=fx.POLICY).cert_id == item["cert_id"]
    assert _gone(worker), "the render worker outlived the app"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_node_run_starts_its_render_worker_and_takes_it_down_when_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = window.make_node(tmp_path)
    token = window.add_clerk(data, "clerk", "issue")
    monkeypatch.setenv("CERTLEDGER_RENDER_WORKERS", "1")
    node = window.NodeProcess(data).start()
    try:
        assert node.proc is not None
        deadline = time.monotonic() + 60
        while not (workers := _children(node.proc.pid)):
            assert time.monotonic() < deadline, "no render worker beside the node"
            time.sleep(0.1)
        body = {"type": fx.FOOD_PERMIT.code, "items": [{"claims": window.food_claims(n)} for n in range(300)]}
        r = httpx.post(
            node.url + "/v1/certificates/batch",
            content=orjson.dumps(body),
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
        assert r.status_code == 201, r.text
        for item in r.json()["certificates"]:
            assert item["qr_text"] == Credential.from_json(item["credential"]).to_qr_text()
        node.kill()
        assert all(_gone(p) for p in workers), "a render worker outlived its killed node"
    finally:
        node.stop()


@pytest.mark.slow
def test_node_run_with_no_render_workers_starts_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = window.make_node(tmp_path)
    monkeypatch.setenv("CERTLEDGER_RENDER_WORKERS", "0")
    node = window.NodeProcess(data).start()
    try:
        assert node.proc is not None
        time.sleep(1.0)
        assert _children(node.proc.pid) == []
    finally:
        node.stop()
