"""Check a lead-webhooks evidence file with nothing but the standard library of Python 3.10+.

    python3 check.py EVIDENCE.json [--secret SECRET] [--trail-key KEY ...]

It recomputes, from the file alone: each attempt's content hash and record hash (the
canonical form is the file's "canonicalization"), the links of each chain up to the
checkpoint that seals it, the hash and the order of every checkpoint in the file; given
the subscriber's secret, the HMAC-SHA1 and HMAC-SHA256 signatures of the exact body bytes
sent; given the trail key (64 hex digits, from the service's operator: `webhooks audit
trail-key`), the MAC of every record and checkpoint, which shows that a holder of the
service's encryption key wrote it, not someone with write access to its database alone.
It prints one line per check and exits 0 when every check passes.

A checkpoint hash published outside the service's database, if you have one, should
appear among the checkpoints listed at the end.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import itertools
import json
import sys
from typing import Any

LINK_FIELDS = ("chain", "seq", "prev_id", "prev_hash", "content_hash")
CHECKPOINT_FIELDS = ("seq", "kind", "created_at", "prev_hash", "heads", "floors", "detail")
SIGNATURES = (("X-Hub-Signature", "sha1"), ("X-Hub-Signature-256", "sha256"))


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def link_hash(link: dict[str, Any]) -> str:
    return digest({"type": "link/1", **{name: link[name] for name in LINK_FIELDS}})


def checkpoint_hash(checkpoint: dict[str, Any]) -> str:
    return digest({"type": "checkpoint/1", **{name: checkpoint[name] for name in CHECKPOINT_FIELDS}})


def key_id(trail_key: bytes) -> str:
    return hashlib.blake2b(b"lead-webhooks audit trail key id v1", key=trail_key, digest_size=8).hexdigest()


def mac(trail_key: bytes, kind: str, hash_: str) -> str:
    """The MAC of a record ("record") or a checkpoint ("checkpoint") hash."""
    return hmac.new(trail_key, f"{kind} {hash_}".encode(), hashlib.sha256).hexdigest()


def trail_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise argparse.ArgumentTypeError("a trail key is 64 hex digits (`webhooks audit trail-key` prints it)")
    return key


class Checks:
    def __init__(self) -> None:
        self.failed = 0

    def __call__(self, ok: bool, what: str) -> None:
        print(("ok      " if ok else "FAILED  ") + what)
        self.failed += not ok


def check(document: dict[str, Any], secret: str | None, trail_keys: list[bytes] | None = None) -> int:
    """Print every check; return how many failed."""
    checks = Checks()
    keys = {key_id(key): key for key in trail_keys or []}

    def authentic(kind: str, item: dict[str, Any], what: str) -> None:
        if not keys:
            return
        key = keys.get(item.get("key_id") or "")
        if key is None:  # a forger may name a key of its own: every trail key in use must be given
            checks(False, f"{what}: MAC under trail key {item.get('key_id')}, which was not given (--trail-key)")
            return
        expected = mac(key, kind, item["record_hash"])
        checks(
            hmac.compare_digest(expected.encode(), str(item.get("mac")).encode()),
            f"{what}: MAC under trail key {item['key_id']}",
        )

    chains: dict[str, Any] = document["chains"]
    checkpoints = {checkpoint["seq"]: checkpoint for checkpoint in document["checkpoints"]}

    for delivery in document["deliveries"]:
        for attempt in delivery["attempts"]:
            record, link = attempt["record"], attempt["link"]
            name = f"record {attempt['id']} (chain {link['chain']}, seq {link['seq']})"
            checks(digest(record) == link["content_hash"], f"{name}: content hash")
            checks(link_hash(link) == link["record_hash"], f"{name}: record hash")
            authentic("record", link, name)
            body = base64.b64decode(attempt["request_body_base64"])
            checks(body == record["request_body"].encode("utf-8"), f"{name}: body bytes match the recorded body")
            listed = [item for item in chains[link["chain"]]["links"] if item["seq"] == link["seq"]]
            checks(
                len(listed) == 1 and listed[0]["record_hash"] == link["record_hash"], f"{name}: in its chain segment"
            )
            headers = record["request_headers"]
            if secret is None:
                continue
            for header, algorithm in SIGNATURES:
                if header not in headers:
                    print(f"        {name}: no {header} (nothing was signed)")
                    continue
                expected = algorithm + "=" + hmac.new(secret.encode("utf-8"), body, algorithm).hexdigest()
                checks(hmac.compare_digest(expected, headers[header]), f"{name}: {header} recomputed from the secret")

    for chain, segment in chains.items():
        links = segment["links"]
        for link in links:
            checks(link_hash(link) == link["record_hash"], f"chain {chain} seq {link['seq']}: record hash")
            authentic("record", link, f"chain {chain} seq {link['seq']}")
        for before, after in itertools.pairwise(links):
            follows = (after["seq"], after["prev_id"], after["prev_hash"]) == (
                before["seq"] + 1,
                before["id"],
                before["record_hash"],
            )
            checks(follows, f"chain {chain}: seq {after['seq']} follows seq {before['seq']}")
        sealer = segment["sealed_by"]
        if sealer is None:
            print(f"        chain {chain}: not sealed by a checkpoint yet (recent records)")
            continue
        head = checkpoints.get(sealer, {}).get("heads", {}).get(chain)
        last = links[-1]
        checks(
            head == {"id": last["id"], "seq": last["seq"], "hash": last["record_hash"]},
            f"chain {chain}: its last link is the head sealed by checkpoint #{sealer}",
        )

    previous: dict[str, Any] | None = None
    for checkpoint in document["checkpoints"]:
        checks(checkpoint_hash(checkpoint) == checkpoint["record_hash"], f"checkpoint #{checkpoint['seq']}: hash")
        authentic("checkpoint", checkpoint, f"checkpoint #{checkpoint['seq']}")
        if previous is not None:
            follows = checkpoint["seq"] == previous["seq"] + 1 and checkpoint["prev_hash"] == previous["record_hash"]
            checks(follows, f"checkpoint #{checkpoint['seq']} follows #{previous['seq']}")
        previous = checkpoint
    for checkpoint in document["checkpoints"]:
        print(f"        checkpoint #{checkpoint['seq']} {checkpoint['created_at']} hash {checkpoint['record_hash']}")
    if not keys:
        print("        MACs not checked: no --trail-key given (they show who wrote the records and checkpoints)")
    print(f"{checks.failed} check(s) failed" if checks.failed else "every check passed")
    return checks.failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a lead-webhooks evidence file.")
    parser.add_argument("evidence", help="the JSON evidence file")
    parser.add_argument("--secret", help="the subscriber's secret, to recompute the HMAC signatures")
    parser.add_argument(
        "--trail-key",
        dest="trail_keys",
        type=trail_key,
        action="append",
        metavar="KEY",
        help="a trail key (64 hex digits), to recompute the MACs of the records and checkpoints; give every key "
        "the file names (after a key rotation: repeat)",
    )
    arguments = parser.parse_args(argv)
    with open(arguments.evidence, encoding="utf-8") as file:
        document = json.load(file)
    return 1 if check(document, arguments.secret, arguments.trail_keys) else 0


if __name__ == "__main__":
    sys.exit(main())
