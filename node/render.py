"""``CL1:`` texts of issued certificates, for the issuing replies.

Deflate with the preset dictionary and Base45 are most of the cost of a text (about
32 of 50 µs). For a large batch a :class:`Renderer` with workers has them done in
worker processes, beside the event loop's process: as the batch is built, each
credential's full presentation goes over as plain fields a chunk at a time, so the
workers encode and deflate while the node goes on signing the rest, then its JSON and
commit. A small batch, a renderer without
workers, and a batch met while the workers are still starting, or after they broke,
are rendered here, a slice at a time between turns of the event loop. The texts are
the same either way: the workers run :func:`ledger.credential.presentation.text_of`.

The worker processes start with :meth:`Renderer.start` (no batch waits for them), start
again with the next large batch after they broke or stalled (no texts within
:data:`TIMEOUT`), and stop with :meth:`Renderer.close`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool

from ledger.credential.credential import Credential
from ledger.credential.presentation import Presentation, PresentationFields
from ledger.errors import LedgerError

__all__ = ["Renderer", "Rendering", "render_here"]

log = logging.getLogger("certledger.node.render")

#: Certificates rendered here between two turns of the event loop (a few milliseconds).
RENDER_SLICE = 32
#: The smallest batch sent to the workers.
MIN_BATCH = 256
#: Texts per message to a worker: the first chunk reaches a worker early.
CHUNK = 250
#: Seconds a batch waits for its texts (a few per thousand are normal) before the
#: workers are taken for stuck: stopped, and the batch rendered here.
TIMEOUT = 30.0

Rendered = tuple[list[str | None], LedgerError | None]


def texts_of(items: list[PresentationFields]) -> list[str | None]:
    """In a worker: the text of each presentation's fields
    (:meth:`Presentation.to_fields`), or None for one that cannot be made here (too
    large for a QR code): the caller makes it again, to raise its error."""
    out: list[str | None] = []
    for fields in items:
        try:
            out.append(Presentation.from_fields(fields).to_text())
        except Exception:  # whatever it is, the caller's own attempt reports it
            out.append(None)
    return out


def _ready() -> bool:
    return True


def _exit_with_parent() -> None:
    """In a worker, at start: exit as soon as the node's process is gone, even killed
    (a worker otherwise waits for work forever, holding its memory)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


async def render_here(creds: Sequence[Credential]) -> Rendered:
    """The ``CL1:`` texts of ``creds``, in this process, a slice at a time, letting the
    event loop serve other requests in between. A text that cannot be made (too large
    for a QR code) is reported, not raised."""
    out: list[str | None] = []
    for start in range(0, len(creds), RENDER_SLICE):
        if start:
            await asyncio.sleep(0)
        try:
            out += [c.to_qr_text() for c in creds[start : start + RENDER_SLICE]]
        except LedgerError as e:
            return [None] * len(creds), e
    return out, None


class Rendering:
    """Texts being made by the workers, a chunk at a time as certificates are added
    (from :meth:`Renderer.begin`)."""

    def __init__(
        self, *, renderer: Renderer, pool: concurrent.futures.ProcessPoolExecutor, chunk: int, timeout: float
    ) -> None:
        self._renderer = renderer
        self._pool: concurrent.futures.ProcessPoolExecutor | None = pool
        self._chunk = chunk
        self._timeout = timeout
        self._creds: list[Credential] = []
        self._datas: list[PresentationFields] = []
        self._sent = 0
        self._futures: list[concurrent.futures.Future[list[str | None]]] = []

    def add(self, cred: Credential) -> None:
        """One more certificate, in reply order; a full chunk goes to the workers."""
        self._creds.append(cred)
        if self._pool is not None:
            self._datas.append(cred.present(None).to_fields())
            if len(self._datas) - self._sent >= self._chunk:
                self._send()

    def _send(self) -> None:
        if self._pool is None or self._sent == len(self._datas):
            return
        try:
            self._futures.append(self._pool.submit(texts_of, self._datas[self._sent :]))
            self._sent = len(self._datas)
        except (BrokenProcessPool, RuntimeError) as e:
            self._renderer._broken(e)
            self._pool = None

    async def texts(self) -> Rendered:
        """The texts, as :func:`render_here` gives them; made here if the workers broke."""
        self._send()
        if self._pool is None:
            return await render_here(self._creds)
        out: list[str | None] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        try:
            for f in self._futures:
                left = max(0.0, deadline - loop.time())
                part: list[str | None] = await asyncio.wait_for(asyncio.wrap_future(f), left)
                out += part
        except TimeoutError:
            self._renderer._broken(TimeoutError(f"no texts within {self._timeout} s"))
            return await render_here(self._creds)
        except (BrokenProcessPool, OSError, RuntimeError) as e:
            self._renderer._broken(e)
            return await render_here(self._creds)
        for n, text in enumerate(out):
            if text is None:  # not made (too large for a QR code): made here again for its error
                try:
                    out[n] = self._creds[n].to_qr_text()
                except LedgerError as e:
                    return [None] * len(out), e
        return out, None


class Renderer:
    """Makes texts of large batches in ``workers`` worker processes (0: always here)."""

    def __init__(
        self, *, workers: int, min_batch: int = MIN_BATCH, chunk: int = CHUNK, timeout: float = TIMEOUT
    ) -> None:
        if workers < 0:
            raise ValueError("render workers must be 0 or more")
        self.workers = workers
        self._min_batch = max(1, min_batch)
        self._chunk = max(1, chunk)
        self._timeout = timeout
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._warm: concurrent.futures.Future[bool] | None = None
        self._closed = False

    def begin(self, count: int) -> Rendering | None:
        """A rendering of ``count`` certificates by the workers, to be given them with
        :meth:`Rendering.add`; or None: render them here (:func:`render_here`) — a small
        batch, no workers, or workers not up yet."""
        if count < self._min_batch or not self._usable():
            return None
        assert self._pool is not None
        return Rendering(renderer=self, pool=self._pool, chunk=self._chunk, timeout=self._timeout)

    def start(self) -> None:
        """Start the workers, without waiting for them: batches are rendered here until
        they are up."""
        self._usable()

    def _usable(self) -> bool:
        """Whether the workers are up; starts them (without waiting) if they are not."""
        if self.workers == 0 or self._closed:
            return False
        if self._pool is None:
            try:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_exit_with_parent,
                )
                self._warm = self._pool.submit(_ready)
            except (OSError, RuntimeError) as e:
                self._broken(e)
            return False
        warm = self._warm
        if warm is None or not warm.done():
            return False
        if warm.cancelled() or warm.exception() is not None:
            self._broken(warm.exception() or RuntimeError("the render workers did not start"))
            return False
        return True

    def _broken(self, e: BaseException) -> None:
        log.warning(
            "render workers failed; rendering in the node until they restart", extra={"error": str(e)}
        )
        pool, self._pool, self._warm = self._pool, None, None
        if pool is not None:
            # A stuck worker would never take the shutdown message: stop them outright.
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.kill()

    @property
    def running(self) -> bool:
        """Whether worker processes are up and taking batches."""
        warm = self._warm
        return self._pool is not None and warm is not None and warm.done() and not warm.exception()

    def close(self) -> None:
        """Stop the workers (waiting for them to exit); later batches are rendered here."""
        self._closed = True
        pool, self._pool, self._warm = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
