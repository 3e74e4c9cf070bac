"""All configuration, read once from the environment when this module is imported.

Each setting is an UPPERCASE module constant with a default and a one-line comment.
A malformed value does not raise at import: it is remembered, and ``check()`` (called
when the CLI, the worker or the local runner starts) raises one ``ConfigurationError``
naming every bad variable and its value. The settings table of docs/operating.md mirrors this file.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from webhooks.errors import ConfigurationError
from webhooks.text import without_passwords

_problems: list[str] = []


def _text(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _number(name: str, default: float, *, minimum: float, integer: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(int(raw)) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        _problems.append(f"{name}={raw!r} is not {kind}")
        return default
    if value != value or value < minimum:  # NaN, or below the floor
        _problems.append(f"{name}={raw!r} must be at least {minimum:g}")
        return default
    return value


def _integer(name: str, default: int, *, minimum: int) -> int:
    return int(_number(name, default, minimum=minimum, integer=True))


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_schedule(raw: str, name: str = "WEBHOOK_RETRY_SCHEDULE") -> tuple[int, ...]:
    """Parse ``"10m,1h,3d"`` into offsets in seconds; positive and strictly increasing."""
    offsets: list[int] = []
    for part in raw.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", part)
        if not match:
            raise ConfigurationError(
                f"{name}={raw!r}: {part.strip()!r} is not an offset such as 30s, 10m, 1h or 2d (units s, m, h, d)"
            )
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        if seconds <= 0:
            raise ConfigurationError(f"{name}={raw!r}: offsets must be positive")
        if offsets and seconds <= offsets[-1]:
            raise ConfigurationError(f"{name}={raw!r}: offsets must be strictly increasing")
        offsets.append(seconds)
    return tuple(offsets)


_FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() not in _FLAGS:
        _problems.append(f"{name}={raw!r} is not a switch: use 1/0, true/false, yes/no or on/off")
        return default
    return _FLAGS[raw.lower()]


def _schedule(name: str, default: str) -> tuple[int, ...]:
    try:
        return parse_schedule(_text(name, default), name)
    except ConfigurationError as error:
        _problems.append(str(error))
        return parse_schedule(default, name)


def parse_duration(raw: str, name: str, *, minimum: int = 1, signed: bool = False) -> int:
    """Parse one duration such as ``30s``, ``10m``, ``24h`` or ``2d`` into seconds (``-2h`` when ``signed``)."""
    sign = r"[-+]?" if signed else ""
    match = re.fullmatch(rf"\s*({sign}\d+)\s*([smhd])\s*", raw)
    if not match:
        example = "400d, -2h or 0s" if signed else "30s, 10m, 24h or 2d"
        raise ConfigurationError(f"{name}={raw!r} is not one duration such as {example} (units s, m, h, d)")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not signed and seconds < minimum:
        raise ConfigurationError(f"{name}={raw!r} must be at least {minimum} s")
    return seconds


def _duration(name: str, default: str, *, minimum: int = 1, signed: bool = False) -> int:
    try:
        return parse_duration(_text(name, default), name, minimum=minimum, signed=signed)
    except ConfigurationError as error:
        _problems.append(str(error))
        return parse_duration(default, name, minimum=minimum, signed=signed)


def key_hint() -> str:
    """How to make a WEBHOOK_ENCRYPTION_KEY: said by every message about a missing or malformed one."""
    return 'make one with: python -c "import base64,os; print(base64.b64encode(os.urandom(32)).decode())"'


def parse_key(raw: str, name: str = "WEBHOOK_ENCRYPTION_KEY") -> bytes:
    """Decode a standard-base64 key of exactly 32 bytes (PyNaCl SecretBox)."""
    hint = key_hint()
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{name} is not standard base64 ({hint})") from None
    if len(key) != 32:
        raise ConfigurationError(f"{name} decodes to {len(key)} bytes, 32 are needed ({hint})")
    return key


def _networks(name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    raw = os.environ.get(name, "").strip()
    networks = []
    for part in filter(None, (piece.strip() for piece in raw.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            _problems.append(f"{name}={raw!r}: {part!r} is not a network such as 127.0.0.0/8 or fd00::/8")
    return tuple(networks)


def _keys(name: str) -> tuple[bytes, ...]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ()
    keys: list[bytes] = []
    for position, part in enumerate(raw.split(",")):
        try:
            keys.append(parse_key(part, f"{name} (key {position + 1})"))
        except ConfigurationError as error:
            _problems.append(str(error))  # the value itself is a secret: never echoed
    return tuple(keys)


_STATE_HOME = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")


def _aws_region() -> str:
    """The region boto3 resolves (AWS_DEFAULT_REGION, then the profile's), else AWS_REGION, else ""."""
    import boto3  # read once, at import, like every setting

    return boto3.session.Session().region_name or os.environ.get("AWS_REGION", "").strip()


# --- Broker (Amazon SQS through kombu) ------------------------------------------------
# sqs://KEY:SECRET@HOST:PORT for an emulator; sqs:// on AWS
BROKER_URL: str = _text("BROKER_URL", "sqs://")
# AWS region of the queues and topics (and of the signatures); default: boto3's own region
SQS_REGION: str = _text("SQS_REGION", "") or _aws_region()
# name of the SQS queue the deliveries go through
SQS_QUEUE: str = _text("SQS_QUEUE", "webhooks")
# starts the name of every queue and SNS topic (one per environment sharing an account)
SQS_QUEUE_PREFIX: str = _text("SQS_QUEUE_PREFIX", "")
# s before an unacknowledged (or handed back) message comes back (at most 43200, SQS's limit)
SQS_VISIBILITY_TIMEOUT: int = _integer("SQS_VISIBILITY_TIMEOUT", 900, minimum=1)
# SQS long-poll wait (0-20 s)
SQS_WAIT_TIME_SECONDS: int = _integer("SQS_WAIT_TIME_SECONDS", 10, minimum=0)
# s the worker waits after an empty poll
SQS_POLLING_INTERVAL: float = _number("SQS_POLLING_INTERVAL", 1.0, minimum=0)
# longest DelaySeconds SQS accepts; longer waits hop
SQS_MAX_DELAY: int = _integer("SQS_MAX_DELAY", 900, minimum=1)
# events and remote control for Flower and `celery inspect` (through SNS); 0 where no Flower watches
WORKER_EVENTS: bool = _flag("WORKER_EVENTS", True)

# --- Databases ------------------------------------------------------------------------
# SQLAlchemy URL; MySQL: mysql+pymysql://user:pw@host/db
DATABASE_URL: str = _text("DATABASE_URL", "sqlite:///webhooks.sqlite3")
# where the audit records go (defaults to DATABASE_URL)
AUDIT_DATABASE_URL: str = _text("AUDIT_DATABASE_URL", DATABASE_URL)
# where a worker keeps attempts while the audit database is down (tasks.spool)
AUDIT_SPOOL_DIR: str = _text("AUDIT_SPOOL_DIR", os.path.join(_STATE_HOME, "lead-webhooks", "audit-spool"))
# days of audit records `webhooks audit prune` keeps
AUDIT_RETENTION_DAYS: int = _integer("AUDIT_RETENTION_DAYS", 365, minimum=1)
# s between a worker's audit checkpoints (0: none)
AUDIT_CHECKPOINT_INTERVAL: int = _integer("AUDIT_CHECKPOINT_INTERVAL", 300, minimum=0)

# --- Secrets --------------------------------------------------------------------------
# base64 of 32 random bytes (required)
WEBHOOK_ENCRYPTION_KEY: str = os.environ.get("WEBHOOK_ENCRYPTION_KEY", "").strip()
# decoded form of the above
ENCRYPTION_KEYS: tuple[bytes, ...] = _keys("WEBHOOK_ENCRYPTION_KEY")

# --- Delivery -------------------------------------------------------------------------
# s allowed for a whole request: connect, send, read the answer
WEBHOOK_TIMEOUT: float = _number("WEBHOOK_TIMEOUT", 10.0, minimum=0.1)
# response bytes kept in the audit
WEBHOOK_RESPONSE_MAX_BYTES: int = _integer("WEBHOOK_RESPONSE_MAX_BYTES", 65536, minimum=0)
# User-Agent header of every delivery
WEBHOOK_USER_AGENT: str = _text("WEBHOOK_USER_AGENT", "lead-webhooks/0.1")
# CIDRs webhooks may reach despite the SSRF guard (empty: public addresses only)
WEBHOOK_ALLOWED_NETWORKS: str = _text("WEBHOOK_ALLOWED_NETWORKS", "")
# parsed form of the above
ALLOWED_NETWORKS = _networks("WEBHOOK_ALLOWED_NETWORKS")
# how long the old secret still signs beside the new one after `webhooks rotate-secret`
WEBHOOK_SECRET_GRACE: int = _duration("WEBHOOK_SECRET_GRACE", "24h", minimum=0)
# unexpected failures of one message's processing (a bug) before it ends abandoned
WEBHOOK_MAX_UNEXPECTED_FAILURES: int = _integer("WEBHOOK_MAX_UNEXPECTED_FAILURES", 10, minimum=1)
# time to publish, and clock skew, allowed from a message's sealing to SQS accepting it (later: checked for a replay)
WEBHOOK_REPLAY_SKEW: int = _duration("WEBHOOK_REPLAY_SKEW", "60s")
# a message SQS accepted longer than this after it was sealed is refused as a replay (never sent)
WEBHOOK_REPLAY_LIMIT: int = _duration("WEBHOOK_REPLAY_LIMIT", "15m")
# s a worker keeps its view of the subscribers before reading them again: how stale a change may be
SUBSCRIBER_CACHE_SECONDS: float = _number("SUBSCRIBER_CACHE_SECONDS", 5.0, minimum=0)
# longest wait a subscriber's Retry-After (on 429 and 503) may ask for
WEBHOOK_RETRY_AFTER_MAX: int = _duration("WEBHOOK_RETRY_AFTER_MAX", "1d")
# the circuit breaker: on (a subscriber failing most of its recent attempts is paused) or off
WEBHOOK_CIRCUIT_BREAKER: bool = _flag("WEBHOOK_CIRCUIT_BREAKER", True)
# share of failed attempts (0-1) that opens a subscriber's circuit
WEBHOOK_CIRCUIT_FAILURE_RATIO: float = _number("WEBHOOK_CIRCUIT_FAILURE_RATIO", 0.7, minimum=0.01)
# attempts within the window below which a circuit never opens
WEBHOOK_CIRCUIT_MIN_ATTEMPTS: int = _integer("WEBHOOK_CIRCUIT_MIN_ATTEMPTS", 10, minimum=1)
# the window of recent attempts the ratio is taken over
WEBHOOK_CIRCUIT_WINDOW: int = _duration("WEBHOOK_CIRCUIT_WINDOW", "5m")
# first cool-down of an open circuit (doubled at each failed probe)
WEBHOOK_CIRCUIT_COOLDOWN: int = _duration("WEBHOOK_CIRCUIT_COOLDOWN", "1m")
# longest cool-down
WEBHOOK_CIRCUIT_COOLDOWN_MAX: int = _duration("WEBHOOK_CIRCUIT_COOLDOWN_MAX", "1h")
# a subscriber whose attempts have all failed for this long is disabled (0s: never)
WEBHOOK_DISABLE_AFTER: int = _duration("WEBHOOK_DISABLE_AFTER", "5d", minimum=0)
# requests in flight to one subscriber in one worker process (0: no limit)
WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIBER: int = _integer("WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIBER", 8, minimum=0)
# where operational webhooks go (subscriber disabled, circuit opened/closed, delivery abandoned); empty: none
WEBHOOK_OPERATIONS_URL: str = _text("WEBHOOK_OPERATIONS_URL", "")
# the secret that signs operational webhooks (required with WEBHOOK_OPERATIONS_URL)
WEBHOOK_OPERATIONS_SECRET: str = os.environ.get("WEBHOOK_OPERATIONS_SECRET", "").strip()
# retry offsets from the first failure (units s, m, h, d)
WEBHOOK_RETRY_SCHEDULE: tuple[int, ...] = _schedule("WEBHOOK_RETRY_SCHEDULE", "10m,1h,3h,1d,2d,3d,4d,5d,6d,7d")

# --- Clock ----------------------------------------------------------------------------
# added to the wall clock wherever the project reads the time (tests run it at another date; 0 in production)
CLOCK_SHIFT: int = _duration("CLOCK_SHIFT", "0s", signed=True)

# --- Logging --------------------------------------------------------------------------
# level of the delivery logger on stdout
LOG_LEVEL: str = _text("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
    _problems.append(f"LOG_LEVEL={LOG_LEVEL!r}: allowed values are DEBUG, INFO, WARNING, ERROR")
    LOG_LEVEL = "INFO"
for _name, _url in (("DATABASE_URL", DATABASE_URL), ("AUDIT_DATABASE_URL", AUDIT_DATABASE_URL)):
    try:
        make_url(_url)
    except ArgumentError:  # the value may hold a password: not echoed
        _problems.append(f"{_name} is not an SQLAlchemy URL such as mysql+pymysql://user:password@host/db")
if not BROKER_URL.startswith("sqs://"):
    _problems.append(f"BROKER_URL={BROKER_URL!r} must start with sqs://")
if WEBHOOK_OPERATIONS_URL and not WEBHOOK_OPERATIONS_SECRET:
    _problems.append(
        "WEBHOOK_OPERATIONS_URL is set but WEBHOOK_OPERATIONS_SECRET is not: operational webhooks are signed"
    )
if WEBHOOK_CIRCUIT_FAILURE_RATIO > 1:
    _problems.append(f"WEBHOOK_CIRCUIT_FAILURE_RATIO={WEBHOOK_CIRCUIT_FAILURE_RATIO:g} must be at most 1 (a share)")
if WEBHOOK_REPLAY_LIMIT <= WEBHOOK_REPLAY_SKEW:
    _problems.append(
        f"WEBHOOK_REPLAY_LIMIT={WEBHOOK_REPLAY_LIMIT} s must be longer than WEBHOOK_REPLAY_SKEW={WEBHOOK_REPLAY_SKEW} s"
    )
if SQS_WAIT_TIME_SECONDS > 20:
    _problems.append(f"SQS_WAIT_TIME_SECONDS={SQS_WAIT_TIME_SECONDS} must be at most 20 (an SQS limit)")
if SQS_MAX_DELAY > 900:
    _problems.append(f"SQS_MAX_DELAY={SQS_MAX_DELAY} must be at most 900 (an SQS limit)")
if SQS_VISIBILITY_TIMEOUT > 43_200:
    _problems.append(f"SQS_VISIBILITY_TIMEOUT={SQS_VISIBILITY_TIMEOUT} must be at most 43200 (12 hours, an SQS limit)")
if not SQS_REGION:
    _problems.append(
        "SQS_REGION is not set and no AWS region is configured (AWS_DEFAULT_REGION, the profile's region "
        "or AWS_REGION): set SQS_REGION to the region of your queues, e.g. SQS_REGION=eu-west-1"
    )
if SQS_QUEUE.endswith(".fifo"):
    _problems.append(
        f"SQS_QUEUE={SQS_QUEUE!r}: FIFO queues (.fifo) are not supported: they refuse a per-message "
        "DelaySeconds, which every retry and wait uses (kombu drops it, so each wait would come back "
        "at once, in a loop); use a standard queue"
    )
elif not re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", SQS_QUEUE_PREFIX + SQS_QUEUE):
    _problems.append(
        f"SQS_QUEUE_PREFIX={SQS_QUEUE_PREFIX!r} and SQS_QUEUE={SQS_QUEUE!r}: together at most 80 letters, "
        "digits, -, _ or . (a dot becomes -), an SQS limit on queue names"
    )


def check(*, need_key: bool = True) -> None:
    """Raise one ConfigurationError naming every malformed setting (and a missing key)."""
    problems = list(_problems)
    if need_key and not WEBHOOK_ENCRYPTION_KEY:
        problems.append(
            f"WEBHOOK_ENCRYPTION_KEY is not set: it must be the standard base64 of 32 random bytes ({key_hint()})"
        )
    if problems:  # a value may be a URL holding a password (BROKER_URL='SQS://key:secret@…'): hidden
        raise ConfigurationError(without_passwords("; ".join(problems)))
