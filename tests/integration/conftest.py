from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner, Result

from local.services import BIN, ROOT, mysql

# Longer than the session worker's SUBSCRIBER_CACHE_SECONDS (tests/conftest.py): after this long,
# its snapshot of the subscribers was loaded after a change the test just made.
CACHE_SECONDS = 1.5


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class Subscription:
    name: str
    secret: str
    shop: str
    url: str
    whsec: str  # the same secret in Standard Webhooks form, as `configure` prints it
    id: int = 0


def subscriber_at(url: str, lead_types: Sequence[str] = ("facebook_form",)) -> Subscription:
    """A subscriber configured in the platform database (without the CLI), for tests that build
    their own messages."""
    from local.leads import unique
    from producer import subscribers
    from tasks import signature

    name, shop = unique("sub"), unique("shop")
    secret = subscribers.configure(name, url, lead_types, [shop])
    return Subscription(name, secret, shop, url, signature.whsec(secret), subscribers.named(name).id)


def message_to(subscription: Subscription, **fields: Any) -> dict[str, Any]:
    """A sealed delivery message of a fresh lead to ``subscription`` (``fields`` override)."""
    from local.leads import a_lead
    from tests.support.factories import a_message

    values = {"lead": a_lead(subscription.shop), **fields}
    built: dict[str, Any] = a_message(subscriber_id=subscription.id, webhook=subscription.name, **values).sealed()
    return built


Cli = Callable[..., Result]


@pytest.fixture
def cli(database: str) -> Cli:
    """Run the ``webhooks`` CLI in this process (``cli("list", "--json")``)."""
    from producer.cli import main

    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(main, list(args), input=input)

    return run


@pytest.fixture
def subscribe(cli: Cli) -> Callable[..., Subscription]:
    """Configure a subscriber with a unique name and shop id through the CLI."""
    from local.leads import unique

    def make(url: str, lead_types: Sequence[str] = ("facebook_form",), shop: str | None = None) -> Subscription:
        name, shop = unique("sub"), shop or unique("shop")
        args = ["configure", name, "--url", url, "--erp-shop-id", shop]
        for lead_type in lead_types:
            args += ["--lead-type", lead_type]
        result = cli(*args)
        assert result.exit_code == 0, result.output
        match = re.fullmatch(
            r'WebhookConfig successfully created with secret "([0-9a-f-]{36})"\n'
            r"Standard Webhooks form of the same secret: (whsec_[A-Za-z0-9+/]+=*)\n",
            result.output,
        )
        assert match, result.output
        from producer import subscribers

        return Subscription(name, match.group(1), shop, url, match.group(2), subscribers.named(name).id)

    return make


@pytest.fixture
def audit_db(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An audit database of this test's own, at the newest schema, set as AUDIT_DATABASE_URL.

    Tests that tamper with the trail use one, so the session's database stays intact.
    """
    from alembic import command

    import settings
    from records import database as db
    from records import migrations

    name = f"{database.rsplit('/', 1)[1]}_a{uuid.uuid4().hex[:8]}"
    url = f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    mysql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    command.upgrade(migrations.config(url), "head")
    monkeypatch.setattr(settings, "AUDIT_DATABASE_URL", url)
    yield url
    db.engine(url).dispose()
    mysql(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address this process tries to connect to from now on."""
    import socket

    opened: list[Any] = []
    real = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        opened.append(address)
        real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return opened


def run_cli(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``webhooks`` console script in its own process."""
    return subprocess.run(
        [str(BIN / "webhooks"), *args],
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=120,
    )


def attempts(delivery_id: str) -> list[dict[str, Any]]:
    """The audit rows of one delivery, oldest first, every column."""
    from sqlalchemy import select

    from records import database
    from records.models import DeliveryAttempt

    with database.audit() as session:
        rows = session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id).order_by(DeliveryAttempt.id)
        )
        return [{column.name: getattr(row, column.key) for column in DeliveryAttempt.__table__.columns} for row in rows]


def queue_bodies(sqs: Any, queue: str) -> list[str]:
    """Every message body waiting in ``queue`` (none if it was never created)."""
    try:
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        return []
    bodies: list[str] = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=60)
        if not answer.get("Messages"):
            return bodies
        bodies += [message["Body"] for message in answer["Messages"]]


def deliveries_json(cli: Cli) -> list[dict[str, Any]]:
    result = cli("deliveries", "--json", "--limit", "1000")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


@pytest.fixture
def one_connection(database: str) -> Iterator[str]:
    """The audit's autocommit pool emptied: this test's statements share one new connection."""
    from records import database as db  # the fixture's parameter hides the module

    db.autocommit_engine(database).dispose()
    yield database
    db.autocommit_engine(database).dispose()


def session_counters(url: str) -> dict[str, int]:
    """The statement counters of the audit pool's (single) connection, and its id: the round
    trips a test's statements made (``SELECT CONNECTION_ID()`` here adds one Com_select)."""
    from records import database

    with database.autocommit_engine(url).connect() as connection:
        rows = connection.exec_driver_sql(
            "SHOW SESSION STATUS WHERE Variable_name IN ('Com_insert', 'Com_select', 'Com_commit', 'Com_rollback')"
        ).all()
        (connection_id,) = connection.exec_driver_sql("SELECT CONNECTION_ID()").one()
    return {str(name): int(value) for name, value in rows} | {"id": int(connection_id)}


def refused_claiming(text: str) -> list[dict[str, Any]]:
    """The ``refused`` records (each under its broker's id) whose error quotes ``text``: a
    delivery or task id the refused message claimed."""
    from sqlalchemy import select

    from records import database
    from records.models import DeliveryAttempt

    with database.audit() as session:
        rows = session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.status == "refused", DeliveryAttempt.error.contains(text, autoescape=True))
            .order_by(DeliveryAttempt.id)
        )
        return [{column.name: getattr(row, column.key) for column in DeliveryAttempt.__table__.columns} for row in rows]


@pytest.fixture
def own_worker(database: str, moto: object, logs: Any) -> Iterator[Callable[..., tuple[str, Any]]]:
    """``own_worker(**env)``: a worker of this test's own on a queue of its own; returns (queue, worker)."""
    from local.leads import unique
    from local.services import Worker

    started: list[Worker] = []

    def start(**env: str) -> tuple[str, Worker]:
        queue = unique("isolation")
        worker = Worker(logs / f"{queue}.log", {"SQS_QUEUE": queue, "SUBSCRIBER_CACHE_SECONDS": "0.5", **env})
        started.append(worker)
        return queue, worker

    yield start
    for worker in started:
        worker.stop()


def open_circuit(subscriber_id: int, seconds: int, cooldown: int | None = None) -> None:
    """Open a subscriber's circuit for ``seconds``, in the database, as a worker would, its
    cool-down recorded as ``cooldown`` (``seconds`` unless given)."""
    from datetime import timedelta

    from sqlalchemy import update

    from records import database
    from records.models import Subscriber
    from webhooks.clock import utcnow

    with database.platform() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.id == subscriber_id)
            .values(
                circuit_open_until=utcnow() + timedelta(seconds=seconds),
                circuit_cooldown=seconds if cooldown is None else cooldown,
            )
        )


def end_grace(subscriber_id: int) -> None:
    """The subscriber's previous secret stops signing now (its rotation's grace period over)."""
    from sqlalchemy import update

    from records import database
    from records.models import Subscriber
    from webhooks.clock import utcnow

    with database.platform() as session:
        session.execute(update(Subscriber).where(Subscriber.id == subscriber_id).values(previous_secret_until=utcnow()))


def end_cool_down(subscriber_id: int) -> None:
    """The subscriber's open circuit is due for its probe now (its recorded cool-down unchanged)."""
    from sqlalchemy import update

    from records import database
    from records.models import Subscriber
    from webhooks.clock import utcnow

    with database.platform() as session:
        session.execute(update(Subscriber).where(Subscriber.id == subscriber_id).values(circuit_open_until=utcnow()))


def dispatch_to(queue: str, leads: list[dict[str, Any]], **env: str) -> list[str]:
    """``webhooks dispatch`` of ``leads`` to ``queue``; the ids of the deliveries enqueued."""
    done = run_cli("dispatch", input=json.dumps(leads), env={"SQS_QUEUE": queue, **env})
    assert done.returncode == 0, done.stderr
    return re.findall(r"enqueued delivery ([0-9a-f-]{36})", done.stdout)
