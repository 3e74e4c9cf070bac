"""A hostile subscriber on loopback: raw-socket HTTP answers that never end.

The answer depends on the path (``/MODE/…``):

- ``/slow-trailers/…``: ``200 OK``, ``Transfer-Encoding: chunked``, one small chunk, the last
  chunk, then a trailer line every second, forever;
- ``/fast-trailers/…``: the same, the trailer lines at full speed;
- ``/drip-chunk-size/…``: ``200 OK``, chunked, then the chunk-size line one byte every 0.2 s.

Each connection has its own thread, which stops when the client goes away (or at ``stop``).
"""

from __future__ import annotations

import select
import socket
import threading
from collections import Counter

MODES = ("slow-trailers", "fast-trailers", "drip-chunk-size")
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"


class HostileSubscriber:
    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._requests: Counter[str] = Counter()  # path => requests received
        self._hung_up: Counter[str] = Counter()  # path => connections the client closed
        self.open = 0  # connections being answered now
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self, path: str) -> int:
        with self._lock:
            return self._requests[path]

    def hung_up(self, path: str) -> int:
        """How many of the connections to ``path`` the client closed."""
        with self._lock:
            return self._hung_up[path]

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            path = _read_request(connection)
            if path is None:
                return
            with self._lock:
                self._requests[path] += 1
                self.open += 1
            connection.setblocking(False)
            try:
                self._answer(connection, path.strip("/").split("/")[0])
            except (_HungUp, OSError):  # the client closed the connection: what a worker must do in time
                with self._lock:
                    self._hung_up[path] += 1
            finally:
                with self._lock:
                    self.open -= 1

    def _answer(self, connection: socket.socket, mode: str) -> None:
        if mode == "drip-chunk-size":
            _send(connection, _HEAD)
            while not self._stopped.is_set():
                _send(connection, b"0")  # 000… never ends the chunk-size line
                _pause(connection, 0.2)
            return
        _send(connection, _HEAD + b"5\r\nhello\r\n0\r\n")
        trailers = b"X-Trailer: more\r\n" * (1 if mode == "slow-trailers" else 200)
        while not self._stopped.is_set():
            _send(connection, trailers)
            if mode == "slow-trailers":
                _pause(connection, 1)


class _HungUp(Exception):
    """The client closed its end of the connection."""


def _check_hung_up(connection: socket.socket) -> None:
    """The request was read whole: anything readable now is the client's end of the connection."""
    if not connection.recv(65536):
        raise _HungUp()


def _send(connection: socket.socket, data: bytes) -> None:
    """Send ``data`` whole, noticing meanwhile a client that hangs up (a client that stops reading
    and closes may leave a blocked send waiting for good: its window stays shut)."""
    view = memoryview(data)
    while view:
        readable, writable, _ = select.select([connection], [connection], [], 1)
        if readable:
            _check_hung_up(connection)
        if writable:
            view = view[connection.send(view) :]


def _pause(connection: socket.socket, seconds: float) -> None:
    if select.select([connection], [], [], seconds)[0]:
        _check_hung_up(connection)


def _read_request(connection: socket.socket) -> str | None:
    """The path of the request (its headers and body read), or None if the client left."""
    reader = connection.makefile("rb")
    try:
        request_line = reader.readline()
        length = 0
        while True:
            line = reader.readline()
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        reader.read(length)
    except OSError:
        return None
    finally:
        reader.close()
    parts = request_line.decode("latin-1").split()
    return parts[1] if len(parts) >= 2 else None
