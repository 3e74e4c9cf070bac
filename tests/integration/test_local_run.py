"""`make run` (python -m local.run): the whole system on embedded defaults, stopped by Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.request import urlopen

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


def test_the_run_command_delivers_signed_sample_leads_and_sigint_leaves_no_process(tmp_path: Path) -> None:
    mark = f"LOCAL_RUN_MARK={uuid.uuid4()}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BROKER_", "DATABASE_", "AUDIT_", "WEBHOOK_", "SQS_", "AWS_"))
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
    output = tmp_path / "run.log"
    with open(output, "wb") as log:
        runner = subprocess.Popen([sys.executable, "-m", "local.run"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    text = lambda: output.read_text(errors="replace")  # noqa: E731
    try:
        wait_for(lambda: "Ready." in text() or runner.poll() is not None, 120, "the demo to be ready")
        assert "Ready. 2 subscribers, 4 deliveries." in text(), text()[-3000:]
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
    finally:
        runner.send_signal(signal.SIGINT)
        runner.wait(60)

    assert "Unrecoverable error" not in text()
    wait_for(lambda: not processes_marked(mark), 15, "every started process to exit")
