"""The sequencer: batches appends into durable commits and signs checkpoints.

Every request waiting when the sequencer wakes goes into one
:meth:`~ledger.log.store.LogStore.append` (one transaction, one fsync); each caller
gets its indexes only after that commit. While entries arrive a checkpoint is signed at
least every ``interval`` seconds. :meth:`Sequencer.stop` commits what is queued and
signs a last checkpoint before it returns, so nothing acknowledged is left unsigned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from ledger.errors import ConflictError, LedgerError, StorageError
from ledger.keys import SigningKey
from ledger.log.signer import LogSigner
from ledger.log.statement import SignedStatement
from ledger.log.store import LogStore

__all__ = ["Sequencer"]

log = logging.getLogger("certledger.node.sequencer")


class Sequencer:
    """Appends batched statements to ``store`` (signed with ``key``) and signs checkpoints
    with ``signer``, the same key with its memory of the last checkpoint it signed."""

    def __init__(
        self,
        *,
        store: LogStore,
        key: SigningKey,
        signer: LogSigner,
        interval: float,
        on_checkpoint: Callable[[], None],
        max_batch: int = 10_000,
    ) -> None:
        self._store = store
        self._key = key
        self._signer = signer
        self._interval = interval
        self._on_checkpoint = on_checkpoint
        self._max_batch = max_batch
        self._queue: list[tuple[Sequence[SignedStatement], asyncio.Future[list[int]]]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._last_sign = 0.0

    def start(self) -> None:
        """Start the background loop (signing a checkpoint first if entries are unsigned)."""
        self._task = asyncio.create_task(self._run(), name="sequencer")

    async def append(self, statements: Sequence[SignedStatement]) -> list[int]:
        """Queue statements; return their indexes once they are durable."""
        if self._stopping:
            raise StorageError("the node is shutting down; nothing was appended")
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append((statements, fut))
        self._wake.set()
        return await fut

    async def stop(self) -> None:
        """Commit everything queued, sign a final checkpoint, and stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def _unsigned(self) -> bool:
        latest = self._store.latest_checkpoint()
        return latest is None or latest.size < self._store.size

    async def _sign(self) -> None:
        await asyncio.to_thread(self._store.checkpoint, self._signer)
        self._last_sign = time.monotonic()
        log.info("checkpoint signed", extra={"size": self._store.size})
        self._on_checkpoint()

    async def _commit(self) -> None:
        batch: list[tuple[Sequence[SignedStatement], asyncio.Future[list[int]]]] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0][0]) <= self._max_batch):
            item = self._queue.pop(0)
            batch.append(item)
            count += len(item[0])
        items = [s for statements, _ in batch for s in statements]
        try:
            indexes = await asyncio.to_thread(self._store.append, items, key=self._key)
        except ConflictError as e:
            if len(batch) > 1:  # one request's statements conflict: the others still go in
                for statements, fut in batch:
                    await self._commit_one(statements, fut)
                return
            if not batch[0][1].done():
                batch[0][1].set_exception(ConflictError(str(e)))
            return
        except LedgerError as e:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(type(e)(str(e)))
            return
        pos = 0
        for statements, fut in batch:
            if not fut.done():
                fut.set_result(indexes[pos : pos + len(statements)])
            pos += len(statements)

    async def _commit_one(
        self, statements: Sequence[SignedStatement], fut: asyncio.Future[list[int]]
    ) -> None:
        try:
            indexes = await asyncio.to_thread(self._store.append, list(statements), key=self._key)
        except LedgerError as e:
            if not fut.done():
                fut.set_exception(type(e)(str(e)))
            return
        if not fut.done():
            fut.set_result(indexes)

    async def _run(self) -> None:
        with contextlib.suppress(LedgerError):
            if self._unsigned():
                await self._sign()
        while True:
            dirty = self._unsigned()
            timeout = None
            if dirty:
                timeout = max(0.0, self._last_sign + self._interval - time.monotonic())
            if not self._queue and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._commit()
                if time.monotonic() - self._last_sign >= self._interval:
                    break
            try:
                if self._unsigned() and (
                    self._stopping or time.monotonic() - self._last_sign >= self._interval
                ):
                    await self._sign()
            except LedgerError as e:
                log.error("cannot sign a checkpoint", extra={"error": str(e)})
                await asyncio.sleep(self._interval)
            if self._stopping and not self._queue:
                return
