"""The department node as a FastAPI app: public log, witness, policy, alerts, operations.

Endpoints (``create_app(config=...)``):

=========================================  ===============================================
``GET /checkpoint``                        the newest checkpoint with the witness quorum's
                                           cosignatures (the log-signed one until then)
``GET /tile/<L>/<N>[.p/<W>]``              C2SP tlog-tiles hash tiles
``GET /tile/entries/<N>[.p/<W>]``          entry bundles
``POST /add-checkpoint``                   C2SP tlog-witness, for the other members' logs
``GET /<origin hash>/checkpoint``          the latest checkpoint this witness cosigned
``GET /policy/latest``, ``/policy/<N>``    the chain of signed policy documents
``GET /v1/alerts``                         fork evidence this node holds (JSON list)
``POST /v1/statements``                    append statements pre-signed with the log key
``GET /healthz``, ``GET /metrics``         liveness and Prometheus metrics
``/v1/types``, ``/v1/certificates…``       the clerks' issuing API (node.issuing_api)
``GET /docs``                              its OpenAPI documentation
=========================================  ===============================================

Full tiles are immutable (``Cache-Control: public, max-age=31536000, immutable``);
partial tiles and checkpoints are ``no-cache``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from ledger.errors import LedgerError, MalformedError, SignatureError, StorageError, TooLargeError
from ledger.log.statement import SignedStatement
from ledger.log.store import LogStore
from ledger.log.witness import MAX_BODY_SIZE, is_origin_hash, origin_hash
from ledger.replica import tiles
from node.config import NodeConfig
from node.issuing import Desk
from node.issuing_api import install as install_clerks_api
from node.published import Published
from node.sequencer import Sequencer
from node.static import TilesDir, tile_bytes
from node.submitter import Submitter
from node.witness import Witness

__all__ = ["IMMUTABLE", "SHORT_LIVED", "Node", "create_app"]

log = logging.getLogger("certledger.node")

IMMUTABLE = "public, max-age=31536000, immutable"
SHORT_LIVED = "no-cache"
_MAX_STATEMENTS = 1000
_MAX_APPEND_BODY = 4 << 20
_TILE_CACHE = 2048


class Node:
    """The node's state: its log, witness, published checkpoints and background work."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        d = config.data_dir
        self.store = LogStore.open(d / "log.db")
        self.reader = LogStore.open(d / "log.db", readonly=True)
        self.witness = Witness(
            path=d / "witness.db",
            member_id=config.member_id,
            key=config.witness_key,
            policy=lambda: config.policy.policy,
            clock=config.clock,
        )
        self.published = Published(d / "node.db")
        self.tiles_dir = TilesDir(config.tiles_dir) if config.tiles_dir is not None else None
        self._full_tiles: OrderedDict[tiles.Tile, bytes] = OrderedDict()
        self.registry = CollectorRegistry()
        self._metrics()
        self.sequencer = Sequencer(
            store=self.store,
            key=config.log_key,
            interval=config.checkpoint_interval,
            on_checkpoint=self._checkpoint_signed,
        )
        self.submitter = Submitter(
            store=self.store,
            member_id=config.member_id,
            policy=lambda: config.policy.policy,
            publish=self._publish,
            transport=config.transport,
            max_backoff=config.max_backoff,
            clock=config.clock,
            on_result=lambda peer, outcome: self.submissions.labels(peer=peer, outcome=outcome).inc(),
        )
        self._policy_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ metrics

    def _metrics(self) -> None:
        r = self.registry
        Gauge("certledger_log_size", "Entries in this department's log.", registry=r).set_function(
            lambda: self.store.size
        )
        Gauge(
            "certledger_checkpoint_age_seconds",
            "Seconds since the published checkpoint was published (-1: none yet).",
            registry=r,
        ).set_function(self._checkpoint_age)
        Gauge(
            "certledger_checkpoint_cosignatures",
            "Witness cosignatures on the published checkpoint.",
            registry=r,
        ).set_function(lambda: p.cosigners if (p := self.published.latest()) else 0)
        Gauge("certledger_alerts", "Fork alerts held by this node.", registry=r).set_function(
            self.witness.alert_count
        )
        Gauge(
            "certledger_policy_days_left", "Days until the current policy version expires.", registry=r
        ).set_function(lambda: (self.config.policy.policy.expires - self.config.clock()) / 86400)
        self.witness_requests = Counter(
            "certledger_witness_requests",
            "add-checkpoint requests answered, by status.",
            ["status"],
            registry=r,
        )
        self.submissions = Counter(
            "certledger_witness_submissions",
            "Our checkpoints submitted to other members' witnesses, by outcome.",
            ["peer", "outcome"],
            registry=r,
        )

    def _checkpoint_age(self) -> float:
        p = self.published.latest()
        return -1.0 if p is None else max(0.0, self.config.clock() - p.published_at)

    # ------------------------------------------------------------------ events

    def _checkpoint_signed(self) -> None:
        cp = self.store.latest_checkpoint()
        if cp is not None and self.tiles_dir is not None:
            self.tiles_dir.write_tiles(self.reader, cp.size)
        self.submitter.notify()

    def _publish(self, size: int, note: bytes, cosigners: int) -> None:
        self.published.add(size=size, note=note, cosigners=cosigners, now=int(self.config.clock()))
        log.info("checkpoint published", extra={"size": size, "cosigners": cosigners})
        if self.tiles_dir is not None:
            latest = self.published.latest()
            if latest is not None:
                self.tiles_dir.write_tiles(self.reader, latest.size)
                self.tiles_dir.write_checkpoint(latest.note)

    async def _watch_policy(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            try:
                await asyncio.to_thread(self.config.policy.reload)
            except LedgerError as e:
                log.error("policy reload failed", extra={"error": str(e)})

    async def start(self) -> None:
        """Start sequencing and, if configured, submitting to witnesses."""
        self.sequencer.start()
        if self.config.submit:
            self.submitter.start()
        self._policy_task = asyncio.create_task(self._watch_policy(), name="policy")

    async def stop(self) -> None:
        """Commit and sign what was acknowledged, then stop everything and close."""
        await self.sequencer.stop()
        if self.config.submit:
            await self.submitter.stop()
        if self._policy_task is not None:
            self._policy_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._policy_task
        self.close()

    def close(self) -> None:
        """Close the databases."""
        self.store.close()
        self.reader.close()
        self.witness.close()
        self.published.close()

    # ------------------------------------------------------------------ reads

    def checkpoint(self) -> bytes | None:
        """What ``/checkpoint`` serves."""
        p = self.published.latest()
        if p is not None:
            return p.note
        cp = self.store.latest_checkpoint()
        return None if cp is None else cp.note

    def tile(self, tile: tiles.Tile) -> bytes | None:
        """A tile's bytes if the log is large enough to have it, else None."""
        have = tiles.tile_for(tile.level, tile.index, self.store.size)
        if have is None or have.width < tile.width:
            return None
        if tile.is_full:
            cached = self._full_tiles.get(tile)
            if cached is not None:
                return cached
        data = tile_bytes(self.reader, tile)
        if tile.is_full:
            self._full_tiles[tile] = data
            while len(self._full_tiles) > _TILE_CACHE:
                self._full_tiles.popitem(last=False)
        return data


def _text(status: int, message: str) -> Response:
    return Response(
        (message + "\n").encode("utf-8"), status_code=status, media_type="text/plain; charset=utf-8"
    )


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused (TooLargeError) beyond ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise TooLargeError(f"request body is over {limit} bytes")
    out = bytearray()
    async for chunk in request.stream():
        out += chunk
        if len(out) > limit:
            raise TooLargeError(f"request body is over {limit} bytes")
    return bytes(out)


def _parse_statements(raw: bytes, node: Node) -> list[SignedStatement]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise MalformedError("body is not JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"statements"} or not isinstance(doc["statements"], list):
        raise MalformedError('body must be {"statements": [...]}')
    items = doc["statements"]
    if not 1 <= len(items) <= _MAX_STATEMENTS:
        raise MalformedError(f"1 to {_MAX_STATEMENTS} statements per request")
    kid = node.store.key_id(node.config.log_key)
    public = node.config.log_key.public_key
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"statement", "key_id", "signature"}:
            raise MalformedError(f"statement {n}: needs exactly statement, key_id and signature")
        try:
            signed = SignedStatement(
                statement_bytes=base64.b64decode(item["statement"], validate=True),
                key_id=bytes.fromhex(item["key_id"]),
                signature=base64.b64decode(item["signature"], validate=True),
            )
        except (binascii.Error, ValueError, TypeError):
            raise MalformedError(f"statement {n}: bad base64 or hex") from None
        if signed.key_id != kid:
            raise SignatureError(f"statement {n}: not signed with this log's key {kid.hex()}")
        signed.verify(public)
        out.append(signed)
    return out


def create_app(*, config: NodeConfig) -> FastAPI:
    """The node's ASGI app. Databases open now; sequencing and submitting start with the app."""
    node = Node(config)
    desk = Desk(node=node)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await node.start()
        await desk.start()
        log.info("node started", extra={"member": config.member_id, "size": node.store.size})
        try:
            yield
        finally:
            await desk.stop()
            await node.stop()
            log.info("node stopped", extra={"member": config.member_id, "size": node.store.size})

    app = FastAPI(title="certledger node", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.node = node
    app.state.desk = desk
    install_clerks_api(app, desk)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "member": config.member_id, "size": node.store.size}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(node.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/checkpoint")
    def checkpoint() -> Response:
        note = node.checkpoint()
        if note is None:
            return _text(404, "no checkpoint yet")
        return Response(note, media_type="text/plain; charset=utf-8", headers={"Cache-Control": SHORT_LIVED})

    @app.get("/tile/{rest:path}")
    def tile(rest: str) -> Response:
        try:
            t = tiles.parse_tile_path("tile/" + rest)
        except MalformedError as e:
            return _text(400, str(e))
        data = node.tile(t)
        if data is None:
            return _text(404, f"{t.path} is not in the log yet")
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Cache-Control": IMMUTABLE if t.is_full else SHORT_LIVED},
        )

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        try:
            body = await _body(request, MAX_BODY_SIZE)
        except TooLargeError as e:
            node.witness_requests.labels(status="400").inc()
            return _text(400, f"malformed request: {e}")
        answer = await asyncio.to_thread(node.witness.add_checkpoint, body)
        node.witness_requests.labels(status=str(answer.status)).inc()
        if answer.status >= 400:
            log.warning(
                "add-checkpoint refused", extra={"status": answer.status, "reason": answer.body[:200]}
            )
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    @app.get("/policy/latest")
    def policy_latest() -> Response:
        return policy_version(config.policy.policy.version)

    @app.get("/policy/{version}")
    def policy_version(version: int) -> Response:
        doc = config.policy.document(version)
        if doc is None:
            return _text(404, f"no policy version {version} here")
        return Response(doc, media_type="text/plain; charset=utf-8", headers={"Cache-Control": IMMUTABLE})

    @app.get("/v1/alerts")
    def alerts() -> JSONResponse:
        return JSONResponse([json.loads(a) for a in node.witness.alerts()])

    @app.post("/v1/statements")
    async def statements(request: Request) -> Response:
        try:
            raw = await _body(request, _MAX_APPEND_BODY)
            items = _parse_statements(raw, node)
            indexes = await node.sequencer.append(items)
        except (MalformedError, SignatureError) as e:
            return _text(400, str(e))
        except StorageError as e:
            return _text(503, str(e))
        return JSONResponse({"indexes": indexes})

    @app.get("/{ohash}/checkpoint")
    def witnessed(ohash: str) -> Response:
        if not is_origin_hash(ohash):
            return _text(404, "not an origin hash")
        for origin in node.witness.origins():
            if origin_hash(origin) == ohash:
                latest = node.witness.latest(origin)
                if latest is not None:
                    return Response(
                        latest[1],
                        media_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": SHORT_LIVED},
                    )
        return _text(404, "this witness has never cosigned that log")

    return app
