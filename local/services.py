"""Real services on loopback for the tests and the benchmarks: moto's SQS server, a MariaDB database,
the Procfile's Celery worker and Flower."""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pymysql

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Moto:
    """moto's server, in its own process, on a loopback port.

    ``env`` adds to its environment: moto's own settings, e.g. ``INITIAL_NO_AUTH_ACTION_COUNT``
    (after that many requests, every request is checked against the caller's IAM policies).
    """

    def __init__(self, port: int, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(log, "wb")  # noqa: SIM115 - kept open for the process's life
        self.process = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        wait_for(lambda: port_open(port) or self.process.poll() is not None, 30, "moto_server to listen")
        if self.process.poll() is not None:
            raise RuntimeError(f"moto_server exited; see {log}")

    def enforce_iam(self, on: bool) -> None:
        """Check every request against IAM from now on, or no request (moto's reset-auth: the
        INITIAL_NO_AUTH_ACTION_COUNT of a running server, its count of requests started again)."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            data=b"0" if on else b"inf",
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form's body would not reach moto
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._log.close()


def mysql_reachable() -> bool:
    try:
        pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", connect_timeout=2).close()
    except pymysql.Error:
        return False
    return True


def mysql(statement: str) -> None:
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def procfile_command(name: str) -> list[str]:
    """A Procfile process's command, with its executable taken from this virtualenv."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            words = shlex.split(command)
            return [str(BIN / words[0]), *words[1:]]
    raise AssertionError(f"the Procfile has no {name!r} process")


class _Process:
    """A service process in its own process group, logging to a file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the main process and every child: nothing is acknowledged, nothing cleaned up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def stop(self) -> None:
        """SIGTERM to the main process, as a process manager stops it: a warm shutdown."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()


class Worker(_Process):
    """The Procfile's worker in its own process group, so a test can kill it whole.

    ``command`` replaces the Procfile's command (the benchmark's no-op worker).
    """

    def __init__(self, log: Path, env: Mapping[str, str] | None = None, command: Sequence[str] | None = None) -> None:
        self.log_path = log
        self.name = f"test-{os.getpid()}-{time.monotonic_ns()}@{socket.gethostname()}"
        self._log = open(log, "ab")  # noqa: SIM115 - kept open for the process's life
        self.process = subprocess.Popen(
            [*(command or procfile_command("worker")), "--hostname", self.name],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            start_new_session=True,
        )
        wait_for(self.ready, 60, f"the worker to be ready (log: {log})", every=self.READY_POLL)

    #: seconds between two looks for "ready" in the log (the benchmark looks more often)
    READY_POLL = 0.2

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the worker exited with {self.process.returncode}:\n{self.output()[-3000:]}")
        return " ready." in self.output()


class Flower(_Process):
    """The Procfile's Flower on a free loopback port, its API behind basic auth, in its own process group."""

    USER = ("flower", "test-password")

    def __init__(self, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - kept open for the process's life
        command = [word for word in procfile_command("flower") if not word.startswith(("--port", "--address"))]
        self.process = subprocess.Popen(
            [*command, f"--port={self.port}", "--address=127.0.0.1", "--basic-auth={}:{}".format(*self.USER)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            start_new_session=True,
        )
        wait_for(self.ready, 60, f"Flower to listen (log: {log})")

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"Flower exited with {self.process.returncode}:\n{self.output()[-3000:]}")
        return port_open(self.port) and "Visit me at" in self.output()

    def api(self, path: str) -> Any:
        """GET one of Flower's API resources (``/api/tasks``…) and decode its JSON."""
        request = urllib.request.Request(self.url + path)
        token = base64.b64encode("{}:{}".format(*self.USER).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)
