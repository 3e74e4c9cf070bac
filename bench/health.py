"""`webhooks health` on a large audit: how long it takes, and which indexes it uses.

    .venv/bin/python -m bench.health [--rows 1000000] [--days 30] [--subscribers 40] [--keep]

Generates, in a MariaDB database of its own at 127.0.0.1:3306 (dropped at the end unless
``--keep``), at the newest schema: SUBSCRIBERS subscribers, and ROWS audit records of their
deliveries dispatched over the last DAYS days (one ``deliveries`` row each), written with
multi-row INSERTs in time order, as workers append them. Traffic follows Zipf's law (the first
subscriber gets about a quarter of it); 93 % of attempts succeed (durations log-normal around
80 ms), a failure is retried on the default schedule (10m, 1h, 3h, 1d… 11 attempts, then
abandoned), retries not yet due are left pending; and three subscribers are unwell:
``bench-01`` has failed every attempt for 3 days (its circuit open), ``bench-02`` was disabled
2 days ago (410 Gone), ``bench-03`` never succeeded. A hundred deliveries dispatched in the
last minute have no record yet (queued).

Then ``producer.health.report`` runs for every subscriber, and for the busiest, the failing and
the never-successful one alone, ``--repeat`` times each: the first (cold) and the median time
are printed, with the EXPLAIN of every statement it sent. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import math
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

RUN = uuid.uuid4().hex[:8]
DB = f"webhooks_bench_health_{RUN}"
SCHEDULE = (600, 3600, 3 * 3600, 86400, 2 * 86400, 3 * 86400, 4 * 86400, 5 * 86400, 6 * 86400, 7 * 86400)
BATCH = 2000  # rows per INSERT statement
BODY = json.dumps(
    {
        "body": {
            "created_at": "2026-11-28T10:00:00+00:00",
            "retry": 0,
            "id": "00000000-0000-4000-8000-000000000000",
            "geolid_shop_id": "shop-0001",
            "customer_shop_id": "customer-0001",
            "lead_type": "website_form",
            "first_name": "Jane",
            "last_name": "Doe",
            "full_name": "Jane Doe",
            "address": "1 rue de la Paix",
            "city": "La Clusaz",
            "zip_code": "74220",
            "phone": "+33 4 50 00 00 00",
            "email": "jane@example.com",
            "is_geolid": True,
            "is_organic": False,
            "extra_data": {"form": "contact", "campaign": "winter"},
        }
    }
)
HEADERS = json.dumps({"Content-Type": "application/json", "User-Agent": "lead-webhooks/0.1", "webhook-id": "x"})


def configure_environment() -> None:
    os.environ.update(
        {
            "DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:3306/{DB}",
            "WEBHOOK_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
            "SQS_REGION": "us-east-1",
            "LOG_LEVEL": "WARNING",
        }
    )
    os.environ.pop("AUDIT_DATABASE_URL", None)


class Generator:
    """Deliveries and their attempts, in dispatch order, relative to ``now``."""

    def __init__(self, subscribers: int, days: float, now: datetime, seed: int = 1) -> None:
        self.random = random.Random(seed)
        self.now, self.days = now, days
        self.names = [f"bench-{index:02d}" for index in range(subscribers)]
        weights = [1 / (rank + 1) for rank in range(subscribers)]
        self.weights = [weight / sum(weights) for weight in weights]
        self.chains: dict[str, int] = {}

    def success(self, name: str, at: datetime) -> bool:
        if name == "bench-01" and at >= self.now - timedelta(days=3):
            return False  # down for 3 days
        if name == "bench-03":
            return False  # never reachable
        return self.random.random() < 0.93

    def duration(self, succeeded: bool) -> float:
        if not succeeded and self.random.random() < 0.3:
            return 10_000.0  # a timeout
        return round(self.random.lognormvariate(math.log(80), 0.6), 3)

    def deliveries(self, count: int) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
        """``count`` deliveries dispatched over DAYS days, oldest first: (deliveries row, attempt rows)."""
        span = self.days * 86400
        offsets = sorted(self.random.uniform(0, span) for _ in range(count))
        for offset in offsets:
            dispatched = self.now - timedelta(seconds=span - offset)
            name = self.random.choices(self.names, self.weights)[0]
            if name == "bench-02" and dispatched >= self.now - timedelta(days=2):
                continue  # disabled: no new deliveries
            yield self.delivery(name, dispatched)

    def extra(self, rows: int) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
        """Deliveries that succeed at once, over the same days, with no end (the caller stops)."""
        while True:
            dispatched = self.now - timedelta(seconds=self.random.uniform(60, self.days * 86400))
            name = self.random.choices(self.names[4:], self.weights[4:])[0]
            yield self.delivery(name, dispatched)

    def delivery(self, name: str, dispatched: datetime) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        delivery_id, lead_id = str(uuid.uuid4()), str(uuid.uuid4())
        subscriber_id = self.names.index(name) + 1
        row = (delivery_id, delivery_id, lead_id, subscriber_id, name, dispatched)
        attempts: list[tuple[Any, ...]] = []
        first = at = dispatched + timedelta(seconds=self.random.uniform(0.05, 0.5))
        for retry in range(len(SCHEDULE) + 1):
            if at > self.now:
                break  # a retry not due yet: the delivery is pending
            succeeded = self.success(name, at)
            due = first + timedelta(seconds=SCHEDULE[retry]) if retry < len(SCHEDULE) else None
            status = "success" if succeeded else "error" if due is not None else "abandoned"
            attempts.append(self.attempt(delivery_id, lead_id, name, retry, status, at, None if succeeded else due))
            if succeeded or due is None:
                break
            at = due + timedelta(seconds=self.random.uniform(0, 2))
        return row, attempts

    def attempt(
        self, delivery_id: str, lead_id: str, name: str, retry: int, status: str, at: datetime, due: datetime | None
    ) -> tuple[Any, ...]:
        succeeded = status == "success"
        chain = f"bench-{name}"
        seq = self.chains[chain] = self.chains.get(chain, 0) + 1
        zeros = "0" * 64
        return (
            delivery_id,
            lead_id,
            name,
            f"https://{name}.example/hooks",
            retry,
            status,
            200 if succeeded else 503,
            None if succeeded else "HTTP 503",
            HEADERS,
            BODY,
            '{"received": true}' if succeeded else "unavailable",
            self.duration(succeeded),
            at,
            due,
            "203.0.113.7",
            chain,
            seq,
            zeros,
            zeros,
            zeros,
        )


ATTEMPT_COLUMNS = (
    "delivery_id, lead_id, webhook, url, retry, status, http_status, error, request_headers, request_body, "
    "response_body, duration_ms, attempted_at, next_retry_at, address, chain, seq, prev_hash, content_hash, record_hash"
)
DELIVERY_COLUMNS = "delivery_id, webhook_id, lead_id, subscriber_id, webhook, dispatched_at"


def insert(cursor: Any, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    """One multi-row INSERT (PyMySQL's executemany joins the rows into one statement)."""
    marks = ", ".join(["%s"] * len(rows[0]))
    cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def generate(rows: int, subscribers: int, days: float) -> dict[str, Any]:
    """Fill the bench database: subscribers, then deliveries and attempts until ``rows`` attempts."""
    import pymysql

    from records import database
    from records.models import Subscriber
    from webhooks import secretbox
    from webhooks.clock import utcnow

    now = utcnow()
    generator = Generator(subscribers, days, now)
    with database.platform() as session:  # as `webhooks configure` makes them (no name resolved here)
        for name in generator.names:
            session.add(
                Subscriber(
                    name=name,
                    url=f"https://{name}.example/hooks",
                    lead_types=["website_form"],
                    erp_shop_ids=["shop-0001"],
                    sealed_secret=secretbox.seal(str(uuid.uuid4())),
                    enabled=True,
                    created_at=now - timedelta(days=days + 1),
                )
            )
            session.flush()
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=DB)
    written = delivered = 0
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE webhook_configs SET circuit_open_until = %s, circuit_cooldown = 300 WHERE name = 'bench-01'",
                (now + timedelta(minutes=5),),
            )
            cursor.execute(
                "UPDATE webhook_configs SET enabled = 0, disabled_at = %s, disabled_reason = %s "
                "WHERE name = 'bench-02'",
                (now - timedelta(days=2), f"HTTP 410 Gone at {(now - timedelta(days=2)).isoformat()}+00:00"),
            )
            # attempts per delivery, from a sample of the same traffic; the rows left over at the end
            # are made up by deliveries that succeeded at once, over the same days
            sample = Generator(subscribers, days, now, seed=2)
            ratio = statistics.mean(len(attempts) for _, attempts in sample.deliveries(5000))
            pending_deliveries: list[tuple[Any, ...]] = []
            pending_attempts: list[tuple[Any, ...]] = []
            planned = generator.deliveries(int(rows / ratio * 0.97))
            extra = generator.extra(rows)
            for row, attempts in itertools.chain(planned, extra):
                if written + len(pending_attempts) + len(attempts) > rows:
                    break
                pending_deliveries.append(row)
                pending_attempts += attempts
                if len(pending_attempts) >= BATCH:
                    insert(cursor, "deliveries", DELIVERY_COLUMNS, pending_deliveries)
                    insert(cursor, "delivery_attempts", ATTEMPT_COLUMNS, pending_attempts)
                    connection.commit()
                    written += len(pending_attempts)
                    delivered += len(pending_deliveries)
                    pending_deliveries, pending_attempts = [], []
            queued = [generator.delivery(generator.names[0], now - timedelta(seconds=30))[0] for _ in range(100)]
            insert(cursor, "deliveries", DELIVERY_COLUMNS, [*pending_deliveries, *queued])
            if pending_attempts:
                insert(cursor, "delivery_attempts", ATTEMPT_COLUMNS, pending_attempts)
            connection.commit()
            written += len(pending_attempts)
            delivered += len(pending_deliveries) + len(queued)
            cursor.execute("ANALYZE TABLE delivery_attempts, deliveries, webhook_configs")
            cursor.fetchall()
    finally:
        connection.close()
    return {"rows": written, "deliveries": delivered, "insert_seconds": round(time.monotonic() - started, 1)}


def counts() -> dict[str, Any]:
    """The rows of a database generated earlier."""
    import pymysql

    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=DB)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT (SELECT COUNT(*) FROM delivery_attempts), (SELECT COUNT(*) FROM deliveries)")
            rows, delivered = cursor.fetchone()
    finally:
        connection.close()
    return {"rows": rows, "deliveries": delivered, "insert_seconds": None}


def statements_of(run: Callable[[], object]) -> list[tuple[str, Any]]:
    """The SQL statements (with their parameters) that ``run`` sends."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        sent.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    return sent


def explain(statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """EXPLAIN of each distinct SELECT (by its text), with the indexes it uses."""
    import pymysql
    import pymysql.cursors

    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=DB)
    plans: dict[str, dict[str, Any]] = {}
    try:
        with connection.cursor(pymysql.cursors.DictCursor) as cursor:
            for statement, parameters in statements:
                shape = " ".join(statement.split())
                if not shape.upper().startswith("SELECT") or shape in plans:
                    continue
                cursor.execute("EXPLAIN " + statement, parameters)
                rows = cursor.fetchall()
                plans[shape] = {
                    "statement": shape,
                    "plan": [{key: row.get(key) for key in ("table", "type", "key", "rows", "Extra")} for row in rows],
                }
    finally:
        connection.close()
    return list(plans.values())


def timed(run: Callable[[], object], repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return {
        "first_s": round(times[0], 3),
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="audit records to generate")
    parser.add_argument("--days", type=float, default=30, help="over how many days the deliveries were dispatched")
    parser.add_argument("--subscribers", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each report")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--reuse", metavar="DATABASE", help="measure a database kept by an earlier --keep run")
    options = parser.parse_args()

    global DB
    DB = options.reuse or DB
    configure_environment()
    from local.services import mysql

    if not options.reuse:
        mysql(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    try:
        from producer import health
        from records import database, migrations

        if options.reuse:
            data = counts()
        else:
            migrations.upgrade()
            data = generate(options.rows, options.subscribers, options.days)
        print(f"{data['rows']} audit records, {data['deliveries']} deliveries in {DB} ({data['insert_seconds']} s)")
        cases: dict[str, str | None] = {"every subscriber": None, "the busiest": "bench-00"}
        cases |= {"failing for 3 days": "bench-01", "never succeeded": "bench-03"}
        results: dict[str, Any] = {}
        for label, name in cases.items():
            results[label] = timed(lambda name=name: health.report(name), options.repeat)  # type: ignore[misc]
            print(f"{label}: first {results[label]['first_s']} s, median {results[label]['median_s']} s")
        for line in health.report("bench-01") + health.report("bench-00"):
            print(line.text())
        plans = explain(statements_of(lambda: health.report("bench-00")) + statements_of(health.report))
        for plan in plans:
            print(plan["statement"][:200])
            for step in plan["plan"]:
                print(f"   {step}")
        print(json.dumps({**data, "days": options.days, "times": results, "plans": plans}))
        database.engine(os.environ["DATABASE_URL"]).dispose()
        database.autocommit_engine(os.environ["DATABASE_URL"]).dispose()
    finally:
        if options.keep or options.reuse:
            print(f"kept: {DB}")
        else:
            mysql(f"DROP DATABASE IF EXISTS {DB}")


if __name__ == "__main__":
    main()
