"""Everything the audit trail holds about one lead's deliveries, as a document a third party can check.

``collect`` builds a JSON document (format ``lead-webhooks-evidence/1``):

- ``deliveries``: each delivery of the lead (one per subscriber), each attempt with its
  record in canonical form (URL, headers with the signatures and webhook-id, the exact
  body, times, HTTP status, error, response), the body's bytes in base64 and their SHA-256,
  and the record's link in its chain (chain, seq, prev_id, prev_hash, content_hash, record_hash,
  and the MAC of record_hash with the id of its trail key);
- ``chains``: for each chain holding an attempt, the links (no content: other leads' records
  stay private) from the lead's first record to the head sealed by a checkpoint;
- ``checkpoints``: the checkpoints from the first that seals one of those chains to the latest,
  each with its MAC and the id of its trail key;
- ``canonicalization`` (records.canonical.SPEC), ``how_to_check``, and ``verifier``: the
  source of records/evidence_check.py, a standard-library script that redoes every check.

``render`` turns the document into text for a person.

Who can check what: anyone, with the document alone, the hashes and links (that the content,
the chains and the checkpoints hold together); the subscriber, with its secret, the HMAC
signatures of the bodies sent; whoever holds the trail key (``webhooks audit trail-key``
prints it), the MACs: that a holder of WEBHOOK_ENCRYPTION_KEY wrote the records and the
checkpoints, not someone with write access to the database alone.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from records import canonical, database
from records.models import AuditCheckpoint, DeliveryAttempt
from records.trail import keys
from webhooks import clock
from webhooks.errors import InvalidInput

FORMAT = "lead-webhooks-evidence/2"
VERIFIER = Path(__file__).with_name("evidence_check.py")
HOW_TO_CHECK = [
    "Save the verifier: python3 -c \"import json,sys; print(json.load(open(sys.argv[1]))['verifier'])\" "
    "EVIDENCE.json > check.py",
    "Run it: python3 check.py EVIDENCE.json --secret SECRET (the secret is optional: without it the "
    "HMAC signatures are not recomputed)",
    "By hand: the body sent is base64-decode(request_body_base64), which equals the UTF-8 bytes of "
    "record.request_body; X-Hub-Signature-256 is 'sha256=' + hex HMAC-SHA256(key = the secret's UTF-8 "
    "bytes, message = those bytes), X-Hub-Signature the same with SHA-1.",
    "content_hash is SHA-256 of the canonical form of 'record'; record_hash is SHA-256 of the canonical "
    "form of {type: 'link/1', chain, seq, prev_id, prev_hash, content_hash} (see 'canonicalization').",
    "Each link in 'chains' holds the id and record_hash of the link before it; the last one is the head "
    "that checkpoint 'sealed_by' recorded; checkpoints chain by prev_hash, and a checkpoint hash noted "
    "outside this database, if you were given one, should be among them.",
    "With the trail key (64 hex digits, `webhooks audit trail-key` prints it to the operator): "
    "python3 check.py EVIDENCE.json --trail-key KEY also recomputes each MAC, HMAC-SHA256(trail key, "
    "'record ' + record_hash) and HMAC-SHA256(trail key, 'checkpoint ' + checkpoint hash): they show that "
    "a holder of the service's encryption key wrote them (see 'canonicalization').",
]


def _fields(row: DeliveryAttempt) -> dict[str, Any]:
    return {column.name: getattr(row, column.key) for column in DeliveryAttempt.__table__.columns}


def _link(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "chain": row.chain,
        "seq": row.seq,
        "prev_id": row.prev_id,
        "prev_hash": row.prev_hash,
        "content_hash": row.content_hash,
        "record_hash": row.record_hash,
        "key_id": row.key_id,
        "mac": row.mac,
    }


def _checkpoint(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    return {
        "id": checkpoint.id,
        **{
            name: value
            for name, value in canonical.checkpoint(
                checkpoint.seq,
                checkpoint.kind,
                checkpoint.created_at,
                checkpoint.prev_hash,
                checkpoint.heads,
                checkpoint.floors,
                checkpoint.detail,
            ).items()
            if name != "type"
        },
        "record_hash": checkpoint.record_hash,
        "key_id": checkpoint.key_id,
        "mac": checkpoint.mac,
    }


def _attempt(row: DeliveryAttempt, sealed_by: int | None, trail_keys: dict[str, bytes]) -> dict[str, Any]:
    fields = _fields(row)
    record = canonical.content(fields)
    body = row.request_body.encode("utf-8")
    link = _link(row)
    link.pop("id")
    return {
        "id": row.id,
        "record": record,
        "link": link,
        "request_body_base64": base64.b64encode(body).decode("ascii"),
        "request_body_sha256": hashlib.sha256(body).hexdigest(),
        "request_body_bytes": len(body),
        "sealed_by": sealed_by,
        "hashes_recomputed": {
            "content_hash": canonical.sha256(canonical.canonical(record)) == row.content_hash,
            "record_hash": canonical.record_hash(row.chain, row.seq, row.prev_id, row.prev_hash, row.content_hash)
            == row.record_hash,
        },
        # None: its trail key is not configured here (the operator's WEBHOOK_ENCRYPTION_KEY)
        "mac_authentic": keys.record_authentic(trail_keys, row.key_id, row.mac, row.record_hash)
        if row.key_id in trail_keys
        else None,
    }


def _sealer(checkpoints: Sequence[AuditCheckpoint], chain: str, seq: int) -> AuditCheckpoint | None:
    """The first checkpoint whose head of ``chain`` is at ``seq`` or beyond."""
    return next((cp for cp in checkpoints if cp.heads.get(chain, {}).get("seq", 0) >= seq), None)


def collect(url: str, lead_id: str, webhook: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """The evidence document of ``lead_id`` (to ``webhook`` only, when given)."""
    table = DeliveryAttempt.__table__.c
    trail_keys = {key.id: key.key for key in keys.configured()}
    with database.session(url) as session:
        query = select(DeliveryAttempt).where(DeliveryAttempt.lead_id == lead_id)
        if webhook is not None:
            query = query.where(DeliveryAttempt.webhook == webhook)
        rows = list(session.scalars(query.order_by(DeliveryAttempt.attempted_at, DeliveryAttempt.id)))
        if not rows:
            to = f" to webhook {webhook!r}" if webhook is not None else ""
            raise InvalidInput(f"the audit trail has no delivery attempt of lead {lead_id!r}{to}")
        checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)))

        chains: dict[str, Any] = {}
        sealers: dict[str, AuditCheckpoint | None] = {}
        for chain, group in itertools.groupby(sorted(rows, key=lambda row: (row.chain, row.seq)), lambda r: r.chain):
            seqs = [row.seq for row in group]
            sealer = sealers[chain] = _sealer(checkpoints, chain, max(seqs))
            end = sealer.heads[chain]["seq"] if sealer else max(seqs)
            links = session.execute(
                select(table.id, table.chain, table.seq, table.prev_id, table.prev_hash, table.content_hash)
                .add_columns(table.record_hash, table.key_id, table.mac)
                .where(table.chain == chain, table.seq >= min(seqs), table.seq <= end)
                .order_by(table.seq)
            )
            chains[chain] = {"sealed_by": sealer.seq if sealer else None, "links": [_link(link) for link in links]}

        deliveries: dict[str, dict[str, Any]] = {}
        for row in rows:
            delivery = deliveries.setdefault(
                row.delivery_id,
                {"delivery_id": row.delivery_id, "webhook": row.webhook, "url": row.url, "attempts": []},
            )
            delivery["attempts"].append(_attempt(row, chains[row.chain]["sealed_by"], trail_keys))
        for delivery in deliveries.values():
            delivery["outcome"] = delivery["attempts"][-1]["record"]["status"]

        sealing = [sealer.seq for sealer in sealers.values() if sealer is not None]
        shown = [_checkpoint(cp) for cp in checkpoints if sealing and cp.seq >= min(sealing)]

    attempts = sum(len(delivery["attempts"]) for delivery in deliveries.values())
    return {
        "format": FORMAT,
        "generated_at": canonical.moment(now or clock.now().astimezone()),
        "lead_id": lead_id,
        "webhook": webhook,
        "summary": {
            "deliveries": len(deliveries),
            "attempts": attempts,
            "chains": len(chains),
            "unsealed_attempts": sum(
                1 for delivery in deliveries.values() for a in delivery["attempts"] if a["sealed_by"] is None
            ),
        },
        "how_to_check": HOW_TO_CHECK,
        "canonicalization": canonical.SPEC,
        "deliveries": list(deliveries.values()),
        "chains": chains,
        "checkpoints": shown,
        "verifier": VERIFIER.read_text(encoding="utf-8"),
    }


def _indent(text: str | None, prefix: str = "      ") -> str:
    if text is None or text == "":
        return prefix + "(none)"
    return "\n".join(prefix + line for line in text.splitlines() or [""])


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def render(document: dict[str, Any]) -> str:
    """The evidence for a person to read (the JSON document is what a program checks)."""
    summary = document["summary"]
    to = f" to webhook {document['webhook']}" if document["webhook"] else ""
    lines = [
        f"Evidence: lead {document['lead_id']}{to}: {_count(summary['deliveries'], 'delivery', 'deliveries')}, "
        f"{_count(summary['attempts'], 'attempt', 'attempts')}",
        f"generated {document['generated_at']} ({document['format']})",
    ]
    for delivery in document["deliveries"]:
        attempts = delivery["attempts"]
        lines += [
            "",
            f"Delivery {delivery['delivery_id']} to webhook {delivery['webhook']}: {delivery['outcome']} "
            f"after {len(attempts)} attempt(s)",
            f"  URL: {delivery['url']}",
        ]
        for number, attempt in enumerate(attempts, 1):
            record, link = attempt["record"], attempt["link"]
            http = record["http_status"] if record["http_status"] is not None else "-"
            lines += [
                "",
                f"  Attempt {number} of {len(attempts)}: retry {record['retry']}, {record['status']}, HTTP {http}, "
                f"at {record['attempted_at']}, {record['duration_ms']} ms",
            ]
            if record["error"]:
                lines.append(f"    error: {record['error']}")
            if record["next_retry_at"]:
                lines.append(f"    next retry due: {record['next_retry_at']}")
            lines.append(f"    POST {record['url']}")
            lines += [f"    {name}: {value}" for name, value in record["request_headers"].items()]
            lines.append(
                f"    body sent ({attempt['request_body_bytes']} bytes, sha256 {attempt['request_body_sha256']}):"
            )
            lines.append(_indent(record["request_body"]))
            lines.append("    response body:")
            lines.append(_indent(record["response_body"]))
            checked = attempt["hashes_recomputed"]
            verdict = "recomputed, match" if all(checked.values()) else f"DO NOT MATCH: {checked}"
            authentic = {
                True: f"authenticates under trail key {link['key_id']}",
                False: "DOES NOT AUTHENTICATE (written or changed without the trail key)",
                None: f"not checked (trail key {link['key_id']} is not configured here)",
            }[attempt["mac_authentic"]]
            sealed = f"sealed by checkpoint #{attempt['sealed_by']}" if attempt["sealed_by"] else "not sealed yet"
            lines += [
                f"    record {attempt['id']}: chain {link['chain']}, seq {link['seq']}, {sealed}",
                f"      content_hash {link['content_hash']}",
                f"      record_hash  {link['record_hash']}",
                f"      prev_hash    {link['prev_hash']} "
                + (f"(record {link['prev_id']})" if link["prev_id"] is not None else "(the chain's start)"),
                f"      hashes: {verdict}",
                f"      MAC: {authentic}",
            ]
    lines.append("")
    if document["checkpoints"]:
        latest = document["checkpoints"][-1]
        lines.append(
            f"Checkpoints #{document['checkpoints'][0]['seq']} to #{latest['seq']} included; "
            f"latest #{latest['seq']} at {latest['created_at']}, hash {latest['record_hash']}"
        )
    else:
        lines.append("No checkpoint seals these records yet (they are recent): run `webhooks audit checkpoint`.")
    lines += ["", "To check this evidence yourself (from the JSON document):"]
    lines += [f"  - {step}" for step in document["how_to_check"]]
    return "\n".join(lines)
