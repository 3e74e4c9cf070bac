"""The benchmark's isolation scenarios (issue 14): subscribers answering 503 with the circuit
breaker on and off, and a subscriber down and then back.

Each runs a worker of its own (the Procfile's command) on a queue of its own while leads arrive
at a steady pace (``--leads-per-second``, each lead to 10 subscribers), as in production, not as
a preloaded backlog: the breaker judges its window of recent attempts in time, not in messages.

- **failing subscribers**: 10 subscribers, one of them (10 %) answering 503 to every request,
  leads arriving for ``--failing-seconds``; run twice, one after the other, with the breaker off
  (``WEBHOOK_CIRCUIT_BREAKER=0``) and on (the defaults: at least 10 attempts in 5 minutes, 70 %
  of them failed, 1 minute's cool-down, doubled at each failed probe). Each delivery is attempted
  once within a run (the first retry is due 10 minutes later): the POSTs the failing subscriber
  received, breaker on over breaker off. The runs never overlap: the breaker is fleet-wide, and
  a worker with it on would open the circuit of the other run's failing subscriber too.
- **recovery**: 10 subscribers, one of them answering 503 for the first ``RECOVERY_DOWN``
  seconds of the run and 200 after; leads arrive for ``RECOVERY_SECONDS``. Its circuit opens
  while it is down; the deliveries that failed are retried (a short schedule,
  ``RECOVERY_SCHEDULE``, for this worker only: the default's first retry is 10 minutes away),
  those that arrived while the circuit was open are held. Recovered when every delivery to it
  is delivered, once it is back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from bench import measure
from bench.harness import RUN, Harness, within

#: the recovering subscriber answers 503 for this long (s) from the first lead, then 200
RECOVERY_DOWN = 20
#: leads arrive for this long (s) in the recovery run
RECOVERY_SECONDS = 40
#: the recovery run's retry schedule (its worker only): failures during the outage come back in seconds
RECOVERY_SCHEDULE = "5s,10s,20s,30s,1m,2m,4m,8m,15m"
#: how long the recovery run waits for every delivery to the recovering subscriber (s)
RECOVERY_TIMEOUT = 300


@dataclass(frozen=True)
class Event:
    webhook: str
    kind: str  # subscriber.circuit_opened | subscriber.circuit_closed | subscriber.disabled
    at: datetime  # naive UTC, by the project's clock


@dataclass(frozen=True)
class FailingRun:
    label: str  # "on" | "off"
    leads: int
    seconds: float  # how long the leads took to arrive
    posts: int  # POSTs the failing subscriber received
    events: list[Event]  # the failing subscriber's circuit
    posts_before_opening: int | None  # None: its circuit never opened


@dataclass(frozen=True)
class Recovery:
    deliveries: int  # to the recovering subscriber
    delivered: int
    down: float  # s it was down, from the first lead
    last_after: float | None  # s from its coming back to its last delivery
    started_at: datetime  # the first lead (naive UTC)
    events: list[Event]


def _unix(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


class Isolation(Harness):
    """The isolation scenarios, on the harness."""

    failing_runs: tuple[FailingRun, FailingRun] | None = None  # off, on
    recovered: Recovery | None = None

    # --- building blocks ----------------------------------------------------------------

    def circuit_open(self, webhook: str) -> bool:
        """Whether the subscriber's circuit is open now, as the database says."""
        from sqlalchemy import select

        from records import database
        from records.models import Subscriber

        with database.platform() as session:
            until = session.execute(select(Subscriber.circuit_open_until).where(Subscriber.name == webhook)).scalar()
        return until is not None

    def open_circuit(self, webhook: str, seconds: int) -> None:
        """Open the subscriber's circuit for ``seconds``, in the database, as a worker would."""
        from datetime import timedelta

        from sqlalchemy import update

        from records import database
        from records.models import Subscriber
        from webhooks.clock import utcnow

        with database.platform() as session:
            session.execute(
                update(Subscriber)
                .where(Subscriber.name == webhook)
                .values(circuit_open_until=utcnow() + timedelta(seconds=seconds), circuit_cooldown=seconds)
            )

    def events(self, webhook: str) -> list[Event]:
        """The subscriber's recorded events (circuit opened, closed), oldest first."""
        from sqlalchemy import select

        from records import database
        from records.models import SubscriberEvent

        query = (
            select(SubscriberEvent.webhook, SubscriberEvent.kind, SubscriberEvent.at)
            .where(SubscriberEvent.webhook == webhook)
            .order_by(SubscriberEvent.at)
        )
        with database.platform() as session:
            return [Event(row.webhook, row.kind, row.at) for row in session.execute(query)]

    def paced(self, shop: str, queue: str, per_second: float, seconds: float) -> list[tuple[str, str]]:
        """Dispatch a lead to the shop's subscribers every 1/``per_second`` s for ``seconds``
        (planned as the producer does, published to ``queue``); the (delivery id, subscriber
        name) of every delivery enqueued."""
        from producer.dispatch import plan

        sent: list[tuple[str, str]] = []
        started = time.monotonic()
        for index in range(round(per_second * seconds)):
            wait = started + index / per_second - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            planned = plan(self.leads(shop, 1)).deliveries
            self.preload(((d.delivery_id, d.message) for d in planned), queue, "tasks.deliver_webhook")
            sent += [(d.delivery_id, d.webhook) for d in planned]
        self.dispatched |= {delivery_id for delivery_id, _ in sent}
        return sent

    # --- failing subscribers: the breaker on and off ------------------------------------

    def failing(self) -> None:
        """The two runs (off first), the ratio of their POSTs to the failing subscriber."""
        off = self.failing_run("off", {"WEBHOOK_CIRCUIT_BREAKER": "0"})
        on = self.failing_run("on", {})
        self.failing_runs = (off, on)
        self.results["failing_subscriber_posts_ratio"] = on.posts / off.posts if off.posts else float("nan")

    def failing_run(self, label: str, env: dict[str, str]) -> FailingRun:
        from local.services import Worker
        from webhooks.clock import utcnow

        per_second, seconds = self.options.leads_per_second, self.options.failing_seconds
        name = f"failing-{label}"
        failing_path = f"/ok/{name}-503"
        self.receiver.unavailable.add(failing_path)
        shop = self.subscribers(name, [f"/ok/{name}-{index}" for index in range(9)] + [failing_path])
        queue = f"bench-{RUN}-{name}"
        worker = Worker(self.logs / f"{name}.log", env={"SQS_QUEUE": queue, **env}, command=self.command)
        try:
            started, started_at = time.monotonic(), utcnow()
            sent = self.paced(shop, queue, per_second, seconds)
            took = time.monotonic() - started
            ids = {delivery_id for delivery_id, _ in sent}
            if not within(self.settled(queue, ids), 180, 0.5):
                raise SystemExit(f"bench: {name}: deliveries still unrecorded or in flight after 180 s")
        finally:
            worker.stop()
        webhook = f"{name}-9-{RUN}"
        events = [event for event in self.events(webhook) if event.at >= started_at]
        posts = self.receiver.to(failing_path)
        opened = next((event for event in events if event.kind == "subscriber.circuit_opened"), None)
        before = None if opened is None else sum(1 for post in posts if post.at < _unix(opened.at))
        return FailingRun(label, len(sent) // 10, took, len(posts), events, before)

    # --- a subscriber down, then back ---------------------------------------------------

    def recovery(self) -> None:
        """A subscriber down (503) for the run's first RECOVERY_DOWN s, then back: are all its
        deliveries delivered?"""
        from local.services import Worker
        from webhooks.clock import utcnow

        name = "recovering"
        down_path = f"/ok/{name}-down"
        webhook = f"{name}-9-{RUN}"
        self.receiver.unavailable.add(down_path)
        shop = self.subscribers(name, [f"/ok/{name}-{index}" for index in range(9)] + [down_path])
        queue = f"bench-{RUN}-{name}"
        env = {"SQS_QUEUE": queue, "WEBHOOK_RETRY_SCHEDULE": RECOVERY_SCHEDULE}
        worker = Worker(self.logs / f"{name}.log", env=env, command=self.command)
        per_second = self.options.leads_per_second
        try:
            started, started_at = time.monotonic(), utcnow()
            sent = self.paced(shop, queue, per_second, RECOVERY_DOWN)
            wait = started + RECOVERY_DOWN - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.receiver.unavailable.discard(down_path)
            back, back_at = time.monotonic(), utcnow()
            sent += self.paced(shop, queue, per_second, RECOVERY_SECONDS - RECOVERY_DOWN)
            to_it = {delivery_id for delivery_id, to in sent if to == webhook}
            within(lambda: self.delivered(to_it) == len(to_it), RECOVERY_TIMEOUT - (time.monotonic() - back), 1.0)
            ids = {delivery_id for delivery_id, _ in sent}
            if not within(self.settled(queue, ids), 180, 0.5):
                raise SystemExit(f"bench: {name}: deliveries still unrecorded or in flight after 180 s")
        finally:
            worker.stop()
        last = self.last_success(to_it)
        attempts = self.audit(to_it)
        self.recovered = Recovery(
            deliveries=len(to_it),
            delivered=len({delivery_id for delivery_id, status in attempts if status == "success"}),
            down=back - started,
            last_after=None if last is None else (last - back_at).total_seconds(),
            started_at=started_at,
            events=[event for event in self.events(webhook) if event.at >= started_at],
        )
        self.flags["recovered_all"] = measure.all_delivered(to_it, attempts)

    def delivered(self, ids: set[str]) -> int:
        """How many of ``ids`` have a success in the audit."""
        return len({delivery_id for delivery_id, status in self.audit(ids) if status == "success"})

    def last_success(self, ids: set[str]) -> datetime | None:
        from sqlalchemy import func, select

        from records import database
        from records.models import DeliveryAttempt

        query = select(func.max(DeliveryAttempt.attempted_at)).where(
            DeliveryAttempt.delivery_id.in_(sorted(ids)), DeliveryAttempt.status == "success"
        )
        with database.audit() as session:
            found: datetime | None = session.execute(query).scalar()
        return found
