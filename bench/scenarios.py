"""The benchmark's scenarios (see bench.run): the rounds of raw POSTs, no-op and delivery drains (the
subscriber features on and off), a hanging subscriber, SQS alone, the dispatch's requests, and the
requests per delivery and per hop. The isolation scenarios are in bench.isolation."""

from __future__ import annotations

import contextlib
import json
import math
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import HANG_SECONDS, HELD, RUN, Drain, Window, wait_until
from bench.isolation import Isolation
from bench.report import describe

#: the worker's settings that switch the subscriber features off: the breaker, the in-flight
#: limit, and the cache's reloads (loaded once, at the first delivery: before the measure starts)
FEATURES_OFF = {
    "WEBHOOK_CIRCUIT_BREAKER": "0",
    "WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIBER": "0",
    "SUBSCRIBER_CACHE_SECONDS": "86400",
}


class Bench(Isolation):
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
        # deliveries with the features on and off side by side, in turns
        kinds = ["noop", "deliveries", "features-off"] if number % 2 == 0 else ["features-off", "deliveries", "noop"]
        if not self.options.quick:
            kinds += ["healthy", "hanging"] if number % 2 == 0 else ["hanging", "healthy"]
            kinds.append("held")
        if self.options.breakdown:
            kinds += list(PARTS)
        for kind in kinds:
            queue = f"bench-{RUN}-{kind}-{number}"
            if kind in ("healthy", "hanging"):
                self.tenth(kind, number)
                self.sqs_alone(kind, number)
                continue
            if kind == "held":
                self.held(number)
                continue
            planned = plan(self.leads(self.healthy_shop, leads)).deliveries[:n]
            if kind in ("deliveries", "features-off"):
                messages = [(d.delivery_id, d.message) for d in planned]
                self.dispatched |= {task_id for task_id, _ in messages}
                task, command = "tasks.deliver_webhook", self.command
                env = FEATURES_OFF if kind == "features-off" else {}
            else:
                messages = [(str(uuid.uuid4()), d.message) for d in planned]  # never delivered
                task, command = (NOOP, self.noop_command) if kind == "noop" else (PART, self.parts_command)
                env = {} if kind == "noop" else {"BENCH_PART": kind}
            self.preload(messages, queue, task)
            drained = self.drain(f"{kind}-{number}", command, queue, n, {task_id for task_id, _ in messages}, env)
            self.drains.setdefault(kind, []).append(drained)
            if kind == "deliveries":  # the healthy path: is the in-flight limit ever reached?
                held = self.audit({task_id for task_id, _ in messages})
                self.held_over_limit += sum(1 for _, status in held if status == "held")

    def cache_price(self) -> None:
        """The cost of the cache on the healthy path, priced in this process (bench.cache) for a
        subscriber of the rounds, at the delivery drains' median rate."""
        import statistics

        from bench import cache
        from producer.subscribers import named

        name = f"healthy-0-{RUN}"
        rate = statistics.median(d.per_second for d in self.drains["deliveries"])
        self.cache = cache.price(named(name).id, name, rate)
        self.results["subscriber_cache_cpu_ms"] = self.cache.per_delivery_ms

    def tenth(self, kind: str, number: int) -> None:
        """N healthy deliveries and one in ten more to a tenth subscriber: answering at once
        (``healthy``) or after the timeout (``hanging``); measured until the N healthy are done.

        ``hanging`` is measured once the tenth's circuit has had time to open, with the default
        settings: each round has a tenth subscriber of its own, whose circuit is closed at first.
        A first drain (``hanging-closed``) is measured the same way while it trips (the
        in-flight limit alone protects the others: 8 of the worker's threads wait on the
        tenth), and lasts until the circuit is open; the measured drain follows, within the
        circuit's first cool-down (1 minute), on a new worker and a new queue, as the healthy
        drain is (the first drain's failed attempts wait in its queue for their retry, 10
        minutes later). Measured once both ways, two rounds each (this queue or the first
        drain's): x 0.56 and 0.55, 0.84 and 1.01 (new, same): no clear difference within the
        noise of this machine."""
        if kind == "healthy":
            if kind not in self.tenth_shops:
                paths = [f"/ok/nine-and-healthy-{index}" for index in range(9)] + ["/ok/tenth"]
                self.tenth_shops[kind] = self.subscribers("nine-and-healthy", paths)
            self.drains.setdefault(kind, []).append(self.tenth_drain(kind, number, self.tenth_shops[kind]))
            return
        name = f"nine-and-hanging-{number}"
        tenth = f"{name}-9-{RUN}"
        hanging = f"/slow/{HANG_SECONDS}/{name}"
        shop = self.subscribers(name, [f"/ok/{name}-{index}" for index in range(9)] + [hanging])
        queue = f"bench-{RUN}-{kind}-closed-{number}"
        worker = self.start_worker(f"{kind}-closed-{number}", self.command, queue)
        try:
            closed = self.tenth_drain("hanging-closed", number, shop, queue, worker, tripping=tenth)
            self.drains.setdefault("hanging-closed", []).append(closed)
        finally:
            worker.stop()
        if not self.queue_empty(queue):
            raise SystemExit(f"bench: {kind}-closed-{number}: messages left in {queue}")
        posts = len(self.receiver.to(hanging))
        measured = self.tenth_drain(kind, number, shop, f"bench-{RUN}-{kind}-{number}")
        self.drains.setdefault(kind, []).append(measured)
        self.hanging_posts.append(len(self.receiver.to(hanging)) - posts)

    def tenth_drain(
        self, kind: str, number: int, shop: str, queue: str | None = None, worker: Any = None, tripping: str = ""
    ) -> Drain:
        """Preload N + N/9 deliveries to the shop's 10 subscribers (the 10th is ``-9-``), drain
        them with a new worker (or ``worker``, on ``queue``, paused meanwhile), measured until the
        N to the other 9 are done; then until every delivery is recorded (an attempt, or a hold)
        and, when ``tripping`` names the 10th, until its circuit is open."""
        from producer.dispatch import plan

        n = self.options.messages
        planned = plan(self.leads(shop, math.ceil(n / 9))).deliveries
        tenth_ids = {d.delivery_id for d in planned if d.webhook.endswith(f"-9-{RUN}")}
        others = {d.delivery_id for d in planned} - tenth_ids
        queue = queue or f"bench-{RUN}-{kind}-{number}"
        with self.paused(worker) if worker is not None else contextlib.nullcontext():
            self.preload(((d.delivery_id, d.message) for d in planned), queue, "tasks.deliver_webhook")
        self.dispatched |= others | tenth_ids
        self.tenth_sizes = (len(others), len(tenth_ids))
        ids = others | tenth_ids
        also = self.until_open(tripping, shop, queue, ids) if tripping else None
        settle = self.settled(queue, ids, also)
        return self.drain(f"{kind}-{number}", self.command, queue, len(planned), others, settle=settle, worker=worker)

    def held(self, number: int) -> None:
        """N deliveries to one subscriber whose circuit is open (opened for an hour in the database
        for the bench), drained by a new worker: what holding a delivery costs (its hold recorded,
        its message parked in the platform database until the circuit closes), measured as the others, each
        delivery done when its hold is recorded."""
        from producer.dispatch import plan

        n = self.options.messages
        if not self.held_shop:
            self.held_shop = self.subscribers("held", ["/ok/held"])
            self.open_circuit(f"held-0-{RUN}", 3600)
        planned = plan(self.leads(self.held_shop, n)).deliveries
        queue = f"bench-{RUN}-held-{number}"
        ids = {d.delivery_id for d in planned}
        self.preload(((d.delivery_id, d.message) for d in planned), queue, "tasks.deliver_webhook")
        self.dispatched |= ids
        settle = self.settled(queue, ids)
        drained = self.drain(f"held-{number}", self.command, queue, n, ids, settle=settle, done_when=HELD)
        self.drains.setdefault("held", []).append(drained)

    def until_open(self, webhook: str, shop: str, queue: str, ids: set[str]) -> Callable[[], bool]:
        """Whether the subscriber's circuit is open; while it is not, a lead to it alone is
        dispatched every second at most (added to ``ids``): a circuit is judged when a worker's
        cache loads, and a cache loads when a delivery comes (with 34 hanging deliveries out of
        340, the circuit opens before they run out; with fewer, they may run out first)."""
        from producer.dispatch import plan

        last = time.monotonic()

        def check() -> bool:
            nonlocal last
            if self.circuit_open(webhook):
                return True
            if time.monotonic() - last >= 1.0:
                last = time.monotonic()
                planned = plan(self.leads(shop, 1), to={webhook}).deliveries
                self.preload(((d.delivery_id, d.message) for d in planned), queue, "tasks.deliver_webhook")
                ids.update(d.delivery_id for d in planned)
                self.dispatched |= {d.delivery_id for d in planned}
            return False

        return check

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
