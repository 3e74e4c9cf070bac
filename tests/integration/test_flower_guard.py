"""Flower refuses to listen beyond loopback without authentication: the Procfile's Flower,
started for real on a free port (binding 0.0.0.0 listens locally; only loopback is contacted)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from local.services import ROOT, free_port, port_open, procfile_command, wait_for


class Started:
    """The Procfile's Flower on ``address`` and a free port, until it exits or listens."""

    def __init__(self, log: Path, address: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = log
        command = [word for word in procfile_command("flower") if not word.startswith(("--port", "--address"))]
        environment = {key: value for key, value in os.environ.items() if not key.startswith("FLOWER_")}
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                [*command, f"--port={self.port}", f"--address={address}"],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**environment, **env},
                cwd=ROOT,
                start_new_session=True,
            )
        wait_for(
            lambda: self.process.poll() is not None or (port_open(self.port) and "Visit me at" in self.output()),
            60,
            f"Flower to exit or listen (log: {log})",
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Flower's own shutdown (its event consumer on SQS) may be slow: this test is about its
        start, so a Flower that has not ended 15 s after SIGTERM is killed, its group with it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(15)


@pytest.fixture
def start(moto: object, tmp_path: Path) -> Iterator[Callable[..., Started]]:
    started: list[Started] = []

    def run(address: str, **env: str) -> Started:
        flower = Started(tmp_path / f"flower-{len(started)}.log", address, env)
        started.append(flower)
        return flower

    yield run
    for flower in started:
        flower.stop()


@pytest.mark.parametrize("address", ["0.0.0.0", "::", ""])
def test_flower_refuses_every_interface_without_authentication_naming_the_setting(
    start: Callable[..., Started], address: str
) -> None:
    flower = start(address)

    assert flower.process.returncode not in (None, 0), flower.output()
    assert "FLOWER_BASIC_AUTH" in flower.output()
    assert "Traceback" not in flower.output()
    assert not port_open(flower.port)


def test_flower_refuses_a_basic_auth_without_a_password(start: Callable[..., Started]) -> None:
    flower = start("0.0.0.0", FLOWER_BASIC_AUTH="admin:")

    assert flower.process.returncode not in (None, 0), flower.output()
    assert "FLOWER_BASIC_AUTH" in flower.output()


def test_flower_starts_on_every_interface_with_basic_auth(start: Callable[..., Started]) -> None:
    flower = start("0.0.0.0", FLOWER_BASIC_AUTH="admin:a-long-password")

    assert flower.process.poll() is None, flower.output()
    assert port_open(flower.port)


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost"])
def test_flower_starts_on_loopback_without_authentication(start: Callable[..., Started], address: str) -> None:
    flower = start(address)

    assert flower.process.poll() is None, flower.output()
    assert port_open(flower.port)
