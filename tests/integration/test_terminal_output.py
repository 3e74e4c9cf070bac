"""Terminal control sequences from a subscriber's answer or a lead's text never reach a terminal
raw: ``webhooks show``, ``deliveries`` and ``evidence`` escape them in text; their JSON keeps the
exact characters, escaped as JSON. (The attempts are made in this process against a loopback
subscriber and recorded in the real audit database.)"""

from __future__ import annotations

import json
import threading
import unicodedata
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from local.leads import a_lead, unique
from tasks import delivery
from tasks.message import DeliveryMessage
from tests.integration.conftest import Cli
from tests.support.factories import a_message, a_state

# OSC 52 (write the clipboard), clear the screen and home the cursor, 8-bit CSI (C1), NEL (C1),
# a carriage return hiding what precedes it, and BEL
ANSWER = "ok \x1b]52;c;ZXZpbA==\x07 \x1b[2J\x1b[H \x9b31m red \x85 next \rforged line"
LEAD_TEXT = "Jo\x9b2J\x9d0;title\x9c\rhn"  # what the lead checks let through: C1 controls, a CR


def raw_controls(text: str) -> set[str]:
    """The control characters in ``text`` that a terminal would act on (a newline and a tab are fine)."""
    return {char for char in text if unicodedata.category(char) == "Cc" and char not in "\n\t"}


@pytest.fixture(scope="module")
def hostile_answer() -> Iterator[str]:
    """A subscriber answering 200 with terminal control sequences in its body."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = ANSWER.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def recorded(database: str, hostile_answer: str) -> DeliveryMessage:
    """One attempt recorded: a lead with control characters in its text, an answer full of them,
    and a subscriber name with some (a message built by hand is not checked like `configure`)."""
    name = unique("term") + "\x1b]0;pwned\x07"
    sent: DeliveryMessage = a_message(webhook=name, lead=a_lead(unique("shop"), first_name=LEAD_TEXT))
    assert delivery.attempt(sent, a_state(hostile_answer, name=name)) is None  # a success: nothing follows
    return sent


def test_show_escapes_the_control_characters_of_the_answer_and_the_lead(cli: Cli, recorded: DeliveryMessage) -> None:
    result = cli("show", recorded.delivery_id)

    assert result.exit_code == 0, result.output
    assert raw_controls(result.output) == set()
    assert r"ok \x1b]52;c;ZXZpbA==\x07 \x1b[2J\x1b[H \x9b31m red \x85 next \rforged line" in result.output
    assert r"Jo\x9b2J\x9d0;title\x9c\rhn" in result.output


def test_show_json_keeps_the_exact_characters_escaped_as_json(cli: Cli, recorded: DeliveryMessage) -> None:
    result = cli("show", recorded.delivery_id, "--json")

    assert result.exit_code == 0, result.output
    assert raw_controls(result.output) == set()
    [row] = json.loads(result.output)
    assert row["response_body"] == ANSWER
    assert json.loads(row["request_body"])["body"]["first_name"] == LEAD_TEXT


def test_deliveries_escapes_the_control_characters_of_a_field(cli: Cli, recorded: DeliveryMessage) -> None:
    result = cli("deliveries", "--webhook", recorded.webhook)

    assert result.exit_code == 0, result.output
    assert recorded.delivery_id in result.output
    assert raw_controls(result.output) == set()
    assert recorded.webhook.replace("\x1b", r"\x1b").replace("\x07", r"\x07") in result.output


def test_evidence_escapes_the_control_characters_in_its_text(cli: Cli, recorded: DeliveryMessage) -> None:
    result = cli("evidence", str(recorded.lead["id"]))

    assert result.exit_code == 0, result.output
    assert raw_controls(result.output) == set()
    assert r"\x1b]52;c;ZXZpbA==\x07" in result.output
    assert r"Jo\x9b2J\x9d0;title\x9c\rhn" in result.output


def test_evidence_json_keeps_the_exact_characters_escaped_as_json(cli: Cli, recorded: DeliveryMessage) -> None:
    result = cli("evidence", str(recorded.lead["id"]), "--json")

    assert result.exit_code == 0, result.output
    assert raw_controls(result.output) == set()
    document = json.loads(result.output)
    [attempt] = document["deliveries"][0]["attempts"]
    assert attempt["record"]["response_body"] == ANSWER
    assert json.loads(attempt["record"]["request_body"])["body"]["first_name"] == LEAD_TEXT
    assert all(attempt["hashes_recomputed"].values())


def test_a_recorded_url_is_shown_without_its_password(cli: Cli, connections: list[Any]) -> None:
    # A message built by hand may carry credentials in its URL: refused at send time and recorded.
    sent = a_message(webhook=unique("credentials"), lead=a_lead(unique("shop")))
    ended = delivery.attempt(sent, a_state("http://partner:Hunter2-s3cret@127.0.0.1:9/hook"))
    assert isinstance(ended, delivery.Failed) and "Hunter2" not in ended.reason  # refused, the password hidden

    shown = cli("show", sent.delivery_id)
    told = cli("evidence", str(sent.lead["id"]))

    assert shown.exit_code == 0 and told.exit_code == 0, shown.output + told.output
    for output in (shown.output, told.output):
        assert "partner:***@127.0.0.1:9/hook" in output
        assert "Hunter2-s3cret" not in output
    assert [address for address in connections if address[1] != 3306] == []
