"""One writer thread that writes, in one go, everything concurrent callers submitted meanwhile.

Writes that must take their turn (one SQLite writer at a time; one appender per hash chain) pay
the same fixed costs on every transaction: taking the lock, committing. Batching them shares those
costs under load: alone, an item is written at once as before; when many wait, the next write takes
them all. Every caller still waits for its own item's result, so nothing is acknowledged before it
is durable.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

import anyio

from app.store.database import StoreUnavailable

Item = TypeVar("Item")
Result = TypeVar("Result")
MAX_BATCH = 64
IDLE_SECONDS = 5.0  # the thread ends after this long without work (and starts again on demand)


class BatchWriter(Generic[Item, Result]):
    """Calls ``write(items)`` (one result per item, in order) from its own thread.

    When a batch of several fails with an error ``isolate(error)`` accepts (one item refused, not
    the store failing), each item is written again alone, so one bad item costs only its own.
    """

    def __init__(
        self,
        name: str,
        write: Callable[[list[Item]], Sequence[Result]],
        isolate: Callable[[Exception], bool] = lambda _error: True,
    ) -> None:
        self._name = name
        self._write_batch = write
        self._isolate = isolate
        self._queue: queue.SimpleQueue[tuple[Item, Future[Result]]] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._running = False

    def submit(self, item: Item) -> Future[Result]:
        """Queue ``item``; cancelled before its batch is written, it is dropped."""
        future: Future[Result] = Future()
        with self._guard:
            self._queue.put((item, future))
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name=self._name, daemon=True).start()
        return future

    async def write(self, item: Item, seconds: float) -> Result:
        """Submit ``item`` and wait for its result; :class:`StoreUnavailable` after ``seconds``.

        An item abandoned at the time limit may still be written afterwards.
        """
        try:
            with anyio.fail_after(seconds):
                return await asyncio.wrap_future(self.submit(item))
        except TimeoutError:
            raise StoreUnavailable(f"the database did not answer within {seconds:g} s") from None

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._guard:
                    if self._queue.empty():
                        self._running = False
                        return
                continue
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write([entry for entry in batch if entry[1].set_running_or_notify_cancel()])

    def _write(self, batch: list[tuple[Item, Future[Result]]]) -> None:
        if not batch:
            return
        try:
            results = self._write_batch([item for item, _ in batch])
        except Exception as error:  # every caller gets its outcome; the thread goes on
            if len(batch) > 1 and self._isolate(error):
                for entry in batch:
                    self._write([entry])
                return
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
