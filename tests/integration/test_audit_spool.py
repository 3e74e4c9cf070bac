"""The audit database out of reach while deliveries run: they still go out, and no audit
record is lost (the worker spools them on its disk and writes them when it is back)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from local.leads import unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from tasks import deliver_webhook
from tests.conftest import DB_NAME
from tests.integration.conftest import attempts, message_to, run_cli, subscriber_at
from tests.support.proxy import Proxy


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    between = Proxy(3306)
    yield between
    between.close()


def send(receiver: Receiver, queue: str) -> tuple[str, str]:
    path = f"/ok/{unique('spooled')}"
    delivery_id = str(uuid.uuid4())
    message = message_to(subscriber_at(receiver.url(path)), delivery_id=delivery_id)
    deliver_webhook.apply_async(kwargs={"delivery": message}, queue=queue)
    return delivery_id, path


def test_deliveries_go_out_while_the_audit_database_is_down_and_every_record_arrives_later(
    database: str, moto: object, receiver: Receiver, proxy: Proxy, logs: Path, tmp_path: Path
) -> None:
    queue, spool = unique("spool"), tmp_path / "spool"
    worker = Worker(
        logs / f"{queue}.log",
        {
            "SQS_QUEUE": queue,
            "AUDIT_DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:{proxy.port}/{DB_NAME}",
            "AUDIT_SPOOL_DIR": str(spool),
        },
    )
    try:
        warm_id, _ = send(receiver, queue)
        wait_for(lambda: attempts(warm_id), 30, "a delivery with the database up")

        proxy.cut()
        sent = [send(receiver, queue) for _ in range(3)]
        for _, path in sent:
            wait_for(partial(receiver.to, path), 30, "the POST while the database is down")
        wait_for(lambda: sum(len(p.read_text().splitlines()) for p in spool.rglob("*.jsonl")) == 3, 10, "3 spooled")
        assert all(attempts(delivery_id) == [] for delivery_id, _ in sent)
        assert "audit database unreachable, attempt kept in" in worker.output()

        proxy.restore()
        for delivery_id, _ in sent:
            wait_for(partial(attempts, delivery_id), 30, "the spooled record written")
    finally:
        worker.stop()

    for delivery_id, path in sent:
        [row] = attempts(delivery_id)
        assert row["status"] == "success"
        assert row["request_body"].encode() == receiver.to(path)[0].body
    assert list(spool.rglob("*.jsonl")) == []
    verified = run_cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
