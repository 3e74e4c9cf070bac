"""The benchmark's harness: its environment, its workers, and draining a preloaded queue under measure.

``Harness`` holds a run's state and its building blocks; bench.scenarios builds the
measured scenarios on it, bench.report sums them up, bench.run runs them (``make bench``).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import measure
from bench.cache import Price

RUN = uuid.uuid4().hex[:8]
DB = f"webhooks_bench_{RUN}"
#: a hanging subscriber answers after this long; the worker gives up at WEBHOOK_TIMEOUT (10 s)
HANG_SECONDS = 15
#: a task is done when it succeeded (a no-op, a part), or when its delivery's attempt is recorded
#: (the audit's stdout line): a delivery held (parked, or over the in-flight limit) is not
FINISHED = re.compile(
    r"Task [\w.]+\[([0-9a-f-]{36})\] succeeded"
    r"|webhooks\.delivery: delivery ([0-9a-f-]{36}) lead \S* webhook \S* retry \d+ (?:success|error|abandoned) "
)
#: a delivery held (its hold recorded): done, in a drain of held deliveries
HELD = re.compile(r"webhooks\.delivery: delivery ([0-9a-f-]{36}) lead \S* webhook \S* retry \d+ held ")
#: a queue is settled once nothing in it was visible or in flight for this long (s): longer than
#: tasks.limits.OVER_LIMIT_WAIT, so a delivery sent back over the in-flight limit came back meanwhile
QUIET_SECONDS = 3.0


def configure_environment(moto_port: int, spool: Path) -> None:
    """Production defaults, except where the services live (loopback), the allowed networks, and
    task events (off)."""
    for name in list(os.environ):
        if name.startswith(("SQS_", "WEBHOOK_", "AUDIT_", "WORKER_", "BROKER_", "DATABASE_", "AWS_", "BENCH_")):
            del os.environ[name]
    os.environ.update(
        {
            "BROKER_URL": f"sqs://bench:bench@127.0.0.1:{moto_port}",
            "DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:3306/{DB}",
            "WEBHOOK_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
            "SQS_QUEUE": f"bench-{RUN}-count",
            "SQS_REGION": "us-east-1",  # moto's; without it no region is known and nothing starts
            "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            # task events (Flower) off: their SNS publishes, three per task, are priced apart
            # (local.count_requests, docs/operating.md "What it costs"), and on moto they make every
            # measure here noisier than the differences it looks for
            "WORKER_EVENTS": "0",
            "AUDIT_SPOOL_DIR": str(spool),
            "LOG_LEVEL": "INFO",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
        }
    )


def worker_command(app: str = "tasks", pool: str | None = None, concurrency: int | None = None) -> list[str]:
    """The Procfile's worker command, on another Celery module and/or another pool if asked."""
    from local.services import procfile_command

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


class Finished:
    """Task ids the worker's log reports finished (FINISHED, or another pattern), read as it grows."""

    def __init__(self, log: Path, pattern: re.Pattern[str] = FINISHED) -> None:
        self.pattern = pattern
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
            found = self.pattern.search(line)
            if found:
                self.ids.add(next(group for group in found.groups() if group))
        return self.ids


def wait_until(check: Callable[[], object], timeout: float, what: str, every: float = 0.01) -> None:
    if not within(check, timeout, every):
        raise SystemExit(f"bench: timed out after {timeout:.0f} s waiting for {what}")


def within(check: Callable[[], object], timeout: float, every: float = 0.01) -> bool:
    """Whether ``check`` came true within ``timeout`` seconds (asked every ``every`` s)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


@dataclass
class Window:
    """A drain's measure: from ``done_before`` tasks done (at ``started``, ``cpu`` seconds used)
    to ``done_after`` (at ``ended``, ``cpu_after``)."""

    done_before: int
    started: float
    cpu: float
    done_after: int | None = None
    ended: float = 0.0
    cpu_after: float = 0.0

    def restart(self, done_before: int, cpu: float) -> None:
        self.done_before, self.started, self.cpu = done_before, time.monotonic(), cpu

    def close(self, done_after: int, cpu: float) -> None:
        self.done_after, self.ended, self.cpu_after = done_after, time.monotonic(), cpu

    @property
    def tasks(self) -> int:
        return (self.done_after or 0) - self.done_before


@dataclass
class Drain:
    """A fresh worker draining preloaded messages, measured from "ready" (or once its warm-up tasks are
    done) until the wanted ones finished: ``messages`` of them in the window."""

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


class Harness:
    """A benchmark run's state and building blocks: subscribers, leads, preloaded queues, measured drains."""

    def __init__(self, options: argparse.Namespace, logs: Path, moto: Any) -> None:
        from local.recorder import Receiver

        self.options = options
        self.logs = logs
        self.moto = moto
        self.receiver = Receiver()
        self.command = worker_command(pool=options.pool, concurrency=options.concurrency)
        self.noop_command = worker_command("bench.noop", pool=options.pool, concurrency=options.concurrency)
        self.parts_command = worker_command("bench.parts", pool=options.pool, concurrency=options.concurrency)
        self.dispatched: set[str] = set()  # every delivery the run enqueued to be attempted
        self.hops: set[str] = set()  # deliveries due later: put back, never attempted here
        self.results: dict[str, float] = {}
        self.rows: list[tuple[str, str, str]] = []
        self.drains: dict[str, list[Drain]] = {}
        self.cache: Price | None = None  # once priced
        self.held_over_limit = 0  # held records of the delivery drains (features on): the in-flight limit reached
        self.raw: list[dict[str, float]] = []
        self.healthy_shop = ""
        self.tenth_shops: dict[str, str] = {}
        self.sqs_rates: dict[str, list[float]] = {}  # sqs_alone: kind -> rates
        self.tenth_sizes = (0, 0)
        self.held_shop = ""
        self.hanging_posts: list[int] = []  # POSTs to the hanging 10th during each measured drain (its circuit open)
        self.flags: dict[str, bool] = {}  # yes/no measures (recovered_all)
        self._sqs: Any = None

    # --- building blocks ----------------------------------------------------------------

    def subscribers(self, name: str, paths: Sequence[str]) -> str:
        """Subscribers ``name-0``… on the receiver's ``paths``, all matching the shop returned."""
        from producer import subscribers

        shop = f"{name}-{RUN}"
        for index, path in enumerate(paths):
            subscribers.configure(f"{name}-{index}-{RUN}", self.receiver.url(path), ["call"], [shop])
        return shop

    def leads(self, shop: str, count: int) -> list[dict[str, Any]]:
        from local.leads import a_lead

        return [a_lead(shop, "call") for _ in range(count)]

    def preload(self, messages: Iterable[tuple[str, dict[str, Any]]], queue: str, task: str) -> None:
        """Publish (task id, delivery message) pairs to ``queue``, as the producer does."""
        from tasks import app

        for task_id, message in messages:
            app.send_task(task, kwargs={"delivery": message}, task_id=task_id, queue=queue)

    def sqs(self) -> Any:
        """A boto3 SQS client on moto (one per run)."""
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs", endpoint_url=self.moto.url, region_name="us-east-1")
        return self._sqs

    def queue_empty(self, queue: str) -> bool:
        """No message visible nor in flight (delayed ones, retries scheduled later, may remain)."""
        client = self.sqs()
        url = client.get_queue_url(QueueName=queue)["QueueUrl"]
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        found = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return all(found[name] == "0" for name in names)

    def settled(self, queue: str, ids: set[str], also: Callable[[], bool] | None = None) -> Callable[[], bool]:
        """A check for ``wait_until``: ``also`` holds (asked first, each time), every one of ``ids``
        (which ``also`` may add to) has an audit record (an attempt, or a hold), and ``queue`` has
        had nothing visible or in flight for QUIET_SECONDS (what is left there is delayed:
        retries, holds)."""
        steady = measure.Steady(QUIET_SECONDS)

        def check() -> bool:
            holds = (also is None or also()) and self.queue_empty(queue) and ids <= self.recorded(ids)
            return steady.check(holds, time.monotonic())

        return check

    def recorded(self, ids: set[str]) -> set[str]:
        """Those of ``ids`` with at least one audit record."""
        return {delivery_id for delivery_id, _ in self.audit(ids)}

    def deleted(self) -> int:
        """Messages deleted since the recording started (one by one or in batches)."""
        found = measure.messages_by_action(self.moto.recording.read_text())
        return found["DeleteMessage"] + found["DeleteMessageBatch"]

    def sent(self) -> int:
        found = measure.messages_by_action(self.moto.recording.read_text())
        return found["SendMessage"] + found["SendMessageBatch"]

    def start_worker(self, name: str, command: list[str], queue: str, env: dict[str, str] | None = None) -> Any:
        """The worker command on ``queue``, its log in ``name``.log (local.services.Worker)."""
        from local.services import Worker

        class FastWorker(Worker):
            READY_POLL = 0.005

        return FastWorker(self.logs / f"{name}.log", env={"SQS_QUEUE": queue, **(env or {})}, command=command)

    @contextmanager
    def paused(self, worker: Any) -> Iterator[None]:
        """The worker stopped (SIGSTOP) meanwhile, so that what is published then waits for it, as a
        backlog (a request it had under way, a long poll, completes when it goes on)."""
        os.killpg(worker.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(worker.process.pid, signal.SIGCONT)

    def drain(
        self,
        name: str,
        command: list[str],
        queue: str,
        total: int,
        wanted: set[str],
        env: dict[str, str] | None = None,
        settle: Callable[[], bool] | None = None,
        worker: Any = None,
        done_when: re.Pattern[str] = FINISHED,
    ) -> Drain:
        """Start a worker on ``queue`` (or go on with ``worker``, left running), loaded with ``total``
        messages; measure from "ready" (or after ``--warm-up`` of the wanted tasks) until every
        task of ``wanted`` finished (its log says so: ``done_when``); then wait until all ``total`` are deleted
        (or, when deliveries may be sent back to the queue, until ``settle`` says so)."""
        own = worker is None
        with self.moto.record() as requests:
            if own:
                worker = self.start_worker(name, command, queue, env)
            try:
                finished = Finished(worker.log_path, done_when)
                spy = self.profile(name, worker.process.pid)
                # The window starts once `warm_up` of the wanted tasks are done (0: at "ready"): the
                # worker's threads and connections are then open, as in a worker that has run a while.
                # It ends when `warm_up` are left: the tasks under way at either end (up to one per
                # thread) balance, as in a worker that keeps running. Without a warm-up: from "ready"
                # to the last one.
                warm_up = min(self.options.warm_up, len(wanted) // 4)
                window = Window(0, time.monotonic(), measure.tree_cpu_seconds(worker.process.pid))

                def done() -> bool:
                    if worker.process.poll() is not None:
                        return True
                    count = len(wanted & finished.poll())
                    if warm_up and window.done_before == 0 and count >= warm_up:
                        window.restart(count, measure.tree_cpu_seconds(worker.process.pid))
                    if window.done_after is None and count >= len(wanted) - warm_up:
                        window.close(count, measure.tree_cpu_seconds(worker.process.pid))
                    return count == len(wanted)

                wait_until(done, 600, f"{name}: {len(wanted)}")
                if worker.process.poll() is not None:
                    raise SystemExit(f"bench: the {name} worker exited; see {worker.log_path}")
                seconds, cpu = window.ended - window.started, window.cpu_after - window.cpu
                rss = measure.tree_rss_mib(worker.process.pid)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(60)
                if settle is None:
                    wait_until(lambda: self.deleted() >= total, 120, f"{name}: {total} deleted", 0.1)
                else:
                    wait_until(settle, 180, f"{name}: every delivery recorded, the queue quiet", 0.25)
            finally:
                if own:
                    worker.stop()
        if own and not self.queue_empty(queue):
            raise SystemExit(f"bench: {name}: messages left in {queue}")
        return Drain(window.tasks, seconds, cpu, rss, requests)

    def profile(self, name: str, pid: int) -> subprocess.Popen[bytes] | None:
        """With --profile: py-spy samples the first delivery drain's worker (collapsed stacks)."""
        if not self.options.profile or not name.startswith(("noop-0", "deliveries-0")):
            return None
        output = Path(self.options.profile) / f"{name}.txt"
        output.parent.mkdir(parents=True, exist_ok=True)
        spy_command = [
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
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), *spy_command],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.3)  # attached (the messages wait: a profiled run measures nothing else)
        return spy

    def audit(self, ids: set[str] | None = None) -> list[tuple[str, str]]:
        """(delivery id, status) of every audit row (of the deliveries ``ids`` only, when given)."""
        from sqlalchemy import select

        from records import database
        from records.models import DeliveryAttempt

        query = select(DeliveryAttempt.delivery_id, DeliveryAttempt.status)
        if ids is not None:
            if not ids:
                return []
            query = query.where(DeliveryAttempt.delivery_id.in_(sorted(ids)))
        with database.audit() as session:
            return [(row.delivery_id, row.status) for row in session.execute(query)]

    def finished_in_audit(self, ids: set[str]) -> bool:
        return ids <= {delivery_id for delivery_id, _ in self.audit()}
