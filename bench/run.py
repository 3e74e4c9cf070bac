"""make bench: what a delivery costs in CPU, time and SQS requests, next to Celery's own cost.

    make bench                                        # the Procfile's worker
    .venv/bin/python -m bench.run --pool threads --concurrency 32 --rounds 5 --breakdown

Everything runs here, on loopback: moto's server (SQS, with its request recorder), a MariaDB
database at 127.0.0.1:3306 (created and dropped), loopback receivers (local/recorder.py)
and the Procfile's worker command (for the no-op baseline, the same command on ``bench.noop``),
on the production defaults of every setting but WEBHOOK_ALLOWED_NETWORKS (loopback receivers).
Every number comes from the same run:

1. rounds (``--rounds``, 3): in each, a raw POST loop (a plain ``requests.Session`` to the
   receiver, in its own process: the floor), then N no-op tasks (the same messages as
   deliveries) and N deliveries (10 subscribers answering 200), each preloaded then drained
   by a fresh worker (the order alternates between rounds). A worker's CPU is utime + stime of
   it and its children (/proc), from the moment its log reports ``--warm-up`` tasks done (64:
   its threads and connections are open) until 64 are left (the tasks under way at both ends
   balance); rates over the same window. The medians are kept (the machine is shared: a round can be slowed down);
2. hanging, in each round too: N deliveries to 9 subscribers and N/9 more to a 10th, drained
   twice: the 10th answering at once, then answering after 15 s (WEBHOOK_TIMEOUT is 10 s).
   The rate to the 9 (until their N are done) with the 10th hanging, over the rate with the
   10th healthy (medians). The same pattern without a worker (receive 10, delete them but one
   in ten kept in flight) gives moto's own ratio: its receive slows down with the messages in
   flight;
3. dispatch: the SQS requests of ``producer.dispatch`` of one lead matching 10 subscribers (a
   warm producer), and of ``webhooks dispatch`` (a new process), counted by moto's recorder;
4. per delivery: a running worker, idle, then M leads dispatched (one subscriber, first-try
   successes): every request counted from the dispatch until the last message is deleted;
5. per hop: K messages due in 2 hours (beyond SQS_MAX_DELAY) reach that worker, which puts
   each back for SQS_MAX_DELAY: every request counted, divided by K (a first K warm the
   worker's publishing connections up, and are shown apart).

With ``--breakdown``, each round also drains tasks doing one part of a delivery (bench.parts).
The run is accounted when every delivery dispatched is in the audit as delivered or failed (the
hanging ones fail: timeout, retry scheduled); otherwise it is void, and says so. The last line
printed is one JSON object (bench.measure.KEYS).
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import math
import os
import re
import shlex
import signal
import statistics
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
        if name.startswith(("SQS_", "WEBHOOK_", "AUDIT_", "WORKER_", "BROKER_", "DATABASE_", "AWS_", "BENCH_")):
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


def spread(values: Sequence[float], unit: str = "", digits: int = 2) -> str:
    """``median (min-max)`` of a round's values."""
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}{unit}"
    return f"{median:.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def describe(counts: Counter[str], per: int) -> str:
    """``SendMessage 1.00, ReceiveMessage 0.12``: requests per unit, by action."""
    return ", ".join(f"{action.split(' ', 1)[-1]} {count / per:.2f}" for action, count in counts.most_common())


class Bench:
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
        self.raw: list[dict[str, float]] = []
        self.healthy_shop = ""
        self.tenth_shops: dict[str, str] = {}
        self.sqs_rates: dict[str, list[float]] = {}  # sqs_alone: kind -> rates
        self.tenth_sizes = (0, 0)

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

    def queue_empty(self, queue: str) -> bool:
        """No message visible nor in flight (delayed ones, retries scheduled later, may remain)."""
        import boto3

        client = boto3.client("sqs", endpoint_url=self.moto.url, region_name="us-east-1")
        url = client.get_queue_url(QueueName=queue)["QueueUrl"]
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        found = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return all(found[name] == "0" for name in names)

    def deleted(self) -> int:
        """Messages deleted since the recording started (one by one or in batches)."""
        found = measure.messages_by_action(self.moto.recording.read_text())
        return found["DeleteMessage"] + found["DeleteMessageBatch"]

    def sent(self) -> int:
        found = measure.messages_by_action(self.moto.recording.read_text())
        return found["SendMessage"] + found["SendMessageBatch"]

    def drain(
        self,
        name: str,
        command: list[str],
        queue: str,
        total: int,
        wanted: set[str],
        env: dict[str, str] | None = None,
    ) -> Drain:
        """Start a worker on ``queue``, loaded with ``total`` messages; measure from "ready" (or after
        ``--warm-up`` of the wanted tasks) until every
        task of ``wanted`` finished (its log says so); then wait until all ``total`` are deleted."""
        from local.services import Worker

        class FastWorker(Worker):
            READY_POLL = 0.005

        log = self.logs / f"{name}.log"
        with self.moto.record() as requests:
            worker = FastWorker(log, env={"SQS_QUEUE": queue, **(env or {})}, command=command)
            try:
                finished = Finished(worker.log_path)
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
                wait_until(lambda: self.deleted() >= total, 120, f"{name}: {total} deleted", 0.1)
            finally:
                worker.stop()
        if not self.queue_empty(queue):
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

    # --- the rounds: raw POST, no-op and delivery drains --------------------------------

    def raw_post(self) -> None:
        from local.leads import a_lead
        from tasks import payload

        body = self.logs / "body.json"
        body.write_bytes(payload.encode(payload.build(a_lead("raw", "call"), 0)))
        url, count = self.receiver.url("/ok/raw"), str(self.options.raw_posts)
        done = subprocess.run(
            [sys.executable, "-m", "bench.raw_post", url, count, str(body)],
            capture_output=True,
            text=True,
            check=True,
        )
        found = json.loads(done.stdout)
        if found["failures"]:
            raise SystemExit(f"bench: raw POST loop: {found['failures']} failures")
        self.raw.append(found)

    def round(self, number: int) -> None:
        from bench.noop import NAME as NOOP
        from bench.parts import NAME as PART
        from bench.parts import PARTS
        from producer.dispatch import plan

        n = self.options.messages
        if not self.healthy_shop:
            self.healthy_shop = self.subscribers("healthy", [f"/ok/healthy-{index}" for index in range(10)])
        leads = math.ceil(n / 10)
        self.raw_post()
        kinds = ["noop", "deliveries"] if number % 2 == 0 else ["deliveries", "noop"]
        if not self.options.quick:
            kinds += ["healthy", "hanging"] if number % 2 == 0 else ["hanging", "healthy"]
        if self.options.breakdown:
            kinds += list(PARTS)
        for kind in kinds:
            queue = f"bench-{RUN}-{kind}-{number}"
            if kind in ("healthy", "hanging"):
                self.tenth(kind, number)
                self.sqs_alone(kind, number)
                continue
            planned = plan(self.leads(self.healthy_shop, leads))[:n]
            if kind == "deliveries":
                messages = [(d.delivery_id, d.message) for d in planned]
                self.dispatched |= {task_id for task_id, _ in messages}
                task, command, env = "tasks.deliver_webhook", self.command, {}
            else:
                messages = [(str(uuid.uuid4()), d.message) for d in planned]  # never delivered
                task, command = (NOOP, self.noop_command) if kind == "noop" else (PART, self.parts_command)
                env = {} if kind == "noop" else {"BENCH_PART": kind}
            self.preload(messages, queue, task)
            drained = self.drain(f"{kind}-{number}", command, queue, n, {task_id for task_id, _ in messages}, env)
            self.drains.setdefault(kind, []).append(drained)

    def summarize_rounds(self) -> None:
        from bench.parts import PARTS

        n, rounds = self.options.messages, len(self.raw)
        noop, deliveries = self.drains["noop"], self.drains["deliveries"]
        raw_cpu = [found["cpu_ms"] for found in self.raw]
        self.results.update(
            raw_post_cpu_ms=statistics.median(raw_cpu),
            noop_task_cpu_ms=statistics.median(d.cpu_ms for d in noop),
            delivery_cpu_ms=statistics.median(d.cpu_ms for d in deliveries),
            noop_tasks_per_s=statistics.median(d.per_second for d in noop),
            deliveries_per_s=statistics.median(d.per_second for d in deliveries),
            worker_rss_mb=max(d.rss_mib for d in deliveries),
        )
        each = f"median of {rounds} (min-max)" if rounds > 1 else "1 round"
        warm = min(self.options.warm_up, n // 4)
        loaded = f"{n} preloaded, measured from the {warm}th done to the {warm}th left" if warm else f"{n} preloaded"
        wall = statistics.median(found["wall_ms"] for found in self.raw)
        self.rows += [
            ("raw POST CPU", spread(raw_cpu, " ms"), f"{self.options.raw_posts} POSTs, {wall:.2f} ms each; {each}"),
            ("no-op task CPU", spread([d.cpu_ms for d in noop], " ms"), f"{loaded}, bench.noop worker; {each}"),
            ("delivery CPU", spread([d.cpu_ms for d in deliveries], " ms"), f"{loaded}, 10 subscribers; {each}"),
            ("no-op drain rate", spread([d.per_second for d in noop], "/s", 1), f"{loaded}; {each}"),
            ("delivery drain rate", spread([d.per_second for d in deliveries], "/s", 1), f"{loaded}; {each}"),
            ("worker RSS", f"{self.results['worker_rss_mb']:.0f} MiB", f"after {n} deliveries (the largest)"),
        ]
        for kind, drains in (("no-op", noop), ("delivery", deliveries)):
            counted: Counter[str] = sum((d.requests for d in drains), Counter())
            per = sum(counted.values()) / (n * len(drains))
            self.rows.append((f"SQS per message, {kind} drains", f"{per:.2f}", describe(counted, n * len(drains))))
        if "hanging" in self.drains:
            hanging = [d.per_second for d in self.drains["hanging"]]
            healthy = [d.per_second for d in self.drains["healthy"]]
            ratio = statistics.median(hanging) / statistics.median(healthy)
            self.results["healthy_rate_ratio_with_hanging"] = ratio
            alone = {kind: statistics.median(rates) for kind, rates in self.sqs_rates.items()}
            moto_alone = alone["hanging"] / alone["healthy"]
            others, tenth = self.tenth_sizes
            self.rows += [
                (
                    "rate to 9 subscribers, the 10th healthy",
                    spread(healthy, "/s", 1),
                    f"{others} + {tenth} to the 10th, measured until the {others} are done; {each}",
                ),
                (
                    "same, the 10th hanging",
                    f"{spread(hanging, '/s', 1)}: x {ratio:.2f}",
                    f"the 10th answers after {HANG_SECONDS} s (WEBHOOK_TIMEOUT 10 s); {each}",
                ),
                (
                    "same pattern, SQS alone (no worker)",
                    f"{alone['hanging']:.1f}/s over {alone['healthy']:.1f}/s: x {moto_alone:.2f}",
                    f"a loop: receive 10, delete them but one in ten kept in flight (or all); {each}",
                ),
            ]
        if self.options.breakdown:
            base = statistics.median(d.cpu_ms for d in noop)
            for kind in PARTS:
                cpu = statistics.median(d.cpu_ms for d in self.drains[kind])
                self.rows.append((f"part `{kind}` CPU", f"{cpu:.2f} ms", f"no-op + {cpu - base:.2f} ms; bench.parts"))

    def tenth(self, kind: str, number: int) -> None:
        """N healthy deliveries and one in ten more to a tenth subscriber: answering at once
        (``healthy``) or after the timeout (``hanging``); measured until the N healthy are done."""
        from producer.dispatch import plan

        n = self.options.messages
        name = f"nine-and-{kind}"
        if kind not in self.tenth_shops:
            tenth = "/ok/tenth" if kind == "healthy" else f"/slow/{HANG_SECONDS}/tenth"
            self.tenth_shops[kind] = self.subscribers(name, [f"/ok/{name}-{index}" for index in range(9)] + [tenth])
        planned = plan(self.leads(self.tenth_shops[kind], math.ceil(n / 9)))
        tenth_ids = {d.delivery_id for d in planned if d.webhook.startswith(f"{name}-9-")}
        others = {d.delivery_id for d in planned} - tenth_ids
        queue = f"bench-{RUN}-{kind}-{number}"
        self.preload(((d.delivery_id, d.message) for d in planned), queue, "tasks.deliver_webhook")
        self.dispatched |= others | tenth_ids
        drained = self.drain(f"{kind}-{number}", self.command, queue, len(planned), others)
        self.drains.setdefault(kind, []).append(drained)
        self.tenth_sizes = (len(others), len(tenth_ids))

    def sqs_alone(self, kind: str, number: int) -> None:
        """The same drain without a worker: a loop receiving 10 messages at a time and deleting
        them, but for one in ten kept in flight (``hanging``), as the worker does with the
        tenth subscriber's; measured on the same part of the queue as the worker's drains (from
        the warm-up's count deleted to that count left). moto's receive looks at every message
        of the queue, in flight or not: this is how much moto alone slows down with the pattern
        (the loop waits for each delete; a worker deletes in the background, and slows down less)."""
        import boto3

        from bench.noop import NAME as NOOP

        n = self.options.messages
        total = n + math.ceil(n / 9)  # as in `tenth`: N, and one in ten more
        planned = [(str(uuid.uuid4()), message) for message in self.sample_messages(total)]  # never delivered
        queue = f"bench-{RUN}-sqs-{kind}-{number}"
        self.preload(planned, queue, NOOP)
        client = boto3.client("sqs", endpoint_url=self.moto.url, region_name="us-east-1")
        url = client.get_queue_url(QueueName=queue)["QueueUrl"]
        others = total - total // 10
        warm_up = min(self.options.warm_up, others // 4)
        received = deleted = 0
        window = Window(0, time.monotonic(), 0.0)
        while deleted < others - warm_up:  # the same part of the queue as the worker's window
            messages = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=900)
            entries: list[dict[str, str]] = []
            for message in messages.get("Messages", []):
                tenth = received % 10 == 9
                received += 1
                deleted += not tenth
                if not (tenth and kind == "hanging"):
                    entries.append({"Id": str(len(entries)), "ReceiptHandle": message["ReceiptHandle"]})
            if entries:
                client.delete_message_batch(QueueUrl=url, Entries=entries)
            if warm_up and window.done_before == 0 and deleted >= warm_up:
                window.restart(deleted, 0.0)
        self.sqs_rates.setdefault(kind, []).append((deleted - window.done_before) / (time.monotonic() - window.started))

    def sample_messages(self, count: int) -> list[dict[str, Any]]:
        from producer.dispatch import plan

        planned: list[dict[str, Any]] = []
        while len(planned) < count:
            planned += [d.message for d in plan(self.leads(self.healthy_shop, math.ceil((count - len(planned)) / 10)))]
        return planned[:count]

    # --- the other phases ---------------------------------------------------------------

    def dispatch_counts(self) -> None:
        """SQS requests of one lead to 10 subscribers: warm producer, then a new `webhooks dispatch`."""
        import producer
        from local.leads import a_lead

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

    def per_delivery_and_hop(self) -> None:
        """A running worker on the producer's queue: M dispatched leads, then long waits."""
        from local.services import Worker
        from producer.dispatch import dispatch_all, plan
        from tasks import deliver_webhook
        from tasks.delivery import Delivery, utcnow

        pending = set(self.dispatched) - {delivery_id for delivery_id, _ in self.audit()}  # the dispatch phase's
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
            due = utcnow() + timedelta(hours=2)
            for label in ("first", "steady"):
                later = [Delivery.from_message(d.message, d.delivery_id) for d in plan(self.leads(shop, k))]
                self.hops |= {d.delivery_id for d in later}
                for delivery in later:  # invisible for 3 s: the recording starts before the worker sees them
                    message = replace(delivery, due_at=due).to_message()
                    deliver_webhook.apply_async(
                        kwargs={"delivery": message}, task_id=delivery.delivery_id, DelaySeconds=3
                    )
                with self.moto.record() as counted:
                    wait_until(lambda: self.deleted() >= k and self.sent() >= k, 120, f"{k} hops", 0.05)
                per = sum(counted.values()) / k
                if label == "steady":
                    self.results["sqs_requests_per_hop"] = per
                    self.rows.append(("SQS requests per hop", f"{per:.2f}", describe(counted, k)))
                else:
                    self.rows.append(
                        (f"same, the worker's first {k} hops", f"{per:.2f}", describe(counted, k) + " (warm-up)")
                    )
        finally:
            worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300, help="messages per drain (no-op, deliveries, hanging)")
    parser.add_argument("--rounds", type=int, default=3, help="raw POST, no-op and delivery drains: medians of these")
    parser.add_argument("--count", type=int, default=100, help="leads dispatched to count requests per delivery")
    parser.add_argument("--hops", type=int, default=20, help="long waits to count requests per hop")
    parser.add_argument("--raw-posts", type=int, default=2000)
    parser.add_argument(
        "--warm-up", type=int, default=64, help="tasks of each drain done before its measure starts (0: from ready)"
    )
    parser.add_argument("--pool", help="instead of the Procfile's (to compare)")
    parser.add_argument("--concurrency", type=int, help="instead of the Procfile's (to compare)")
    parser.add_argument("--breakdown", action="store_true", help="also price parts of a delivery (bench.parts)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy a delivery drain into DIR (pip install py-spy)")
    parser.add_argument("--quick", action="store_true", help="the rounds only, no JSON")
    options = parser.parse_args()

    from local.count_requests import Moto
    from local.services import mysql

    logs = Path(tempfile.mkdtemp(prefix="bench-"))
    moto = Moto(logs)
    configure_environment(moto.port, logs / "spool")
    mysql(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
    started = time.monotonic()
    try:
        from records import migrations

        migrations.upgrade()
        bench = Bench(options, logs, moto)
        print(f"bench: worker `{shlex.join(bench.command[1:])}`; logs in {logs}", flush=True)
        steps: list[tuple[str, Callable[[], None]]] = [
            (f"round {number + 1}", functools.partial(bench.round, number)) for number in range(options.rounds)
        ]
        steps.append(("rounds summed up", bench.summarize_rounds))
        if not options.quick:
            steps += [
                ("dispatch counted", bench.dispatch_counts),
                ("per delivery and per hop counted", bench.per_delivery_and_hop),
            ]
        for name, step in steps:
            step()
            print(f"  {time.monotonic() - started:5.0f} s: {name}", flush=True)
        attempts = bench.audit()
        book = measure.accounting(bench.dispatched, attempts)
        strays = {delivery_id for delivery_id, _ in attempts} & bench.hops
        from records import trail

        report = trail.verify(os.environ["DATABASE_URL"])
    finally:
        from records import database

        database.engine(os.environ["DATABASE_URL"]).dispose()
        mysql(f"DROP DATABASE IF EXISTS {DB}")
        moto.stop()

    print()
    print(f"worker: `{shlex.join(bench.command[1:])}` ({time.monotonic() - started:.0f} s)")
    if options.quick:
        print(measure.table(bench.rows))
        return
    line = measure.summary(bench.results, book)
    if strays or not report.ok:
        line["accounted"] = False
    verdict = "yes" if line["accounted"] else "NO: this run is VOID"
    detail = f"dispatched {book.dispatched} = delivered {book.delivered} + failed {book.failed}"
    if strays:
        detail += f"; {len(strays)} long waits were attempted early"
    rows = [
        *bench.rows,
        ("accounted", verdict, detail),
        ("audit trail", "intact" if report.ok else "BROKEN", f"{report.records} records, {report.chains} chains"),
    ]
    print(measure.table(rows))
    print()
    targets = measure.targets(line)
    print(measure.table([(t.name, "met" if t.met else "NOT MET", t.detail) for t in targets], ("target", "", "")))
    if not line["accounted"]:
        print(f"\nthis run is VOID: {detail}" + ("" if report.ok else f"; {report.headline()}"))
    print()
    print(json.dumps(line))


if __name__ == "__main__":
    main()
