"""The demo: configure two sample subscribers, dispatch sample leads, show the audit.

The sample leads go to the demo's own subscribers only (those above, at the sample receiver),
never to a subscriber of the user's that the database also holds, even one wanting shop1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import func, select

import settings
from producer import subscribers
from producer.dispatch import dispatch_all
from records import database
from records.models import DeliveryAttempt, Subscriber
from tasks import signature
from webhooks import clock

RECEIVER = os.environ.get("LOCAL_RECEIVER_URL") or f"http://127.0.0.1:{os.environ.get('LOCAL_RECEIVER_PORT', '8765')}"
SUBSCRIBERS = {
    # name: (path, lead types)
    "demo-partner": ("/hooks/demo-partner", ["facebook_form", "instagram_form", "website_form"]),
    "demo-failing": ("/failing/demo-failing", ["instagram_form"]),
}


def wait_for(url: str, what: str) -> None:
    """Wait until something listens at the URL's host and port."""
    host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80
    for _ in range(600):
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"demo: {what} did not start at {host}:{port}")


def configure() -> None:
    """Create the sample subscribers (once) and hand their secrets to the sample receiver."""
    path = Path(os.environ["LOCAL_SECRETS_FILE"])
    known = json.loads(path.read_text()) if path.exists() else {}
    existing = {subscriber.name: subscriber.url for subscriber in subscribers.all_subscribers()}
    for name, (hook, lead_types) in SUBSCRIBERS.items():
        if name in existing and existing[name] != RECEIVER + hook:
            raise SystemExit(
                f"demo: {name} exists with the URL {existing[name]}, not the sample receiver's; "
                "it is not the demo's: rename it or use another database (DATABASE_URL)"
            )
        if name in existing and name in known:
            continue
        if name in existing:
            raise SystemExit(f"demo: {name} exists but its secret is not in {path}; delete the database to start over")
        known[name] = subscribers.configure(name, RECEIVER + hook, lead_types, ["shop1"])
        print(f'WebhookConfig successfully created with secret "{known[name]}" for {name}', flush=True)
        print(f"Standard Webhooks form of the same secret: {signature.whsec(known[name])}", flush=True)
    path.write_text(json.dumps(known))
    path.chmod(0o600)


def sample_leads() -> list[dict[str, object]]:
    now = clock.now().isoformat(timespec="seconds")
    common = {"created_at": now, "geolid_shop_id": "shop1", "customer_shop_id": "XXX", "is_geolid": True}
    return [
        {**common, "id": str(uuid.uuid4()), "lead_type": "facebook_form", "first_name": "John", "last_name": "Doe"},
        {**common, "id": str(uuid.uuid4()), "lead_type": "instagram_form", "email": "jane@example.com"},
        {**common, "id": str(uuid.uuid4()), "lead_type": "website_form", "city": "La Clusaz", "zip_code": "74220"},
    ]


def event_receivers() -> int:
    """SQS queues subscribed to the SNS topic of Celery's events (Flower's, once it listens)."""
    from tasks import app

    with app.connection_for_write() as connection:
        sns = connection.default_channel.fanout.get_client()
        for topic in sns.list_topics().get("Topics", []):
            if topic["TopicArn"].endswith(":celeryev"):
                return len(sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"]).get("Subscriptions", []))
    return 0


def wait_for_flower() -> None:
    """With WORKER_EVENTS on, dispatch once Flower listens, so that it shows the demo's tasks."""
    deadline = time.monotonic() + 30
    while not event_receivers():
        if time.monotonic() > deadline:
            print("demo: Flower does not listen to events yet; it will miss the demo's tasks", flush=True)
            return
        time.sleep(0.5)


def attempts_of(ids: list[str]) -> int:
    with database.audit() as session:
        return int(session.scalar(select(func.count()).where(DeliveryAttempt.delivery_id.in_(ids))) or 0)


def main() -> None:
    wait_for("http://" + settings.BROKER_URL.partition("@")[2], "the SQS server")
    wait_for(RECEIVER, "the sample subscriber")
    configure()
    if settings.WORKER_EVENTS:
        wait_for_flower()
    enqueued = dispatch_all(sample_leads(), to=SUBSCRIBERS)  # never to the user's own subscribers
    for item in enqueued.deliveries:
        print(f"enqueued delivery {item.delivery_id} lead {item.lead_id} to {item.webhook}", flush=True)
    ids = [item.delivery_id for item in enqueued.deliveries]
    deadline = time.monotonic() + 120
    while attempts_of(ids) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    with database.audit() as session:
        rows = session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(ids)))
        for row in rows:
            following = f", next retry at {row.next_retry_at:%H:%M:%S} UTC" if row.next_retry_at else ""
            print(f"audit: {row.webhook} retry {row.retry} {row.status} HTTP {row.http_status}{following}", flush=True)
    with database.platform() as session:
        count = session.scalar(select(func.count()).select_from(Subscriber))
    print(
        f"\nReady. {count} subscribers, {len(ids)} deliveries.\n"
        f"  Flower:      http://127.0.0.1:{os.environ.get('LOCAL_FLOWER_PORT', '5555')}\n"
        "  Another terminal, in this folder:  set -a; . ./local.env; set +a\n"
        "  then:        .venv/bin/webhooks deliveries | show ID | evidence LEAD_ID | dispatch FILE | health\n"
        "  Your own subscriber NAME, verified by the sample receiver (it reads NAME's secret from this database):\n"
        f"               .venv/bin/webhooks configure NAME --url {RECEIVER}/hooks/NAME"
        " --lead-type call --erp-shop-id S\n"
        "Ctrl-C stops everything.",
        flush=True,
    )
    signal.pause()  # honcho stops every process when one exits: stay until Ctrl-C


if __name__ == "__main__":
    main()
