"""A real HTTP subscriber on loopback that keeps every request's raw bytes.

Used by the tests and the benchmarks (local.run's sample subscriber is local/receiver.py).
Its answer depends on the path, so one receiver serves every test:
``/ok/…`` 200, ``/fail/…`` 500, ``/redirect/…`` 302 to ``/ok/redirected``,
``/slow/SECONDS/…`` 200 after a pause, ``/flaky/N/…`` 500 for the first N requests
to that path, then 200, ``/random/P/…`` 500 with a probability of P % after a pause of
up to 0.3 s (seeded), ``/gone/…`` 410, ``/retry-after/VALUE/STATUS/…`` STATUS with
``Retry-After: VALUE`` (URL-decoded) to the first request, then 200. Whatever its kind, a
path in ``unavailable`` answers 503 while it is there (a subscriber down, then back: the
benchmark's failing and recovering subscribers).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # Unix seconds by the project's clock (webhooks.clock: shifted in make test-shifted)


class Receiver:
    def __init__(self, seed: int = 0) -> None:
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self.unavailable: set[str] = set()  # paths answering 503 while listed here
        self.random = random.Random(seed)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The status line and headers, then the body, are two writes: with Nagle's algorithm
            # the body waited for the client's delayed ACK, 40 ms a request (a real server doesn't).
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                from webhooks import clock  # not at import: tests/conftest.py sets the environment first

                arrived = clock.now().timestamp()
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body, arrived))
                    receiver._seen[self.path] += 1
                    seen = receiver._seen[self.path]
                parts = self.path.strip("/").split("/")
                kind = parts[0]
                if kind == "slow":
                    time.sleep(float(parts[1]))
                if kind == "random":
                    time.sleep(receiver.random.uniform(0, 0.3))
                if self.path in receiver.unavailable:
                    self._answer(503, b"unavailable on purpose")
                elif kind == "redirect":
                    self._answer(302, b"moved", location="/ok/redirected")
                elif kind == "gone":
                    self._answer(410, b"gone for good")
                elif kind == "retry-after" and seen == 1:
                    self._answer(int(parts[2]), b"later", retry_after=unquote(parts[1]))
                elif (
                    kind == "fail"
                    or (kind == "flaky" and seen <= int(parts[1]))
                    or (kind == "random" and receiver.random.random() * 100 < float(parts[1]))
                ):
                    self._answer(500, b"failing on purpose")
                else:
                    self._answer(200, b'{"received": true}')

            def _answer(
                self, status: int, body: bytes, location: str | None = None, retry_after: str | None = None
            ) -> None:
                try:
                    self.send_response(status)
                    if location:
                        self.send_header("Location", location)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: object) -> None:
                return None

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that went away (a killed worker, a timeout) is not news here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Received]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
