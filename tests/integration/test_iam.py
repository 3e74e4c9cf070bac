"""The IAM policies of deploy/iam are enough for each role, and each action in them is needed.

A moto server of this module's own checks every request against the caller's IAM policies
(moto's ``INITIAL_NO_AUTH_ACTION_COUNT``, reset to 0 once the IAM users exist). Each role runs
with the access key of an IAM user holding exactly its policy: the producer (``webhooks
dispatch``), a worker (the Procfile's, delivering to the loopback receiver) and Flower (the
Procfile's, and ``celery inspect ping``), all with WORKER_EVENTS=1. With one action removed from
a policy, the run fails, and the error names the action.

moto 5.2.5 evaluates policies less finely than AWS, so each policy is adapted (``for_moto``),
never made stricter:
- moto checks SNS calls against the resource "*" (no topic ARN: moto/core/responses.py gives a
  resource only where a service defines ``_determine_resource``, which SNS does not): the SNS
  statements are checked for their actions only;
- moto checks a call naming its queue by QueueName (CreateQueue, GetQueueUrl) against "*" (it
  reads the queue from QueueUrl only): these two are allowed on "*";
- moto names a batch call's action after the call (``sqs:DeleteMessageBatch``) where AWS checks
  the single action (``sqs:DeleteMessage``): each batch action is granted with its single one.
What AWS alone checks (topic ARNs, tags on creation, CreateQueue's name) is in the docs.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import BIN, ROOT, Flower, Moto, Worker, free_port, wait_for
from tests.integration.conftest import attempts, run_cli

POLICIES = ROOT / "deploy" / "iam"
ROLES = ("producer", "worker", "flower")
BATCHES = {
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:SendMessage": "sqs:SendMessageBatch",
    "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch",
}
#: What every process of this module shares: its own queue name, events on, quick polls.
ENV = {"SQS_QUEUE": "webhooks", "WORKER_EVENTS": "1", "SQS_REGION": "us-east-1"}


def policy(role: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((POLICIES / f"{role}.json").read_text())
    return document


def actions(document: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in document["Statement"]:
        granted = statement["Action"]
        found |= {granted} if isinstance(granted, str) else set(granted)
    return found


def without(document: dict[str, Any], action: str) -> dict[str, Any]:
    """The policy with ``action`` removed from every statement (a statement left empty is dropped)."""
    assert action in actions(document), f"{action} is not in the policy"
    changed = copy.deepcopy(document)
    statements = []
    for statement in changed["Statement"]:
        granted = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        statement["Action"] = [name for name in granted if name != action]
        if statement["Action"]:
            statements.append(statement)
    changed["Statement"] = statements
    return changed


def renamed(document: dict[str, Any], queue: str) -> dict[str, Any]:
    """The policy for a work queue named ``queue`` instead of ``webhooks`` (as the docs say to do)."""
    changed: dict[str, Any] = json.loads(json.dumps(document).replace(':webhooks"', f':{queue}"'))
    return changed


def for_moto(document: dict[str, Any]) -> dict[str, Any]:
    """The policy as moto can check it (module docstring): no stricter than on AWS."""
    adapted = copy.deepcopy(document)
    for statement in adapted["Statement"]:
        granted = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        granted += [BATCHES[name] for name in granted if name in BATCHES]
        statement["Action"] = granted
        if all(name.startswith("sns:") for name in granted):
            statement["Resource"] = "*"
    by_name = sorted(actions(document) & {"sqs:CreateQueue", "sqs:GetQueueUrl"})
    if by_name:
        adapted["Statement"].append({"Effect": "Allow", "Action": by_name, "Resource": "*"})
    return adapted


class Aws:
    """moto's server with IAM enforced, and IAM users made on it."""

    def __init__(self, log: Path) -> None:
        self.moto = Moto(free_port(), log, env={"INITIAL_NO_AUTH_ACTION_COUNT": "inf"})  # on once users exist

    def user(self, document: dict[str, Any]) -> dict[str, str]:
        """A new IAM user holding exactly ``document`` (as moto checks it); the environment of a process using it."""
        import boto3

        name = f"user-{uuid.uuid4().hex[:10]}"
        iam = boto3.client(
            "iam",
            endpoint_url=self.moto.url,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        self.moto.enforce_iam(False)
        try:
            iam.create_user(UserName=name)
            iam.put_user_policy(UserName=name, PolicyName="role", PolicyDocument=json.dumps(for_moto(document)))
            key = iam.create_access_key(UserName=name)["AccessKey"]
        finally:
            self.moto.enforce_iam(True)
        key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
        return {
            **ENV,
            "BROKER_URL": f"sqs://{quote(key_id, safe='')}:{quote(secret, safe='')}@127.0.0.1:{self.moto.port}",
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
        }


@pytest.fixture(scope="module")
def aws(logs: Path) -> Iterator[Aws]:
    server = Aws(logs / "moto-iam.log")
    yield server
    server.moto.stop()


@pytest.fixture(scope="module")
def worker_env(aws: Aws) -> dict[str, str]:
    return aws.user(policy("worker"))


@pytest.fixture(scope="module")
def iam_worker(database: str, aws: Aws, worker_env: dict[str, str], logs: Path) -> Iterator[Worker]:
    """The Procfile's worker, with the worker policy exactly."""
    process = Worker(logs / "iam-worker.log", worker_env)
    yield process
    process.stop()


def ping(env: dict[str, str], worker: Worker) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "celery"), "-A", "tasks", "inspect", "ping", "--destination", worker.name, "--timeout", "5"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=120,
    )


def dispatched(env: dict[str, str], shop: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    done = run_cli("dispatch", input=json.dumps(a_lead(shop)), env=env)
    ids = [line.split()[2] for line in done.stdout.splitlines() if line.startswith("enqueued delivery")]
    return done, ids


def test_each_role_works_with_exactly_its_policy(
    aws: Aws, iam_worker: Worker, receiver: Receiver, subscribe: Callable[..., Any], logs: Path
) -> None:
    subscription = subscribe(receiver.url(f"/ok/{unique('iam')}"))
    flower_env = aws.user(policy("flower"))
    flower = Flower(logs / "iam-flower.log", flower_env)
    try:
        wait_for(lambda: flower.api("/api/workers?status=1").get(iam_worker.name), 60, "the worker's heartbeat")

        done, [delivery_id] = dispatched(aws.user(policy("producer")), subscription.shop)
        assert done.returncode == 0, done.stderr

        wait_for(lambda: receiver.to(subscription.url.removeprefix(receiver.url(""))), 60, "the delivery")
        wait_for(lambda: [row["status"] for row in attempts(delivery_id)] == ["success"], 60, "its audit")
        wait_for(lambda: (flower.api("/api/tasks").get(delivery_id) or {}).get("state") == "SUCCESS", 60, "events")
        assert iam_worker.name in flower.api("/api/workers?refresh=1")  # Flower's inspect, answered

        answered = ping(flower_env, iam_worker)
        assert answered.returncode == 0, answered.stdout + answered.stderr
        assert f"{iam_worker.name}: OK" in answered.stdout
    finally:
        flower.stop()
    for log in (iam_worker.output(), flower.output()):
        assert "AccessDenied" not in log and "not authorized" not in log


@pytest.mark.parametrize("action", sorted(actions(policy("producer")) - {"sns:TagResource"}))
def test_the_producer_without_any_one_action_of_its_policy_fails_naming_it(
    aws: Aws, subscribe: Callable[..., Any], action: str
) -> None:
    # sns:TagResource is left out: moto checks CreateTopic's tags as CreateTopic (AWS alone checks it)
    subscription = subscribe("http://127.0.0.1:9/never")
    queue = unique("producer")  # a new queue: its first dispatch creates it
    env = {**aws.user(without(renamed(policy("producer"), queue), action)), "SQS_QUEUE": queue, "LOG_LEVEL": "INFO"}
    done, _ = dispatched(env, subscription.shop)
    assert "Traceback" not in done.stderr
    assert f"is not authorized to perform: {action}" in done.stderr
    if action.startswith("sns:"):  # events are best effort: the lead is enqueued, its task-sent event lost
        assert done.returncode == 0, done.stderr
        assert "task events cannot be published to SNS" in done.stderr
    else:
        assert done.returncode == 1
        assert f"Error: AWS refused {action.removeprefix('sqs:')}: User: arn:aws:iam::" in done.stderr


def test_an_operator_without_sns_publish_on_the_remote_control_topic_gets_no_answer(
    aws: Aws, iam_worker: Worker
) -> None:
    done = ping(aws.user(without(policy("flower"), "sns:Publish")), iam_worker)
    assert done.returncode != 0
    assert "not authorized to perform: sns:Publish" in done.stdout + done.stderr


def test_a_worker_without_sqs_delete_message_delivers_but_cannot_acknowledge(
    aws: Aws, database: str, receiver: Receiver, subscribe: Callable[..., Any], logs: Path
) -> None:
    queue = unique("nodelete")  # its own queue (the policies name `webhooks`: renamed as the docs say)
    producer = {**aws.user(renamed(policy("producer"), queue)), "SQS_QUEUE": queue}
    worker_env = {**aws.user(without(renamed(policy("worker"), queue), "sqs:DeleteMessage")), "SQS_QUEUE": queue}
    worker = Worker(logs / f"{queue}.log", worker_env)
    try:
        subscription = subscribe(receiver.url(f"/ok/{unique('nodelete')}"))
        done, [delivery_id] = dispatched(producer, subscription.shop)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: [row["status"] for row in attempts(delivery_id)] == ["success"], 60, "the delivery")
        wait_for(lambda: "not authorized to perform: sqs:DeleteMessage" in worker.output(), 30, "the refused delete")
    finally:
        worker.stop()
    assert "could not delete 1 acknowledged message(s)" in worker.output()


def test_a_worker_that_cannot_publish_its_events_says_so_once_at_start_and_delivers(
    aws: Aws, database: str, receiver: Receiver, subscribe: Callable[..., Any], logs: Path
) -> None:
    queue = unique("noevents")
    producer = {**aws.user(renamed(policy("producer"), queue)), "SQS_QUEUE": queue, "WORKER_EVENTS": "0"}
    worker_env = {**aws.user(without(renamed(policy("worker"), queue), "sns:Publish")), "SQS_QUEUE": queue}
    worker = Worker(logs / f"{queue}.log", worker_env)
    try:
        said = "task events cannot be published to SNS (AWS refused Publish: "
        assert said in worker.output()  # at start: its worker-online event was refused
        assert "not authorized to perform: sns:Publish" in worker.output()
        assert "WORKER_EVENTS=0" in worker.output()
        subscription = subscribe(receiver.url(f"/ok/{unique('noevents')}"))
        done, [delivery_id] = dispatched(producer, subscription.shop)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: [row["status"] for row in attempts(delivery_id)] == ["success"], 60, "the delivery")
        wait_for(lambda: "succeeded in" in worker.output(), 30, "the task's end")  # its events refused too
    finally:
        worker.stop()
    assert worker.output().count(said) == 1
    assert "Traceback" not in worker.output()


def test_a_worker_without_sqs_list_queues_cannot_start(aws: Aws, database: str, logs: Path) -> None:
    env = aws.user(without(policy("worker"), "sqs:ListQueues"))
    with pytest.raises(AssertionError, match="the worker exited") as refused:
        Worker(logs / "iam-nolist.log", env)
    assert "not authorized to perform: sqs:ListQueues" in str(refused.value)


def test_the_worker_policy_lets_it_sweep_expired_monitoring_queues(
    aws: Aws, worker_env: dict[str, str], iam_worker: Worker
) -> None:
    import boto3

    from tasks.transport import LEASE_TAG

    sqs = boto3.client("sqs", endpoint_url=aws.moto.url, region_name="us-east-1")
    expired = f"celeryev-{uuid.uuid4()}"  # as a killed Flower leaves it
    aws.moto.enforce_iam(False)
    try:
        sqs.create_queue(QueueName=expired, tags={LEASE_TAG: str(int(time.time()) - 1)})
    finally:
        aws.moto.enforce_iam(True)
    code = "from tasks.application import sweep_monitoring_queues as sweep; print(sweep())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **worker_env},
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr([expired])
    assert "not authorized" not in done.stderr


def test_the_policies_grant_list_queues_on_every_resource_and_remote_control_to_flower_only() -> None:
    for role in ROLES:
        [listing] = [s for s in policy(role)["Statement"] if "sqs:ListQueues" in json.dumps(s["Action"])]
        assert listing["Resource"] == "*", role  # SQS's one action with no resource-level permission
    publishers = {
        role
        for role in ROLES
        for statement in policy(role)["Statement"]
        if "sns:Publish" in json.dumps(statement["Action"]) and "celery-pidbox" in json.dumps(statement["Resource"])
    }
    assert publishers == {"flower"}
