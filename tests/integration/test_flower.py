"""Flower and ``celery inspect`` on SQS (WORKER_EVENTS=1): task events and remote control over SNS.

moto's server emulates SNS on the same loopback port as SQS. This module runs its own worker
(the Procfile's, on a queue of its own) and Flower (the Procfile's, on a free loopback port),
both with WORKER_EVENTS=1 (the default); the session's worker runs with it off (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import BIN, ROOT, Flower, Worker, procfile_command, wait_for
from tasks import app, deliver_webhook
from tasks.message import summary
from tasks.transport import LEASE_TAG, sweep
from tests.integration.conftest import Cli, attempts, message_to, run_cli, subscriber_at

QUEUE = unique("events")
# SQS_MAX_DELAY as on AWS: a retry of the tests' schedule (2s, 4s) is one SQS delay, not hops
ENV = {"SQS_QUEUE": QUEUE, "WORKER_EVENTS": "1", "SQS_MAX_DELAY": "900"}


@pytest.fixture(scope="module")
def events_worker(database: str, moto: object, logs: Path) -> Iterator[Worker]:
    process = Worker(logs / f"{QUEUE}.worker.log", ENV)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def flower(events_worker: Worker, logs: Path) -> Iterator[Flower]:
    process = Flower(logs / f"{QUEUE}.flower.log", ENV)
    try:  # events flow once Flower has the worker's heartbeat (before that, events are not for it)
        wait_for(lambda: process.api("/api/workers?status=1").get(events_worker.name), 60, "a heartbeat", every=0.5)
        yield process
    finally:
        process.stop()


@pytest.fixture
def sns(moto: Any) -> Any:
    import boto3

    return boto3.client("sns", endpoint_url=moto.url, region_name="us-east-1")


def queue_names(sqs: Any) -> set[str]:
    return {url.rsplit("/", 1)[-1] for url in sqs.list_queues().get("QueueUrls", [])}


def subscribed(sns: Any, topic: str) -> set[str]:
    """The queues subscribed to the SNS topic of an exchange (``celeryev``, ``celery-pidbox``)."""
    arns = [t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(f":{topic}")]
    if not arns:
        return set()
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=arns[0])["Subscriptions"]
    return {subscription["Endpoint"].rsplit(":", 1)[-1] for subscription in subscriptions}


def monitoring(names: set[str]) -> set[str]:
    return {name for name in names if name.startswith("celeryev-") or name.endswith("-reply-celery-pidbox")}


def flower_task(flower: Flower, task_id: str, state: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        task: dict[str, Any] | None = flower.api("/api/tasks").get(task_id)
        return task if task and task["state"] == state else None

    task: dict[str, Any] = wait_for(found, 60, f"Flower to list task {task_id} as {state}", every=0.5)
    return task


def inspect(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "celery"), "-A", "tasks", "inspect", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV, **env},
        cwd=ROOT,
        timeout=120,
    )


def message(url: str) -> dict[str, Any]:
    return message_to(subscriber_at(url))


def test_a_lead_dispatched_with_events_on_is_listed_by_flower_as_succeeded_on_its_worker(
    flower: Flower, events_worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    subscription = subscribe(receiver.url(f"/ok/{unique('flower')}"))
    done = run_cli("dispatch", input=json.dumps(a_lead(subscription.shop)), env=ENV)  # a producer with events on
    assert done.returncode == 0, done.stderr
    [delivery_id] = [line.split()[2] for line in done.stdout.splitlines() if line.startswith("enqueued delivery")]

    task = flower_task(flower, delivery_id, "SUCCESS")
    assert task["name"] == "tasks.deliver_webhook"
    assert task["worker"] == events_worker.name
    for event in ("sent", "received", "started", "succeeded"):
        assert task[event], f"no {event} event: {task}"
    assert delivery_id in task["kwargs"] and subscription.name in task["kwargs"]
    assert "john@example.com" not in json.dumps(task)  # Flower shows ids, not the lead's personal data
    assert [row["status"] for row in attempts(delivery_id)] == ["success"]


def test_a_retried_task_and_a_failed_task_reach_flower_with_their_states(
    flower: Flower, events_worker: Worker, receiver: Receiver
) -> None:
    flaky = deliver_webhook.apply_async(
        kwargs={"delivery": message(receiver.url(f"/flaky/1/{unique('r')}"))}, queue=QUEUE
    )
    broken = app.send_task("tasks.deliver_webhook", args=[], kwargs={}, queue=QUEUE)  # the task's call fails

    failed = flower_task(flower, broken.id, "FAILURE")
    assert "TypeError" in failed["exception"]
    retried = flower_task(flower, flaky.id, "SUCCESS")  # failed once, retried 2 s later, then delivered
    assert retried["retried"], retried
    assert "'retry': 1" in retried["kwargs"] and "john@example.com" not in json.dumps(retried)


def queue_is_empty(sqs: Any, queue: str) -> bool:
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    kinds = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    )
    return all(counts[kind] == "0" for kind in kinds)


def test_flower_shows_an_abandoned_delivery_as_a_failure_with_its_reason_and_its_message_is_deleted(
    flower: Flower, events_worker: Worker, receiver: Receiver, sqs: Any
) -> None:
    delivery = message(receiver.url(f"/fail/{unique('f')}"))
    failing = deliver_webhook.apply_async(kwargs={"delivery": delivery}, queue=QUEUE)

    task = flower_task(flower, failing.id, "FAILURE")
    statuses = [row["status"] for row in attempts(delivery["delivery_id"])]
    assert statuses == ["error", "error", "abandoned"]  # WEBHOOK_RETRY_SCHEDULE=2s,4s: three attempts
    assert task["exception"] == "HTTP 500 after 3 attempts"
    assert not task["traceback"]  # an outcome, not a bug
    assert (
        f"Task tasks.deliver_webhook[{failing.id}] raised expected: HTTP 500 after 3 attempts" in events_worker.output()
    )
    # acknowledged like a success: deleted from SQS, never handed out again
    wait_for(lambda: queue_is_empty(sqs, QUEUE), 60, "the abandoned delivery's message to be deleted")
    assert [row["status"] for row in attempts(delivery["delivery_id"])] == statuses
    # what an operator alerts on (docs): Flower's Prometheus counter of failed deliveries (no password asked)
    with urllib.request.urlopen(f"{flower.url}/metrics", timeout=30) as answer:
        metrics = answer.read().decode()
    labels = {"task": "tasks.deliver_webhook", "type": "task-failed", "worker": events_worker.name}
    shown = ",".join(f'{name}="{value}"' for name, value in labels.items())  # as prometheus_client sorts them
    [count] = re.findall(rf"^flower_events_total\{{{re.escape(shown)}\}} (\S+)$", metrics, re.MULTILINE)
    assert float(count) >= 1


def test_flower_and_the_worker_log_show_a_retry_with_its_reason_and_when_it_is_due(
    flower: Flower, events_worker: Worker, receiver: Receiver
) -> None:
    delivery = message(receiver.url(f"/flaky/1/{unique('r')}"))
    flaky = deliver_webhook.apply_async(kwargs={"delivery": delivery}, queue=QUEUE)

    task = flower_task(flower, flaky.id, "SUCCESS")
    [failed, _] = attempts(delivery["delivery_id"])
    due = failed["next_retry_at"].isoformat(timespec="seconds") + "+00:00"
    reason = f"HTTP 500; retry 1 due {due}"
    assert task["retried"] and task["exception"] == reason  # the retry's, kept by Flower
    assert not task["traceback"]
    assert f"Task tasks.deliver_webhook[{flaky.id}] retry: {reason}" in events_worker.output()
    assert "Retry in 0s" not in events_worker.output()


def test_flower_lists_the_worker_online_from_its_heartbeats(flower: Flower, events_worker: Worker) -> None:
    assert flower.api("/api/workers?status=1")[events_worker.name] is True


def test_flower_lists_the_worker_from_its_answers_to_inspect(flower: Flower, events_worker: Worker) -> None:
    workers = flower.api("/api/workers?refresh=1")
    assert events_worker.name in workers, workers
    assert workers[events_worker.name]["stats"]["broker"]["transport"] == "tasks.transport:Transport"


def test_inspect_ping_is_answered_by_the_worker_and_leaves_no_reply_queue(events_worker: Worker, sqs: Any) -> None:
    before = queue_names(sqs)
    done = inspect("ping", "--destination", events_worker.name, "--timeout", "10")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{events_worker.name}: OK" in done.stdout
    assert "pong" in done.stdout
    assert monitoring(queue_names(sqs)) == monitoring(before)


def test_an_inspect_ends_about_its_timeout_after_the_last_reply_not_a_long_poll_later(events_worker: Worker) -> None:
    started = time.monotonic()
    done = inspect("ping", "--timeout", "1", SQS_WAIT_TIME_SECONDS="20")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert events_worker.name in done.stdout
    assert elapsed < 15, f"inspect took {elapsed:.1f} s: the 20 s long poll was not cut to the timeout"


def test_a_stopped_flower_deletes_its_queues_and_sns_subscriptions(
    events_worker: Worker, sqs: Any, sns: Any, logs: Path
) -> None:
    before = queue_names(sqs)
    other = Flower(logs / f"{unique('flower')}.log", ENV)
    try:
        wait_for(lambda: monitoring(queue_names(sqs) - before), 30, "Flower's event queue")
        assert events_worker.name in other.api("/api/workers?refresh=1")  # and reply queues
        created = monitoring(queue_names(sqs) - before)
        assert any(name.startswith("celeryev-") for name in created)
        assert any(name.endswith("-reply-celery-pidbox") for name in created)
        assert created & subscribed(sns, "celeryev")
    finally:
        other.stop()
    assert not created & queue_names(sqs), f"left behind: {created & queue_names(sqs)}"
    assert not created & subscribed(sns, "celeryev")


def test_the_sweep_deletes_the_expired_queues_and_subscriptions_of_a_killed_flower_and_keeps_live_ones(
    events_worker: Worker, sqs: Any, sns: Any, logs: Path
) -> None:
    before = queue_names(sqs)
    killed = Flower(logs / f"{unique('flower')}.log", ENV)
    wait_for(lambda: monitoring(queue_names(sqs) - before), 30, "Flower's event queue")
    killed.api("/api/workers?refresh=1")
    killed.kill()
    left = monitoring(queue_names(sqs) - before)
    [events_queue] = [name for name in left if name.startswith("celeryev-")]
    assert events_queue in subscribed(sns, "celeryev")  # left behind: the kill gave no chance to clean up

    for name in left:  # as if its lease had run out: nothing renews it any more
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        assert int(sqs.list_queue_tags(QueueUrl=url)["Tags"][LEASE_TAG]) > time.time()
        sqs.tag_queue(QueueUrl=url, Tags={LEASE_TAG: str(int(time.time()) - 1)})

    options = {"region": "us-east-1", "supports_fanout": True}
    with Connection(os.environ["BROKER_URL"], transport="tasks.transport:Transport", transport_options=options) as conn:
        deleted = sweep(conn.default_channel)

    assert set(deleted) == left
    assert not left & queue_names(sqs)
    assert events_queue not in subscribed(sns, "celeryev")
    pidbox = events_worker.name.replace("@", "_").replace(".", "-") + "-celery-pidbox"
    assert pidbox in queue_names(sqs)  # a live worker's lease is in the future
    assert pidbox in subscribed(sns, "celery-pidbox")


def test_a_worker_with_events_on_sweeps_expired_queues_on_its_timer(database: str, sqs: Any, logs: Path) -> None:
    expired, live = unique("celeryev-expired"), unique("celeryev-live")
    sqs.create_queue(QueueName=expired, tags={LEASE_TAG: str(int(time.time()) - 1)})
    sqs.create_queue(QueueName=live, tags={LEASE_TAG: str(int(time.time()) + 3600)})
    log = logs / f"{expired}.log"
    code = (  # the Procfile's worker, its hourly sweep every second
        "import tasks.application as a; a.SWEEP_INTERVAL = 1; "
        "a.app.worker_main(['worker', '--pool', 'threads', '--without-gossip', '--without-mingle', "
        f"'--hostname', '{unique('sweeper')}@%h', '--loglevel', 'INFO'])"
    )
    with open(log, "wb") as output:
        sweeper = subprocess.Popen(
            [sys.executable, "-c", code], env={**os.environ, **ENV}, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: expired not in queue_names(sqs), 60, "the sweep")
    finally:
        sweeper.terminate()
        sweeper.wait(30)
    assert live in queue_names(sqs)
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=live)["QueueUrl"])


def test_with_worker_events_off_the_worker_uses_no_sns(worker: Worker, sqs: Any) -> None:
    pidbox = worker.name.replace("@", "_").replace(".", "-") + "-celery-pidbox"
    assert pidbox not in queue_names(sqs)
    assert "SNS" not in worker.output()
    assert "task events: OFF" in worker.output()


def test_an_event_sns_refuses_is_dropped_while_a_refused_broadcast_raises(moto: object) -> None:
    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "InternalError", "Message": "SNS is down"}}, "Publish")

    options = {"region": "us-east-1", "supports_fanout": True}
    with Connection(os.environ["BROKER_URL"], transport="tasks.transport:Transport", transport_options=options) as conn:
        channel = conn.default_channel
        channel.fanout.publish = refuse
        for name, kind in (("celeryev", "topic"), ("celery.pidbox", "fanout")):
            channel.exchange_declare(name, kind)
        channel.basic_publish(channel.prepare_message("event"), "celeryev", "task.succeeded")
        with pytest.raises(ClientError):
            channel.basic_publish(channel.prepare_message("broadcast"), "celery.pidbox", "")


def test_a_queue_deleted_and_declared_again_is_created_again(moto: object) -> None:
    name = f"test.redeclared.{uuid.uuid4().hex[:8]}"  # dots: its SQS name differs (dashes)
    queue = Queue(name, Exchange(name), routing_key=name)
    with Connection(os.environ["BROKER_URL"], transport="tasks.transport:Transport") as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        bound.delete()
        bound.declare()
        conn.default_channel.basic_publish(conn.default_channel.prepare_message("again"), name, name)
        got = wait_for(lambda: bound.get(no_ack=True), 10, "the message")
        assert got.body == b"again"
        bound.delete()


def test_a_malformed_worker_events_switch_is_named_at_start(database: str) -> None:
    done = run_cli("list", env={"WORKER_EVENTS": "maybe"})
    assert done.returncode != 0
    assert "WORKER_EVENTS='maybe' is not a switch" in done.stderr
    assert "Traceback" not in done.stderr


def test_inspect_shows_reserved_active_and_scheduled_tasks_by_their_summary_never_the_lead(
    database: str, moto: object, receiver: Receiver, logs: Path
) -> None:
    queue = unique("inspected")
    env = {"SQS_QUEUE": queue, "WORKER_EVENTS": "1", "WEBHOOK_TIMEOUT": "60"}
    command = procfile_command("worker")
    command[command.index("--concurrency") + 1] = "1"  # one task at a time: the next one waits, reserved
    slow = Worker(logs / f"{queue}.log", env, command=[*command, "--prefetch-multiplier", "2"])
    try:
        busy = [message(receiver.url(f"/slow/30/{unique('busy')}")) for _ in range(2)]
        later = message(receiver.url(f"/ok/{unique('later')}"))
        for delivery in busy:
            deliver_webhook.apply_async(kwargs={"delivery": delivery}, queue=queue, kwargsrepr=summary(delivery))
        deliver_webhook.apply_async(kwargs={"delivery": later}, queue=queue, countdown=600, kwargsrepr=summary(later))

        def tasks_of(command: str) -> list[dict[str, Any]]:
            done = inspect(command, "--destination", slow.name, "--timeout", "5", "--json", SQS_QUEUE=queue)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "john@example.com" not in done.stdout  # the lead's personal data
            tasks: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])[slow.name]
            return tasks

        active = wait_for(lambda: tasks_of("active"), 60, "a task under way")
        reserved = wait_for(lambda: tasks_of("reserved"), 60, "a task waiting for the busy thread")
        scheduled = wait_for(lambda: tasks_of("scheduled"), 60, "the task due in 10 minutes")
    finally:
        slow.kill()  # its tasks go back to its own queue: nothing else reads it

    shown = {task["kwargs"] for task in active + reserved} | {entry["request"]["kwargs"] for entry in scheduled}
    assert shown == {summary(delivery) for delivery in [*busy, later]}
    for task in active + reserved + [entry["request"] for entry in scheduled]:
        assert task["args"] == "()"
        assert "sealed_secret" not in json.dumps(task) and "Doe" not in json.dumps(task)


def send_with_delay(message: dict[str, Any], queue: str) -> str:
    """Send ``message`` as the README shows, ``deliver_webhook.delay(message)``, from a process of
    its own whose default queue is ``queue`` (no argsrepr, no kwargsrepr given); its task id."""
    code = (
        "import json, sys; from tasks import deliver_webhook; print(deliver_webhook.delay(json.loads(sys.argv[1])).id)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(message)],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV, "SQS_QUEUE": queue},
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def personal_or_secret(shown: str, message: dict[str, Any], secret: str) -> list[str]:
    """What of the lead's personal data, the message's MAC or the subscriber's secret ``shown`` holds."""
    lead = message["lead"]
    found = [lead[name] for name in ("email", "phone", "last_name", "address") if lead[name] and lead[name] in shown]
    return found + [value for value in (message["mac"], secret) if value in shown]


def test_a_delivery_sent_with_delay_shows_its_summary_in_flower_never_the_lead_nor_a_secret(
    flower: Flower, events_worker: Worker, receiver: Receiver
) -> None:
    subscription = subscriber_at(receiver.url(f"/ok/{unique('delayed')}"))
    sent = message_to(subscription)
    task_id = send_with_delay(sent, QUEUE)

    task = flower_task(flower, task_id, "SUCCESS")
    assert (task["args"], task["kwargs"]) == ("()", summary(sent))
    assert personal_or_secret(json.dumps(task), sent, subscription.secret) == []


def test_a_delivery_sent_with_delay_shows_its_summary_in_inspect_active_and_reserved_never_the_lead(
    database: str, moto: object, receiver: Receiver, logs: Path
) -> None:
    queue = unique("delayed")
    env = {"SQS_QUEUE": queue, "WORKER_EVENTS": "1", "WEBHOOK_TIMEOUT": "60"}
    command = procfile_command("worker")
    command[command.index("--concurrency") + 1] = "1"  # one task at a time: the next one waits, reserved
    slow = Worker(logs / f"{queue}.log", env, command=[*command, "--prefetch-multiplier", "2"])
    try:
        subscription = subscriber_at(receiver.url(f"/slow/30/{unique('delayed')}"))
        sent = [message_to(subscription) for _ in range(2)]
        for each in sent:
            send_with_delay(each, queue)

        def shown(command: str) -> list[dict[str, Any]]:
            done = inspect(command, "--destination", slow.name, "--timeout", "5", "--json", SQS_QUEUE=queue)
            assert done.returncode == 0, done.stdout + done.stderr
            tasks: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])[slow.name]
            for each in sent:
                assert personal_or_secret(done.stdout, each, subscription.secret) == []
            return tasks

        active = wait_for(lambda: shown("active"), 60, "the task under way")
        reserved = wait_for(lambda: shown("reserved"), 60, "the task waiting for the busy thread")
    finally:
        slow.kill()  # its tasks go back to its own queue: nothing else reads it
    assert {(task["args"], task["kwargs"]) for task in active + reserved} == {("()", summary(each)) for each in sent}
