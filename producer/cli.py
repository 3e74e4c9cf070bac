"""The ``webhooks`` command line: configure subscribers, dispatch leads, read the audit."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import click
from botocore.exceptions import BotoCoreError, ClientError
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

import settings
from producer import health as subscriber_health
from producer import history, leads, lifecycle, subscribers
from producer.dispatch import PlannedDelivery, enqueue_all, plan
from producer.dispatch import redeliver as redeliver_delivery
from records import canonical, evidence, migrations, trail
from records import deliveries as delivery_rows
from tasks import signature
from webhooks import clock, secretbox
from webhooks.errors import DispatchFailed, InvalidInput, TrailBroken, WebhookError
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
        except ClientError as error:
            _fail(f"AWS refused {error.operation_name}: {_aws_message(error)}")
        except BotoCoreError as error:
            _fail(f"broker error: {_first_line(error)}")
        except Exception as error:  # never a traceback to a user, unless asked for
            if settings.LOG_LEVEL == "DEBUG":
                raise
            _fail(f"unexpected {type(error).__name__}: {_first_line(error)} (LOG_LEVEL=DEBUG shows the traceback)")


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"Error: {printable(without_passwords(message))}", err=True)
    sys.exit(code)


def _aws_message(error: ClientError) -> str:
    """What AWS said (AccessDenied names the action missing from the IAM policy), on one line."""
    said = str(error.response.get("Error", {}).get("Message") or error)
    found = re.search(r"<Message>(.*?)</Message>", said, re.DOTALL)  # an XML body botocore could not parse
    return _first_line(Exception(found.group(1) if found else said))


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
    click.echo(_whsec_line(secret))


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
@click.option("--again", is_flag=True, help="Send leads already dispatched again, as redeliveries (same webhook-id).")
def dispatch(file: IO[bytes], again: bool) -> None:
    """Enqueue the leads of FILE (or stdin): a JSON object, an array, or JSON Lines.

    A lead already dispatched to a subscriber is not enqueued for it again (each is named);
    --again sends it again as a redelivery of the earlier delivery."""
    settings.check(need_key=True)
    raw = leads.read(file.read())
    planned = plan(raw, again=again)
    for note in planned.notes:
        click.echo(note, err=True)
    done = 0
    # On a terminal a large dispatch shows a bar instead of a line per delivery (unless
    # stdout is redirected, where the lines go).
    bar = sys.stderr.isatty() and len(planned.deliveries) >= PROGRESS_FROM
    lines = not (bar and sys.stdout.isatty())
    with click.progressbar(
        length=len(planned.deliveries), label="enqueuing", file=sys.stderr, hidden=not bar
    ) as progress:

        def enqueued(item: PlannedDelivery) -> None:
            nonlocal done
            done += 1
            progress.update(1)
            if lines:
                redelivery = f" (redelivery of {item.supersedes})" if item.supersedes else ""
                click.echo(f"enqueued delivery {item.delivery_id} lead {item.lead_id} to {item.webhook}{redelivery}")

        try:
            enqueue_all(planned.deliveries, enqueued)
        except DispatchFailed as error:
            _fail(f"{error} (listed above)\n{len(raw)} lead(s) read")
    click.echo(
        f"{len(raw)} lead(s) read, {done} deliveries enqueued, 0 refused; {planned.already} already dispatched, "
        f"{planned.unmatched} lead(s) matched no enabled subscriber",
        err=True,
    )


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
@click.option("--pending", is_flag=True, help="The deliveries still to be attempted or held, oldest first.")
def deliveries(
    as_json: bool,
    limit: int,
    webhook: str | None,
    lead_id: str | None,
    status: str | None,
    since: datetime | None,
    pending: bool,
) -> None:
    """The audit records of delivery attempts, newest first (--pending: what is still to come)."""
    if pending:
        subscriber = subscribers.named(webhook) if webhook is not None else None  # an unknown name is an error
        if lead_id or status or since:
            raise InvalidInput("--pending goes with --webhook, --limit and --json only")
        waiting = [each.summary() for each in history.pending(subscriber.id if subscriber else None, limit)]
        if as_json:
            click.echo(json.dumps(waiting, indent=2))
            return
        _table(
            waiting, ["dispatched_at", "delivery_id", "lead_id", "webhook", "state", "retry", "next_attempt", "reason"]
        )
        return
    found = history.attempts(webhook=webhook, lead_id=lead_id, status=status, since=since, limit=limit)
    if webhook is not None and not found and not history.attempts(webhook=webhook, limit=1):
        subscribers.named(webhook)  # neither a subscriber nor one of its records: say so (a deleted one keeps its)
    rows = [attempt.summary() for attempt in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    columns = ["attempted_at", "delivery_id", "lead_id", "webhook", "retry", "status", "http_status", "duration_ms"]
    _table(rows, [*columns, "next_retry_at", "error"])


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def health(name: str | None, as_json: bool) -> None:
    """Each subscriber's health (or NAME's): enabled, circuit, attempts, success rate and durations
    over the last hour and day, last success, failures since, pending deliveries."""
    found = subscriber_health.report(name)
    if as_json:
        click.echo(json.dumps([each.summary() for each in found], indent=2))
        return
    if not found:
        click.echo("no subscriber is configured (see: webhooks configure)", err=True)
    for each in found:
        _echo(each.text())


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
@click.option("--url", default=None, help="The new endpoint (http or https).")
@click.option(
    "--lead-type",
    "lead_types",
    multiple=True,
    type=click.Choice(leads.LEAD_TYPES),
    help="The lead types to receive, replacing the current ones (repeat for several).",
)
@click.option("--erp-shop-id", "erp_shop_ids", multiple=True, help="The ERP shop ids, replacing the current ones.")
def update(name: str, url: str | None, lead_types: Sequence[str], erp_shop_ids: Sequence[str]) -> None:
    """Change NAME's URL, lead types or shop ids; pending deliveries and retries follow."""
    changed = subscribers.update(name, url, lead_types, erp_shop_ids)
    click.echo(
        f"{name} updated: {changed.url} lead types {','.join(changed.lead_types)}"
        f" shops {','.join(changed.erp_shop_ids)}"
        f" (every attempt from now on, retries included, within {settings.SUBSCRIBER_CACHE_SECONDS:g} s)"
    )


@main.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(name: str, yes: bool) -> None:
    """Delete NAME: its pending deliveries end cancelled; the audit keeps all its records."""
    subscribers.named(name)  # an unknown name fails before the question
    if not yes:
        click.confirm(f"Delete the subscriber {name} and cancel its pending deliveries?", abort=True)
    pending = lifecycle.delete(name)
    click.echo(f"{name} deleted; {pending} pending deliveries cancelled (the audit keeps its records)")


@main.command()
@click.argument("name")
def disable(name: str) -> None:
    """Stop deliveries to NAME: new leads skip it, pending deliveries are held until enable."""
    lifecycle.disable(name)
    click.echo(f"{name} disabled: it gets no new deliveries; its pending ones are held until `webhooks enable {name}`")


@main.command()
@click.argument("name")
def enable(name: str) -> None:
    """Resume deliveries to NAME and send the deliveries held while it was disabled."""
    settings.check(need_key=True)
    done = lifecycle.enable(name)
    if done.circuit_open_until is not None:
        click.echo(
            f"{name} enabled; its circuit is open until {done.circuit_open_until.isoformat(timespec='seconds')}+00:00: "
            f"its {done.held} held deliveries are sent again by the workers once a probe closes it"
        )
        return
    unreadable = done.unreadable
    click.echo(f"{name} enabled; {done.sent} held deliveries sent again")
    if unreadable:
        click.echo(
            f"{len(unreadable)} held deliveries stay held: their parked message was sealed under a key no longer in "
            "WEBHOOK_ENCRYPTION_KEY (put it back, after the new one, and enable again): " + ", ".join(unreadable),
            err=True,
        )


@main.command()
@click.argument("delivery_id", required=False)
@click.option("--webhook", default=None, help="Cancel every pending delivery to this subscriber.")
@click.option("--since", type=_Moment(), default=None, help="With --webhook: only those dispatched since DATE.")
def cancel(delivery_id: str | None, webhook: str | None, since: datetime | None) -> None:
    """End pending deliveries as cancelled: DELIVERY_ID, or every one to --webhook NAME."""
    if (delivery_id is None) == (webhook is None):
        raise InvalidInput("give either DELIVERY_ID or --webhook NAME")
    if delivery_id is not None:
        if since is not None:
            raise InvalidInput("--since goes with --webhook")
        lifecycle.cancel(delivery_id)
        click.echo(f"delivery {delivery_id} cancelled")
        return
    assert webhook is not None
    ended = lifecycle.cancel_subscriber(webhook, since)
    for each in ended:
        click.echo(f"delivery {each} cancelled")
    click.echo(f"{len(ended)} pending deliveries to {webhook} cancelled", err=True)


@main.command()
@click.argument("name")
@click.option("--since", type=_Moment(), required=True, help="Deliveries dispatched since DATE (ISO 8601).")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([str(status) for status in lifecycle.RECOVERABLE]),
    help="Only deliveries whose last record has this status (repeat; default: all of them).",
)
@click.option("--dry-run", is_flag=True, help="List them, send nothing.")
def recover(name: str, since: datetime, statuses: Sequence[str], dry_run: bool) -> None:
    """Send again, as redeliveries, every delivery to NAME since DATE that never succeeded."""
    if not dry_run:
        settings.check(need_key=True)
    found = lifecycle.recoverable(name, since, statuses)
    if dry_run:
        for one in found:
            click.echo(f"{one.delivery_id} lead {one.lead_id} {one.status}")
        click.echo(f"{len(found)} deliveries to {name} would be sent again (dry run: nothing sent)", err=True)
        return
    bar = sys.stderr.isatty() and len(found) >= PROGRESS_FROM
    with click.progressbar(length=len(found), label="redelivering", file=sys.stderr, hidden=not bar) as progress:
        sent = lifecycle.recover(found, lambda _: progress.update(1))
    click.echo(f"{len(sent)} deliveries to {name} sent again as redeliveries", err=True)


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
    click.echo(_whsec_line(secret))
    click.echo(
        f"Until {until.isoformat(timespec='seconds')}+00:00 webhook-signature carries two signatures, the new "
        "secret's and the old one's (v1,<new> v1,<old>): a partner verifying it switches to the new secret at any "
        "time until then. X-Hub-Signature and X-Hub-Signature-256 stay signed with the OLD secret alone until then, "
        "and with the new one after: a partner verifying them switches at that time.",
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
    held = delivery_rows.reseal_held(_resealed)
    click.echo(f"{count} secret(s) sealed again under the first key; {held} held delivery message(s) too")


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
    """Recompute every record's hashes, MAC and chain links; exit 1 naming the first break."""
    settings.check(need_key=True)
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
    settings.check(need_key=True)
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
    settings.check(need_key=True)
    keep = days or settings.AUDIT_RETENTION_DAYS
    before = clock.utcnow() - timedelta(days=keep)
    done = trail.prune(settings.AUDIT_DATABASE_URL, before)
    click.echo(
        f"pruned {done.records} records and {done.checkpoints} checkpoints dated before "
        f"{canonical.moment(done.before)} (kept {keep} days); checkpoint #{done.checkpoint.seq} carries the trail "
        f"on, hash {done.checkpoint.record_hash}"
    )


@audit.command("trail-key")
def trail_key() -> None:
    """Print the trail keys (one per WEBHOOK_ENCRYPTION_KEY key, the current first), to check MACs elsewhere.

    Whoever holds a trail key can check the MACs of an evidence file (its verifier's --trail-key),
    and, with write access to the audit database, forge records: hand it only to an auditor."""
    settings.check(need_key=True)
    click.echo(
        "Warning: with a trail key and write access to the audit database, audit records can be forged; "
        "hand it only to whoever must check the trail's MACs.",
        err=True,
    )
    for position, key in enumerate(trail.keys.configured()):
        click.echo(f"trail key {key.id}{' (current)' if position == 0 else ''}: {key.key.hex()}")


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


def _whsec_line(secret: str) -> str:
    """The line after the secret's: the same key in the form of Standard Webhooks' libraries."""
    return f"Standard Webhooks form of the same secret: {signature.whsec(secret)}"


def _echo(text: str) -> None:
    """A line of text made of recorded fields: a subscriber's answer, a lead's text (escaped)."""
    click.echo(printable(text))


def _resealed(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """A parked message checked under any configured key, authenticated again under the first."""
    secretbox.check_authentic(message)
    return secretbox.authenticate(message)


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
