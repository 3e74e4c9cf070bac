"""Engines and sessions, one engine per URL and per process."""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from functools import cache, partial
from typing import Any

import pymysql.connections
from sqlalchemy import JSON, Engine, Insert, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

import settings

# A pooled connection idle for longer than this is pinged before it is used again.
IDLE_PING_SECONDS = 30.0


@cache
def _engine(url: str, pid: int, autocommit: bool = False) -> Engine:
    # pool_recycle: MySQL drops connections idle for wait_timeout (8 h by default).
    # pool_size=0: every connection is kept for the next use (no limit). A thread holds at most
    # one at a time, so a worker keeps at most one per pool thread, plus its checkpointer's.
    # The default (5, then up to 10 more closed after each use) made a worker of 8 threads open
    # a new connection (TCP, MySQL handshake, an SSL context: about 25 ms of CPU) every few deliveries.
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", "skip_autocommit_rollback": True} if autocommit else {}
    created = create_engine(url, pool_recycle=3600, pool_size=0, **options)
    if created.dialect.driver == "pymysql":
        event.listen(created, "do_connect", _connect_sharing_ssl_context)
    event.listen(created.pool, "checkin", _note_idle_since)
    event.listen(created.pool, "checkout", partial(_ping_if_idle, created.dialect))
    return created


def _note_idle_since(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dialect: Dialect, dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
    """Ping a connection that sat idle, so that one the server (or a proxy, or a restart)
    closed meanwhile is replaced before a statement fails on it.

    Not on every checkout (pool_pre_ping): a delivery checked a connection out twice, and the
    two round trips cost about 0.15 ms of a worker's CPU, for connections in use a moment ago.
    A connection closed while busy fails its statement: the attempt is spooled or the
    duplicate check skipped (tasks.audit). That connection is replaced; after a server
    restart, each connection used in the last IDLE_PING_SECONDS may fail one statement so.
    """
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
        return
    try:
        dialect.do_ping(dbapi_connection)
    except Exception as error:
        raise DisconnectionError(f"connection closed while idle: {error}") from error  # the pool connects anew


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


def autocommit_engine(url: str) -> Engine:
    """An engine for ``url`` whose statements commit one by one, for the single statements of
    a delivery (the audit's INSERT and duplicate check): one round trip each.

    With ``engine``, the INSERT took three (INSERT, COMMIT, and the ROLLBACK with which the
    pool resets a connection it gets back) and the SELECT two; not for anything that needs
    a transaction of several statements. Its own pool: connections stay in autocommit mode.
    """
    return _engine(url, os.getpid(), autocommit=True)


def insert(url: str, statement: Insert, values: Mapping[str, Any]) -> int:
    """Run one INSERT in autocommit mode (``autocommit_engine``); return the new row's id.

    With PyMySQL, the statement, compiled by SQLAlchemy once, runs on the DBAPI cursor:
    SQLAlchemy's execution machinery cost 0.15 ms of CPU per INSERT alone (about twice that in
    a busy worker), half of the audit's own cost. Its errors are still SQLAlchemy's: a lost
    connection is invalidated and raised as an OperationalError with ``connection_invalidated``
    (tasks.audit spools the attempt then). Other drivers (SQLite, for make run) take SQLAlchemy's
    whole path.
    """
    engine = autocommit_engine(url)
    dialect = engine.dialect
    with engine.connect() as connection:
        if dialect.driver != "pymysql":
            key = connection.execute(statement, values).inserted_primary_key
            return int(key[0]) if key is not None else 0
        sql, json_columns = _compiled(dialect, statement, tuple(values))
        params = {name: json.dumps(v) if name in json_columns and v is not None else v for name, v in values.items()}
        proxied = connection.connection
        cursor = proxied.cursor()
        try:
            cursor.execute(sql, params)
            return int(cursor.lastrowid)
        except dialect.loaded_dbapi.Error as error:
            lost = dialect.is_disconnect(error, proxied.dbapi_connection, cursor)
            if lost:
                connection.invalidate(error)
            base = dialect.loaded_dbapi.Error
            raise DBAPIError.instance(sql, params, error, base, connection_invalidated=lost, dialect=dialect) from error
        finally:
            cursor.close()


@cache
def _compiled(dialect: Dialect, statement: Insert, columns: tuple[str, ...]) -> tuple[str, frozenset[str]]:
    """The INSERT's SQL for ``dialect`` with parameters named after ``columns``, and which of them hold JSON."""
    sql = str(statement.compile(dialect=dialect, column_keys=list(columns)))
    table = statement.table
    return sql, frozenset(name for name in columns if isinstance(table.c[name].type, JSON))


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
