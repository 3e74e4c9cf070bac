"""`webhooks configure` and `webhooks list`, against MariaDB."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from local.leads import unique
from records import database
from tests.integration.conftest import Cli, run_cli
from webhooks.errors import UndecryptableSecret


def stored_names() -> set[str]:
    with database.platform() as session:
        return set(session.scalars(text("SELECT name FROM webhook_configs")))


def test_configure_prints_a_uuid4_secret_and_lists_the_subscriber(subscribe, cli: Cli) -> None:
    subscription = subscribe("https://dummy-endpoint.com/webhooks", ["facebook_form", "instagram_form"])
    assert len(subscription.secret) == 36 and subscription.secret[14] == "4"

    listed = {row["name"]: row for row in json.loads(cli("list", "--json").output)}
    assert listed[subscription.name] == {
        "name": subscription.name,
        "url": "https://dummy-endpoint.com/webhooks",
        "lead_types": ["facebook_form", "instagram_form"],
        "erp_shop_ids": [subscription.shop],
        "enabled": True,
        "disabled_reason": None,
        "disabled_at": None,
        "created_at": listed[subscription.name]["created_at"],
        "previous_secret_signs_until": None,
    }
    assert subscription.secret not in cli("list").output
    assert subscription.name in cli("list").output


def test_the_installed_console_script_configures_a_subscriber(database: str) -> None:
    name = unique("script")
    done = run_cli("configure", name, "--url", "http://127.0.0.1:9/h", "--lead-type", "call", "--erp-shop-id", "s1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('WebhookConfig successfully created with secret "')
    assert name in stored_names()


def test_an_unknown_lead_type_is_refused_naming_the_allowed_values(database: str) -> None:
    name = unique("bad")
    done = run_cli("configure", name, "--url", "http://127.0.0.1:9/h", "--lead-type", "fax", "--erp-shop-id", "s1")
    assert done.returncode != 0
    assert "'fax'" in done.stderr
    for allowed in ("facebook_form", "instagram_form", "website_form", "call"):
        assert allowed in done.stderr
    assert "Traceback" not in done.stderr
    assert name not in stored_names()


def test_a_malformed_url_is_refused_and_nothing_is_stored(cli: Cli) -> None:
    for url in (
        "dummy-endpoint.com/webhooks",
        "ftp://example.com/x",
        "http://",
        "http://exa mple.com/",
        "http://h:99999/",
    ):
        name = unique("bad")
        result = cli("configure", name, "--url", url, "--lead-type", "call", "--erp-shop-id", "s1")
        assert result.exit_code != 0, url
        assert "--url" in result.output, result.output
        assert name not in stored_names()


def test_a_missing_option_is_refused(cli: Cli) -> None:
    name = unique("bad")
    for args in (
        ["--lead-type", "call", "--erp-shop-id", "s1"],
        ["--url", "http://example.com/h", "--erp-shop-id", "s1"],
        ["--url", "http://example.com/h", "--lead-type", "call"],
    ):
        result = cli("configure", name, *args)
        assert result.exit_code != 0
        assert "Missing option" in result.output
    assert name not in stored_names()


def test_an_existing_name_is_refused_and_the_first_secret_is_kept(subscribe, cli: Cli) -> None:
    first = subscribe("http://example.com/first")
    result = cli(
        "configure", first.name, "--url", "http://example.com/second", "--lead-type", "call", "--erp-shop-id", "x"
    )
    assert result.exit_code != 0
    assert f"a subscriber named {first.name!r} already exists" in result.output
    listed = {row["name"]: row for row in json.loads(cli("list", "--json").output)}
    assert listed[first.name]["url"] == "http://example.com/first"


def test_the_secret_is_stored_sealed_never_in_clear(subscribe) -> None:
    subscription = subscribe("http://example.com/sealed")
    with database.platform() as session:
        row = session.execute(
            text("SELECT * FROM webhook_configs WHERE name = :name"), {"name": subscription.name}
        ).one()
    assert subscription.secret not in " ".join(str(value) for value in row)

    from webhooks import secretbox

    assert secretbox.unseal(row.sealed_secret) == subscription.secret


def test_a_missing_encryption_key_is_a_clear_error_at_start(database: str) -> None:
    done = run_cli(
        "configure",
        unique("nokey"),
        "--url",
        "http://e.com/",
        "--lead-type",
        "call",
        "--erp-shop-id",
        "s",
        env={"WEBHOOK_ENCRYPTION_KEY": ""},
    )
    assert done.returncode != 0
    assert "WEBHOOK_ENCRYPTION_KEY is not set" in done.stderr
    assert MAKE_KEY in done.stderr
    assert "Traceback" not in done.stderr


MAKE_KEY = 'make one with: python -c "import base64,os; print(base64.b64encode(os.urandom(32)).decode())"'


def test_every_command_refused_for_want_of_an_encryption_key_says_how_to_make_one(tmp_path: Path) -> None:
    # a new user's first command: the schema of a new database (its audit trail is MACed under the key)
    env = {"WEBHOOK_ENCRYPTION_KEY": "", "DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite3'}"}
    done = run_cli("db", "upgrade", env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "WEBHOOK_ENCRYPTION_KEY must be set" in done.stderr and MAKE_KEY in done.stderr
    for command in (["rotate-secret", "x"], ["audit", "verify"], ["enable", "x"], ["dispatch"]):
        done = run_cli(*command, env=env, input="{}")
        assert done.returncode != 0 and MAKE_KEY in done.stderr, (command, done.stderr)
    # where a key is needed past the CLI's check: the trail's MACs, a secret sealed
    from records import trail
    from webhooks import secretbox
    from webhooks.errors import AuditError

    with pytest.raises(AuditError) as no_trail_key:
        trail.keys.current(())
    with pytest.raises(UndecryptableSecret) as no_key:
        secretbox.seal("a secret", keys=())
    assert MAKE_KEY in str(no_trail_key.value) and MAKE_KEY in str(no_key.value)


def test_a_malformed_setting_is_named_with_its_value(database: str) -> None:
    done = run_cli("list", env={"WEBHOOK_TIMEOUT": "soon", "WEBHOOK_RETRY_SCHEDULE": "1h,10m"})
    assert done.returncode != 0
    assert "WEBHOOK_TIMEOUT='soon'" in done.stderr
    assert "WEBHOOK_RETRY_SCHEDULE='1h,10m'" in done.stderr
    assert "Traceback" not in done.stderr


def test_db_upgrade_runs_twice_without_harm(database: str) -> None:
    for _ in range(2):
        done = run_cli("db", "upgrade")
        assert done.returncode == 0, done.stderr
        assert "schema up to date: mysql+pymysql://root@127.0.0.1:3306/" in done.stdout


def test_reencrypt_secrets_seals_every_secret_under_the_new_first_key(subscribe) -> None:
    import base64

    from webhooks import secretbox

    subscription = subscribe("http://example.com/rotate")
    old_key = os.environ["WEBHOOK_ENCRYPTION_KEY"]
    new_key = base64.b64encode(bytes(range(100, 132))).decode()

    done = run_cli("reencrypt-secrets", env={"WEBHOOK_ENCRYPTION_KEY": f"{new_key},{old_key}"})
    try:
        assert done.returncode == 0, done.stderr
        assert "secret(s) sealed again under the first key" in done.stdout
        with database.platform() as session:
            sealed = session.execute(
                text("SELECT sealed_secret FROM webhook_configs WHERE name = :name"), {"name": subscription.name}
            ).scalar_one()
    finally:  # the other tests' worker knows the old key only
        assert run_cli("reencrypt-secrets", env={"WEBHOOK_ENCRYPTION_KEY": f"{old_key},{new_key}"}).returncode == 0
    assert secretbox.unseal(sealed, [base64.b64decode(new_key)]) == subscription.secret
    with pytest.raises(UndecryptableSecret):
        secretbox.unseal(sealed, [base64.b64decode(old_key)])


def test_every_command_answers_help_and_usage_errors_the_click_way(database: str) -> None:
    commands = [[], ["configure"], ["list"], ["dispatch"], ["deliveries"], ["show"], ["redeliver"], ["disable"]]
    commands += [["rotate-secret"], ["evidence"], ["db", "upgrade"], ["audit", "verify"], ["audit", "prune"]]
    for command in commands:
        done = run_cli(*command, "--help", env={"LOG_LEVEL": "INFO"})
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.startswith("Usage: webhooks"), command
        assert done.stderr == ""
    for args, message in (
        (["deliveries", "--limit", "0"], "Invalid value for '--limit'"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["configure", "x"], "Missing option '--url'"),
        (["audit", "verify", "--since", "soon"], "'soon' is not an ISO 8601 date or time"),
    ):
        done = run_cli(*args, env={"LOG_LEVEL": "INFO"})
        assert done.returncode == 2, args
        assert message in done.stderr and "unexpected" not in done.stderr, done.stderr


def test_audit_verify_since_takes_an_offset_like_deliveries_since(database: str) -> None:
    done = run_cli("audit", "verify", "--since", "2026-01-01T00:00:00+01:00", env={"LOG_LEVEL": "INFO"})
    assert done.returncode == 0, done.stderr
