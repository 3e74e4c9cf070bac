"""docker-compose.yml and the Procfile, checked without a Docker engine (none runs here)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess

import pytest
import yaml

from local.services import ROOT, procfile_command

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, object]] = COMPOSE["services"]
OURS = {name: service for name, service in SERVICES.items() if "build" in service}
# Where an operator reads every setting (the settings table, the local system, running it for real)
OPERATING = (ROOT / "docs" / "operating.md").read_text()
DOCUMENTED = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", OPERATING))


def test_every_service_has_an_image_or_a_build() -> None:
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name


def test_the_compose_file_runs_mysql_8_4_moto_and_every_process() -> None:
    assert SERVICES["mysql"]["image"] == "mysql:8.4"
    assert set(OURS) == {"migrate", "worker", "flower", "receiver", "demo"}


def test_compose_runs_the_sqs_and_sns_emulator_the_tests_run_so_that_flower_shows_the_tasks() -> None:
    from importlib.metadata import version

    assert SERVICES["moto"]["image"] == f"motoserver/moto:{version('moto')}", "the moto release the tests run"
    environment = COMPOSE["x-app"]["environment"]
    assert environment["BROKER_URL"].endswith("@moto:5000")  # the image's port
    assert SERVICES["moto"]["ports"] == ["127.0.0.1:9324:5000"]  # no credentials checked: this machine only
    for name, service in OURS.items():  # task events on (the default): nobody turns them off
        assert "WORKER_EVENTS" not in {**environment, **service["environment"]}, name  # type: ignore[dict-item]
        assert "--enable_events=False" not in service["command"] or name == "flower"  # type: ignore[operator]


def test_task_events_are_left_on_by_the_procfile() -> None:  # make run: tests/integration/test_local_run.py
    assert not any("WORKER_EVENTS" in word or word == "--without-heartbeat" for word in procfile_command("worker"))
    assert "WORKER_EVENTS" not in " ".join(procfile_command("flower"))


def test_every_variable_our_services_read_is_documented_in_the_operating_guide() -> None:
    for name, service in OURS.items():
        environment = service["environment"]
        assert isinstance(environment, dict)
        undocumented = set(environment) - DOCUMENTED
        assert not undocumented, f"{name}: {undocumented} missing from docs/operating.md"
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert interpolated <= DOCUMENTED


def test_every_command_exists_in_the_project() -> None:
    from click.testing import CliRunner

    from producer.cli import main

    for name, service in OURS.items():
        command = service["command"]
        assert isinstance(command, list), name
        if command[0] == "webhooks":
            assert CliRunner().invoke(main, [*command[1:], "--help"]).exit_code == 0, name
        elif command[:3] == ["celery", "-A", "tasks"]:
            assert command[3] in {"worker", "flower"}, name
        elif command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None, name
        else:
            pytest.fail(f"{name}: unknown command {command}")


def test_the_compose_worker_runs_the_procfile_worker() -> None:
    assert SERVICES["worker"]["command"] == ["celery", *procfile_command("worker")[1:]]


def test_the_dockerfile_runs_the_procfile_worker_with_its_threads() -> None:
    [cmd] = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    assert json.loads(cmd[len("CMD ") :]) == ["celery", *procfile_command("worker")[1:]]


def test_flower_is_published_on_loopback_only() -> None:
    assert SERVICES["flower"]["ports"] == ["127.0.0.1:5555:5555"]


def test_the_procfile_has_a_worker_and_flower() -> None:
    assert procfile_command("worker")[1:4] == ["-A", "tasks", "worker"]
    assert procfile_command("flower")[1:4] == ["-A", "tasks", "flower"]


def test_the_procfile_and_compose_flower_read_the_configuration_that_refuses_an_open_flower() -> None:
    assert "--conf=flowerconfig.py" in procfile_command("flower")
    assert "--conf=flowerconfig.py" in SERVICES["flower"]["command"]  # type: ignore[operator]
    assert (ROOT / "flowerconfig.py").exists()
    assert "flowerconfig.py" not in (ROOT / ".dockerignore").read_text()


def test_docker_compose_config_accepts_the_file_where_compose_is_installed() -> None:
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("no docker compose plugin on this machine")
    done = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={"WEBHOOK_ENCRYPTION_KEY": "x", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
