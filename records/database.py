"""Engines and sessions, one engine per URL and per process."""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from typing import Any

import pymysql.connections
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

import settings


@cache
def _engine(url: str, pid: int) -> Engine:
    # pool_pre_ping: MySQL drops idle connections (wait_timeout); a worker may idle for hours.
    # pool_size=0: every connection is kept for the next use (no limit). A thread holds at most
    # one at a time, so a worker keeps at most one per pool thread, plus its checkpointer's.
    # The default (5, then up to 10 more closed after each use) made a worker of 8 threads open
    # a new connection (TCP, MySQL handshake, an SSL context: about 25 ms of CPU) every few deliveries.
    created = create_engine(url, pool_pre_ping=True, pool_recycle=3600, pool_size=0)
    if created.dialect.driver == "pymysql":
        event.listen(created, "do_connect", _connect_sharing_ssl_context)
    return created


class _PyMySQLConnection(pymysql.connections.Connection):  # type: ignore[misc]  # PyMySQL is untyped
    """PyMySQL's connection, with one SSL context for every connection without SSL settings.

    Without SSL settings PyMySQL negotiates TLS when the server offers it, checking no
    certificate, yet builds a new SSL context for every connection, loading the system's CA
    certificates: 23 ms of CPU each (measured), paid by every new connection of a worker.
    Those connections now share one context, built once (SSLContext is made to be shared).
    Connections with SSL settings (certificate files) still get their own, read afresh.
    """

    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        if sslp != {}:
            return super()._create_ssl_ctx(sslp)  # type: ignore[no-any-return]
        global _preferred_ssl_context
        with _preferred_ssl_lock:
            if _preferred_ssl_context is None:
                _preferred_ssl_context = super()._create_ssl_ctx(sslp)
            return _preferred_ssl_context


_preferred_ssl_context: ssl.SSLContext | None = None
_preferred_ssl_lock = threading.Lock()


def _connect_sharing_ssl_context(dialect: Any, record: Any, cargs: Any, cparams: Any) -> _PyMySQLConnection:
    return _PyMySQLConnection(*cargs, **cparams)


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
