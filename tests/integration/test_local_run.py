"""`make run` (python -m local.run): the whole system on embedded defaults, stopped by Ctrl-C."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.request import urlopen

import pytest

from local.recorder import Receiver
from local.services import BIN, free_port, wait_for


def processes_marked(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def local_env(tmp_path: Path, mark: str) -> dict[str, str]:
    """The environment of `make run` on embedded defaults, on free ports, every process marked."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BROKER_", "DATABASE_", "AUDIT_", "WEBHOOK_", "SQS_", "AWS_", "WORKER_"))
    }
    env.update(
        {
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "LOCAL_SQS_PORT": str(free_port()),
            "LOCAL_FLOWER_PORT": str(free_port()),
            "LOCAL_RECEIVER_PORT": str(free_port()),
            mark.split("=")[0]: mark.split("=")[1],
        }
    )
    return env


@pytest.fixture
def mark() -> Iterator[str]:
    """The mark of this test's processes; whatever is left of them at the end is killed."""
    mark = f"LOCAL_RUN_MARK={uuid.uuid4()}"
    yield mark
    for pid in processes_marked(mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start(tmp_path: Path, mark: str, stdout: int | IO[Any]) -> subprocess.Popen[bytes]:
    """`python -m local.run` in a session of its own, as a terminal runs `make run` in the foreground
    (its process group is the terminal's foreground job); stderr goes to tmp_path/stderr.log."""
    with open(tmp_path / "stderr.log", "wb") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "local.run"],
            cwd=tmp_path,
            env=local_env(tmp_path, mark),
            stdout=stdout,
            stderr=errors,
            start_new_session=True,
        )


def test_the_run_command_delivers_signed_sample_leads_and_sigint_leaves_no_process(tmp_path: Path) -> None:
    mark = f"LOCAL_RUN_MARK={uuid.uuid4()}"
    env = local_env(tmp_path, mark)
    output = tmp_path / "run.log"
    with open(output, "wb") as log:
        runner = subprocess.Popen([sys.executable, "-m", "local.run"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    text = lambda: output.read_text(errors="replace")  # noqa: E731
    try:
        wait_for(lambda: "Ready." in text() or runner.poll() is not None, 120, "the demo to be ready")
        assert "Ready. 2 subscribers, 4 deliveries." in text(), text()[-3000:]
        receiver = f"http://127.0.0.1:{env['LOCAL_RECEIVER_PORT']}"
        assert f"webhooks configure NAME --url {receiver}/hooks/NAME" in text()  # how to get one's own verified
        assert "WARNING: using the development encryption key" in text()
        assert (tmp_path / "config" / "lead-webhooks" / "development.key").stat().st_mode & 0o077 == 0

        wait_for(lambda: text().count("signature verified") >= 4, 30, "4 verified requests")
        assert "INVALID" not in text()
        assert text().count("answering 200") == 3
        assert "answering 503" in text()

        with sqlite3.connect(tmp_path / "webhooks.sqlite3") as db:
            rows = db.execute("SELECT webhook, status, next_retry_at FROM delivery_attempts").fetchall()
        assert sorted((webhook, status) for webhook, status, _ in rows) == [
            ("demo-failing", "error"),
            ("demo-partner", "success"),
            ("demo-partner", "success"),
            ("demo-partner", "success"),
        ]
        assert next(due for webhook, _, due in rows if webhook == "demo-failing") is not None

        shared = tmp_path / "local.env"  # what another terminal sources to use the CLI on this system
        assert shared.stat().st_mode & 0o077 == 0
        other_shell = dict(line.split("=", 1) for line in shared.read_text().splitlines())
        other_shell = {name: value.strip("'") for name, value in other_shell.items()}
        listed = subprocess.run(
            [str(BIN / "webhooks"), "deliveries", "--json"],
            env={"PATH": os.environ["PATH"], **other_shell},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == 4

        # The printed line, run as is in a new shell without the virtualenv on PATH, finds `webhooks`.
        banner = "To use the CLI from another terminal, in this folder: "
        line = next(each for each in text().splitlines() if each.startswith(banner))[len(banner) :]
        assert ". ./local.env" in line and line.endswith("/bin/activate"), line
        in_new_shell = subprocess.run(
            ["bash", "-c", f"{line}; webhooks deliveries --json"],
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert in_new_shell.returncode == 0, in_new_shell.stderr
        assert len(json.loads(in_new_shell.stdout)) == 4
        flower = f"http://127.0.0.1:{env['LOCAL_FLOWER_PORT']}/api/tasks"
        wait_for(lambda: len(json.loads(urlopen(flower, timeout=5).read())) >= 4, 30, "Flower to list the 4 tasks")
        for process in ("worker", "flower"):  # kombu said it once per channel: ten lines at start
            said = [line for line in text().splitlines() if f" {process} " in line.split("|")[0]]
            assert sum("Created SNS topic 'celeryev'" in line for line in said) <= 1, process
    finally:
        runner.send_signal(signal.SIGINT)
        runner.wait(60)

    assert "Unrecoverable error" not in text()
    wait_for(lambda: not processes_marked(mark), 15, "every started process to exit")


def read_until(descriptor: int, text: str, timeout: float) -> str:
    """Read a pipe until ``text`` has come (never blocking past ``timeout``)."""
    received = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in received:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {text!r} within {timeout:.0f} s:\n{received.decode(errors='replace')[-3000:]}")
        if select.select([descriptor], [], [], min(left, 1))[0]:
            chunk = os.read(descriptor, 65536)
            if not chunk:
                raise AssertionError(f"the output ended before {text!r}:\n{received.decode(errors='replace')[-3000:]}")
            received += chunk
    return received.decode(errors="replace")


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(lambda runner: os.killpg(runner.pid, signal.SIGINT), id="ctrl-c"),
        pytest.param(lambda runner: runner.send_signal(signal.SIGTERM), id="sigterm"),
    ],
)
def test_every_process_stops_when_stdout_is_a_pipe_nobody_reads_any_more(tmp_path: Path, mark: str, stop: Any) -> None:
    # `make run 2>&1 | tee run.log`, then Ctrl-C: tee is gone first, and every line written after
    # (honcho's "SIGINT received", the processes' last words) meets a closed pipe.
    reader, writer = os.pipe()
    runner = start(tmp_path, mark, writer)
    os.close(writer)
    try:
        read_until(reader, "Ready.", 120)
    finally:
        os.close(reader)

    stop(runner)

    runner.wait(60)
    wait_for(lambda: not processes_marked(mark), 30, "every started process to exit")
    assert "Traceback" not in (tmp_path / "stderr.log").read_text(errors="replace")


def test_every_process_stops_when_the_terminal_hangs_up(tmp_path: Path, mark: str) -> None:
    with open(tmp_path / "run.log", "wb") as log:
        runner = start(tmp_path, mark, log)
    wait_for(lambda: "Ready." in (tmp_path / "run.log").read_text(errors="replace"), 120, "the demo to be ready")

    os.killpg(runner.pid, signal.SIGHUP)  # the terminal closed: SIGHUP to its foreground job

    assert runner.wait(60) != 0
    wait_for(lambda: not processes_marked(mark), 30, "every started process to exit")


def test_the_demo_sends_its_leads_only_to_its_own_subscribers(tmp_path: Path, mark: str) -> None:
    # The user's own subscriber, in the database `make run` uses, wants every lead of shop1 (the
    # demo's shop): a second `make run` must not send it the demo's sample leads.
    key = tmp_path / "config" / "lead-webhooks" / "development.key"
    key.parent.mkdir(parents=True)
    key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    key.chmod(0o600)
    users = Receiver()
    cli_env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": f"sqlite:///{tmp_path / 'webhooks.sqlite3'}",
        "WEBHOOK_ENCRYPTION_KEY": key.read_text().strip(),
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "SQS_REGION": "us-east-1",  # as `make run` sets it (local/run.py)
    }
    lead_types = ["--lead-type", "facebook_form", "--lead-type", "instagram_form", "--lead-type", "website_form"]
    for command in (
        ["db", "upgrade"],
        ["configure", "users-own", "--url", users.url("/mine"), *lead_types, "--erp-shop-id", "shop1"],
    ):
        done = subprocess.run(
            [str(BIN / "webhooks"), *command], env=cli_env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    try:
        with open(tmp_path / "run.log", "wb") as log:
            runner = start(tmp_path, mark, log)
        text = lambda: (tmp_path / "run.log").read_text(errors="replace")  # noqa: E731
        try:
            wait_for(lambda: "Ready." in text() or runner.poll() is not None, 120, "the demo to be ready")
            assert "Ready. 3 subscribers, 4 deliveries." in text(), text()[-3000:]
        finally:
            os.killpg(runner.pid, signal.SIGINT)
            runner.wait(60)
    finally:
        users.stop()

    assert users.to("/mine") == []
    with sqlite3.connect(tmp_path / "webhooks.sqlite3") as db:
        webhooks = {row[0] for row in db.execute("SELECT webhook FROM delivery_attempts")}
    assert webhooks == {"demo-partner", "demo-failing"}
