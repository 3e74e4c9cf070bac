"""Count the SQS and SNS requests a delivery costs, with task events off and on, on moto.

    python -m local.count_requests [--deliveries 50] [--idle 30]

Everything runs on loopback: moto's server (SQS and SNS) records every request it receives
(its recorder), a local subscriber answers 200, and the Procfile's worker (and, in the last
scenario, the Procfile's Flower) run with the production defaults of SQS_WAIT_TIME_SECONDS and
SQS_POLLING_INTERVAL. For each scenario the requests are recorded twice: while idle (the
background polls, heartbeats), then from the dispatch of N leads (``webhooks dispatch``, one
subscriber, so N deliveries) until every delivery is in the audit and a few seconds more. The
table gives the requests per delivery as counted, and after removing the idle rate for the
time the deliveries took.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FLOWER_USER = "count:count"
SCENARIOS = (  # name, WORKER_EVENTS, Flower attached
    ("events off", "0", False),
    ("events on", "1", False),
    ("events on + Flower", "1", True),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"count_requests: timed out waiting for {what}")
        time.sleep(0.2)


def procfile(name: str) -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            words = shlex.split(command)
            return [str(BIN / words[0]), *words[1:]]
    raise SystemExit(f"the Procfile has no {name!r} process")


class Subscriber(ThreadingHTTPServer):
    """Answers 200 to every POST, on loopback."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Moto:
    """moto's server with its request recorder (MOTO_RECORDER_FILEPATH), started and stopped by HTTP."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.recording = directory / "recording.jsonl"
        self.process = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            env={**os.environ, "MOTO_RECORDER_FILEPATH": str(self.recording)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._listening, 30, "moto's server")

    def _listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def _recorder(self, verb: str) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/recorder/{verb}", method="POST")).read()

    @contextmanager
    def record(self) -> Iterator[Counter[str]]:
        """Count the requests made in the block, by ``service Action``."""
        counts: Counter[str] = Counter()
        self._recorder("reset-recording")
        self._recorder("start-recording")
        try:
            yield counts
        finally:
            self._recorder("stop-recording")
            counts.update(actions(self.recording.read_text()))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def actions(recording: str) -> Counter[str]:
    """``sqs ReceiveMessage``… from the recorder's lines (JSON protocol: X-Amz-Target; query: Action=)."""
    counts: Counter[str] = Counter()
    for line in recording.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            counts["(unreadable line)"] += 1
            continue
        headers = entry["headers"]
        service = headers.get("Authorization", "").split("/")[3] if "/" in headers.get("Authorization", "") else "?"
        target = headers.get("X-Amz-Target")
        if target:
            action = target.rsplit(".", 1)[-1]
        else:
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode(errors="replace")
            action = parse_qs(body).get("Action", ["?"])[0]
        counts[f"{service} {action}"] += 1
    return counts


class Process:
    def __init__(self, command: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                command, env=dict(env), cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self) -> str:
        if self.process.poll() is not None:
            raise SystemExit(f"count_requests: {self.log.name} exited:\n{self.log.read_text()[-2000:]}")
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def flower_status(port: int) -> dict[str, bool]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/workers?status=1")
    request.add_header("Authorization", "Basic " + base64.b64encode(FLOWER_USER.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status: dict[str, bool] = json.load(answer)
            return status
    except OSError:
        return {}


def run(*command: str, env: Mapping[str, str], input: str | None = None) -> str:
    done = subprocess.run(
        [str(BIN / "webhooks"), *command], env=dict(env), cwd=ROOT, input=input, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"count_requests: webhooks {' '.join(command)} failed:\n{done.stderr}")
    return done.stdout


def successes(database: Path, webhook: str) -> int:
    with sqlite3.connect(database) as db:
        query = "SELECT count(*) FROM delivery_attempts WHERE webhook = ? AND status = 'success'"
        return int(db.execute(query, (webhook,)).fetchone()[0])


@dataclass
class Result:
    name: str
    counts: Counter[str]  # requests from the dispatch until every delivery is audited (+3 s)
    idle: Counter[str]  # requests while idle, for idle_seconds
    idle_seconds: float
    window: float  # seconds the deliveries took
    n: int


def scenario(
    name: str, events: str, flower: bool, base: dict[str, str], directory: Path, moto: Moto, n: int, idle: float
) -> Result:
    tag = uuid.uuid4().hex[:8]
    env = {**base, "WORKER_EVENTS": events, "SQS_QUEUE": f"count-{tag}"}
    shop = f"shop-{tag}"
    webhook = f"count-{tag}"
    run("configure", webhook, "--url", base["COUNT_URL"], "--lead-type", "call", "--erp-shop-id", shop, env=env)
    worker_name = f"count-{tag}@{socket.gethostname()}"
    worker = Process([*procfile("worker"), "--hostname", worker_name], env, directory / f"{tag}.worker.log")
    started = [worker]
    try:
        wait_for(lambda: " ready." in worker.output(), 60, "the worker")
        if flower:
            port = free_port()
            words = [w for w in procfile("flower") if not w.startswith(("--port", "--address"))]
            command = [*words, f"--port={port}", "--address=127.0.0.1", f"--basic-auth={FLOWER_USER}"]
            started.append(Process(command, env, directory / f"{tag}.flower.log"))
            wait_for(lambda: flower_status(port).get(worker_name), 60, "Flower to hear the worker")
        time.sleep(5)  # start-up requests settle

        with moto.record() as idle_counts:
            time.sleep(idle)
        leads = "\n".join(
            json.dumps(
                {
                    "id": str(uuid.uuid4()),
                    "created_at": datetime.now(UTC).isoformat(),
                    "lead_type": "call",
                    "geolid_shop_id": shop,
                }
            )
            for _ in range(n)
        )
        with moto.record() as counts:
            began = time.monotonic()
            run("dispatch", env=env, input=leads)
            wait_for(lambda: successes(Path(base["COUNT_DB"]), webhook) >= n, 300, f"{n} deliveries")
            time.sleep(3)  # buffered events flushed, the monitor's queue drained
            window = time.monotonic() - began
    finally:
        for process in reversed(started):
            process.stop()
    return Result(name, counts, idle_counts, idle, window, n)


def report(results: list[Result]) -> str:
    lines = [
        "| scenario | requests per delivery (counted) | minus idle rate | idle requests per hour |",
        "| --- | --- | --- | --- |",
    ]
    details = []
    for r in results:
        total, idle_total = sum(r.counts.values()), sum(r.idle.values())
        adjusted = total - idle_total / r.idle_seconds * r.window
        hourly = idle_total / r.idle_seconds * 3600
        lines.append(f"| {r.name} | {total / r.n:.2f} | {adjusted / r.n:.2f} | {hourly:,.0f} |")
        per = ", ".join(f"{action} {count / r.n:.2f}" for action, count in r.counts.most_common())
        idles = ", ".join(f"{action} {count / r.idle_seconds * 3600:,.0f}" for action, count in r.idle.most_common())
        details.append(f"- {r.name} ({r.n} deliveries in {r.window:.1f} s): {per}; idle, per hour: {idles}")
    return "\n".join([*lines, "", *details])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=50)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle recording per scenario")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="count-requests-") as temporary:
        directory = Path(temporary)
        moto = Moto(directory)
        subscriber = Subscriber()
        database = directory / "count.sqlite3"
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("BROKER_", "DATABASE_", "AUDIT_", "SQS_", "WORKER_", "AWS_", "FLOWER_"))
        }
        base.update(
            {
                "BROKER_URL": f"sqs://count:count@127.0.0.1:{moto.port}",
                "DATABASE_URL": f"sqlite:///{database}",
                "SQS_REGION": "us-east-1",
                "WEBHOOK_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
                "AWS_ACCESS_KEY_ID": "count",
                "AWS_SECRET_ACCESS_KEY": "count",
                "LOG_LEVEL": "WARNING",
                "COUNT_URL": f"http://127.0.0.1:{subscriber.server_address[1]}/hook",
                "COUNT_DB": str(database),
            }
        )
        try:
            run("db", "upgrade", env=base)
            results = [
                scenario(name, events, flower, base, directory, moto, options.deliveries, options.idle)
                for name, events, flower in SCENARIOS
            ]
        finally:
            subscriber.shutdown()
            moto.stop()
    print(report(results))


if __name__ == "__main__":
    main()
