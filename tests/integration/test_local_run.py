"""`make run` (python -m local.run): the whole system on embedded defaults, stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

from tests.support.services import free_port, wait_for


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
    finally:
        runner.send_signal(signal.SIGINT)
        runner.wait(60)

    assert "Unrecoverable error" not in text()
    wait_for(lambda: not processes_marked(mark), 15, "every started process to exit")
