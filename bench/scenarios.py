"""The benchmark's scenarios (see bench.run): the rounds of raw POSTs, no-op and delivery drains, a
hanging subscriber, SQS alone, the dispatch's requests, and the requests per delivery and per hop."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import HANG_SECONDS, RUN, Harness, Window, wait_until
from bench.report import describe


class Bench(Harness):
    """A benchmark run: the harness, and the scenarios measured on it."""

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
            planned = plan(self.leads(self.healthy_shop, leads)).deliveries[:n]
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

    def tenth(self, kind: str, number: int) -> None:
        """N healthy deliveries and one in ten more to a tenth subscriber: answering at once
        (``healthy``) or after the timeout (``hanging``); measured until the N healthy are done."""
        from producer.dispatch import plan

        n = self.options.messages
        name = f"nine-and-{kind}"
        if kind not in self.tenth_shops:
            tenth = "/ok/tenth" if kind == "healthy" else f"/slow/{HANG_SECONDS}/tenth"
            self.tenth_shops[kind] = self.subscribers(name, [f"/ok/{name}-{index}" for index in range(9)] + [tenth])
        planned = plan(self.leads(self.tenth_shops[kind], math.ceil(n / 9))).deliveries
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
            leads = self.leads(self.healthy_shop, math.ceil((count - len(planned)) / 10))
            planned += [d.message for d in plan(leads).deliveries]
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
        from tasks.message import DeliveryMessage
        from webhooks.clock import utcnow

        pending = set(self.dispatched) - {delivery_id for delivery_id, _ in self.audit()}  # the dispatch phase's
        worker = Worker(self.logs / "count.log", command=self.command)
        try:
            wait_until(lambda: self.finished_in_audit(pending), 120, "the dispatch phase's deliveries", every=0.2)
            time.sleep(3)  # acknowledgements done, the worker back to its long poll

            m = self.options.count
            shop = self.subscribers("count", ["/ok/count"])
            leads = self.leads(shop, m)
            with self.moto.record() as counted:
                ids = {d.delivery_id for d in dispatch_all(leads).deliveries}
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
                later = [DeliveryMessage.read(d.message) for d in plan(self.leads(shop, k)).deliveries]
                self.hops |= {d.delivery_id for d in later}
                for delivery in later:  # invisible for 3 s: the recording starts before the worker sees them
                    message = delivery.but(due_at=due).sealed()
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
