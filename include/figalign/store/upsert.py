"""Upserts on natural keys, the only way figalign writes rows.

``INSERT … ON CONFLICT (natural key) DO UPDATE`` exists in both SQLite and Postgres; using
it everywhere makes every stage idempotent without read-then-write races between workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from figalign.store.models import utcnow


def insert_for(session: Session):
    """The dialect's ``insert`` with ``on_conflict_*`` (Postgres or SQLite)."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def upsert(
    session: Session,
    model,
    values: dict[str, Any],
    key: Sequence[str],
    *,
    update: Iterable[str] | None = None,
) -> int:
    """Insert ``values`` or update the row with the same natural ``key``; return its id.

    ``update`` limits which columns an existing row takes from ``values`` (default: every
    non-key column given). An empty ``update`` means insert-if-absent.
    """
    table = model.__table__
    values = dict(values)
    if "updated_at" in table.c and "updated_at" not in values:
        values["updated_at"] = utcnow()
    cols = [c for c in (update if update is not None else values) if c not in key]
    stmt = insert_for(session)(table).values(**values)
    if cols:
        stmt = stmt.on_conflict_do_update(index_elements=list(key), set_={c: stmt.excluded[c] for c in cols})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(key))
    row_id = session.execute(stmt.returning(table.c.id)).scalar()
    if row_id is None:
        cond = [table.c[k] == values[k] for k in key]
        row_id = session.execute(select(table.c.id).where(*cond)).scalar_one()
    return row_id


def upsert_many(session: Session, model, rows: list[dict[str, Any]], key: Sequence[str]) -> list[int]:
    """Upsert rows one statement each, returning ids in order (keeps RETURNING portable)."""
    return [upsert(session, model, row, key) for row in rows]
