"""make bench: what a delivery costs in CPU, time and SQS requests, next to Celery's own cost.

    make bench                                   # the Procfile's worker, 300 messages per drain
    .venv/bin/python -m bench.run --messages 400 --pool threads --concurrency 64

Everything runs here, on loopback: moto's server (SQS, with its request recorder), a MariaDB
database at 127.0.0.1:3306 (created and dropped), loopback receivers (tests/support/receiver.py),
and the Procfile's worker command (or, for the no-op baseline, the same command on
``bench.noop``), on the production defaults of every setting except WEBHOOK_ALLOWED_NETWORKS
(loopback receivers). Every number comes from the same run:

1. raw POST: a plain ``requests.Session`` loop to the receiver, in its own process (the floor);
2. no-op: N no-op tasks (same message as a delivery) preloaded, then drained by a fresh worker;
   its CPU (utime + stime of the worker and its children, /proc) from "ready" to done;
3. deliveries: N deliveries (10 subscribers answering 200) preloaded, then drained the same way;
4. hanging: N healthy deliveries plus one in ten to a subscriber that never answers (the
   request times out after WEBHOOK_TIMEOUT): the rate to the healthy ones, over the rate of 3;
5. dispatch: the SQS requests of ``producer.dispatch`` of one lead matching 10 subscribers
   (a warm producer), and of ``webhooks dispatch`` (a new process), counted by moto's recorder;
6. per delivery: a running worker, idle, then M leads dispatched (one subscriber, first-try
   successes): every request counted from the dispatch until the last message is deleted;
7. per hop: K messages due in 2 hours (beyond SQS_MAX_DELAY) reach the worker, which puts
   each back for SQS_MAX_DELAY: every request counted, divided by K.

The run is accounted when every delivery dispatched is in the audit as delivered or failed
(the hanging ones fail: timeout, retry scheduled); otherwise it is void, and says so. The last
line printed is one JSON object (bench.measure.KEYS).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import measure

RUN = uuid.uuid4().hex[:8]
DB = f"webhooks_bench_{RUN}"
#: a hanging subscriber answers after this long; the worker gives up at WEBHOOK_TIMEOUT (10 s)
HANG_SECONDS = 15
FINISHED = re.compile(r"Task [\w.]+\[([0-9a-f-]{36})\] (succeeded|retry)")


def configure_environment(moto_port: int, spool: Path) -> None:
    """Production defaults, except where the services live (loopback) and the allowed networks."""
    for name in list(os.environ):
        if name.startswith(("SQS_", "WEBHOOK_", "AUDIT_", "WORKER_", "BROKER_", "DATABASE_", "AWS_")):
            del os.environ[name]
    os.environ.update(
        {
            "BROKER_URL": f"sqs://bench:bench@127.0.0.1:{moto_port}",
            "DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:3306/{DB}",
            "WEBHOOK_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
            "SQS_QUEUE": f"bench-{RUN}-count",
            "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "AUDIT_SPOOL_DIR": str(spool),
            "LOG_LEVEL": "INFO",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
        }
    )


def worker_command(app: str = "tasks", pool: str | None = None, concurrency: int | None = None) -> list[str]:
    """The Procfile's worker command, on another Celery module and/or another pool if asked."""
    from tests.support.services import procfile_command

    words = procfile_command("worker")
    words[words.index("-A") + 1] = app
    for option, value in (("--pool", pool), ("--concurrency", concurrency)):
        if value is None:
            continue
        if option in words:
            words[words.index(option) + 1] = str(value)
        else:
            words += [option, str(value)]
    return words


def option_of(command: Sequence[str], option: str) -> str:
    return command[command.index(option) + 1] if option in command else "(default)"


class Finished:
    """Task ids the worker's log reports finished (``succeeded`` or ``retry``), read as it grows."""

    def __init__(self, log: Path) -> None:
        self.log, self.offset, self.partial = log, 0, ""
        self.ids: set[str] = set()

    def poll(self) -> set[str]:
        with open(self.log, "rb") as file:
            file.seek(self.offset)
            data = file.read()
        self.offset += len(data)
        lines = (self.partial + data.decode(errors="replace")).split("\n")
        self.partial = lines.pop()
        for line in lines:
            found = FINISHED.search(line)
            if found:
                self.ids.add(found.group(1))
        return self.ids


def wait_until(check: Callable[[], object], timeout: float, what: str, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Drain:
    """A fresh worker draining preloaded messages, measured from "ready" until ``wanted`` finished."""

    messages: int
    seconds: float
    cpu_seconds: float
    rss_mib: float
    requests: Counter[str]  # SQS requests of the worker's whole life (start-up included)

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / self.messages


class Bench:
    def __init__(self, options: argparse.Namespace, logs: Path, moto: Any) -> None:
        from tests.support.receiver import Receiver

        self.options = options
        self.logs = logs
        self.moto = moto
        self.receiver = Receiver()
        self.command = worker_command(pool=options.pool, concurrency=options.concurrency)
        self.noop_command = worker_command("bench.noop", pool=options.pool, concurrency=options.concurrency)
        self.dispatched: set[str] = set()  # every delivery the run enqueued to be attempted
        self.hops: set[str] = set()  # deliveries due later: put back, never attempted here
        self.results: dict[str, float] = {}
        self.rows: list[tuple[str, str, str]] = []
        self.notes: list[str] = []

    # --- building blocks ----------------------------------------------------------------

    def subscribers(self, name: str, paths: Sequence[str]) -> str:
        """Subscribers ``name-0``… on the receiver's ``paths``, all matching the shop returned."""
        from producer import subscribers

        shop = f"{name}-{RUN}"
        for index, path in enumerate(paths):
            subscribers.configure(f"{name}-{index}-{RUN}", self.receiver.url(path), ["call"], [shop])
        return shop

    def leads(self, shop: str, count: int) -> list[dict[str, Any]]:
        from tests.support.factories import a_lead

        return [a_lead(shop, "call") for _ in range(count)]

    def preload(self, messages: Iterable[tuple[str, dict[str, Any]]], queue: str, task: str) -> int:
        """Publish (task id, delivery message) pairs to ``queue``, as the producer does."""
        from tasks import app

        sent = 0
        for task_id, message in messages:
            app.send_task(task, kwargs={"delivery": message}, task_id=task_id, queue=queue)
            sent += 1
        return sent

    def queue_empty(self, queue: str) -> bool:
        """No message visible nor in flight (delayed ones, retries scheduled later, may remain)."""
        import boto3

        client = boto3.client("sqs", endpoint_url=self.moto.url, region_name="us-east-1")
        url = client.get_queue_url(QueueName=queue)["QueueUrl"]
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        found = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return all(found[name] == "0" for name in names)

    def drain(self, name: str, command: list[str], queue: str, total: int, wanted: set[str]) -> Drain:
        """Start a worker on ``queue``, loaded with ``total`` messages; measure from "ready" until every
        task of ``wanted`` finished (its log says so); then wait until all ``total`` are deleted."""
        from tests.support.services import Worker

        class FastWorker(Worker):
            READY_POLL = 0.005

        with self.moto.record() as requests:
            worker = FastWorker(self.logs / f"{name}.log", env={"SQS_QUEUE": queue}, command=command)
            try:
                started, cpu = time.monotonic(), measure.tree_cpu_seconds(worker.process.pid)
                finished = Finished(worker.log_path)
                spy = self.profile(name, worker.process.pid)
                wait_until(
                    lambda: worker.process.poll() is not None or wanted <= finished.poll(),
                    600,
                    f"{name}: {len(wanted)}",
                )
                if worker.process.poll() is not None:
                    raise SystemExit(f"bench: the {name} worker exited; see {worker.log_path}")
                seconds = time.monotonic() - started
                cpu = measure.tree_cpu_seconds(worker.process.pid) - cpu
                rss = measure.tree_rss_mib(worker.process.pid)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(60)
                wait_until(lambda: self.deleted() >= total, 120, f"{name}: {total} deleted", 0.1)
            finally:
                worker.stop()
        if not self.queue_empty(queue):
            raise SystemExit(f"bench: {name}: messages left in {queue}")
        return Drain(len(wanted), seconds, cpu, rss, requests)

    def profile(self, name: str, pid: int) -> subprocess.Popen[bytes] | None:
        """With --profile: py-spy samples the worker while it drains (collapsed stacks, one file a phase)."""
        if not self.options.profile or name not in {"noop", "deliveries"}:
            return None
        output = Path(self.options.profile) / f"{name}.txt"
        output.parent.mkdir(parents=True, exist_ok=True)
        command = [
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--rate",
            "500",
            "--gil",
            "--format",
            "raw",
            "--output",
            str(output),
        ]
        spy = subprocess.Popen([str(Path(sys.executable).parent / command[0]), *command[1:]], stdout=subprocess.DEVNULL)
        time.sleep(0.3)  # attached (the messages wait: the measure is not the point of a profiled run)
        return spy

    def audit(self) -> list[tuple[str, str]]:
        """(delivery id, status) of every audit row."""
        from sqlalchemy import select

        from records import database
        from records.models import DeliveryAttempt

        with database.audit() as session:
            rows = session.execute(select(DeliveryAttempt.delivery_id, DeliveryAttempt.status))
            return [(row.delivery_id, row.status) for row in rows]

    def finished_in_audit(self, ids: set[str]) -> bool:
        return ids <= {delivery_id for delivery_id, _ in self.audit()}

    # --- the phases ---------------------------------------------------------------------

    def raw_post(self) -> None:
        from tasks import payload
        from tests.support.factories import a_lead

        body = self.logs / "body.json"
        body.write_bytes(payload.encode(payload.build(a_lead("raw", "call"), 0)))
        count = self.options.raw_posts
        done = subprocess.run(
            [sys.executable, "-m", "bench.raw_post", self.receiver.url("/ok/raw"), str(count), str(body)],
            capture_output=True,
            text=True,
            check=True,
        )
        found = json.loads(done.stdout)
        if found["failures"]:
            raise SystemExit(f"bench: raw POST loop: {found['failures']} failures")
        self.results["raw_post_cpu_ms"] = found["cpu_ms"]
        self.rows.append(
            (
                "raw POST CPU",
                f"{found['cpu_ms']:.2f} ms",
                f"{count} POSTs, requests.Session, {found['wall_ms']:.2f} ms each",
            )
        )

    def noop_and_deliveries(self) -> None:
        from bench.noop import NAME as NOOP
        from producer.dispatch import plan

        n = self.options.messages
        shop = self.subscribers("healthy", [f"/ok/healthy-{index}" for index in range(10)])
        leads = math.ceil(n / 10)

        noop_queue = f"bench-{RUN}-noop"
        noop = [(str(uuid.uuid4()), d.message) for d in plan(self.leads(shop, leads))[:n]]  # never delivered
        self.preload(noop, noop_queue, NOOP)
        drained = self.drain("noop", self.noop_command, noop_queue, n, {task_id for task_id, _ in noop})
        self.results["noop_task_cpu_ms"] = drained.cpu_ms
        self.results["noop_tasks_per_s"] = drained.per_second
        self.rows.append(("no-op task CPU", f"{drained.cpu_ms:.2f} ms", f"{n} preloaded, bench.noop worker"))

        queue = f"bench-{RUN}-deliveries"
        planned = plan(self.leads(shop, leads))[:n]
        self.preload(((d.delivery_id, d.message) for d in planned), queue, "tasks.deliver_webhook")
        wanted = {d.delivery_id for d in planned}
        self.dispatched |= wanted
        delivered = self.drain("deliveries", self.command, queue, n, wanted)
        self.results["delivery_cpu_ms"] = delivered.cpu_ms
        self.results["deliveries_per_s"] = delivered.per_second
        self.results["worker_rss_mb"] = delivered.rss_mib
        self.healthy_rate = delivered.per_second
        self.rows += [
            ("delivery CPU", f"{delivered.cpu_ms:.2f} ms", f"{n} preloaded, 10 subscribers answering 200"),
            ("no-op drain rate", f"{drained.per_second:.1f}/s", f"{n} in {drained.seconds:.1f} s"),
            ("delivery drain rate", f"{delivered.per_second:.1f}/s", f"{n} in {delivered.seconds:.1f} s"),
            ("worker RSS", f"{delivered.rss_mib:.0f} MiB", f"after {n} deliveries"),
            ("no-op drain: SQS per message", per_message(drained), describe(drained.requests, n)),
            ("delivery drain: SQS per message", per_message(delivered), describe(delivered.requests, n)),
        ]

    def hanging(self) -> None:
        from producer.dispatch import plan

        n = self.options.messages
        paths = [f"/ok/mixed-{index}" for index in range(9)] + [f"/slow/{HANG_SECONDS}/hanging"]
        shop = self.subscribers("mixed", paths)
        planned = plan(self.leads(shop, math.ceil(n / 9)))
        hanging = {d.delivery_id for d in planned if d.webhook.startswith("mixed-9-")}
        healthy = {d.delivery_id for d in planned} - hanging
        queue = f"bench-{RUN}-hanging"
        self.preload(((d.delivery_id, d.message) for d in planned), queue, "tasks.deliver_webhook")
        self.dispatched |= healthy | hanging
        every = healthy | hanging
        drained = self.drain("hanging", self.command, queue, len(every), healthy)
        ratio = drained.per_second / self.healthy_rate
        self.results["healthy_rate_ratio_with_hanging"] = ratio
        self.rows.append(
            (
                "healthy rate, 10 % hanging",
                f"{drained.per_second:.1f}/s ({ratio:.2f})",
                f"{len(healthy)} healthy + {len(hanging)} hanging {HANG_SECONDS} s (timeout 10 s)",
            )
        )

    def dispatch_counts(self) -> str:
        """SQS requests of one lead to 10 subscribers: warm producer, then a new `webhooks dispatch`."""
        import producer
        from tests.support.factories import a_lead

        shop = self.subscribers("fanout", [f"/ok/fanout-{index}" for index in range(10)])
        self.dispatched |= set(producer.dispatch(a_lead(shop, "call")))  # warm-up: the queue's URL is known
        with self.moto.record() as warm:
            self.dispatched |= set(producer.dispatch(a_lead(shop, "call")))
        self.results["dispatch_requests_per_lead_10_subscribers"] = sum(warm.values())
        with self.moto.record() as cold:
            done = subprocess.run(
                [str(Path(sys.executable).parent / "webhooks"), "dispatch"],
                input=json.dumps(a_lead(shop, "call")),
                capture_output=True,
                text=True,
                check=True,
            )
        self.dispatched |= set(re.findall(r"enqueued delivery ([0-9a-f-]{36})", done.stdout))
        self.rows += [
            ("dispatch, 1 lead x 10 subscribers", f"{sum(warm.values())} requests", describe(warm, 1)),
            ("same, `webhooks dispatch` (new process)", f"{sum(cold.values())} requests", describe(cold, 1)),
        ]
        return shop

    def per_delivery_and_hop(self) -> None:
        """A running worker on the producer's queue: M dispatched leads, then K long waits."""
        from producer.dispatch import dispatch_all, plan
        from tasks.delivery import Delivery
        from tests.support.services import Worker

        pending = set(self.dispatched) - {d for d, _ in self.audit()}  # the dispatch phase's
        worker = Worker(self.logs / "count.log", command=self.command)
        try:
            wait_until(lambda: self.finished_in_audit(pending), 120, "the dispatch phase's deliveries", every=0.2)
            time.sleep(3)  # acknowledgements done, the worker back to its long poll

            m = self.options.count
            shop = self.subscribers("count", ["/ok/count"])
            leads = self.leads(shop, m)
            with self.moto.record() as counted:
                ids = {d.delivery_id for d in dispatch_all(leads)}
                self.dispatched |= ids
                wait_until(lambda: self.deleted() >= m, 300, f"{m} deliveries deleted", 0.05)
            if not self.finished_in_audit(ids):
                raise SystemExit("bench: deleted from SQS but not in the audit")
            per = sum(counted.values()) / m
            self.results["sqs_requests_per_delivery"] = per
            self.rows.append(("SQS requests per delivery", f"{per:.2f}", describe(counted, m)))

            k = self.options.hops
            hops = [(d.delivery_id, Delivery.from_message(d.message, d.delivery_id)) for d in plan(self.leads(shop, k))]
            self.hops |= {delivery_id for delivery_id, _ in hops}
            from tasks import deliver_webhook
            from tasks.delivery import utcnow

            due = utcnow() + timedelta(hours=2)
            for delivery_id, later in hops:
                deliver_webhook.apply_async(
                    kwargs={"delivery": replace(later, due_at=due).to_message()}, task_id=delivery_id, DelaySeconds=3
                )
            with self.moto.record() as counted:
                wait_until(
                    lambda: self.deleted() >= k and self.sent() >= k,
                    120,
                    f"{k} hops",
                    0.05,
                )
            per = sum(counted.values()) / k
            self.results["sqs_requests_per_hop"] = per
            self.rows.append(("SQS requests per hop", f"{per:.2f}", describe(counted, k)))
        finally:
            worker.stop()

    def deleted(self) -> int:
        """Messages deleted since the recording started (one by one or in batches)."""
        found = measure.messages_by_action(self.moto.recording.read_text())
        return found["DeleteMessage"] + found["DeleteMessageBatch"]

    def sent(self) -> int:
        found = measure.messages_by_action(self.moto.recording.read_text())
        return found["SendMessage"] + found["SendMessageBatch"]


def per_message(drain: Drain) -> str:
    return f"{sum(drain.requests.values()) / drain.messages:.2f}"


def describe(counts: Counter[str], per: int) -> str:
    return ", ".join(f"{action.split(' ', 1)[1]} {count / per:.2f}" for action, count in counts.most_common())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300, help="messages per drain (no-op, deliveries, hanging)")
    parser.add_argument("--count", type=int, default=100, help="leads dispatched to count requests per delivery")
    parser.add_argument("--hops", type=int, default=20, help="long waits to count requests per hop")
    parser.add_argument("--raw-posts", type=int, default=2000)
    parser.add_argument("--pool", help="instead of the Procfile's (to compare)")
    parser.add_argument("--concurrency", type=int, help="instead of the Procfile's (to compare)")
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy the no-op and delivery drains into DIR (pip install py-spy)"
    )
    parser.add_argument("--quick", action="store_true", help="only the raw POST, no-op and delivery drains")
    options = parser.parse_args()

    from local.count_requests import Moto
    from tests.support.services import mysql

    logs = Path(tempfile.mkdtemp(prefix="bench-"))
    moto = Moto(logs)
    configure_environment(moto.port, logs / "spool")
    mysql(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    started = time.monotonic()
    try:
        from records import migrations

        migrations.upgrade()
        bench = Bench(options, logs, moto)
        print(f"bench: worker `{shlex.join(bench.command)}`; logs in {logs}", flush=True)
        phases = [bench.raw_post, bench.noop_and_deliveries, bench.hanging, bench.dispatch_counts]
        for phase in phases[:2] if options.quick else [*phases, bench.per_delivery_and_hop]:
            phase()
            print(f"  {time.monotonic() - started:5.0f} s: {phase.__name__} done", flush=True)
        if options.quick:
            print(measure.table(bench.rows))
            return
        book = measure.accounting(bench.dispatched, bench.audit())
        strays = {delivery_id for delivery_id, _ in bench.audit()} & bench.hops
        from records import trail

        report = trail.verify(os.environ["DATABASE_URL"])
    finally:
        from records import database

        database.engine(os.environ["DATABASE_URL"]).dispose()
        mysql(f"DROP DATABASE IF EXISTS {DB}")
        moto.stop()
    line = measure.summary(bench.results, book)
    if strays:
        line["accounted"] = False
    rows = [
        *bench.rows,
        (
            "accounted",
            "yes" if line["accounted"] else "NO: this run is VOID",
            f"dispatched {book.dispatched} = delivered {book.delivered} + failed {book.failed}"
            + (f"; {len(strays)} long waits attempted early" if strays else ""),
        ),
        ("audit trail", "intact" if report.ok else "BROKEN", report.summary() if report.ok else report.headline()),
    ]
    print()
    print(f"worker: `{shlex.join(bench.command[1:])}` ({time.monotonic() - started:.0f} s)")
    print(measure.table(rows))
    print()
    print(
        measure.table(
            [(t.name, "met" if t.met else "NOT MET", t.detail) for t in measure.targets(line)], ("target", "", "")
        )
    )
    print()
    print(json.dumps(line))


if __name__ == "__main__":
    main()
