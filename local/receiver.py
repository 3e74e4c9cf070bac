"""The sample subscriber: verifies each request's signatures and prints what it received.

It is also the reference for partners: read the raw body, recompute the HMAC with your
secret, compare in constant time, drop a ``webhook-id`` you have already processed.
``/hooks/NAME`` answers 200 once the signature checks out; ``/failing/NAME`` always
answers 503 (so the demo shows a retry being scheduled).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar


def secrets() -> dict[str, str]:
    """Secrets the demo wrote when it configured the subscribers (name -> secret)."""
    path = Path(os.environ["LOCAL_SECRETS_FILE"])
    return dict(json.loads(path.read_text())) if path.exists() else {}


def verify(secret: str, body: bytes, header: str) -> bool:
    """True when one of the header's signatures (two during a secret rotation) is ours."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, signature.strip()) for signature in header.split(","))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[set[str]] = set()  # webhook-ids already received (shared by the threads)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        kind, _, name = self.path.strip("/").partition("/")
        secret = secrets().get(name)
        signed = bool(secret) and verify(secret or "", body, self.headers.get("X-Hub-Signature-256", ""))
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
