"""Test configuration. The environment is set here, before any project module reads it.

Integration tests run against real services started here: moto's SQS server on a free
loopback port, a MariaDB database created and dropped per run, a loopback HTTP receiver
and a real ``celery -A tasks worker`` process. Without MariaDB they are skipped, except
in CI (``CI=true``), where a missing MariaDB fails the run.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.recorder import Receiver
from local.services import Moto, Worker, free_port, mysql, mysql_reachable

RUN = uuid.uuid4().hex[:8]
MOTO_PORT = free_port()
DB_NAME = f"webhooks_test_{RUN}"
MYSQL = mysql_reachable()
TEST_KEY = base64.b64encode(bytes(range(32))).decode()

os.environ.update(
    {
        "BROKER_URL": f"sqs://testing:testing@127.0.0.1:{MOTO_PORT}",
        "DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:3306/{DB_NAME}",
        "WEBHOOK_ENCRYPTION_KEY": TEST_KEY,
        "SQS_QUEUE": f"webhooks-test-{RUN}",
        "SQS_REGION": "us-east-1",
        "SQS_VISIBILITY_TIMEOUT": "8",
        "SQS_WAIT_TIME_SECONDS": "1",
        "SQS_POLLING_INTERVAL": "0.1",
        "SQS_MAX_DELAY": "1",
        "WEBHOOK_RETRY_SCHEDULE": "2s,4s",
        "WEBHOOK_TIMEOUT": "1",
        "SUBSCRIBER_CACHE_SECONDS": "1",
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "AUDIT_SPOOL_DIR": tempfile.mkdtemp(prefix="webhooks-test-spool-"),
        "AUDIT_CHECKPOINT_INTERVAL": "2",
        "LOG_LEVEL": "DEBUG",
        # on by default; off for the session's worker and CLI (fewer requests to moto's one
        # process): the tests of Flower and IAM turn it on
        "WORKER_EVENTS": "0",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
os.environ.pop("AUDIT_DATABASE_URL", None)


# Names the test process may "resolve": no test ever looks a name up in real DNS.
FAKE_DNS = {
    "dummy-endpoint.com": ["93.184.215.14"],
    "example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
}


@pytest.fixture(autouse=True)
def no_real_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stub name resolution, and fail any connection from this process outside loopback."""
    from tasks import destination

    def resolve(host: str, port: int) -> list[str]:
        if host in FAKE_DNS:
            return FAKE_DNS[host]
        from webhooks.errors import UnresolvedName

        raise UnresolvedName(f"cannot resolve {host!r}: not in the tests' fake DNS")

    monkeypatch.setattr(destination, "resolve", resolve)
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if not ipaddress.ip_address(host).is_loopback:
                raise AssertionError(f"a test tried to connect to {host}: only loopback is allowed")

    def connect(sock: socket.socket, address: Any) -> None:
        guard(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        guard(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    """A fresh MariaDB database with the schema, dropped at the end of the run."""
    if not MYSQL:
        if os.environ.get("CI") == "true":
            pytest.fail("MariaDB is not reachable at 127.0.0.1:3306 (CI needs it)")
        pytest.skip("MariaDB is not reachable at 127.0.0.1:3306")
    mysql(f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4")
    from records import migrations

    migrations.upgrade()
    yield os.environ["DATABASE_URL"]
    from records import database as db
    from records import trail

    try:
        # Every worker of the run (crashed, restarted, retrying) wrote here: the trail must still verify.
        report = trail.verify(os.environ["DATABASE_URL"])
        assert report.ok, report.headline()
    finally:
        db.engine(os.environ["DATABASE_URL"]).dispose()
        db.autocommit_engine(os.environ["DATABASE_URL"]).dispose()
        mysql(f"DROP DATABASE IF EXISTS {DB_NAME}")


@pytest.fixture(scope="session")
def moto(logs: Path) -> Iterator[Moto]:
    server = Moto(MOTO_PORT, logs / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker(database: str, moto: Moto, logs: Path) -> Iterator[Worker]:
    """The session's worker, on the default test queue."""
    process = Worker(logs / "worker.log")
    yield process
    process.stop()


@pytest.fixture
def sqs(moto: Moto) -> Any:
    import boto3

    return boto3.client("sqs", endpoint_url=moto.url, region_name="us-east-1")
