"""Overlapping I/O with computation inside one worker: a prefetching reader and an ordered writer.

OpenCV decoding, JPEG encoding and zlib compression all release the GIL, so a decode thread and a
write thread run truly beside the flow computation. Both are bounded, so memory stays flat.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], size: int = 8) -> Iterator[T]:
    """Iterate `items` in a background thread, up to `size` ahead; exceptions are re-raised here."""
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put((_DONE, exc))

    thread = threading.Thread(target=produce, name="flowkit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class OrderedWriter:
    """Runs submitted calls one at a time, in order, in a background thread, at most `depth` queued.

    An exception in a call is re-raised by the next `submit` or by `close`.
    """

    def __init__(self, depth: int = 8) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowkit-writer")
        self._slots = threading.BoundedSemaphore(depth)
        self._pending: list[Future] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise_failures()
        self._slots.acquire()
        future = self._executor.submit(fn, *args)
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)

    def _raise_failures(self) -> None:
        still = []
        for future in self._pending:
            if future.done():
                future.result()
            else:
                still.append(future)
        self._pending = still

    def close(self) -> None:
        """Wait for every call; re-raise the first failure."""
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pending = []
            self._executor.shutdown(wait=True)

    def cancel(self) -> None:
        """Drop queued calls and wait for the running one; failures are ignored."""
        for future in self._pending:
            future.cancel()
        self._executor.shutdown(wait=True)
        self._pending = []
