"""Retries carried by SQS: due times, hops, abandonment, crashes and restarts of the worker.

The tests' settings shrink the schedule to 2 s, 4 s (three attempts), SQS's maximum
delay to 1 s (so every wait hops) and the visibility timeout to 8 s.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from local.leads import unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from records import database
from records.models import Subscriber
from tasks import deliver_webhook
from tests.integration.conftest import attempts, message_to, refused_claiming, subscriber_at
from webhooks import clock, secretbox


def message(url: str, **fields: Any) -> dict[str, Any]:
    """A message to a new subscriber at ``url``; ``fields`` change it, authenticated after."""
    return secretbox.authenticate({**message_to(subscriber_at(url)), **fields})


def epoch(naive_utc: datetime) -> float:
    return naive_utc.replace(tzinfo=UTC).timestamp()


def test_a_failing_delivery_is_retried_at_its_due_times_then_abandoned(worker: Worker, receiver: Receiver) -> None:
    path = f"/fail/{unique('retry')}"
    sent = message(receiver.url(path))
    deliver_webhook.delay(sent)

    rows = wait_for(lambda: (found := attempts(sent["delivery_id"])) and len(found) == 3 and found, 60, "3 attempts")
    assert [row["retry"] for row in rows] == [0, 1, 2]
    assert [row["status"] for row in rows] == ["error", "error", "abandoned"]
    first_failure = rows[0]["next_retry_at"] - timedelta(seconds=2)
    assert rows[1]["next_retry_at"] == first_failure + timedelta(seconds=4)  # anchored at F, not drifting
    assert rows[2]["next_retry_at"] is None
    for before, after in itertools.pairwise(rows):
        assert after["attempted_at"] >= before["next_retry_at"]

    posts = receiver.to(path)
    assert len(posts) == 3
    assert [post.body.count(b'"retry":%d,' % n) for n, post in enumerate(posts)] == [1, 1, 1]
    assert {post.headers["webhook-id"] for post in posts} == {sent["delivery_id"]}
    assert posts[1].at >= epoch(rows[0]["next_retry_at"])
    assert posts[2].at >= epoch(rows[1]["next_retry_at"])
    # logged right after the record is written: the record may be read first
    abandoned = f"ERROR webhooks.delivery: delivery {sent['delivery_id']}"
    wait_for(lambda: abandoned in worker.output(), 5, "the abandoned delivery's ERROR line")


def test_a_delivery_that_fails_once_succeeds_on_its_first_retry(worker: Worker, receiver: Receiver) -> None:
    path = f"/flaky/1/{unique('flaky')}"
    sent = message(receiver.url(path))
    deliver_webhook.delay(sent)

    rows = wait_for(lambda: (found := attempts(sent["delivery_id"])) and len(found) == 2 and found, 30, "2 attempts")
    assert [(row["retry"], row["status"], row["http_status"]) for row in rows] == [
        (0, "error", 500),
        (1, "success", 200),
    ]
    assert rows[1]["next_retry_at"] is None


def test_a_message_that_arrives_before_its_due_time_is_put_back_not_sent(worker: Worker, receiver: Receiver) -> None:
    path = f"/ok/{unique('early')}"
    due = clock.now() + timedelta(seconds=10)  # ahead of its first arrival however slow the pickup
    sent = message(receiver.url(path), retry=1, due_at=due.isoformat())
    deliver_webhook.delay(sent)

    [post] = wait_for(lambda: receiver.to(path), 30, "the POST")
    assert post.at >= due.timestamp()
    assert b'"retry":1,' in post.body
    assert len(wait_for(lambda: attempts(sent["delivery_id"]), 10, "the audit row")) == 1
    assert f"delivery {sent['delivery_id']} arrived before" in worker.output()


def test_a_message_sqs_hands_out_again_after_its_delivery_succeeded_is_not_sent_again(
    worker: Worker, receiver: Receiver, logs: Path, sqs: Any
) -> None:
    path = f"/ok/{unique('dup')}"
    sent = message(receiver.url(path))
    deliver_webhook.delay(sent)
    wait_for(lambda: attempts(sent["delivery_id"]), 30, "the first delivery")

    # The same message, handed out once already and not deleted: as after a worker killed
    # between its POST and its acknowledgement, or a delete that failed.
    queue = unique("redelivered")
    deliver_webhook.apply_async(kwargs={"delivery": sent}, queue=queue)
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    wait_for(lambda: sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages"), 10, "a first receipt")
    again = Worker(logs / f"{queue}.log", {"SQS_QUEUE": queue})
    try:
        wait_for(lambda: f"delivery {sent['delivery_id']} already succeeded" in again.output(), 30, "the duplicate")
    finally:
        again.stop()
    assert len(receiver.to(path)) == 1
    assert len(attempts(sent["delivery_id"])) == 1


def test_a_malformed_message_is_recorded_under_its_sqs_message_id_and_never_retried(worker: Worker) -> None:
    delivery_id = str(uuid.uuid4())
    task = deliver_webhook.delay(
        secretbox.authenticate({"delivery_id": delivery_id, "webhook": "w", "lead": {"id": "x"}})
    )

    [row] = wait_for(lambda: refused_claiming(task.id), 30, "the record")
    assert row["delivery_id"].startswith("sqs:")  # SQS's own MessageId: no publisher chooses it
    assert row["error"].startswith("malformed message refused: field 'subscriber_id' is required")
    assert row["next_retry_at"] is None
    assert attempts(delivery_id) == [] and attempts(task.id) == []  # never under an id its sender chose


def test_a_message_changed_in_transit_is_recorded_and_nothing_is_posted(worker: Worker, receiver: Receiver) -> None:
    path = f"/ok/{unique('changed')}"
    sent = message(receiver.url(path))
    tampered = {**sent, "lead": {**sent["lead"], "email": "attacker@example.com"}}
    redirected = {**message(receiver.url(path)), "url": receiver.url(f"/ok/{unique('elsewhere')}")}
    unsigned = {key: value for key, value in message(receiver.url(path)).items() if key != "mac"}
    tasks = [deliver_webhook.delay(bad) for bad in (tampered, redirected, unsigned)]

    for bad, task in zip((tampered, redirected, unsigned), tasks, strict=True):
        [row] = wait_for(partial(refused_claiming, task.id), 30, "the record")
        assert row["delivery_id"].startswith("sqs:")
        assert row["error"].startswith("unauthenticated message refused")
        assert (row["lead_id"], row["webhook"], row["url"], row["request_body"]) == ("", "", "", "")
        assert attempts(bad["delivery_id"]) == [] and attempts(task.id) == []
    assert receiver.to(path) == []
    assert receiver.to(urlsplit(redirected["url"]).path) == []


def test_an_undecryptable_secret_is_recorded_and_nothing_is_posted(worker: Worker, receiver: Receiver) -> None:
    path = f"/ok/{unique('tampered')}"
    other_key = [bytes(32)]  # sealed under a key this worker does not have
    subscription = subscriber_at(receiver.url(path))
    with database.platform() as session:
        stored = session.get(Subscriber, subscription.id)
        assert stored is not None
        stored.sealed_secret = secretbox.seal("s3cret", other_key)
    sent = message_to(subscription)
    deliver_webhook.delay(sent)

    [row] = wait_for(lambda: attempts(sent["delivery_id"]), 30, "the record")
    assert row["status"] == "abandoned"
    assert "does not decrypt" in row["error"]
    assert receiver.to(path) == []


def dedicated_worker(logs: Path, name: str, **env: str) -> tuple[str, Worker]:
    queue = unique(name)
    return queue, Worker(logs / f"{queue}.log", {"SQS_QUEUE": queue, **env})


def test_a_worker_killed_during_a_slow_post_completes_the_delivery_in_a_new_worker(
    database: str, moto: object, receiver: Receiver, logs: Path
) -> None:
    path = f"/slow/5/{unique('killed')}"  # killed within 5 s of its start, under the 8 s visibility timeout
    env = {"WEBHOOK_TIMEOUT": "10"}
    queue, first = dedicated_worker(logs, "crash", **env)
    sent = message(receiver.url(path))
    deliver_webhook.apply_async(kwargs={"delivery": sent}, queue=queue)

    wait_for(lambda: receiver.to(path), 30, "the slow POST to start")
    first.kill()  # SIGKILL, main process and children, in the middle of the POST
    assert attempts(sent["delivery_id"]) == []

    second = Worker(first.log_path.with_suffix(".second.log"), {"SQS_QUEUE": queue, **env})
    try:
        [row] = wait_for(lambda: attempts(sent["delivery_id"]), 60, "the delivery after the visibility timeout")
    finally:
        second.stop()
    assert row["status"] == "success"
    posts = receiver.to(path)
    assert len(posts) == 2
    assert {post.headers["webhook-id"] for post in posts} == {sent["delivery_id"]}


def test_a_worker_restart_between_two_retries_loses_nothing(
    database: str, moto: object, receiver: Receiver, logs: Path
) -> None:
    path = f"/flaky/1/{unique('restart')}"
    env = {"WEBHOOK_RETRY_SCHEDULE": "6s,12s"}
    queue, first = dedicated_worker(logs, "restart", **env)
    sent = message(receiver.url(path))
    deliver_webhook.apply_async(kwargs={"delivery": sent}, queue=queue)

    [failed] = wait_for(lambda: attempts(sent["delivery_id"]), 30, "the first, failing attempt")
    first.stop()  # the retry now waits in SQS only
    assert failed["status"] == "error"

    second = Worker(first.log_path.with_suffix(".second.log"), {"SQS_QUEUE": queue, **env})
    try:
        rows = wait_for(lambda: (found := attempts(sent["delivery_id"])) and len(found) == 2 and found, 60, "the retry")
    finally:
        second.stop()
    assert [(row["retry"], row["status"]) for row in rows] == [(0, "error"), (1, "success")]
    assert rows[1]["attempted_at"] >= failed["next_retry_at"]
    assert len(receiver.to(path)) == 2


def test_an_unexpected_error_leaves_nothing_lost_the_message_comes_back_until_it_succeeds(
    database: str, moto: object, receiver: Receiver, logs: Path
) -> None:
    from sqlalchemy import create_engine, text

    from local.services import mysql
    from tests.conftest import DB_NAME
    from tests.integration.conftest import run_cli

    bare = f"{DB_NAME}_bare"
    bare_url = f"mysql+pymysql://root@127.0.0.1:3306/{bare}"
    mysql(f"CREATE DATABASE {bare}")  # no tables yet: every audit query fails (a bug, a bad deploy)
    path = f"/ok/{unique('unexpected')}"
    sent = message(receiver.url(path))
    queue, worker = dedicated_worker(logs, "unexpected", AUDIT_DATABASE_URL=bare_url)
    try:
        deliver_webhook.apply_async(kwargs={"delivery": sent}, queue=queue)
        wait_for(
            lambda: worker.output().count(f"delivery {sent['delivery_id']} failed unexpectedly") >= 2, 30, "2 tries"
        )
        assert "it comes back in 1 s" in worker.output()  # min(SQS_VISIBILITY_TIMEOUT, SQS_MAX_DELAY) in the tests
        assert receiver.to(path) == []

        upgraded = run_cli("db", "upgrade", env={"DATABASE_URL": bare_url, "AUDIT_DATABASE_URL": bare_url})
        assert upgraded.returncode == 0, upgraded.stderr
        engine = create_engine(bare_url)

        def statuses_found() -> list[str]:
            with engine.connect() as connection:
                query = text("SELECT status FROM delivery_attempts WHERE delivery_id = :id")
                return [row[0] for row in connection.execute(query, {"id": sent["delivery_id"]})]

        statuses = wait_for(statuses_found, 30, "the record")
        engine.dispose()
    finally:
        worker.stop()
        mysql(f"DROP DATABASE IF EXISTS {bare}")
    assert statuses == ["success"]
    # at least once: an attempt that raced the migration may have been sent, then retried
    assert {post.headers["webhook-id"] for post in receiver.to(path)} == {sent["delivery_id"]}
