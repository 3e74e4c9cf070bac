"""Soak: leads x 3 subscribers failing 30 % of requests at random, while the worker is
SIGKILLed at random intervals and restarted. At the end every delivery must have
succeeded (or be abandoned by its schedule, or wait for a scheduled retry) with its audit
records: ``lost`` counts those that are none of these, and must be 0.

    make soak                      # 40 leads, 120 deliveries
    .venv/bin/python -m bench.soak --leads 100 --seed 7

Needs MariaDB at 127.0.0.1:3306 (a database is created and dropped); moto's SQS server
and a loopback receiver are started here. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

RUN = uuid.uuid4().hex[:8]
DB = f"webhooks_soak_{RUN}"


def configure_environment(port: int) -> None:
    os.environ.update(
        {
            "BROKER_URL": f"sqs://soak:soak@127.0.0.1:{port}",
            "DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:3306/{DB}",
            "WEBHOOK_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
            "SQS_QUEUE": f"soak-{RUN}",
            "SQS_REGION": "us-east-1",
            "SQS_VISIBILITY_TIMEOUT": "5",
            "SQS_WAIT_TIME_SECONDS": "1",
            "SQS_POLLING_INTERVAL": "0.1",
            "SQS_MAX_DELAY": "1",
            "WEBHOOK_RETRY_SCHEDULE": "1s,2s,3s,4s,5s,6s",
            "WEBHOOK_TIMEOUT": "2",
            "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "LOG_LEVEL": "INFO",
        }
    )
    os.environ.pop("AUDIT_DATABASE_URL", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=10, help="give up after this long")
    options = parser.parse_args()

    from local.services import Moto, Worker, free_port, mysql

    port = free_port()
    configure_environment(port)
    logs = Path(tempfile.mkdtemp(prefix="soak-"))
    mysql(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    moto = Moto(port, logs / "moto.log")
    try:
        report = soak(options.leads, options.seed, options.minutes, logs, Worker)
    finally:
        moto.stop()
        from records import database

        database.engine(os.environ["DATABASE_URL"]).dispose()
        mysql(f"DROP DATABASE IF EXISTS {DB}")
    print(json.dumps(report))
    raise SystemExit(0 if report["lost"] == 0 and report["foreign_webhook_ids"] == 0 else 1)


def soak(leads: int, seed: int, minutes: float, logs: Path, worker_class: type) -> dict[str, object]:
    from sqlalchemy import select

    from local.leads import a_lead
    from local.recorder import Receiver
    from producer import subscribers
    from producer.dispatch import dispatch_all
    from records import database, migrations
    from records.models import DeliveryAttempt

    rng = random.Random(seed)
    migrations.upgrade()
    receiver = Receiver(seed)
    shop = "soak-shop"
    for index in range(3):
        subscribers.configure(f"soak-{index}", receiver.url(f"/random/30/soak-{index}"), ["call"], [shop])
    ids = [delivery.delivery_id for delivery in dispatch_all([a_lead(shop, "call") for _ in range(leads)]).deliveries]
    print(f"{leads} leads dispatched: {len(ids)} deliveries; logs in {logs}", flush=True)

    def rows() -> dict[str, list[DeliveryAttempt]]:
        found: dict[str, list[DeliveryAttempt]] = {delivery_id: [] for delivery_id in ids}
        with database.audit() as session:
            for row in session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)):
                found.setdefault(row.delivery_id, []).append(row)
        return found

    def finished(by_delivery: dict[str, list[DeliveryAttempt]]) -> int:
        return sum(
            1 for attempts in by_delivery.values() if any(a.status in {"success", "abandoned"} for a in attempts)
        )

    kills = 0
    started = time.monotonic()
    worker = worker_class(logs / "worker-0.log")
    try:
        while finished(rows()) < len(ids) and time.monotonic() - started < minutes * 60:
            time.sleep(rng.uniform(1, 4))
            worker.kill()
            kills += 1
            worker = worker_class(logs / f"worker-{kills}.log")
            print(
                f"  {time.monotonic() - started:5.0f} s: worker killed and restarted ({kills}); "
                f"{finished(rows())}/{len(ids)} finished",
                flush=True,
            )
        while finished(rows()) < len(ids) and time.monotonic() - started < minutes * 60:
            time.sleep(1)  # the last retries, undisturbed
    finally:
        worker.stop()
    elapsed = time.monotonic() - started

    by_delivery = rows()
    succeeded = sum(1 for a in by_delivery.values() if any(x.status == "success" for x in a))
    abandoned = sum(
        1
        for a in by_delivery.values()
        if any(x.status == "abandoned" for x in a) and not any(x.status == "success" for x in a)
    )
    pending = sum(
        1
        for a in by_delivery.values()
        if a and not any(x.status in {"success", "abandoned"} for x in a) and a[-1].next_retry_at is not None
    )
    lost = len(ids) - succeeded - abandoned - pending
    posts = Counter(request.headers.get("webhook-id") for request in receiver.requests)
    recorded = sum(len(attempts) for attempts in by_delivery.values())
    report: dict[str, object] = {
        "deliveries": len(ids),
        "succeeded": succeeded,
        "abandoned_by_schedule": abandoned,
        "pending_retry": pending,
        "lost": lost,
        "worker_kills": kills,
        "posts": sum(posts.values()),
        "attempts_recorded": recorded,
        "duplicate_posts": sum(posts.values()) - recorded,
        "foreign_webhook_ids": sum(count for webhook_id, count in posts.items() if webhook_id not in by_delivery),
        "seconds": round(elapsed, 1),
    }
    receiver.stop()
    print("\n".join(f"{key:>22}  {value}" for key, value in report.items()))
    return report


if __name__ == "__main__":
    main()
