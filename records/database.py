"""Engines and sessions, one engine per URL and per process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

import settings


@cache
def _engine(url: str, pid: int) -> Engine:
    # pool_pre_ping: MySQL drops idle connections (wait_timeout); a worker may idle for hours.
    return create_engine(url, pool_pre_ping=True, pool_recycle=3600)


def engine(url: str) -> Engine:
    """The engine for ``url`` in this process (a forked worker child gets its own pool)."""
    return _engine(url, os.getpid())


@contextmanager
def session(url: str) -> Iterator[Session]:
    """A transaction: committed when the block ends, rolled back if it raises."""
    with sessionmaker(engine(url), expire_on_commit=False).begin() as open_session:
        yield open_session


def platform() -> AbstractContextManager[Session]:
    """A transaction on the subscribers' database."""
    return session(settings.DATABASE_URL)


def audit() -> AbstractContextManager[Session]:
    """A transaction on the audit database."""
    return session(settings.AUDIT_DATABASE_URL)
