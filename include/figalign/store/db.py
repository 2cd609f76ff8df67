"""Engines and sessions for the store: one SQLAlchemy code path for SQLite and Postgres.

SQLite is the embedded default, so it gets WAL mode and a busy timeout (several Airflow
task processes write to it at once); Postgres gets pre-ping so a restarted server does
not fail the next task, and no JIT.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from figalign.config import Settings, load_settings


def is_sqlite(url_or_engine) -> bool:
    url = str(getattr(url_or_engine, "url", url_or_engine))
    return url.startswith("sqlite")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Let SQLAlchemy, not the driver, emit BEGIN (see _sqlite_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn) -> None:
    """Take SQLite's write lock at BEGIN so concurrent writers wait (busy_timeout)
    instead of failing with "database is locked" when a read upgrades to a write."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """Create an engine for a store URL, creating the SQLite file's folder if needed."""
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    event.listen(engine, "connect", _postgres_settings)
    return engine


def _postgres_settings(dbapi_conn, _record) -> None:
    """No JIT: the store's queries are short and indexed, but the planner cannot estimate a
    column-to-column test (``attempts >= max_attempts``) and JIT-compiled the claim's
    no-op ``UPDATE`` for ~50 ms at 25 M stage runs (docs/benchmarks.md)."""
    cur = dbapi_conn.cursor()
    cur.execute("SET jit = off")
    cur.close()
    dbapi_conn.commit()


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    return make_engine(url)


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the configured store (cached per URL)."""
    settings = settings or load_settings()
    return _engine_for(settings.effective_database_url)


@contextlib.contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any error."""
    session = sessionmaker(bind=engine, expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# Postgres SQLSTATEs that mean "this transaction lost a race; running it again will work"
_RETRYABLE_PGCODES = frozenset({"40001", "40P01", "55P03"})  # serialization failure, deadlock, lock timeout


def transient_db_error(exc: BaseException) -> bool:
    """Whether a store error is a lost race (deadlock, serialization, busy SQLite) worth a retry.

    Two workers writing overlapping rows can deadlock on Postgres; the database aborts one
    of them, and the item's transaction (data and outcome together) simply runs again.
    """
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError):
        return False
    code = getattr(exc.orig, "pgcode", None)
    if code in _RETRYABLE_PGCODES:
        return True
    return "database is locked" in str(exc.orig)
