"""The sender knows a timeout by its type, never by its message (issue 18, item 4).

A real loopback server answers, then stalls (or sends what it likes): the body is read as the
sender reads it (``_read_capped``), the socket's timeout set from what is left of the deadline.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import urllib3.exceptions

from tasks.sender import _read_capped, is_timeout


class Answering:
    """A loopback server that sends ``answer`` to the first request, then keeps the connection
    open without a byte more until ``stop`` (the client waits on a stalled socket)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.stopped = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            connection.sendall(self.answer)
            self.stopped.wait(30)

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[list[Answering]]:
    servers: list[Answering] = []
    yield servers
    for server in servers:
        server.stop()


def answer_of(serve: list[Answering], answer: bytes) -> requests.Response:
    """The streamed response of a POST to a loopback server answering ``answer`` and stalling."""
    server = Answering(answer)
    serve.append(server)
    session = requests.Session()
    session.trust_env = False
    return session.post(server.url, data=b"{}", stream=True, timeout=10)


def read(response: requests.Response) -> str:
    return _read_capped(response, 65536, time.monotonic() + 0.3)


def test_a_body_that_stalls_is_a_timeout(serve: list[Answering]) -> None:
    stalled = answer_of(serve, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)  # 90 never come
    with pytest.raises(requests.Timeout) as raised:
        read(stalled)
    assert isinstance(raised.value.__cause__, urllib3.exceptions.ReadTimeoutError)


def test_a_chunked_body_that_stalls_mid_size_line_is_a_timeout(serve: list[Answering]) -> None:
    stalled = answer_of(serve, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1")
    with pytest.raises(requests.Timeout):
        read(stalled)


OPEN = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"


def test_a_timeout_urllib3_wraps_in_words_other_than_timed_out_is_a_timeout(
    serve: list[Answering], monkeypatch: pytest.MonkeyPatch
) -> None:
    response = answer_of(serve, OPEN)

    def stalls(*_: object) -> bytes:  # as urllib3 wraps a socket timeout met inside http.client
        raise urllib3.exceptions.ProtocolError("Connection broken: the peer went quiet", TimeoutError())

    monkeypatch.setattr(response.raw, "read1", stalls)
    with pytest.raises(requests.Timeout):
        read(response)


def test_an_error_whose_words_say_timed_out_is_a_connection_error_not_a_timeout(
    serve: list[Answering], monkeypatch: pytest.MonkeyPatch
) -> None:
    response = answer_of(serve, OPEN)

    def broken(*_: object) -> bytes:  # urllib3 quotes a malformed chunk-size line: the subscriber's bytes
        raise urllib3.exceptions.ProtocolError("Connection broken: InvalidChunkLength(got length b'timed out')")

    monkeypatch.setattr(response.raw, "read1", broken)
    with pytest.raises(requests.ConnectionError) as raised:
        read(response)
    assert not isinstance(raised.value, requests.Timeout)


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("the socket said nothing"),
        TimeoutError("read"),
        urllib3.exceptions.ReadTimeoutError(None, "/hook", "stalled"),  # type: ignore[arg-type]
        urllib3.exceptions.ProtocolError("Connection broken", TimeoutError("stalled")),
        requests.ConnectionError(urllib3.exceptions.ProtocolError("broken", TimeoutError())),
    ],
    ids=["builtin", "socket", "urllib3-read", "wrapped-in-protocol-error", "wrapped-twice"],
)
def test_a_timeout_is_known_by_its_type_whatever_its_message(error: BaseException) -> None:
    assert is_timeout(error)


@pytest.mark.parametrize(
    "error",
    [
        urllib3.exceptions.ProtocolError("Connection broken: InvalidChunkLength(got length b'timed out')"),
        ConnectionResetError("timed out, says the peer"),
        OSError("Read timed out."),
    ],
    ids=["chunk-length", "reset", "oserror"],
)
def test_an_error_that_only_says_timed_out_is_not_a_timeout(error: BaseException) -> None:
    assert not is_timeout(error)


def test_an_error_caused_by_a_timeout_is_a_timeout() -> None:
    try:
        try:
            raise TimeoutError
        except TimeoutError as timeout:
            raise urllib3.exceptions.ProtocolError("Connection broken") from timeout
    except urllib3.exceptions.ProtocolError as wrapped:
        assert is_timeout(wrapped)
