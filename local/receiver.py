"""The sample subscriber: verifies each request's signature and prints what it received.

It is also the reference for partners: verify the raw body with the official Standard
Webhooks library (``pip install standardwebhooks``; there is one for most languages), which
also refuses a request whose ``webhook-timestamp`` is more than 5 minutes away from now (a
replay), and drop a ``webhook-id`` you have already processed. ``/hooks/NAME`` answers 200 once
the signature checks out; ``/failing/NAME`` always answers 503 (so the demo shows a retry being
scheduled).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from standardwebhooks import Webhook, WebhookVerificationError


def secrets() -> dict[str, str]:
    """Secrets the demo wrote when it configured the subscribers (name -> secret)."""
    path = Path(os.environ["LOCAL_SECRETS_FILE"])
    return dict(json.loads(path.read_text())) if path.exists() else {}


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """True when ``webhook-signature`` holds a signature by our secret (one of two during a
    secret rotation) and ``webhook-timestamp`` is within 5 minutes of now.

    The key is the secret's UTF-8 bytes; ``Webhook("whsec_…")``, with the form that
    ``webhooks configure`` prints on its second line, is the same key.
    """
    try:
        Webhook(secret.encode("utf-8")).verify(body, dict(headers), json_parse=False)
    except (WebhookVerificationError, ValueError):  # ValueError: a malformed signature header
        return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[set[str]] = set()  # webhook-ids already received (shared by the threads)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        kind, _, name = self.path.strip("/").partition("/")
        secret = secrets().get(name)
        signed = bool(secret) and verify(secret or "", body, dict(self.headers.items()))
        delivery = self.headers.get("webhook-id", "?")
        lead = json.loads(body).get("body", {}) if signed else {}
        attempt = f"{delivery}/{lead.get('retry')}"  # a retry is not a duplicate; the same attempt twice is
        duplicate = attempt in self.seen
        self.seen.add(attempt)
        status = 503 if kind == "failing" else 200 if signed else 401
        sys.stdout.write(  # one write per line: requests are served by several threads
            f"{name}: signature {'verified' if signed else 'INVALID'}, webhook-id {delivery}"
            f"{' (duplicate)' if duplicate else ''}, lead {lead.get('id')} {lead.get('lead_type')} "
            f"retry {lead.get('retry')}, answering {status}\n"
        )
        sys.stdout.flush()
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


def main() -> None:
    host = os.environ.get("LOCAL_RECEIVER_HOST", "127.0.0.1")
    port = int(os.environ.get("LOCAL_RECEIVER_PORT", "8765"))
    print(f"sample subscriber listening on http://{host}:{port}", flush=True)
    ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
