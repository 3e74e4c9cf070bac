"""No URL's password in a message: settings errors, refused destinations, the CLI's errors."""

from __future__ import annotations

import os
import subprocess

import pytest
from click.testing import CliRunner

from local.services import BIN, ROOT
from webhooks.text import without_passwords

PASSWORD = "Hunter2-s3cret"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"sqs://AKIAEXAMPLE:{PASSWORD}@127.0.0.1:9324", "sqs://AKIAEXAMPLE:***@127.0.0.1:9324"),
        (f"BROKER_URL='SQS://key:{PASSWORD}@host' must", "BROKER_URL='SQS://key:***@host' must"),
        (f"mysql+pymysql://user:{PASSWORD}@db/x", "mysql+pymysql://user:***@db/x"),
        (f"https://user:p@ss/w:rd{PASSWORD}@partner.example/h", "https://user:***@partner.example/h"),
        (f"a http://a:{PASSWORD}@h/ and b sqs://b:{PASSWORD}@k", "a http://a:***@h/ and b sqs://b:***@k"),
        (f"https://:{PASSWORD}@partner.example/", "https://:***@partner.example/"),
        ("sqs://key:1234@host", "sqs://key:***@host"),  # digits and an "@": a password, not a port
        ("sqs://", "sqs://"),
        ("https://partner.example:8443/p@x", "https://partner.example:8443/p@x"),
        ("http://[::1]:8080/a@b", "http://[::1]:8080/a@b"),
        ("https://partner.example:8443/hooks?a=b@c", "https://partner.example:8443/hooks?a=b@c"),
        ("sqs://user@host", "sqs://user@host"),
    ],
)
def test_every_urls_password_is_hidden_and_nothing_else(text: str, shown: str) -> None:
    assert without_passwords(text) == shown


@pytest.mark.parametrize(
    "url",
    [
        f"SQS://AKIAEXAMPLE:{PASSWORD}@127.0.0.1:9324",  # a scheme in capitals
        f"amqp://guest:{PASSWORD}@rabbit:5672//",
        f"sqs:/AKIAEXAMPLE:{PASSWORD}@host",
    ],
)
def test_a_refused_broker_url_is_named_without_its_password(url: str) -> None:
    done = subprocess.run(
        [str(BIN / "webhooks"), "list"],
        env={**os.environ, "BROKER_URL": url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "BROKER_URL=" in done.stderr and "must start with sqs://" in done.stderr, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{PASSWORD}@partner.example/hooks",
        f"https://user:{PASSWORD}@partner.example:99999/hooks",
        f"ftp://user:{PASSWORD}@partner.example/hooks",
    ],
)
def test_a_refused_subscriber_url_is_named_without_its_password(url: str) -> None:
    from producer.cli import main

    result = CliRunner().invoke(
        main, ["configure", "partner", "--url", url, "--lead-type", "facebook_form", "--erp-shop-id", "s1"]
    )

    assert result.exit_code == 1
    assert "--url 'https://user:***@partner.example" in result.output or "ftp://user:***@" in result.output
    assert PASSWORD not in result.output
