"""SSRF at send time, pinned connections, bounded responses: the plain functions the task
runs, called in this process against the real audit database and real loopback servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import settings
from local.leads import unique
from local.recorder import Receiver
from local.services import wait_for
from tasks import delivery, destination, sender
from tests.integration.conftest import attempts
from tests.support.factories import a_message, a_state
from tests.support.hostile import MODES, HostileSubscriber


def a_delivery(url: str) -> tuple[Any, Any]:
    """A delivery message, and its subscriber at ``url`` as a worker sees it."""
    return a_message(webhook="hardening"), a_state(url, name="hardening")


def test_a_subscriber_resolving_to_a_private_address_is_refused_at_send_time_without_a_connection(
    database: str, monkeypatch: pytest.MonkeyPatch, connections: list[Any]
) -> None:
    monkeypatch.setattr(destination, "resolve", lambda host, port: ["10.0.0.5"])
    sent = a_delivery("http://partner.example/hooks")

    ended = delivery.attempt(*sent)  # nothing follows: a permanent failure
    assert isinstance(ended, delivery.Failed) and "refused destination" in ended.reason

    [row] = attempts(sent[0].delivery_id)
    assert row["status"] == "abandoned"
    assert "refused destination" in row["error"] and "10.0.0.5 is private" in row["error"]
    assert [address for address in connections if address[1] != 3306] == []


def test_the_connection_goes_to_the_checked_address_with_the_original_host_header(
    database: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([["127.0.0.1"], ["10.0.0.5"]])  # a rebinding name: safe first, private after
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    monkeypatch.setattr(destination, "resolve", resolve)
    path = f"/ok/{unique('pinned')}"
    sent = a_delivery(f"http://rebind.test:{receiver.port}{path}")

    assert delivery.attempt(*sent) is None

    [request] = receiver.to(path)
    assert request.headers["Host"] == f"rebind.test:{receiver.port}"
    assert asked == ["rebind.test"]  # resolved once; the POST did not look the name up again
    assert attempts(sent[0].delivery_id)[0]["status"] == "success"


@pytest.fixture
def dripping_server() -> Iterator[tuple[int, list[str]]]:
    """A server that answers one byte every 0.2 s: in the status line, or in the body."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    modes: list[str] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                if modes and modes[0] == "body":
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                    answer = b"x" * 1000
                else:
                    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                for byte in answer:
                    try:
                        connection.sendall(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.2)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], modes
    listener.close()


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_a_server_that_drips_its_answer_cannot_hold_a_worker_past_the_timeout(
    dripping_server: tuple[int, list[str]], mode: str
) -> None:
    port, modes = dripping_server
    modes.append(mode)
    target = destination.check(f"http://127.0.0.1:{port}/drip")  # WEBHOOK_TIMEOUT is 1 s in the tests

    response = sender.post(target, b"{}", {"Content-Type": "application/json"})

    assert not response.ok
    assert response.error is not None and response.error.startswith("timeout after 1 s")
    assert response.duration_ms < 6000  # 1 s allowed (and a loaded machine's slack); a drip of 40 bytes takes 8 s


@pytest.fixture
def hostile() -> Iterator[HostileSubscriber]:
    server = HostileSubscriber()
    yield server
    server.stop()


@pytest.mark.parametrize("mode", MODES)
def test_a_chunked_answer_that_never_ends_cannot_hold_a_worker_past_the_timeout(
    hostile: HostileSubscriber, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "WEBHOOK_TIMEOUT", 3.0)  # longer than the 1 s between two trailer lines
    path = f"/{mode}/{unique('sender')}"
    target = destination.check(hostile.url(path))
    responses: list[sender.Response] = []
    thread = threading.Thread(target=lambda: responses.append(sender.post(target, b"{}", {})), daemon=True)

    thread.start()
    thread.join(30)  # without a bound on the whole exchange, it would run for hours

    assert not thread.is_alive(), f"the POST to a {mode} subscriber was still running after 30 s"
    [response] = responses
    assert not response.ok
    assert response.error is not None and response.error.startswith("timeout after 3 s"), response.error
    assert response.duration_ms < 7000  # 3 s allowed (and a loaded machine's slack); unbounded, hours
    wait_for(lambda: hostile.hung_up(path) == 1, 10, "the subscriber to see its connection closed")


def test_only_the_first_bytes_of_a_huge_answer_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    size = 20 * 1024 * 1024

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            try:
                for _ in range(size // 65536):
                    connection.sendall(b"a" * 65536)
            except OSError:
                pass  # the client stopped reading: what we want

    threading.Thread(target=serve, daemon=True).start()
    target = destination.check(f"http://127.0.0.1:{listener.getsockname()[1]}/huge")
    response = sender.post(target, b"{}", {})
    listener.close()

    assert response.ok
    assert response.body == "a" * 65536


@pytest.fixture
def https_server(tmp_path: Any) -> Iterator[tuple[int, Any, list[str], list[str]]]:
    """An HTTPS server on 127.0.0.1 whose certificate names partner.test; it keeps the SNI and Host."""
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import trustme

    authority = trustme.CA()
    names: list[str] = []
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hosts.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("partner.test").configure_cert(context)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    yield server.server_address[1], bundle, names, hosts
    server.shutdown()


def test_https_goes_to_the_checked_address_with_the_names_sni_and_certificate_check(
    https_server: tuple[int, Any, list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, bundle, names, hosts = https_server
    monkeypatch.setattr(destination, "resolve", lambda host, port: ["127.0.0.1"])
    monkeypatch.setattr(sender._session(), "verify", str(bundle))  # trust the test authority, nothing else

    response = sender.post(destination.check(f"https://partner.test:{port}/hook"), b"{}", {})

    assert response.ok, response.error
    assert names == ["partner.test"]  # TLS server name: the URL's host, not the address
    assert hosts == [f"partner.test:{port}"]

    wrong = sender.post(destination.check(f"https://elsewhere.test:{port}/hook"), b"{}", {})
    assert not wrong.ok
    assert "certificate" in (wrong.error or "").lower()  # the certificate is checked against the name


def test_a_cookie_a_subscriber_sets_is_never_sent_back() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    cookies: list[str | None] = []

    class SettingCookies(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            cookies.append(self.headers.get("Cookie"))
            self.send_response(200)
            self.send_header("Set-Cookie", "session=abc; Path=/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), SettingCookies)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name in ("first", "second"):  # two subscribers behind one address, as on shared hosting
            target = destination.check(f"http://127.0.0.1:{server.server_address[1]}/{name}")
            assert sender.post(target, b"{}", {"Content-Type": "application/json"}).ok
    finally:
        server.shutdown()
        server.server_close()
    assert cookies == [None, None]


def test_the_threads_of_a_worker_share_their_kept_alive_connections(connections: list[Any]) -> None:
    subscriber = Receiver()
    try:
        target = destination.check(subscriber.url("/ok/shared"))
        outcomes: list[bool] = []
        for _ in range(4):  # four threads, one after the other, as a worker's pool runs deliveries
            thread = threading.Thread(target=lambda: outcomes.append(sender.post(target, b"{}", {}).ok))
            thread.start()
            thread.join()
    finally:
        subscriber.stop()

    assert outcomes == [True] * 4
    assert [address for address in connections if address[1] == subscriber.port] == [("127.0.0.1", subscriber.port)]
