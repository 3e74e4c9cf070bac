"""Settings for Amazon SQS that would break or mislead a deployment are refused at start, with the reason.

Settings are read once, when ``settings`` is imported: each case runs ``settings.check()`` in a
fresh interpreter with its own environment.
"""

from __future__ import annotations

import os
import subprocess
import sys

from local.services import ROOT

CHECK = (
    "import settings\n"
    "from webhooks.errors import ConfigurationError\n"
    "try:\n"
    "    settings.check(need_key=False)\n"
    "except ConfigurationError as error:\n"
    "    raise SystemExit(f'refused: {error}')\n"
    "print('region', settings.SQS_REGION, 'prefix', repr(settings.SQS_QUEUE_PREFIX))\n"
)


def start(**env: str | None) -> subprocess.CompletedProcess[str]:
    """``settings.check()`` in a new interpreter; a value of None removes the variable."""
    environment = {**os.environ, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    environment.pop("AWS_PROFILE", None)
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, env=environment, cwd=ROOT, timeout=60
    )


def test_a_fifo_queue_is_refused_because_it_drops_the_delays_of_retries() -> None:
    done = start(SQS_QUEUE="webhooks.fifo")
    assert done.returncode != 0
    assert "SQS_QUEUE='webhooks.fifo': FIFO queues (.fifo) are not supported" in done.stderr
    assert "refuse a per-message DelaySeconds" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_sqs_region_the_region_boto3_resolves_is_used() -> None:
    done = start(SQS_REGION=None, AWS_DEFAULT_REGION="eu-west-1", AWS_REGION=None)
    assert done.returncode == 0, done.stderr
    assert "region eu-west-1 " in done.stdout


def test_sqs_region_wins_over_the_environment_s_region() -> None:
    done = start(SQS_REGION="eu-central-1", AWS_DEFAULT_REGION="us-east-1")
    assert done.returncode == 0, done.stderr
    assert "region eu-central-1 " in done.stdout


def test_without_any_region_known_the_start_is_refused_not_sent_to_us_east_1() -> None:
    done = start(SQS_REGION=None, AWS_DEFAULT_REGION=None, AWS_REGION=None)
    assert done.returncode != 0
    assert "SQS_REGION is not set and no AWS region is configured" in done.stderr
    assert "set SQS_REGION to the region of your queues" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_queue_prefix_is_read_and_a_malformed_one_is_refused() -> None:
    done = start(SQS_QUEUE_PREFIX="staging-")
    assert done.returncode == 0, done.stderr
    assert "prefix 'staging-'" in done.stdout

    done = start(SQS_QUEUE_PREFIX="staging/", SQS_QUEUE="webhooks")
    assert done.returncode != 0
    assert "SQS_QUEUE_PREFIX='staging/' and SQS_QUEUE='webhooks'" in done.stderr
    assert "at most 80 letters, digits, -, _ or ." in done.stderr


def test_a_visibility_timeout_above_twelve_hours_is_refused() -> None:
    assert start(SQS_VISIBILITY_TIMEOUT="43200").returncode == 0
    done = start(SQS_VISIBILITY_TIMEOUT="43201")
    assert done.returncode != 0
    assert "SQS_VISIBILITY_TIMEOUT=43201 must be at most 43200 (12 hours, an SQS limit)" in done.stderr


def test_task_events_are_on_by_default_so_that_flower_shows_the_tasks() -> None:
    code = "import settings; print('events', settings.WORKER_EVENTS)"
    environment = {**os.environ}
    environment.pop("WORKER_EVENTS", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=ROOT)
    assert done.stdout.strip() == "events True", done.stderr
    environment["WORKER_EVENTS"] = "0"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=ROOT)
    assert done.stdout.strip() == "events False", done.stderr
