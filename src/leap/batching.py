"""Batch calls made from many threads into one call of a batch function.

Many callers (episode threads, HTTP requests) each submit one item and wait for its result; one
thread takes what has gathered and calls the batch function on it — batching at the granularity of a
call: what queued while the previous batch ran goes together into the next. The first item of a
batch waits at most ``window_s`` for company, less when ``expected()`` says how many callers there
can be and all of them are in.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()


class Batcher(Generic[T, R]):
    """``fn(items) -> results`` (same length and order) on batches of up to ``max_batch`` items.

    ``key``: items with different keys never share a batch (e.g. requests for different models);
    ``expected``: how many items can arrive at most right now (stop waiting once all are in).
    An exception of ``fn`` is the result of every item of that batch.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int,
        window_s: float = 0.0,
        key: Callable[[T], Hashable] | None = None,
        expected: Callable[[], int] | None = None,
        name: str = "leap-batcher",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.fn = fn
        self.max_batch = max_batch
        self.window_s = window_s
        self.key = key
        self.expected = expected
        self.batches: list[int] = []  # size of every batch run (for tests and statistics)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        if self._closed:
            raise RuntimeError("the batcher is closed")
        fut: Future[R] = Future()
        self._queue.put((item, fut))
        return fut

    def __call__(self, items: Sequence[T]) -> list[R]:
        """Submit every item, then wait for all of them (their results in order)."""
        futures = [self.submit(x) for x in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join(timeout=30)

    # ------------------------------------------------------------ the batching thread

    def _gather(self, first: tuple[T, Future[R]]) -> tuple[list[tuple[T, Future[R]]], bool]:
        batch = [first]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                if self.expected is not None and len(batch) >= self.expected():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    entry = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if entry is _STOP:
                return batch, True
            batch.append(entry)
        return batch, False

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, stop = self._gather(first)
            groups: dict[Hashable, list[tuple[T, Future[R]]]] = {}
            for entry in batch:
                groups.setdefault(self.key(entry[0]) if self.key else None, []).append(entry)
            for entries in groups.values():
                live = [(x, f) for x, f in entries if f.set_running_or_notify_cancel()]
                if not live:
                    continue
                self.batches.append(len(live))
                try:
                    results = list(self.fn([x for x, _ in live]))
                    if len(results) != len(live):
                        raise RuntimeError(f"batch function returned {len(results)} results for {len(live)}")
                except BaseException as e:
                    for _, f in live:
                        f.set_exception(e)
                    continue
                for (_, f), r in zip(live, results, strict=True):
                    f.set_result(r)
            if stop:
                break
        while True:  # closed: whatever is still queued gets an answer, never a hang
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if entry is not _STOP:
                entry[1].set_exception(RuntimeError("the batcher was closed"))
