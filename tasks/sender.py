"""One HTTP POST to a subscriber, with its outcome measured; never raises for the network."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import requests

import settings

_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per thread (a requests.Session is not thread-safe)."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False  # no proxy or netrc from the environment decides where a lead goes
        _local.session = session
    return session


@dataclass(frozen=True)
class Response:
    """What came back: an HTTP status and body, or the error that stood in their way."""

    http_status: int | None
    body: str | None
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.error is None and self.http_status is not None and 200 <= self.http_status < 300


def post(url: str, body: bytes, headers: Mapping[str, str]) -> Response:
    """POST ``body``; a redirect is not followed, a non-2xx answer is reported as an error."""
    started = time.monotonic()
    try:
        with _session().post(
            url,
            data=body,
            headers=dict(headers),
            timeout=(settings.WEBHOOK_TIMEOUT, settings.WEBHOOK_TIMEOUT),
            allow_redirects=False,
            stream=True,
        ) as answer:
            text = _read_capped(answer, settings.WEBHOOK_RESPONSE_MAX_BYTES)
            status = answer.status_code
    except requests.Timeout as error:
        return Response(None, None, f"timeout: {error}", _since(started))
    except requests.RequestException as error:
        return Response(None, None, f"connection error: {error}", _since(started))
    error_text = None
    if not 200 <= status < 300:
        error_text = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    return Response(status, text, error_text, _since(started))


def _read_capped(answer: requests.Response, limit: int) -> str:
    kept = bytearray()
    for chunk in answer.iter_content(chunk_size=8192):
        kept += chunk
        if len(kept) >= limit:
            break
    return bytes(kept[:limit]).decode("utf-8", errors="replace")


def _since(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
