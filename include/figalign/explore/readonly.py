"""A read-only engine for the explorer.

The pipeline's engine (``store.db.make_engine``) opens every SQLite transaction with
``BEGIN IMMEDIATE`` to serialise writers; a browsing person must never take that lock,
so the explorer builds its own engine: SQLite connections run with ``query_only`` and a
deferred BEGIN, Postgres sessions default to read-only transactions. Any write attempt
fails at the database, not just by convention.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event

from figalign.store.db import is_sqlite


def _sqlite_readonly(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def make_readonly_engine(url: str) -> Engine:
    """An engine on ``url`` that can read but never write."""
    if is_sqlite(url):
        # check_same_thread off: FastAPI runs sync endpoints in a thread pool.
        engine = create_engine(url, connect_args={"timeout": 5, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_readonly)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                         connect_args={"options": "-c default_transaction_read_only=on -c statement_timeout=15000"})
