"""One HTTP POST to a subscriber, with its outcome measured; never raises for the network.

The connection goes to the address ``tasks.destination`` checked (no second DNS lookup),
with the original Host header and TLS server name. The whole exchange — connect, send, the
status line and headers, the body, a chunked body's size lines and trailers — fits in
``WEBHOOK_TIMEOUT``: at the deadline the socket is shut down, whatever is being read, so a
server that drips its answer byte by byte, or never ends it, cannot hold a worker longer.
At most ``WEBHOOK_RESPONSE_MAX_BYTES`` of the answer are read.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import Timeout

import settings
from tasks.destination import Destination

_local = threading.local()


class _Alarm:
    """One armed deadline: ``expire`` runs at ``deadline`` unless cancelled first."""

    __slots__ = ("cancelled", "deadline", "expire")

    def __init__(self, deadline: float, expire: Callable[[], None]) -> None:
        self.deadline, self.expire, self.cancelled = deadline, expire, False

    def __lt__(self, other: _Alarm) -> bool:
        return self.deadline < other.deadline


class _Watchdog:
    """One thread per process fires every request's deadline.

    A ``threading.Timer`` per request cost a thread's creation, start and exit on every
    delivery (about 1.4 ms of CPU, measured). Here arming is a heap push. The thread sleeps
    until the earliest deadline not cancelled, and is woken by ``arm`` only when it sleeps
    without one (nothing armed): every request has the same timeout, so a new deadline
    never comes first. Cancelled alarms are dropped when the thread next wakes. Cancelling
    takes the lock that firing takes: once ``cancel`` returns, its ``expire`` does not run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._alarms: list[_Alarm] = []
        self._wakes_at: float | None = None  # when the thread wakes up next; None: when woken
        self._pid: int | None = None  # the process whose thread runs (a forked child starts its own)

    def arm(self, deadline: float, expire: Callable[[], None]) -> _Alarm:
        alarm = _Alarm(deadline, expire)
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._alarms, self._wakes_at = os.getpid(), [], None
                threading.Thread(target=self._run, name="webhook-deadlines", daemon=True).start()
            heapq.heappush(self._alarms, alarm)
            if self._wakes_at is None or deadline < self._wakes_at:
                self._wakes_at = deadline
                self._changed.notify()
        return alarm

    def cancel(self, alarm: _Alarm) -> None:
        with self._lock:
            alarm.cancelled = True

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                while self._alarms and (self._alarms[0].deadline <= now or self._alarms[0].cancelled):
                    alarm = heapq.heappop(self._alarms)
                    if not alarm.cancelled:
                        alarm.cancelled = True
                        with contextlib.suppress(Exception):  # never let the watchdog die
                            alarm.expire()
                self._wakes_at = self._alarms[0].deadline if self._alarms else None
                self._changed.wait(None if self._wakes_at is None else self._wakes_at - now)


_watchdog = _Watchdog()


class _Exchange:
    """One request's deadline, and whether the watchdog cut the exchange off at it."""

    __slots__ = ("deadline", "expired")

    def __init__(self, deadline: float) -> None:
        self.deadline, self.expired = deadline, False


class _Deadline:
    """Mixed into urllib3's connections: past the deadline, the socket is shut down.

    Socket timeouts bound each read, not their sum, and one read of a chunked body can run
    any number of them (a chunk-size line dripping one byte at a time, trailer lines without
    end). So the deadline is armed when the request starts and stays armed until the
    connection goes back to the pool or is closed: the status line, the headers and the
    whole body are read under it. Disarming comes first, so a connection the pool hands to
    another thread never carries this exchange's alarm.
    """

    sock: socket.socket | None
    _alarm: _Alarm | None = None
    _exchange: _Exchange | None = None

    def request(self, *args: Any, **kwargs: Any) -> None:
        self.disarm()
        exchange: _Exchange | None = getattr(_local, "exchange", None)
        if exchange is not None:
            self._exchange = exchange
            self._alarm = _watchdog.arm(exchange.deadline, partial(self._expire, exchange))
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        except BaseException:
            self.disarm()
            raise

    def close(self) -> None:
        self.disarm()
        super().close()  # type: ignore[misc]

    def disarm(self) -> bool:
        """Cancel the deadline; True when it had already cut the exchange off."""
        expired = self._exchange is not None and self._exchange.expired
        if self._alarm is not None:
            _watchdog.cancel(self._alarm)
        self._alarm = self._exchange = None
        return expired

    def _expire(self, exchange: _Exchange) -> None:
        exchange.expired = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


class _HTTPConnection(_Deadline, HTTPConnection):
    pass


class _HTTPSConnection(_Deadline, HTTPSConnection):
    pass


class _Returning:
    """Mixed into urllib3's pools: a connection is disarmed as it comes back (the body read, or
    the response closed), and closed if its deadline cut it off (its socket is shut down)."""

    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _Deadline) and conn.disarm():
            conn.close()
        super()._put_conn(conn)  # type: ignore[misc]


class _HTTPPool(_Returning, HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(_Returning, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class PinnedAdapter(HTTPAdapter):
    """Connects to the URL's (already checked) IP while TLS checks the Host header's name."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[Any, Any]:
        host_params, typed_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        pool_kwargs: dict[str, Any] = dict(typed_kwargs)
        if host_params["scheme"] == "https":
            name = _server_name(request.headers["Host"])
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return dict(host_params), pool_kwargs


def _server_name(host_header: str | bytes) -> str:
    host = host_header.decode() if isinstance(host_header, bytes) else host_header
    if host.startswith("["):
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# Kept-alive connections: one pool per subscriber address (the least recently used closed
# beyond this many), each keeping at most this many idle connections for the next request.
KEEPALIVE_ADDRESSES = 100
KEEPALIVE_PER_ADDRESS = 256

_session_lock = threading.Lock()
_shared: tuple[int, requests.Session] | None = None


def _session() -> requests.Session:
    """One session per process, shared by its threads: its pinned adapters' kept-alive
    connections serve every thread (urllib3's pools are thread-safe; only the adapters are
    used, not the session's request machinery). A session per thread made each of a worker's
    64 threads open its own connection to every subscriber."""
    global _shared
    shared = _shared
    if shared is not None and shared[0] == os.getpid():
        return shared[1]
    with _session_lock:
        if _shared is None or _shared[0] != os.getpid():  # a forked child opens its own
            session = requests.Session()
            session.trust_env = False  # no proxy or netrc from the environment decides where a lead goes
            for scheme in ("http://", "https://"):
                session.mount(scheme, PinnedAdapter(KEEPALIVE_ADDRESSES, KEEPALIVE_PER_ADDRESS))
            _shared = (os.getpid(), session)
        return _shared[1]


# What a requests.Session adds to every request (User-Agent and Accept-Encoding are replaced)
_SESSION_HEADERS = requests.utils.default_headers()


def _headers(headers: Mapping[str, str], destination: Destination) -> CaseInsensitiveDict[str]:
    """The headers sent: a session's defaults, the attempt's, the Host of the URL, no compression."""
    merged = CaseInsensitiveDict(_SESSION_HEADERS)
    merged.update(headers)
    merged.update({"Host": destination.host_header, "Accept-Encoding": "identity"})
    return merged


@dataclass(frozen=True)
class Response:
    """What came back: an HTTP status and body, or the error that stood in their way."""

    http_status: int | None
    body: str | None
    error: str | None
    duration_ms: float
    retry_after: str | None = None  # the answer's Retry-After header, as sent

    @property
    def ok(self) -> bool:
        return self.error is None and self.http_status is not None and 200 <= self.http_status < 300


def post(destination: Destination, body: bytes, headers: Mapping[str, str]) -> Response:
    """POST ``body``; a redirect is not followed, a non-2xx answer is reported as an error."""
    started = time.monotonic()
    exchange = _local.exchange = _Exchange(started + settings.WEBHOOK_TIMEOUT)
    try:
        # Prepared and sent through the pinned adapter, not Session.post: the session's settings
        # merge (cookies, hooks, proxies, params) costs 0.1 ms a request on Python 3.11 (requests'
        # runtime Protocol checks), for settings that do not apply here; and no cookie a
        # subscriber sets is sent back, not even to another subscriber behind the same address.
        request = requests.PreparedRequest()
        request.prepare(method="POST", url=destination.pinned_url, headers=_headers(headers, destination), data=body)
        session = _session()
        timeout = Timeout(total=settings.WEBHOOK_TIMEOUT, connect=settings.WEBHOOK_TIMEOUT)
        with session.get_adapter(destination.pinned_url).send(
            request,
            stream=True,
            timeout=cast(Any, timeout),
            verify=True if session.verify is None else session.verify,  # certificates checked (tests add a CA)
            cert=None,
            proxies={},
        ) as answer:
            text = _read_capped(answer, settings.WEBHOOK_RESPONSE_MAX_BYTES, exchange.deadline)
            status = answer.status_code
            retry_after = answer.headers.get("Retry-After")
        if exchange.expired:  # cut off at the deadline: what was read may end early, without an error
            raise requests.Timeout("the response was still arriving at the deadline")
    except requests.RequestException as error:
        if isinstance(error, requests.Timeout) or exchange.expired or time.monotonic() >= exchange.deadline:
            return Response(None, None, f"timeout after {settings.WEBHOOK_TIMEOUT:g} s: {error}", _since(started))
        return Response(None, None, f"connection error: {error}", _since(started))
    finally:
        _local.exchange = None
    error_text = None
    if not 200 <= status < 300:
        error_text = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    return Response(status, text, error_text, _since(started), retry_after)


def _read_capped(answer: requests.Response, limit: int, deadline: float) -> str:
    """Read at most ``limit`` bytes, each read bounded by what is left of the deadline."""
    kept = bytearray()
    while len(kept) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise requests.Timeout("the response was still arriving at the deadline")
        # Looked up at each read: once the body is read, urllib3 gives the connection back to
        # the pool, which the threads share; its socket is then another request's to time.
        sock = getattr(getattr(answer.raw, "connection", None), "sock", None)
        if sock is not None:
            sock.settimeout(left)
        try:
            chunk = answer.raw.read1(min(8192, limit - len(kept)))  # returns what has arrived
        except Exception as error:  # urllib3 wraps socket timeouts in its own errors
            if is_timeout(error):
                raise requests.Timeout(str(error)) from error
            raise requests.ConnectionError(str(error)) from error
        if not chunk:
            break
        kept += chunk
    return bytes(kept).decode("utf-8", errors="replace")


#: What a timeout is, whoever raised it: the socket's (socket.timeout is TimeoutError), urllib3's
#: (ReadTimeoutError, ConnectTimeoutError) and requests' own.
TIMEOUTS: tuple[type[BaseException], ...] = (TimeoutError, urllib3.exceptions.TimeoutError, requests.Timeout)


def is_timeout(error: BaseException) -> bool:
    """Whether ``error`` is a timeout or wraps one, known by type (never by its message, which a
    subscriber's bytes can make say anything: a chunk-size line reading "timed out"). urllib3
    wraps a socket timeout in ReadTimeoutError, or in a ProtocolError whose arguments hold it;
    the chain (``__cause__``, ``__context__``) and the arguments are followed."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TIMEOUTS):
            return True
        linked = (current.__cause__, current.__context__, *current.args)
        pending.extend(each for each in linked if isinstance(each, BaseException))
    return False


def _since(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
