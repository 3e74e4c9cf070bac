"""The audit of delivery attempts: every attempt is written to the audit trail, then logged.

As in the seed (two Monolog handlers), each attempt goes to two places: a line on stdout
(the logger ``webhooks.delivery``) and one ``delivery_attempts`` row in the MySQL audit
database. The row is written on purpose, by ``record`` (``write``), not by a logging
handler: no logging configuration — ``logging.disable``, a ``dictConfig`` that disables
existing loggers, a level — can stop an attempt from being recorded. A database error
propagates to the caller: the task then does not acknowledge its message, so no attempt
goes unrecorded.

Each row is appended to the hash chain of the writing thread (records.trail): still one
INSERT, no lock shared with other threads or workers. While the database cannot be reached
the attempt goes to the local spool (tasks.spool), drained as soon as it answers. A worker
also seals the chains every ``AUDIT_CHECKPOINT_INTERVAL`` seconds (``Checkpointer``), off
the delivery path.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import sys
import threading
import time
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.exc import InterfaceError, OperationalError

import settings
from records import database, trail
from records.models import DeliveryAttempt
from tasks.spool import Spool
from webhooks.status import Status
from webhooks.text import printable

LOGGER_NAME = "webhooks.delivery"
log = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class Attempt:
    """Everything the audit keeps about one attempt (the columns of delivery_attempts)."""

    delivery_id: str
    lead_id: str
    webhook: str
    url: str
    retry: int
    status: str
    http_status: int | None
    error: str | None
    request_headers: dict[str, str]
    request_body: str
    response_body: str | None
    duration_ms: float
    attempted_at: datetime  # naive UTC
    next_retry_at: datetime | None  # naive UTC
    redelivery_of: str | None = None  # the delivery this one redelivers (webhooks redeliver)
    address: str | None = None  # the checked IP the request went to

    def but(self, **changes: object) -> Attempt:
        """A copy with ``changes``."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> str:
        """The stdout line: one line, every field's control characters escaped."""
        parts = [
            f"delivery {printable(self.delivery_id, one_line=True)}",
            f"lead {printable(self.lead_id, one_line=True)}",
            f"webhook {printable(self.webhook, one_line=True)}",
            f"retry {self.retry}",
            self.status,
            f"http={self.http_status if self.http_status is not None else '-'}",
            f"{self.duration_ms:.0f}ms",
        ]
        if self.error:
            parts.append(f"error={printable(repr(self.error))}")
        if self.next_retry_at:
            parts.append(f"next_retry_at={self.next_retry_at.isoformat()}+00:00")
        return " ".join(parts)


_ATTEMPT_FIELDS = tuple(field.name for field in fields(Attempt))


def write(attempt: Attempt) -> None:
    """Append the attempt to the audit trail, or to the spool while the database is out of
    reach. Any other database error propagates (the task does not acknowledge its message)."""
    columns = {name: getattr(attempt, name) for name in _ATTEMPT_FIELDS}  # not asdict: no deep copy
    global _last_write
    try:
        drain_spool()
        trail.append(settings.AUDIT_DATABASE_URL, columns)
    except (OperationalError, InterfaceError) as error:
        _last_write = None
        if not out_of_reach(error):
            raise
        spool().keep(columns)
        notices.warning("audit database unreachable, attempt kept in %s: %s", spool().directory, _short(error))
    except BaseException:
        _last_write = None
        raise
    else:
        _last_write = time.monotonic()


notices = logging.getLogger("webhooks.audit")  # about the audit itself (not attempts)


@functools.cache
def spool() -> Spool:
    """This audit database's spool: a folder of its own, so that a spool directory shared by
    several deployments never drains one's attempts into another's database."""
    database_key = hashlib.sha256(settings.AUDIT_DATABASE_URL.encode()).hexdigest()[:16]
    return Spool(Path(settings.AUDIT_SPOOL_DIR) / database_key)


def drain_spool() -> int:
    """Write the spooled attempts to the trail (nothing to do, mostly); database errors propagate."""
    written = spool().drain(lambda fields: trail.append(settings.AUDIT_DATABASE_URL, fields))
    if written:
        notices.warning("audit database back: %d spooled attempt(s) written", written)
    return written


# MySQL client errors that mean "no server to talk to": can't connect (local, TCP), unknown
# host, server gone away, lost connection, lost connection at handshake.
_UNREACHABLE = {2002, 2003, 2005, 2006, 2013, 2055}


def out_of_reach(error: OperationalError | InterfaceError) -> bool:
    """True when the error says the database cannot be reached (not that a statement failed)."""
    if error.connection_invalidated:
        return True
    code = error.orig.args[0] if error.orig is not None and error.orig.args else None
    return code in _UNREACHABLE


def _short(error: BaseException) -> str:
    return str(error).splitlines()[0][:200]


def configure() -> logging.Logger:
    """Attach the stdout handler of the delivery logger once; safe to call again."""
    if not any(getattr(handler, "_webhooks_stdout", False) for handler in log.handlers):
        stream = logging.StreamHandler(sys.__stdout__ or sys.stdout)
        stream.setLevel(settings.LOG_LEVEL)
        stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        stream._webhooks_stdout = True  # type: ignore[attr-defined]  # marks the handler as ours
        log.addHandler(stream)
        log.setLevel(logging.DEBUG)
        log.propagate = False
    return log


_LEVELS = {
    Status.SUCCESS: logging.INFO,
    Status.ERROR: logging.WARNING,
    Status.HELD: logging.WARNING,
    Status.CANCELLED: logging.INFO,
    Status.SUPERSEDED: logging.INFO,
}


def record(attempt: Attempt) -> None:
    """Write one attempt to the audit trail, then log it on stdout (``_LEVELS``: ERROR when it
    ends abandoned or refused). The line is logged even when the write
    fails (the error then propagates)."""
    try:
        write(attempt)
    finally:
        level = _LEVELS.get(Status(attempt.status), logging.ERROR)
        log.log(level, attempt.describe())


# Seconds for which a successful audit write vouches for the next ones (writes_succeeding).
WRITES_VOUCHED_FOR = 60.0
_last_write: float | None = None  # monotonic time of this process's last audit write; None after a failure


def writes_succeeding() -> bool:
    """True while this process's audit writes succeed: one did in the last WRITES_VOUCHED_FOR
    seconds, and none failed since. A delivery received for the first time skips the duplicate
    check only then (tasks.delivery.process); otherwise the check's SELECT stands guard before
    the POST: with an audit that cannot be written (a schema missing after a bad deploy), it
    fails first, and nothing is sent that could not be recorded."""
    last = _last_write
    return last is not None and time.monotonic() - last < WRITES_VOUCHED_FOR


_attempts = cast(Table, DeliveryAttempt.__table__)
_SUCCEEDED = (
    select(_attempts.c.id)
    .where(_attempts.c.delivery_id == bindparam("delivery_id"), _attempts.c.status == Status.SUCCESS)
    .limit(1)
)


def already_delivered(delivery_id: str) -> bool:
    """True when an attempt of this delivery already succeeded (a duplicate SQS delivery).

    Without the audit database the answer is False: sending twice (receivers drop a
    repeated webhook-id) is better than not sending.
    """
    try:
        with database.autocommit_engine(settings.AUDIT_DATABASE_URL).connect() as connection:  # one round trip
            found = connection.execute(_SUCCEEDED, {"delivery_id": delivery_id}).first()
    except (OperationalError, InterfaceError) as error:
        notices.warning(
            "audit database unreachable, delivery %s not checked for duplicates: %s", delivery_id, _short(error)
        )
        return False
    return found is not None


class Checkpointer(threading.Thread):
    """Seals the audit chains every ``interval`` seconds, in the background of a worker.

    Several workers may run one each: a checkpoint is skipped when another was written in
    the last half interval, or when nothing was written since the last one. A failure is
    logged and tried again at the next tick; it never touches a delivery.
    """

    def __init__(self, interval: float) -> None:
        super().__init__(name="audit-checkpointer", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                drain_spool()  # spooled attempts first: a checkpoint must seal them
                written = trail.write_checkpoint(
                    settings.AUDIT_DATABASE_URL, min_age=self.interval / 2, only_if_changed=True
                )
            except Exception as error:
                log.warning("audit checkpoint failed (tried again in %g s): %s", self.interval, error)
                continue
            if written is not None:
                log.debug("audit checkpoint #%d: %d chain heads sealed", written.seq, len(written.heads))

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)


_checkpointer: Checkpointer | None = None


def start_checkpoints() -> None:
    """Start this process's checkpointer (once; not at all when AUDIT_CHECKPOINT_INTERVAL is 0)."""
    global _checkpointer
    if _checkpointer is None and settings.AUDIT_CHECKPOINT_INTERVAL > 0:
        _checkpointer = Checkpointer(settings.AUDIT_CHECKPOINT_INTERVAL)
        _checkpointer.start()


def stop_checkpoints() -> None:
    global _checkpointer
    if _checkpointer is not None:
        _checkpointer.stop()
        _checkpointer = None
