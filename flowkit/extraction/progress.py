"""Frame-level progress from worker processes to the bars in the main process.

Workers send counts as UDP datagrams to a socket on the loopback interface: sending never blocks,
needs no extra process, and a worker whose main process has died loses nothing by sending into
the void.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class ProgressSender:
    """Picklable callable a worker calls with a number of frame pairs done."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self._socket: socket.socket | None = None

    def __getstate__(self) -> dict:
        return {"address": self.address, "_socket": None}

    def __call__(self, count: int) -> None:
        if self._socket is None:
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            self._socket.sendto(str(int(count)).encode(), self.address)


class ProgressReceiver:
    """Receives counts on a loopback socket and hands each to `callback`, from a daemon thread."""

    def __init__(self, callback: Callable[[int], None]) -> None:
        self._callback = callback
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flowkit-progress", daemon=True)
        self._thread.start()

    @property
    def sender(self) -> ProgressSender:
        return ProgressSender(self._socket.getsockname())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._callback(int(data))
            except ValueError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self._socket.close()
