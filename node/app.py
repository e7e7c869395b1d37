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
``GET /mirror/<origin hash>/...``          the verified copy of another member's log:
                                           ``checkpoint`` and tiles, as above
``GET /v1/alerts``                         fork evidence this node holds (JSON list)
``GET /v1/refused``                        data the mirrors refused, each naming its source
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
import gc
import gzip
import hashlib
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ledger.errors import (
    ConflictError,
    LedgerError,
    MalformedError,
    SignatureError,
    StorageError,
    TooLargeError,
)
from ledger.log.signer import LogSigner
from ledger.log.statement import Kind, SignedStatement, Statement
from ledger.log.store import LogStore
from ledger.log.witness import MAX_BODY_SIZE, is_origin_hash, origin_hash
from ledger.replica import tiles
from ledger.trust.policy_doc import parse_document
from node.clerk_page import install as install_clerk_page
from node.config import NodeConfig
from node.doctor import tls_certificate_expiry
from node.gossip import Gossip
from node.issuing import Desk
from node.issuing_api import install as install_clerks_api
from node.mirror import Mirrors
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
_MAX_POLICY_STEPS = 16


class Node:
    """The node's state: its log, witness, published checkpoints and background work."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        d = config.data_dir
        self.store = LogStore.open(d / "log.db")
        self.signer = LogSigner.beside(d / "log.key", key=config.log_key)
        # After a restore the log may be behind what the key last signed: refuse to run.
        try:
            self.store.check_signer(self.signer)
        except LedgerError:
            self.store.close()
            raise
        self.reader = LogStore.open(d / "log.db", readonly=True)
        self.witness = Witness(
            path=d / "witness.db",
            member_id=config.member_id,
            key=config.witness_key,
            policy=lambda: config.policy.policy,
            clock=config.clock,
        )
        self.published = Published(d / "node.db")
        self.mirrors = Mirrors(
            path=d / "mirrors.db",
            member_id=config.member_id,
            policy=lambda: config.policy.policy,
            client=config.mirror_client or httpx.Client(timeout=10.0, follow_redirects=False),
            extra_sources=config.mirror_sources,
            clock=config.clock,
        )
        self._mirror_task: asyncio.Task[None] | None = None
        self._gossip_task: asyncio.Task[None] | None = None
        self.tiles_dir = TilesDir(config.tiles_dir) if config.tiles_dir is not None else None
        self._full_tiles: OrderedDict[tiles.Tile, bytes] = OrderedDict()
        self._gzipped: OrderedDict[tuple[str, tiles.Tile], bytes] = OrderedDict()
        self._cache_lock = threading.Lock()  # tile requests run on several threads
        self.registry = CollectorRegistry()
        self._metrics()
        self.gossip = Gossip(
            path=d / "gossip.db",
            member_id=config.member_id,
            policy=lambda: config.policy.policy,
            client=self.mirrors.client,
            witness=self.witness,
            replicas=self.mirrors.store,
            own_log=self.reader,
            known_alerts=lambda: self.witness.alerts() + self.mirrors.fork_alerts(),
            mirror_sources=self.mirrors.sources,
            registry=self.registry,
            clock=config.clock,
        )
        self.sequencer = Sequencer(
            store=self.store,
            key=config.log_key,
            signer=self.signer,
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
            lambda: len(self.alerts())
        )
        Gauge(
            "certledger_policy_days_left", "Days until the current policy version expires.", registry=r
        ).set_function(lambda: (self.config.policy.policy.expires - self.config.clock()) / 86400)
        Gauge(
            "certledger_log_key_days_left",
            "Days this node's log key stays valid for new statements (+Inf: open-ended; "
            "0: compromised or not listed).",
            registry=r,
        ).set_function(self._log_key_days_left)
        if self.config.tls_cert is not None:
            tls_expires = tls_certificate_expiry(self.config.tls_cert)
            Gauge(
                "certledger_tls_certificate_days_left",
                "Days until the TLS certificate the node serves expires.",
                registry=r,
            ).set_function(lambda: (tls_expires - self.config.clock()) / 86400)
        r.register(_MirrorMetrics(self))  # per member of the policy current when scraped
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

    def _log_key_days_left(self) -> float:
        member = self.config.policy.policy.member(self.config.member_id)
        keys = [] if member is None else member.log_keys
        for k in keys:
            if k.public_key == self.config.log_key.public_key:
                if k.compromised_at is not None:
                    return 0.0
                if k.valid_until is None:
                    return math.inf
                return max(0.0, (k.valid_until - self.config.clock()) / 86400)
        return 0.0

    def mirror_figures(self) -> list[tuple[str, float, float]]:
        """(member, lag in seconds or -1, entries) of each other member's copy, for the
        members of the current policy (one a newer version added included)."""
        lags = self.mirrors.lag()
        return [
            (m.id, lags.get(m.id, -1.0), float(self.mirrors.store.size(m.origin)))
            for m in self.config.policy.policy.members
            if m.id != self.config.member_id
        ]

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
        if cosigners:  # the log keeps the cosignatures with its checkpoint (log proof, audit)
            policy = self.config.policy.policy
            witnesses = list(policy.witness_keys(self.config.member_id).values())
            note = self.store.add_cosignatures(note, witnesses=witnesses)
        self.published.add(size=size, note=note, cosigners=cosigners, now=int(self.config.clock()))
        log.info("checkpoint published", extra={"size": size, "cosigners": cosigners})
        if self.tiles_dir is not None:
            latest = self.published.latest()
            if latest is not None:
                self.tiles_dir.write_tiles(self.reader, latest.size)
                self.tiles_dir.write_checkpoint(latest.note)

    async def _record_policies(self) -> None:
        """Append a POLICY statement for every held policy version not yet in our log."""
        if not self.config.record_policy:
            return
        chain = self.config.policy
        done = self.published.adopted()
        kid = self.store.key_id(self.config.log_key)
        for version in chain.versions():
            doc = chain.document(version)
            if version in done or doc is None:
                continue
            digest = hashlib.sha256(doc).digest()
            statement = Statement(
                kind=Kind.POLICY,
                issuer=self.config.member_id,
                time=int(self.config.clock()),
                operator="node",
                policy_version=version,
                policy_hash=digest,
            )
            signed = SignedStatement.sign(statement, key=self.config.log_key, key_id=kid)
            [index] = await self.sequencer.append([signed])
            self.published.adopt(version=version, digest=digest, index=index)
            log.info("policy version recorded in the log", extra={"version": version, "index": index})

    async def _pull_policies(self, client: httpx.AsyncClient) -> None:
        """Fetch and install newer policy versions that other members serve."""
        chain = self.config.policy
        for m in chain.policy.members:
            if m.id == self.config.member_id:
                continue
            base = m.base_url.rstrip("/")
            try:
                r = await client.get(base + "/policy/latest")
                if r.status_code != 200:
                    continue
                theirs = parse_document(r.content).policy.version
                ours = chain.policy.version
                for version in range(ours + 1, min(theirs, ours + _MAX_POLICY_STEPS) + 1):
                    doc = (
                        r.content
                        if version == theirs
                        else (await client.get(f"{base}/policy/{version}")).content
                    )
                    await asyncio.to_thread(chain.install, doc)
                    log.info("policy version adopted from a peer", extra={"version": version, "peer": m.id})
            except (httpx.HTTPError, LedgerError) as e:
                log.warning("cannot take a policy version from a peer", extra={"peer": m.id, "error": str(e)})

    async def _watch_policy(self) -> None:
        async with httpx.AsyncClient(transport=self.config.transport, timeout=10.0) as client:
            while True:
                try:
                    await self._record_policies()
                    await asyncio.sleep(self.config.policy_interval)
                    try:
                        await asyncio.to_thread(self.config.policy.reload)
                    finally:  # an expired newest version is exactly when to look for the next
                        if self.config.submit:
                            await self._pull_policies(client)
                except LedgerError as e:
                    log.error("policy update failed", extra={"error": str(e)})

    async def start(self) -> None:
        """Start sequencing and, if configured, submitting to witnesses."""
        self.sequencer.start()
        if self.config.submit:
            self.submitter.start()
        self._policy_task = asyncio.create_task(self._watch_policy(), name="policy")
        if self.config.mirror:
            self._mirror_task = asyncio.create_task(
                self.mirrors.run(self.config.mirror_interval), name="mirror"
            )
        if self.config.gossip:
            self._gossip_task = asyncio.create_task(
                self.gossip.run(self.config.gossip_interval), name="gossip"
            )

    async def stop(self) -> None:
        """Commit and sign what was acknowledged, then stop everything and close."""
        await self.sequencer.stop()
        if self.config.submit:
            await self.submitter.stop()
        for task in (self._policy_task, self._mirror_task, self._gossip_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.close()

    def close(self) -> None:
        """Close the databases."""
        self.store.close()
        self.reader.close()
        self.witness.close()
        self.published.close()
        self.gossip.close()
        self.mirrors.close()

    # ------------------------------------------------------------------ reads

    def alerts(self) -> list[bytes]:
        """Every fork alert held: met as a witness, as a mirror, then learned by gossip."""
        return self.witness.alerts() + self.mirrors.fork_alerts() + self.gossip.alerts()

    def checkpoint(self) -> bytes | None:
        """What ``/checkpoint`` serves."""
        p = self.published.latest()
        if p is not None:
            return p.note
        cp = self.store.latest_checkpoint()
        return None if cp is None else cp.note

    def tile(self, tile: tiles.Tile) -> bytes | None:
        """A tile's bytes if the latest signed checkpoint covers it, else None: entries
        no checkpoint covers yet are not served (a full tile is cached for a year)."""
        if tile.is_full:
            with self._cache_lock:
                cached = self._full_tiles.get(tile)
            if cached is not None:  # covered when cached: signed sizes only grow
                return cached
        cp = self.store.latest_checkpoint()
        have = None if cp is None else tiles.tile_for(tile.level, tile.index, cp.size)
        if have is None or have.width < tile.width:
            return None
        data = tile_bytes(self.reader, tile)
        if tile.is_full:
            with self._cache_lock:
                self._full_tiles[tile] = data
                while len(self._full_tiles) > _TILE_CACHE:
                    self._full_tiles.popitem(last=False)
        return data

    def gzipped(self, scope: str, tile: tiles.Tile, data: bytes) -> bytes:
        """``data`` (entry bundle ``tile`` of the log ``scope``) gzip-compressed; full
        bundles are compressed once."""
        key = (scope, tile)
        if tile.is_full:
            with self._cache_lock:
                cached = self._gzipped.get(key)
            if cached is not None:
                return cached
        packed = gzip.compress(data, compresslevel=1, mtime=0)
        if tile.is_full:
            with self._cache_lock:
                self._gzipped[key] = packed
                while len(self._gzipped) > _TILE_CACHE:
                    self._gzipped.popitem(last=False)
        return packed


def _accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (RFC 9110: a q of 0 refuses)."""
    for part in header.split(","):
        name, _, params = part.partition(";")
        if name.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip().lower()
        return not (q.startswith("q=") and q[2:].strip().rstrip("0").rstrip(".") in ("0", ""))
    return False


def _tile_response(node: Node, request: Request, scope: str, t: tiles.Tile, data: bytes) -> Response:
    """A tile or entry bundle; bundles gzip-compressed for a client that accepts it
    (tlog-tiles: entry bundles SHOULD be compressed at the HTTP layer)."""
    headers = {"Cache-Control": IMMUTABLE if t.is_full else SHORT_LIVED}
    if t.is_entries:
        headers["Vary"] = "Accept-Encoding"
        if _accepts_gzip(request.headers.get("accept-encoding", "")):
            data = node.gzipped(scope, t, data)
            headers["Content-Encoding"] = "gzip"
    return Response(data, media_type="application/octet-stream", headers=headers)


class _MirrorMetrics(Collector):
    """``certledger_mirror_lag_seconds`` and ``certledger_mirror_size`` per member."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> list[Metric]:
        lag, size = self._families()
        for member, seconds, entries in self._node.mirror_figures():
            lag.add_metric([member], seconds)
            size.add_metric([member], entries)
        return [lag, size]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "certledger_mirror_lag_seconds",
                "Seconds since the newest checkpoint of each mirrored log was witnessed (-1: none yet).",
                labels=["member"],
            ),
            GaugeMetricFamily(
                "certledger_mirror_size", "Entries in each mirrored log's copy.", labels=["member"]
            ),
        )


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
        # What exists now (modules, app, policy, keys) lives as long as the node: kept out
        # of the collector's full passes, each of which took ~40 ms of a 2,000-certificate
        # batch walking it. Unfrozen at stop, so nothing stays pinned after the node.
        gc.freeze()
        log.info("node started", extra={"member": config.member_id, "size": node.store.size})
        try:
            yield
        finally:
            gc.unfreeze()
            await desk.stop()
            await node.stop()
            log.info("node stopped", extra={"member": config.member_id, "size": node.store.size})

    app = FastAPI(
        title="certledger node", lifespan=lifespan, docs_url="/docs", redoc_url=None, redirect_slashes=False
    )
    app.state.node = node
    app.state.desk = desk
    install_clerks_api(app, desk)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:  # an in-memory read: no need to hop to a worker thread
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
    def tile(rest: str, request: Request) -> Response:
        try:
            t = tiles.parse_tile_path("tile/" + rest)
        except MalformedError as e:
            return _text(400, str(e))
        data = node.tile(t)
        if data is None:
            return _text(404, f"{t.path} is not in the log yet")
        return _tile_response(node, request, "", t, data)

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
        # Set the type as a header: a media_type would gain "; charset=utf-8", which the
        # spec's text/x.tlog.size does not have.
        return Response(answer.body, status_code=answer.status, headers={"Content-Type": answer.content_type})

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
        return JSONResponse([json.loads(a) for a in node.alerts()])

    @app.get("/v1/refused")
    def refused() -> JSONResponse:
        return JSONResponse([a.to_json() for a in node.mirrors.store.alerts(kind="bad-source")])

    @app.post("/v1/statements")
    async def statements(request: Request) -> Response:
        try:
            raw = await _body(request, _MAX_APPEND_BODY)
            items = _parse_statements(raw, node)
            indexes = await node.sequencer.append(items)
        except (MalformedError, SignatureError) as e:
            return _text(400, str(e))
        except ConflictError as e:  # a replay of a logged statement, or an id issued twice
            return _text(409, str(e))
        except StorageError as e:
            return _text(503, str(e))
        return JSONResponse({"indexes": indexes})

    @app.get("/mirror/{ohash}/checkpoint")
    def mirror_checkpoint(ohash: str) -> Response:
        cp = node.mirrors.checkpoint(ohash)
        if cp is None:
            return _text(404, "no copy of that log here")
        return Response(
            cp.note, media_type="text/plain; charset=utf-8", headers={"Cache-Control": SHORT_LIVED}
        )

    @app.get("/mirror/{ohash}/tile/{rest:path}")
    def mirror_tile(ohash: str, rest: str, request: Request) -> Response:
        try:
            t = tiles.parse_tile_path("tile/" + rest)
        except MalformedError as e:
            return _text(400, str(e))
        data = node.mirrors.tile(ohash, t)
        if data is None:
            return _text(404, f"{t.path} is not in this copy")
        return _tile_response(node, request, ohash, t, data)

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

    install_clerk_page(app)
    return app
