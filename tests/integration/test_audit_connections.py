"""The audit's connections to MariaDB on the delivery path: one round trip per statement,
and a connection the server closed is replaced."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from local.services import mysql
from records import database, trail
from tasks import audit
from tests.integration.conftest import attempts, session_counters
from webhooks import clock


def an_attempt(delivery_id: str) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "lead_id": str(uuid.uuid4()),
        "webhook": "connections",
        "url": "http://127.0.0.1/hook",
        "retry": 0,
        "status": "success",
        "http_status": 200,
        "error": None,
        "request_headers": {"Content-Type": "application/json"},
        "request_body": "{}",
        "response_body": "ok",
        "duration_ms": 1.0,
        "attempted_at": clock.utcnow(),  # now: the run's shared database is checkpointed and verified by other tests
        "next_retry_at": None,
    }


def connection_id(url: str) -> int:
    with database.autocommit_engine(url).connect() as connection:
        return int(connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one())


def test_an_audit_record_and_a_duplicate_check_are_one_statement_each_without_commit_or_rollback(
    one_connection: str,
) -> None:
    delivery_id = str(uuid.uuid4())
    before = session_counters(one_connection)

    assert not audit.already_delivered(delivery_id)
    trail.append(one_connection, an_attempt(delivery_id))
    assert audit.already_delivered(delivery_id)

    after = session_counters(one_connection)
    assert after["id"] == before["id"]  # the same connection throughout
    assert {name: after[name] - before[name] for name in ("Com_insert", "Com_commit", "Com_rollback")} == {
        "Com_insert": 1,
        "Com_commit": 0,
        "Com_rollback": 0,
    }
    assert after["Com_select"] - before["Com_select"] == 3  # the two checks, and SELECT CONNECTION_ID()
    [row] = attempts(delivery_id)  # read on another connection: committed
    assert row["status"] == "success"


def test_a_connection_the_server_closed_while_it_was_idle_is_replaced_before_it_is_used(
    one_connection: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    killed = connection_id(one_connection)
    mysql(f"KILL CONNECTION {killed}")  # as a restarted server, or wait_timeout, would
    monkeypatch.setattr(database, "IDLE_PING_SECONDS", 0.0)  # every pooled connection counts as idle
    delivery_id = str(uuid.uuid4())

    with caplog.at_level(logging.WARNING, logger="webhooks.audit"):
        assert not audit.already_delivered(delivery_id)
        trail.append(one_connection, an_attempt(delivery_id))

    assert caplog.records == []  # no statement failed: the ping found the closed connection first
    assert connection_id(one_connection) != killed
    assert [row["status"] for row in attempts(delivery_id)] == ["success"]


def test_a_connection_closed_while_in_use_fails_one_statement_and_the_next_gets_a_new_connection(
    one_connection: str, caplog: pytest.LogCaptureFixture
) -> None:
    delivery_id = str(uuid.uuid4())
    trail.append(one_connection, an_attempt(delivery_id))
    killed = connection_id(one_connection)  # used a moment ago: not pinged
    mysql(f"KILL CONNECTION {killed}")

    with caplog.at_level(logging.WARNING, logger="webhooks.audit"):
        assert not audit.already_delivered(delivery_id)  # the check could not run: said, not raised
        assert "not checked for duplicates" in caplog.text
        caplog.clear()
        assert audit.already_delivered(delivery_id)  # the next one runs, on a new connection

    assert caplog.records == []
    assert connection_id(one_connection) != killed


def test_a_failed_audit_write_makes_first_deliveries_check_the_audit_again_before_they_are_sent(
    database: str,
) -> None:
    from sqlalchemy.exc import DBAPIError

    audit.configure()
    audit.record(audit.Attempt(**an_attempt(str(uuid.uuid4()))))
    assert audit.writes_succeeding()

    too_long = {**an_attempt(str(uuid.uuid4())), "webhook": "w" * 500}  # the column holds 100: refused
    with pytest.raises(DBAPIError):
        audit.record(audit.Attempt(**too_long))
    assert not audit.writes_succeeding()

    audit.record(audit.Attempt(**an_attempt(str(uuid.uuid4()))))
    assert audit.writes_succeeding()
