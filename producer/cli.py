"""The ``webhooks`` command line: configure subscribers, dispatch leads, read the audit."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import click
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

import settings
from producer import history, leads, subscribers
from producer.dispatch import enqueue, plan
from producer.dispatch import redeliver as redeliver_delivery
from records import canonical, evidence, migrations, trail
from webhooks.errors import InvalidInput, TrailBroken, WebhookError
from webhooks.text import json_printable, printable, without_passwords

PROGRESS_FROM = 100  # deliveries from which a dispatch on a terminal shows a progress bar
PROBLEMS_SHOWN = 50  # problems listed by `webhooks audit verify` (the count says how many more)


class _Group(click.Group):
    """Turns the errors a user can meet into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # --help, usage errors, Ctrl-C: click's own handling
        except WebhookError as error:
            _fail(str(error))
        except SQLAlchemyError as error:
            _fail(f"database error ({type(error).__name__}): {_first_line(error)}")
        except BrokerError as error:
            _fail(f"broker error: {_first_line(error)}")
        except Exception as error:  # never a traceback to a user, unless asked for
            if settings.LOG_LEVEL == "DEBUG":
                raise
            _fail(f"unexpected {type(error).__name__}: {_first_line(error)} (LOG_LEVEL=DEBUG shows the traceback)")


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"Error: {printable(without_passwords(message))}", err=True)
    sys.exit(code)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


@click.group(cls=_Group)
def main() -> None:
    """Lead webhooks: subscribers, dispatch and the delivery audit."""
    settings.check(need_key=False)


@main.command()
@click.argument("name")
@click.option("--url", required=True, help="The subscriber's endpoint (http or https).")
@click.option(
    "--lead-type",
    "lead_types",
    multiple=True,
    required=True,
    type=click.Choice(leads.LEAD_TYPES),
    help="A lead type to receive (repeat for several).",
)
@click.option("--erp-shop-id", "erp_shop_ids", multiple=True, required=True, help="An ERP shop id (repeat).")
def configure(name: str, url: str, lead_types: Sequence[str], erp_shop_ids: Sequence[str]) -> None:
    """Create the subscriber NAME and print its secret."""
    settings.check(need_key=True)
    secret = subscribers.configure(name, url, lead_types, erp_shop_ids)
    click.echo(f'WebhookConfig successfully created with secret "{secret}"')


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_(as_json: bool) -> None:
    """The subscribers (never their secrets)."""
    rows = [subscriber.summary() for subscriber in subscribers.all_subscribers()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _table(
        rows,
        ["name", "enabled", "url", "lead_types", "erp_shop_ids"],
        lambda key, value: ",".join(value) if isinstance(value, list) else str(value),
    )


@main.command()
@click.argument("file", type=click.File("rb"), default="-")
def dispatch(file: IO[bytes]) -> None:
    """Enqueue the leads of FILE (or stdin): a JSON object, an array, or JSON Lines."""
    raw = leads.read(file.read())
    planned = plan(raw)
    done = 0
    # On a terminal a large dispatch shows a bar instead of a line per delivery (unless
    # stdout is redirected, where the lines go).
    bar = sys.stderr.isatty() and len(planned) >= PROGRESS_FROM
    lines = not (bar and sys.stdout.isatty())
    with click.progressbar(planned, label="enqueuing", file=sys.stderr, hidden=not bar) as progress:
        try:
            for item in progress:
                enqueue(item)
                done += 1
                if lines:
                    click.echo(f"enqueued delivery {item.delivery_id} lead {item.lead_id} to {item.webhook}")
        except BrokerError as error:
            _fail(
                f"broker error: {_first_line(error)}\n{len(raw)} lead(s) read: {done} of {len(planned)} deliveries "
                "enqueued (listed above), the others were not"
            )
    click.echo(f"{len(raw)} lead(s) read, {done} deliveries enqueued, 0 refused", err=True)


class _Moment(click.ParamType):  # type: ignore[type-arg]  # generic only in recent click
    """An ISO 8601 date or time; without an offset it is taken as UTC."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or time, such as 2026-11-28 or 2026-11-28T10:00:00+01:00")
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1), help="How many records.")
@click.option("--webhook", help="Only this subscriber's attempts.")
@click.option("--lead", "lead_id", help="Only this lead's attempts.")
@click.option("--status", type=click.Choice(history.STATUSES), help="Only attempts with this outcome.")
@click.option("--since", type=_Moment(), help="Only attempts at or after this time (ISO 8601; UTC without an offset).")
def deliveries(
    as_json: bool, limit: int, webhook: str | None, lead_id: str | None, status: str | None, since: datetime | None
) -> None:
    """The audit records of delivery attempts, newest first."""
    found = history.attempts(webhook=webhook, lead_id=lead_id, status=status, since=since, limit=limit)
    rows = [attempt.summary() for attempt in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    columns = ["attempted_at", "delivery_id", "lead_id", "webhook", "retry", "status", "http_status", "duration_ms"]
    _table(rows, [*columns, "error"])


@main.command()
@click.argument("delivery_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of the attempts.")
def show(delivery_id: str, as_json: bool) -> None:
    """Every attempt of DELIVERY_ID, with its request and its response."""
    found = history.of_delivery(delivery_id)
    if not found:
        raise InvalidInput(f"no attempt of delivery {delivery_id!r} is recorded (see: webhooks deliveries)")
    rows = [{**attempt.summary(), **attempt.exchange()} for attempt in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        _echo(
            f"retry {row['retry']} at {row['attempted_at']}: {row['status']}"
            f" (HTTP {row['http_status'] if row['http_status'] is not None else '-'}, {row['duration_ms']} ms)"
        )
        if row["error"]:
            _echo(f"  error: {row['error']}")
        _echo(f"  POST {without_passwords(row['url'])}")
        for name, value in row["request_headers"].items():
            _echo(f"  {name}: {value}")
        _echo(f"  {row['request_body']}")
        _echo(f"  -> {row['response_body'] if row['response_body'] is not None else '(no response)'}")
        if row["next_retry_at"]:
            _echo(f"  next retry at {row['next_retry_at']}")


@main.command()
@click.argument("name")
def disable(name: str) -> None:
    """Stop new deliveries to NAME (retries already scheduled still run)."""
    subscribers.set_enabled(name, False)
    click.echo(f"{name} disabled: it gets no new deliveries")


@main.command()
@click.argument("name")
def enable(name: str) -> None:
    """Resume deliveries to NAME."""
    subscribers.set_enabled(name, True)
    click.echo(f"{name} enabled")


@main.command()
@click.argument("delivery_id")
def redeliver(delivery_id: str) -> None:
    """Send DELIVERY_ID's lead again: a new delivery, with a new retry cycle, to the
    subscriber's current URL, recorded as a redelivery of the original."""
    settings.check(need_key=True)
    delivery = redeliver_delivery(delivery_id)
    click.echo(
        f"enqueued delivery {delivery.delivery_id} lead {delivery.lead_id} to {delivery.webhook}"
        f" (redelivery of {delivery_id})"
    )


@main.command("rotate-secret")
@click.argument("name")
def rotate_secret(name: str) -> None:
    """Give NAME a new secret; the old one keeps signing beside it for WEBHOOK_SECRET_GRACE."""
    settings.check(need_key=True)
    secret, until = subscribers.rotate_secret(name, settings.WEBHOOK_SECRET_GRACE)
    click.echo(f'New secret for {name}: "{secret}"')
    click.echo(
        f"Until {until.isoformat(timespec='seconds')}+00:00 each request carries two signatures, the new secret's "
        "first (X-Hub-Signature-256: sha256=<new>,sha256=<old>); then only the new one.",
        err=True,
    )


@main.command("reencrypt-secrets")
def reencrypt_secrets() -> None:
    """Seal every subscriber's secret again under the first WEBHOOK_ENCRYPTION_KEY.

    Rotate a key: put the new key first (WEBHOOK_ENCRYPTION_KEY=NEW,OLD) on every worker
    and producer, run this, wait until no message sealed under OLD is in flight (the
    retry schedule's length: 7 days by default), then drop OLD.
    """
    settings.check(need_key=True)
    count = subscribers.reencrypt()
    click.echo(f"{count} secret(s) sealed again under the first key")


@main.group()
def db() -> None:
    """The database schema."""


@db.command()
def upgrade() -> None:
    """Create or upgrade the schema (harmless when already up to date)."""
    for url in migrations.upgrade():
        click.echo(f"schema up to date: {_without_password(url)}")


@main.group()
def audit() -> None:
    """The tamper-evident audit trail: verify it, seal it, prune it."""


@audit.command()
@click.option(
    "--since",
    type=_Moment(),
    help="Check only the records dated from DATE (UTC) on, and every checkpoint.",
)
def verify(since: datetime | None) -> None:
    """Recompute every record's hashes and chain links; exit 1 naming the first break."""
    report = trail.verify(settings.AUDIT_DATABASE_URL, since)
    if not report.ok:
        problems = report.sorted_problems()
        for problem in problems[:PROBLEMS_SHOWN]:
            _echo(problem.text)
        if len(problems) > PROBLEMS_SHOWN:
            click.echo(f"… and {len(problems) - PROBLEMS_SHOWN} more")
        raise TrailBroken(report.headline())
    click.echo(report.summary())


@audit.command()
def checkpoint() -> None:
    """Seal the chains written since the last checkpoint now, and print the checkpoint's hash."""
    written = trail.write_checkpoint(settings.AUDIT_DATABASE_URL)
    assert written is not None
    click.echo(
        f"checkpoint #{written.seq} at {canonical.moment(written.created_at)}: {len(written.heads)} chain heads "
        f"sealed; hash {written.record_hash}"
    )


@audit.command()
@click.option(
    "--days",
    type=click.IntRange(1),
    default=None,
    help="Keep the records of the last DAYS days (default: AUDIT_RETENTION_DAYS).",
)
def prune(days: int | None) -> None:
    """Delete the audit records older than the retention; the rest still verifies."""
    keep = days or settings.AUDIT_RETENTION_DAYS
    before = trail.utcnow() - timedelta(days=keep)
    done = trail.prune(settings.AUDIT_DATABASE_URL, before)
    click.echo(
        f"pruned {done.records} records and {done.checkpoints} checkpoints dated before "
        f"{canonical.moment(done.before)} (kept {keep} days); checkpoint #{done.checkpoint.seq} carries the trail "
        f"on, hash {done.checkpoint.record_hash}"
    )


@main.command("evidence")
@click.argument("lead_id")
@click.option("--webhook", default=None, help="Only the deliveries to this subscriber.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True, path_type=Path), help="Write the JSON here.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead of the text.")
def evidence_(lead_id: str, webhook: str | None, out: Path | None, as_json: bool) -> None:
    """Everything about LEAD_ID's deliveries: the text on stdout, the checkable JSON to --out."""
    document = evidence.collect(settings.AUDIT_DATABASE_URL, lead_id, webhook)
    # The exact characters, readable (ensure_ascii=False), and none a terminal would act on
    text = json_printable(json.dumps(document, indent=2, ensure_ascii=False)) + "\n"
    if out is not None:
        out.write_text(text, encoding="utf-8")
    click.echo(text if as_json else printable(evidence.render(document)), nl=not as_json)
    if out is not None:
        click.echo(f"evidence written to {out}", err=True)


def _echo(text: str) -> None:
    """A line of text made of recorded fields: a subscriber's answer, a lead's text (escaped)."""
    click.echo(printable(text))


def _without_password(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str],
    show: Callable[[str, Any], str] = lambda key, value: "" if value is None else str(value),
) -> None:
    cells = [[printable(show(column, row[column])) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)]
    click.echo("  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip())
    for line in cells:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
