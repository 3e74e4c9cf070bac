"""The tamper-evident audit trail against MariaDB: verify, tampering, concurrent writers, pruning.

Each test has an audit database of its own (the ``audit_db`` fixture) and writes its
records as the worker does, with ``tasks.audit.record``.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
import uuid
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from local.services import BIN, ROOT
from records import canonical, trail
from records import database as records_db
from records.models import DeliveryAttempt
from tasks import audit
from tests.integration.conftest import Cli, run_cli
from tests.support.factories import an_attempt
from webhooks import clock


def write(count: int, **fields: Any) -> list[dict[str, Any]]:
    """Record ``count`` attempts through the delivery logger; their rows, in order."""
    audit.configure()
    ids = []
    for _ in range(count):
        attempt = an_attempt(**fields)
        audit.record(attempt)
        ids.append(attempt.delivery_id)
    found = {row["delivery_id"]: row for row in rows()}
    return [found[delivery_id] for delivery_id in ids]


def rows() -> list[dict[str, Any]]:
    import settings

    with records_db.session(settings.AUDIT_DATABASE_URL) as session:
        table = DeliveryAttempt.__table__
        return [dict(row) for row in session.execute(select(table).order_by(table.c.id)).mappings()]


def sql(statement: str, **params: Any) -> None:
    import settings

    with records_db.session(settings.AUDIT_DATABASE_URL) as session:
        session.execute(text(statement), params)


def insert(values: dict[str, Any]) -> dict[str, Any]:
    """INSERT ``values`` into delivery_attempts as they are (no MAC unless given): a writer with database
    access alone. Returns the row as read back."""
    columns = [column for column in values if column != "id"]
    sql(
        f"INSERT INTO delivery_attempts ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})",
        **{**values, "request_headers": json.dumps(values["request_headers"])},
    )
    [found] = [row for row in rows() if (row["chain"], row["seq"]) == (values["chain"], values["seq"])]
    return found


def forged(like: dict[str, Any], chain: str, seq: int, prev: dict[str, Any] | None, **content: Any) -> dict[str, Any]:
    """A record after ``prev`` in ``chain`` (its first when None), with the public hashes recomputed as
    canonical.SPEC says (anyone can), and no MAC: the forger does not hold the trail key."""
    values = {name: like[name] for name in canonical.CONTENT_FIELDS} | content
    values.update(chain=chain, seq=seq, prev_id=prev["id"] if prev else None)
    values.update(prev_hash=prev["record_hash"] if prev else canonical.ZERO_HASH)
    values["content_hash"] = canonical.content_hash(values)
    values["record_hash"] = canonical.record_hash(
        chain, seq, values["prev_id"], values["prev_hash"], values["content_hash"]
    )
    return values


def seal(cli: Cli) -> str:
    result = cli("audit", "checkpoint")
    assert result.exit_code == 0, result.output
    return result.output


def verify(cli: Cli, *args: str) -> Any:
    return cli("audit", "verify", *args)


def broken(cli: Cli, *args: str) -> str:
    """verify's output when it fails as it must (exit 1, a one-line error naming the first problem)."""
    result = verify(cli, *args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: audit trail broken: "), result.stderr
    assert "Traceback" not in result.output
    return str(result.output)


def name(row: dict[str, Any]) -> str:
    return f"record {row['id']} (chain {row['chain']}, seq {row['seq']})"


def test_an_intact_trail_verifies_with_a_summary_line(audit_db: str, cli: Cli) -> None:
    written = write(5)
    assert [row["seq"] for row in written] == [1, 2, 3, 4, 5]
    assert len({row["chain"] for row in written}) == 1
    assert written[0]["prev_hash"] == canonical.ZERO_HASH
    assert [row["prev_hash"] for row in written[1:]] == [row["record_hash"] for row in written[:-1]]

    result = verify(cli)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("audit trail intact: 5 records in 1 chains, 1 checkpoints; latest checkpoint #1 ")
    assert "5 records newer than the checkpoints (chained, not sealed yet)" in result.output

    assert "checkpoint #2 at " in seal(cli)
    result = verify(cli)
    assert result.exit_code == 0 and "not sealed" not in result.output


def test_an_updated_row_is_detected_by_verify_naming_the_record(audit_db: str, cli: Cli) -> None:
    first, second, _ = write(3, status="error", http_status=500, error="HTTP 500")
    sql(
        "UPDATE delivery_attempts SET status = 'success', http_status = 200, error = NULL WHERE id = :id",
        id=second["id"],
    )

    output = broken(cli)
    assert f"{name(second)} altered: its content does not match its content_hash" in output
    assert str(first["id"]) not in output.replace(name(second), "")


def test_an_updated_row_whose_hashes_were_recomputed_is_detected_by_its_successor(audit_db: str, cli: Cli) -> None:
    _, second, third = write(3)
    forged = {**second, "http_status": 201}
    content_digest = canonical.content_hash(forged)
    digest = canonical.record_hash(second["chain"], 2, second["prev_id"], second["prev_hash"], content_digest)
    sql(
        "UPDATE delivery_attempts SET http_status = 201, content_hash = :c, record_hash = :r WHERE id = :id",
        c=content_digest,
        r=digest,
        id=second["id"],
    )

    output = broken(cli)
    assert f"{name(second)} altered or {name(third)} replaced" in output


def test_a_deleted_row_is_detected_by_verify_naming_the_record(audit_db: str, cli: Cli) -> None:
    _, second, third = write(3)
    sql("DELETE FROM delivery_attempts WHERE id = :id", id=second["id"])

    output = broken(cli)
    assert output.startswith(f"{name(second)} missing: {name(third)} comes after it\n")
    assert "altered" not in output


def test_a_deleted_last_row_is_detected_once_a_checkpoint_sealed_it(audit_db: str, cli: Cli) -> None:
    *_, last = write(3)
    seal(cli)
    sql("DELETE FROM delivery_attempts WHERE id = :id", id=last["id"])

    output = broken(cli)
    assert f"{name(last)} missing: checkpoint #2 sealed it, the chain now ends at seq 2" in output


def test_a_deleted_chain_is_detected_once_a_checkpoint_sealed_it(audit_db: str, cli: Cli) -> None:
    [row] = write(1)
    seal(cli)
    sql("DELETE FROM delivery_attempts")

    assert f"{name(row)} missing, with its whole chain: checkpoint #2 sealed it" in broken(cli)


def test_a_back_dated_record_inserted_with_database_access_alone_is_detected(audit_db: str, cli: Cli) -> None:
    """A forger who knows the canonical form adds a back-dated attempt, in a chain of its own."""
    [genuine] = write(1)
    seal(cli)
    when = genuine["attempted_at"] - timedelta(days=2)
    inserted = insert(forged(genuine, "forged:1:000000", 1, None, delivery_id=str(uuid.uuid4()), attempted_at=when))

    output = broken(cli)
    assert f"{name(inserted)} forged: it has no MAC (written without the trail key)" in output
    assert "altered" not in output  # its hashes are right: only its MAC gives it away


def test_a_record_appended_to_a_sealed_chain_with_database_access_alone_is_detected(audit_db: str, cli: Cli) -> None:
    _, second = write(2)
    seal(cli)
    when = second["attempted_at"] - timedelta(hours=3)
    values = forged(second, second["chain"], 3, second, delivery_id=str(uuid.uuid4()), attempted_at=when)
    # Its MAC copied from a genuine record: it does not match.
    inserted = insert({**values, "key_id": second["key_id"], "mac": second["mac"]})

    output = broken(cli)
    assert f"{name(inserted)} forged: its MAC does not match under trail key {second['key_id']}" in output
    assert "altered" not in output


def test_a_chain_appended_with_database_access_alone_is_not_sealed_by_the_next_checkpoint_and_is_detected(
    audit_db: str, cli: Cli
) -> None:
    """The attack of issue 16 item 7: a new chain, as another writer would append it, then sealed by
    the next checkpoint, verified. The forger computes every public hash; it lacks only the trail key."""
    [genuine] = write(1)
    first = insert(forged(genuine, "intruder:1:000000", 1, None, delivery_id=str(uuid.uuid4())))
    second = insert(forged(genuine, "intruder:1:000000", 2, first, delivery_id=str(uuid.uuid4()), retry=1))
    seal(cli)  # as a worker's checkpointer would, a moment later

    output = broken(cli)
    assert f"{name(first)} forged: it has no MAC (written without the trail key)" in output
    assert f"{name(second)} forged: it has no MAC" in output
    latest = trail.verify(audit_db).latest
    assert latest is not None and latest.seq == 2
    assert "intruder:1:000000" not in latest.heads and genuine["chain"] in latest.heads
    assert latest.detail["refused_heads"] == 1

    # Under a key of the forger's own, named as the service's: refused as well.
    wrong = canonical.trail_key(os.urandom(32))
    third = forged(genuine, "intruder:2:000000", 1, None, delivery_id=str(uuid.uuid4()))
    third = insert({**third, "key_id": genuine["key_id"], "mac": canonical.record_mac(wrong, third["record_hash"])})
    assert f"{name(third)} forged: its MAC does not match under trail key {genuine['key_id']}" in broken(cli)


def test_a_chain_rewritten_with_its_public_hashes_recomputed_is_detected_by_the_macs(audit_db: str, cli: Cli) -> None:
    """Not sealed yet, a chain's tail rewritten consistently (every hash and link recomputed) still
    fails: the forger cannot recompute the MACs."""
    first, second, third = write(3, status="error", http_status=500)
    changed = forged(second, second["chain"], 2, first, status="success", http_status=200)
    following = forged(third, third["chain"], 3, {**changed, "id": second["id"]})
    for row, values in ((second, changed), (third, following)):
        sql(
            "UPDATE delivery_attempts SET status = :status, http_status = :http_status, prev_hash = :prev_hash, "
            "content_hash = :content_hash, record_hash = :record_hash WHERE id = :id",
            **{column: values[column] for column in ("status", "http_status", "prev_hash", "content_hash")},
            record_hash=values["record_hash"],
            id=row["id"],
        )

    output = broken(cli)
    assert f"{name(second)} forged: its MAC does not match under trail key {second['key_id']}" in output
    assert f"{name(third)} forged: its MAC does not match" in output
    assert "altered" not in output and "does not follow" not in output  # the hashes and links hold


def test_a_checkpoint_appended_with_database_access_alone_is_detected_and_never_followed(
    audit_db: str, cli: Cli
) -> None:
    [genuine] = write(1)
    seal(cli)
    intruder = insert(forged(genuine, "intruder:1:000000", 1, None, delivery_id=str(uuid.uuid4())))
    latest = trail.verify(audit_db).latest
    assert latest is not None
    heads = {"intruder:1:000000": {"id": intruder["id"], "seq": 1, "hash": intruder["record_hash"]}}
    when = trail.utcnow()
    digest = canonical.checkpoint_hash(latest.seq + 1, "checkpoint", when, latest.record_hash, heads, {}, {})
    sql(
        "INSERT INTO audit_checkpoints (seq, kind, created_at, prev_hash, heads, floors, detail, record_hash) "
        "VALUES (:seq, 'checkpoint', :created_at, :prev_hash, :heads, '{}', '{}', :record_hash)",
        seq=latest.seq + 1,
        created_at=when,
        prev_hash=latest.record_hash,
        heads=json.dumps(heads),
        record_hash=digest,
    )

    output = broken(cli)
    assert f"checkpoint #{latest.seq + 1} (id {latest.id + 1}) forged: it has no MAC" in output
    assert f"{name(intruder)} forged: it has no MAC" in output  # its seal vouches for nothing
    refused = cli("audit", "checkpoint")
    assert refused.exit_code == 1
    assert f"checkpoint #{latest.seq + 1} does not authenticate under the configured trail keys" in refused.stderr


def test_a_record_dated_in_the_future_is_detected(audit_db: str, cli: Cli) -> None:
    """Written by a holder of the key (its MAC is right) whose clock is a day ahead."""
    write(1)
    [ahead] = write(1, attempted_at=trail.utcnow() + timedelta(days=1))
    dated = canonical.moment(ahead["attempted_at"])

    assert f"{name(ahead)} dated in the future: {dated}, more than 2 h after now" in broken(cli)
    seal(cli)
    assert f"{name(ahead)} dated in the future" in broken(cli)

    # Two days on it is no longer in the future, but it is still dated after the checkpoint that sealed it.
    report = trail.verify(audit_db, now=trail.utcnow() + timedelta(days=2))
    assert report.latest is not None
    assert [problem.text for problem in report.sorted_problems()] == [
        f"{name(ahead)} dated in the future: {dated}, more than 2 h after checkpoint #2 "
        f"({canonical.moment(report.latest.created_at)}), which sealed it"
    ]


def test_an_attempt_spooled_during_an_outage_and_written_two_hours_late_verifies_and_is_sealed(
    audit_db: str, cli: Cli
) -> None:
    write(2)
    seal(cli)
    late: list[dict[str, Any]] = []
    # The spool drained by another thread (a chain of its own): the attempt is dated when it was made.
    thread = threading.Thread(target=lambda: late.extend(write(1, attempted_at=trail.utcnow() - timedelta(hours=2))))
    thread.start()
    thread.join()

    result = verify(cli)
    assert result.exit_code == 0, result.output
    assert "1 records newer than the checkpoints" in result.output
    seal(cli)
    latest = trail.verify(audit_db).latest
    assert latest is not None and latest.heads.get(late[0]["chain"], {}).get("id") == late[0]["id"]  # sealed
    result = verify(cli)
    assert result.exit_code == 0 and "not sealed" not in result.output


def test_records_and_checkpoints_from_workers_whose_clocks_are_an_hour_off_verify(audit_db: str, cli: Cli) -> None:
    """A checkpointer an hour ahead, then a worker an hour behind and one an hour ahead."""
    write(1)
    trail.write_checkpoint(audit_db, now=trail.utcnow() + timedelta(hours=1))
    behind: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: behind.extend(write(2, attempted_at=trail.utcnow() - timedelta(hours=1))))
    thread.start()
    thread.join()
    write(1, attempted_at=trail.utcnow() + timedelta(hours=1))

    result = verify(cli)
    assert result.exit_code == 0, result.output
    seal(cli)  # a checkpointer on time
    result = verify(cli)
    assert result.exit_code == 0, result.output
    assert "4 records in 2 chains, 3 checkpoints" in result.output and "not sealed" not in result.output


def test_a_deleted_or_altered_checkpoint_is_detected(audit_db: str, cli: Cli) -> None:
    write(1)
    seal(cli)
    write(1)
    seal(cli)
    sql("DELETE FROM audit_checkpoints WHERE seq = 2")
    assert "checkpoint #2 missing: checkpoint #3 (id 3) comes after #1" in broken(cli)

    sql("UPDATE audit_checkpoints SET heads = '{}' WHERE seq = 3")
    assert "checkpoint #3 (id 3) altered: its content does not match its hash" in broken(cli)


def test_verify_since_checks_only_the_records_dated_from_then_on(audit_db: str, cli: Cli) -> None:
    older = write(2)
    sql("UPDATE delivery_attempts SET response_body = 'changed' WHERE id = :id", id=older[0]["id"])
    later = older[1]["attempted_at"] + timedelta(microseconds=1)
    write(2)

    result = verify(cli, "--since", later.strftime("%Y-%m-%dT%H:%M:%S.%f"))
    assert result.exit_code == 0, result.output
    assert "audit trail intact: since " in result.output and ": 2 records in 1 chains" in result.output
    assert f"{name(older[0])} altered" in broken(cli, "--since", older[0]["attempted_at"].strftime("%Y-%m-%d"))

    result = verify(cli, "--since", "yesterday")
    assert result.exit_code == 2 and "Invalid value for '--since'" in result.output


def test_the_installed_command_exits_non_zero_without_a_traceback_on_a_broken_trail(audit_db: str) -> None:
    _, second, _ = write(3)
    sql("UPDATE delivery_attempts SET url = 'http://elsewhere/' WHERE id = :id", id=second["id"])

    done = run_cli("audit", "verify", env={"AUDIT_DATABASE_URL": audit_db, "LOG_LEVEL": "INFO"})
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == f"{name(second)} altered: its content does not match its content_hash"
    assert (
        done.stderr
        == f"Error: audit trail broken: {name(second)} altered: its content does not match its content_hash\n"
    )


def test_rows_written_before_the_chains_are_chained_by_the_upgrade_under_a_genesis_checkpoint(database: str) -> None:
    from alembic import command

    from local.services import mysql
    from records import migrations

    name_ = f"{database.rsplit('/', 1)[1]}_legacy"
    url = f"mysql+pymysql://root@127.0.0.1:3306/{name_}"
    mysql(f"CREATE DATABASE {name_} CHARACTER SET utf8mb4")
    try:
        command.upgrade(migrations.config(url), "0001")
        with records_db.session(url) as session:  # 1001 rows: legacy chains hold 1000
            session.execute(
                text(
                    "INSERT INTO delivery_attempts (delivery_id, lead_id, webhook, url, retry, status, "
                    "http_status, error, request_headers, request_body, response_body, duration_ms, "
                    "attempted_at, next_retry_at) VALUES (:d, 'l', 'w', 'http://x/', 0, 'error', 500, "
                    "'HTTP 500', '{\"webhook-id\": \"d\"}', '{}', 'no', 1234.5678, UTC_TIMESTAMP(6), NULL)"
                ),
                [{"d": f"d{n}"} for n in range(1001)],
            )
        env = {"DATABASE_URL": url, "AUDIT_DATABASE_URL": url}
        for _ in range(2):  # harmless when already up to date
            done = run_cli("db", "upgrade", env=env)
            assert done.returncode == 0, done.stderr

        with records_db.session(url) as session:
            chained = session.execute(text("SELECT id, chain, seq, prev_id FROM delivery_attempts ORDER BY id")).all()
            [genesis] = session.execute(text("SELECT seq, kind, heads, detail FROM audit_checkpoints")).all()
        assert [(row.chain, row.seq) for row in chained[:2]] == [("legacy:1", 1), ("legacy:1", 2)]
        assert [(row.chain, row.seq, row.prev_id) for row in chained[-2:]] == [
            ("legacy:1", 1000, chained[-3].id),
            ("legacy:2", 1, None),
        ]
        assert all(after.prev_id == before.id for before, after in itertools.pairwise(chained[:1000]))
        assert (genesis.seq, genesis.kind) == (1, "genesis")
        assert json.loads(genesis.detail) == {"legacy_records": 1001, "legacy_chains": 2}
        assert json.loads(genesis.heads) == {
            "legacy:1": {"id": chained[999].id, "seq": 1000, "hash": mock.ANY},
            "legacy:2": {"id": chained[1000].id, "seq": 1, "hash": mock.ANY},
        }

        done = run_cli("audit", "verify", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("audit trail intact: 1001 records in 2 chains, 1 checkpoints")

        with records_db.session(url) as session:
            session.execute(
                text("UPDATE delivery_attempts SET status = 'success' WHERE id = :id"), {"id": chained[1].id}
            )
        done = run_cli("audit", "verify", env=env)
        assert done.returncode == 1
        assert f"record {chained[1].id} (chain legacy:1, seq 2) altered" in done.stderr
    finally:
        records_db.engine(url).dispose()
        mysql(f"DROP DATABASE IF EXISTS {name_}")


def test_a_trail_written_before_the_macs_is_macd_in_place_by_the_upgrade_and_still_verifies(database: str) -> None:
    """Records and checkpoints of schema 0003 (public hashes only): the upgrade MACs them as they stand,
    and refuses, changing nothing, without WEBHOOK_ENCRYPTION_KEY."""
    from alembic import command

    from local.services import mysql
    from records import migrations

    name_ = f"{database.rsplit('/', 1)[1]}_macs"
    url = f"mysql+pymysql://root@127.0.0.1:3306/{name_}"
    mysql(f"CREATE DATABASE {name_} CHARACTER SET utf8mb4")
    env = {"DATABASE_URL": url, "AUDIT_DATABASE_URL": url}
    try:
        command.upgrade(migrations.config(url), "0003")
        with records_db.session(url) as session:
            [genesis] = session.execute(text("SELECT seq, record_hash FROM audit_checkpoints")).all()
            table = DeliveryAttempt.__table__
            assert isinstance(table, Table)
            previous: dict[str, Any] | None = None
            for seq in range(1, 5):  # as the writer of 0003 chained them
                values = forged(an_attempt().__dict__, "old:1:abcdef", seq, previous, delivery_id=f"d{seq}")
                columns = {name_: value for name_, value in values.items() if name_ in table.c}
                session.execute(table.insert().values(**columns))
                row_id = session.execute(text("SELECT LAST_INSERT_ID()")).scalar_one()
                previous = {**values, "id": row_id}
                if seq == 3:  # a checkpoint of 0003 seals the first three
                    heads = {"old:1:abcdef": {"id": row_id, "seq": 3, "hash": values["record_hash"]}}
                    when = trail.utcnow()
                    session.execute(
                        text(
                            "INSERT INTO audit_checkpoints (seq, kind, created_at, prev_hash, heads, floors, detail, "
                            "record_hash) VALUES (2, 'checkpoint', :when, :prev, :heads, '{}', '{}', :digest)"
                        ),
                        {
                            "when": when,
                            "prev": genesis.record_hash,
                            "heads": json.dumps(heads),
                            "digest": canonical.checkpoint_hash(
                                2, "checkpoint", when, genesis.record_hash, heads, {}, {}
                            ),
                        },
                    )

        refused = run_cli("db", "upgrade", env={**env, "WEBHOOK_ENCRYPTION_KEY": ""})
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.startswith("Error: WEBHOOK_ENCRYPTION_KEY must be set to upgrade the schema to 0005")
        with records_db.session(url) as session:
            assert session.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
            assert not session.execute(text("SHOW COLUMNS FROM delivery_attempts LIKE 'mac'")).all()

        done = run_cli("db", "upgrade", env=env)
        assert done.returncode == 0, done.stderr
        current = trail.keys.current()
        with records_db.session(url) as session:
            for table_name in ("delivery_attempts", "audit_checkpoints"):
                found = session.execute(text(f"SELECT record_hash, key_id, mac FROM {table_name}")).all()
                assert {row.key_id for row in found} == {current.id}
                mac = canonical.record_mac if table_name == "delivery_attempts" else canonical.checkpoint_mac
                assert all(row.mac == mac(current.key, row.record_hash) for row in found)

        done = run_cli("audit", "verify", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("audit trail intact: 4 records in 1 chains, 2 checkpoints")
        assert "1 records newer than the checkpoints" in done.stdout
        assert run_cli("audit", "checkpoint", env=env).returncode == 0
        done = run_cli("audit", "verify", env=env)
        assert done.returncode == 0 and "not sealed" not in done.stdout, done.stdout + done.stderr
    finally:
        records_db.engine(url).dispose()
        mysql(f"DROP DATABASE IF EXISTS {name_}")


def test_after_a_key_rotation_the_trail_verifies_under_both_keys_then_under_the_new_one_alone(
    audit_db: str, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import settings

    old, new = settings.ENCRYPTION_KEYS[0], os.urandom(32)
    sealed_under_old = write(2)
    seal(cli)
    [unsealed_under_old] = write(1)
    monkeypatch.setattr(settings, "ENCRYPTION_KEYS", (new, old))  # WEBHOOK_ENCRYPTION_KEY=NEW,OLD
    [under_new] = write(1)
    assert under_new["key_id"] == trail.keys.current().id != sealed_under_old[0]["key_id"]
    result = verify(cli)
    assert result.exit_code == 0, result.output
    assert f"MACs checked under trail key {under_new['key_id']}, {sealed_under_old[0]['key_id']}" in result.output

    checkpoint = trail.write_checkpoint(audit_db)  # under NEW, chained onto #2 once it authenticated under OLD
    assert checkpoint is not None and checkpoint.key_id == under_new["key_id"]
    assert checkpoint.heads[unsealed_under_old["chain"]]["id"] == under_new["id"]  # the same thread's chain

    monkeypatch.setattr(settings, "ENCRYPTION_KEYS", (new,))  # OLD retired: what it MACed is vouched for by #3
    result = verify(cli)
    assert result.exit_code == 0, result.output
    assert "4 records in 1 chains, 3 checkpoints" in result.output

    monkeypatch.setattr(settings, "ENCRYPTION_KEYS", (old,))  # a worker still on OLD alone, after #3
    [late] = write(1)
    monkeypatch.setattr(settings, "ENCRYPTION_KEYS", (new,))
    assert (
        f"{name(late)} unverifiable: MACed under trail key {late['key_id']}, which is not configured "
        "(WEBHOOK_ENCRYPTION_KEY), and no checkpoint seals it"
    ) in broken(cli)
    assert cli("audit", "checkpoint").exit_code == 0  # #3 authenticates under NEW
    latest = trail.verify(audit_db).latest
    assert latest is not None and late["chain"] not in latest.heads  # the head under OLD alone is left unsealed


def test_the_trail_key_command_prints_each_key_with_its_id_and_a_warning(audit_db: str, cli: Cli) -> None:
    import settings

    result = cli("audit", "trail-key")
    assert result.exit_code == 0, result.output
    key = canonical.trail_key(settings.ENCRYPTION_KEYS[0])
    assert result.stdout == f"trail key {canonical.key_id(key)} (current): {key.hex()}\n"
    assert "audit records can be forged" in result.stderr


def test_concurrent_writers_append_without_breaking_the_chain(audit_db: str, cli: Cli) -> None:
    """8 threads here and 2 processes of 4 threads write at once, while checkpoints are written."""
    per_writer = 15
    script = (
        "import threading\n"
        "from tasks import audit\n"
        "from tests.support.factories import an_attempt\n"
        "audit.configure()\n"
        f"work = lambda: [audit.record(an_attempt()) for _ in range({per_writer})]\n"
        "threads = [threading.Thread(target=work) for _ in range(4)]\n"
        "[thread.start() for thread in threads]\n"
        "[thread.join() for thread in threads]\n"
    )
    env = {**os.environ, "AUDIT_DATABASE_URL": audit_db, "LOG_LEVEL": "WARNING"}
    processes = [
        subprocess.Popen(
            [str(BIN / "python"), "-c", script], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    failures: list[BaseException] = []
    stop = threading.Event()

    def work() -> None:
        try:
            write(per_writer)
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    def checkpoints() -> None:
        while not stop.is_set():
            try:
                trail.write_checkpoint(audit_db)
            except BaseException as error:  # pragma: no cover - reported below
                failures.append(error)
            stop.wait(0.05)

    sealer = threading.Thread(target=checkpoints)
    sealer.start()
    writers = [threading.Thread(target=work) for _ in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    for process in processes:
        assert process.wait(120) == 0, process.stderr.read() if process.stderr else ""
    stop.set()
    sealer.join()
    assert failures == []

    written = rows()
    assert len(written) == (8 + 2 * 4) * per_writer
    chains: dict[str, list[int]] = {}
    for row in written:
        chains.setdefault(row["chain"], []).append(row["seq"])
    assert len(chains) == 16
    assert all(sorted(seqs) == list(range(1, per_writer + 1)) for seqs in chains.values())

    seal(cli)
    result = verify(cli)
    assert result.exit_code == 0, result.output
    assert f"{len(written)} records in 16 chains" in result.output


def test_a_second_writer_at_the_same_place_is_refused_and_the_chain_does_not_fork(audit_db: str, cli: Cli) -> None:
    write(2)
    head = trail._heads()[audit_db]
    copy = trail._Head(head.chain, head.seq, head.id, head.hash)  # the head after seq 2
    write(1)  # the owner takes seq 3
    seen: dict[str, Any] = {}

    def impostor() -> None:
        # Another thread that believes it owns the same chain, at the same place.
        trail._heads()[audit_db] = copy
        try:
            audit.record(an_attempt())
        except IntegrityError as error:
            seen["error"] = error
        seen["head"] = trail._heads().get(audit_db)
        audit.record(an_attempt())  # its next record starts a new chain

    thread = threading.Thread(target=impostor)
    thread.start()
    thread.join()

    assert "error" in seen, "the database let two records take one place in a chain"
    assert seen["head"] is None
    written = rows()
    assert len(written) == 4
    assert sorted(row["seq"] for row in written if row["chain"] == head.chain) == [1, 2, 3]
    result = verify(cli)
    assert result.exit_code == 0, result.output
    assert "4 records in 2 chains" in result.output


def test_a_database_error_on_write_propagates_and_the_writer_starts_a_new_chain(audit_db: str, cli: Cli) -> None:
    [first] = write(1)
    sql("ALTER TABLE delivery_attempts ADD COLUMN blocker INT NOT NULL")  # every INSERT now fails
    try:
        with pytest.raises(SQLAlchemyError, match="blocker"):
            audit.record(an_attempt())  # the write raises: the task does not acknowledge its message
    finally:
        sql("ALTER TABLE delivery_attempts DROP COLUMN blocker")
    [second] = write(1)
    assert second["chain"] != first["chain"] and second["seq"] == 1
    result = verify(cli)
    assert result.exit_code == 0, result.output
    assert "2 records in 2 chains" in result.output


def test_pruning_deletes_older_records_and_keeps_verify_green(audit_db: str, cli: Cli) -> None:
    old = write(4)
    seal(cli)
    other: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: other.extend(write(2)))  # a chain wholly older than the cutoff
    thread.start()
    thread.join()
    cutoff = clock.utcnow()
    kept = write(3)  # the same chain as ``old``, continued after the cutoff
    assert kept[0]["chain"] == old[0]["chain"] and kept[0]["seq"] == 5

    done = trail.prune(audit_db, cutoff)
    assert (done.records, done.checkpoints) == (6, 2)  # genesis and the checkpoint written before the cutoff
    assert [row["id"] for row in rows()] == [row["id"] for row in kept]
    assert done.checkpoint.kind == "prune"
    assert done.checkpoint.floors[old[0]["chain"]] == {"id": old[-1]["id"], "seq": 4, "hash": old[-1]["record_hash"]}
    result = verify(cli)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("audit trail intact: 3 records in 1 chains, 1 checkpoints")

    assert trail.prune(audit_db, cutoff).records == 0  # again: nothing more to delete
    write(2)
    seal(cli)
    assert verify(cli).exit_code == 0

    # What is left is still protected: the first remaining record cannot go unnoticed.
    sql("DELETE FROM delivery_attempts WHERE id = :id", id=kept[0]["id"])
    assert f"{name(kept[0])} missing: {name(kept[1])} comes after it" in broken(cli)


def test_a_later_prune_forgets_the_floor_of_a_chain_gone_for_good(audit_db: str, cli: Cli) -> None:
    gone: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: gone.extend(write(2)))  # a writer that never writes again
    thread.start()
    thread.join()
    cutoff = clock.utcnow()
    live = write(2)[0]["chain"]  # this thread's chain, written to again below
    first = trail.prune(audit_db, cutoff)
    assert set(first.checkpoint.floors) == {gone[0]["chain"]}

    second = trail.prune(audit_db, clock.utcnow())  # deletes the first prune checkpoint as well
    assert second.records == 2 and second.checkpoints == 1
    assert set(second.checkpoint.floors) == {live}  # the other chain is forgotten: floors do not pile up
    [after] = write(1)
    assert (after["chain"], after["seq"]) == (live, 3)  # continues after its floor
    result = verify(cli)
    assert result.exit_code == 0, result.output
    assert "1 records in 1 chains, 1 checkpoints" in result.output


def test_prune_refuses_a_broken_trail_and_deletes_nothing(audit_db: str, cli: Cli) -> None:
    _, second = write(2)
    sql("UPDATE delivery_attempts SET retry = 7 WHERE id = :id", id=second["id"])

    result = cli("audit", "prune", "--days", "1")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: prune refused: audit trail broken: {name(second)} altered")
    assert len(rows()) == 2


def test_the_prune_command_keeps_audit_retention_days(audit_db: str) -> None:
    write(2)
    env = {"AUDIT_DATABASE_URL": audit_db}
    done = run_cli("audit", "prune", env={**env, "AUDIT_RETENTION_DAYS": "30"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pruned 0 records and 0 checkpoints dated before ")
    assert "(kept 30 days); checkpoint #2 carries the trail on" in done.stdout
    assert run_cli("audit", "verify", env=env).returncode == 0

    done = run_cli("audit", "prune", env={**env, "AUDIT_RETENTION_DAYS": "0"})
    assert done.returncode == 1
    assert "AUDIT_RETENTION_DAYS='0' must be at least 1" in done.stderr
    assert "Traceback" not in done.stderr
