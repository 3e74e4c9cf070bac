"""``make run``: the whole system on this machine, on embedded defaults, under honcho.

Nothing needs configuring. What is not set in the environment is chosen here:
- the broker: moto's SQS server on 127.0.0.1:LOCAL_SQS_PORT (9324);
- the database: DATABASE_URL when set (MySQL), else the SQLite file webhooks.sqlite3 here;
- task events and remote control on (WORKER_EVENTS=1), so Flower shows tasks and workers;
- the encryption key: a development key made once and kept outside the repository, in
  ``$XDG_CONFIG_HOME/lead-webhooks/development.key`` (with a warning); set
  WEBHOOK_ENCRYPTION_KEY to use your own.
The worker and Flower run the Procfile's own commands.
"""

from __future__ import annotations

import base64
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from honcho.manager import Manager
from honcho.printer import Printer

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def development_key() -> str:
    """The local key: made once (0600), outside the repository; never for production."""
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "lead-webhooks"
    path = config / "development.key"
    if not path.exists():
        config.mkdir(parents=True, exist_ok=True)
        path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        path.chmod(0o600)
    print(
        f"WARNING: using the development encryption key in {path}; "
        "set WEBHOOK_ENCRYPTION_KEY for anything but a local trial.",
        file=sys.stderr,
    )
    return path.read_text().strip()


def procfile(name: str) -> str:
    """A process's command from the Procfile, so the local run uses what production uses."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise SystemExit(f"the Procfile has no {name!r} process")


def busy(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LOCAL_SQS_PORT", "9324")
    env.setdefault("LOCAL_FLOWER_PORT", "5555")
    env.setdefault("LOCAL_RECEIVER_PORT", "8765")
    for name in ("LOCAL_SQS_PORT", "LOCAL_FLOWER_PORT", "LOCAL_RECEIVER_PORT"):
        if busy(int(env[name])):
            raise SystemExit(f"Error: port {env[name]} ({name}) is in use; set {name} to a free port")
    env.setdefault("BROKER_URL", f"sqs://local:local@127.0.0.1:{env['LOCAL_SQS_PORT']}")
    env.setdefault("DATABASE_URL", f"sqlite:///{Path.cwd() / 'webhooks.sqlite3'}")
    env.setdefault("SQS_REGION", "us-east-1")  # moto answers in any region; AWS needs yours
    if not env.get("WEBHOOK_ENCRYPTION_KEY"):
        env["WEBHOOK_ENCRYPTION_KEY"] = development_key()
    env.setdefault("SQS_WAIT_TIME_SECONDS", "2")
    env.setdefault("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")  # the sample subscriber is on loopback
    env.setdefault("WORKER_EVENTS", "1")  # moto emulates SNS too: Flower shows the tasks and the worker
    env.setdefault("LOCAL_SECRETS_FILE", str(Path.cwd() / "local-secrets.json"))
    env.setdefault("AUDIT_SPOOL_DIR", str(Path.cwd() / "audit-spool"))
    env.setdefault("FLOWER_UNAUTHENTICATED_API", "1")  # Flower listens on 127.0.0.1 only here
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


ENV_FILE = "local.env"
# What the CLI in another terminal needs to act on this local system.
SHARED = (
    "BROKER_URL",
    "SQS_REGION",
    "DATABASE_URL",
    "WEBHOOK_ENCRYPTION_KEY",
    "WEBHOOK_ALLOWED_NETWORKS",
    "WORKER_EVENTS",
    "SQS_WAIT_TIME_SECONDS",
    "AUDIT_SPOOL_DIR",
)


def write_env_file(env: dict[str, str], path: Path) -> None:
    """The local system's settings for another shell (0600: it holds the development key)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("".join(f"{name}={shlex.quote(env[name])}\n" for name in SHARED if name in env))


def shown(bin_dir: Path, here: Path) -> Path:
    """The virtualenv's bin as the user would type it from ``here``: relative when inside it."""
    return Path(os.path.relpath(bin_dir, here)) if bin_dir.is_relative_to(here) else bin_dir


def cli_help(bin_dir: Path, here: Path) -> str:
    """How another terminal, in this folder, uses the CLI on this system: the settings of
    ENV_FILE, and the virtualenv on PATH (``webhooks`` is installed there, nowhere else)."""
    where = shown(bin_dir, here)
    settings_line = f"set -a; . ./{ENV_FILE}; set +a"
    if (bin_dir / "activate").exists():
        line = f"{settings_line}; . {shlex.quote(str(where / 'activate'))}"
    else:
        line = f"{settings_line}; PATH={shlex.quote(str(bin_dir))}:$PATH"
    return (
        f"To use the CLI from another terminal, in this folder: {line}\n"
        f"  then e.g. `webhooks deliveries` (without the last step: {shlex.quote(str(where / 'webhooks'))} deliveries)"
    )


def main() -> None:
    env = environment()
    upgrade = subprocess.run([str(BIN / "webhooks"), "db", "upgrade"], env=env, check=False)
    if upgrade.returncode:
        raise SystemExit(upgrade.returncode)
    python = shlex.quote(sys.executable)
    processes = {
        "sqs": f"{python} -m local.sqs",
        "receiver": f"{python} -m local.receiver",
        "worker": procfile("worker"),
        "flower": procfile("flower").replace("--address=0.0.0.0", "--address=127.0.0.1"),
        "demo": f"{python} -m local.demo",
    }
    write_env_file(env, Path.cwd() / ENV_FILE)
    print(cli_help(BIN, Path.cwd()), flush=True)
    manager = Manager(Printer(sys.stdout))
    for name, command in processes.items():
        process_env = dict(env, PORT=env["LOCAL_FLOWER_PORT"]) if name == "flower" else env
        manager.add_process(name, command, env=process_env, cwd=str(ROOT))
    manager.loop()
    sys.exit(manager.returncode)


if __name__ == "__main__":
    main()
