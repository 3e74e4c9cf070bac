"""The audit spool: attempts kept on the worker's disk while the audit database is down.

When the audit database cannot be reached, a delivery still goes out and its attempt is
appended to a JSON Lines file in ``AUDIT_SPOOL_DIR`` (flushed and fsynced before the
message is acknowledged). As soon as the database answers again — at the next attempt,
or at the checkpointer's next tick — the spooled attempts are written to the trail in
order and their file is removed. A file left by a crashed worker is drained by the next
worker that uses the same directory.

Nothing is lost short of losing the disk; a worker killed in the middle of a drain may
write some spooled attempts twice (never zero times).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

_lock = threading.Lock()
_TIMES = ("attempted_at", "next_retry_at")


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.maybe_pending = True  # files of an earlier process may be waiting

    @property
    def _own_file(self) -> Path:
        return self.directory / f"attempts-{socket.gethostname()}-{os.getpid()}.jsonl"

    def keep(self, fields: Mapping[str, Any]) -> None:
        """Append one attempt durably."""
        line = json.dumps(
            {name: value.isoformat() if isinstance(value, datetime) else value for name, value in fields.items()},
            ensure_ascii=False,
        )
        with _lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self._own_file, "a", encoding="utf-8") as file, _locked(file):
                file.write(line + "\n")
                file.flush()
                os.fsync(file.fileno())
            self.maybe_pending = True

    def drain(self, write: Callable[[dict[str, Any]], object]) -> int:
        """Write every spooled attempt with ``write``, oldest file first; return how many.

        Stops at the first failure, keeping what is not written yet.
        """
        if not self.maybe_pending:
            return 0
        written = 0
        with _lock:
            for path in sorted(self.directory.glob("attempts-*.jsonl"), key=lambda found: found.stat().st_mtime):
                with open(path, "r+", encoding="utf-8") as file:
                    try:
                        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # another process is writing or draining it
                    lines = [line for line in file.read().splitlines() if line.strip()]
                    for done, line in enumerate(lines):
                        try:
                            write(_decode(line))
                        except BaseException:
                            file.seek(0)
                            file.truncate()
                            file.write("".join(rest + "\n" for rest in lines[done:]))
                            file.flush()
                            os.fsync(file.fileno())
                            raise
                        written += 1
                    path.unlink()
            self.maybe_pending = False
        return written

    def pending(self) -> int:
        """How many attempts wait in the spool (all files)."""
        count = 0
        for path in self.directory.glob("attempts-*.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                count += sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        return count


def _decode(line: str) -> dict[str, Any]:
    fields: dict[str, Any] = json.loads(line)
    for name in _TIMES:
        if fields.get(name) is not None:
            fields[name] = datetime.fromisoformat(fields[name])
    return fields


@contextlib.contextmanager
def _locked(file: IO[str]) -> Iterator[None]:
    fcntl.flock(file, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(file, fcntl.LOCK_UN)
