"""The sample subscriber: verifies each request's signature and prints what it received.

It is also the reference for partners: verify the raw body with the official Standard
Webhooks library (``pip install standardwebhooks``; there is one for most languages), which
also refuses a request whose ``webhook-timestamp`` is more than 5 minutes away from now (a
replay), and drop a ``webhook-id`` you have already processed. ``/hooks/NAME`` answers 200 once
the signature checks out; ``/failing/NAME`` always answers 503 (so the demo shows a retry being
scheduled).

It knows the secret of the subscriber NAME in its path: the demo's (``LOCAL_SECRETS_FILE``), and,
for a subscriber of yours, the one in the database that it shares with ``make run``
(DATABASE_URL, opened with WEBHOOK_ENCRYPTION_KEY): configure one with
``--url http://127.0.0.1:8765/hooks/NAME``, NAME its own name, and its signatures check out. (A
partner keeps the secret ``webhooks configure`` gave it; reading the platform's database is a
convenience of this sample alone.)
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from standardwebhooks import Webhook, WebhookVerificationError

from webhooks.text import printable


def secrets() -> dict[str, str]:
    """Secrets the demo wrote when it configured the subscribers (name -> secret)."""
    path = Path(os.environ["LOCAL_SECRETS_FILE"])
    return dict(json.loads(path.read_text())) if path.exists() else {}


def secrets_of(name: str) -> list[str]:
    """The secrets that may sign a request to the subscriber NAME: the demo's, else those in the
    database shared with ``make run`` (the current one, and the previous one during a rotation's
    grace period); none when neither knows NAME."""
    demo = secrets().get(name)
    if demo:
        return [demo]
    try:
        from producer import subscribers
        from webhooks import clock, secretbox
        from webhooks.errors import WebhookError

        subscriber = subscribers.named(name)
        sealed = [subscriber.sealed_secret]
        until = subscriber.previous_secret_until
        if subscriber.previous_sealed_secret and until is not None and until > clock.utcnow():
            sealed.append(subscriber.previous_sealed_secret)
        return [secretbox.unseal(each) for each in sealed]
    except WebhookError:  # no such subscriber, a key that does not open its secret
        return []
    except Exception:  # no database here (DATABASE_URL unset or unreachable)
        logging.getLogger(__name__).debug("no secret of %s from the database", name, exc_info=True)
        return []


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
        known = secrets_of(name)
        signed = any(verify(secret, body, dict(self.headers.items())) for secret in known)
        delivery = self.headers.get("webhook-id", "?")
        lead = described(body)
        attempt = f"{delivery}/{lead['retry']}"  # a retry is not a duplicate; the same attempt twice is
        duplicate = lead["retry"] != "?" and attempt in self.seen
        self.seen.add(attempt)
        status = 503 if kind == "failing" else 200 if signed else 401
        if signed:
            verdict = "signature verified"
        elif known:
            verdict = "signature INVALID (not signed by its secret, or webhook-timestamp more than 5 minutes away)"
        else:
            verdict = (
                f"signature INVALID: no secret known for {name!r} (the sample receiver knows the demo's subscribers"
                " and those of the database it shares with make run: configure yours with"
                " --url http://HOST:PORT/hooks/<its name>)"
            )
        line = (
            f"{name}: {verdict}, webhook-id {delivery}{' (duplicate)' if duplicate else ''}, "
            f"lead {lead['id']} {lead['lead_type']} retry {lead['retry']}, answering {status}"
        )
        sys.stdout.write(printable(line, one_line=True) + "\n")  # one write a line: several threads serve
        sys.stdout.flush()
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


def described(body: bytes) -> dict[str, str]:
    """The lead id, lead type and retry a request's body gives ("?" for what it lacks), whether
    or not its signature checks out (what an unverified request claims: shown, never trusted)."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    lead = document.get("body") if isinstance(document, dict) else None
    lead = lead if isinstance(lead, dict) else {}
    return {key: str(lead[key]) if lead.get(key) is not None else "?" for key in ("id", "lead_type", "retry")}


def main() -> None:
    host = os.environ.get("LOCAL_RECEIVER_HOST", "127.0.0.1")
    port = int(os.environ.get("LOCAL_RECEIVER_PORT", "8765"))
    print(
        f"sample subscriber listening on http://{host}:{port}: /hooks/NAME answers 200 to requests signed with the"
        " secret of NAME (the demo's subscribers, and those of the database shared with make run)",
        flush=True,
    )
    ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
