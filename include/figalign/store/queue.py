"""The work queue: stage-run rows claimed with leases.

Each (stage, entity) has one ``stage_runs`` row. ``enqueue`` adds pending rows (a no-op for
rows that exist), ``claim_batch`` hands each claimable row to exactly one worker — with
``FOR UPDATE SKIP LOCKED`` on Postgres and SQLite's single-writer lock otherwise — and
``finish`` records the outcome. A worker that dies leaves its lease to expire; the next
claim takes the item back, counting the attempt, and an item past ``max_attempts`` ends
``failed`` with its last error instead of looping forever.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from figalign.store.models import StageRun, utcnow
from figalign.store.upsert import insert_for


@dataclass(frozen=True)
class Claimed:
    """One claimed item: what a stage needs to process it and to report back."""

    run_id: int
    stage: str
    entity_type: str
    entity_id: str
    attempts: int


@dataclass(frozen=True)
class RunContext:
    """Who is doing the work: an Airflow task instance or a CLI process."""

    owner: str
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None

    @classmethod
    def local(cls) -> "RunContext":
        return cls(owner=f"{socket.gethostname()}:{os.getpid()}")


def enqueue(
    session: Session,
    stage: str,
    entity_type: str,
    entity_ids: Iterable[str],
    *,
    max_attempts: int = 3,
    input_hash: str | None = None,
) -> int:
    """Add pending rows for entities not yet in this stage; return how many were new.

    One ``INSERT … ON CONFLICT DO NOTHING`` per entity: an existing row is left as it is
    (status, attempts, lease), and RETURNING tells new rows from existing ones.
    """
    insert = insert_for(session)
    new = 0
    for entity_id in entity_ids:
        stmt = (insert(StageRun.__table__)
                .values(stage=stage, entity_type=entity_type, entity_id=str(entity_id), status="pending",
                        attempts=0, max_attempts=max_attempts, input_hash=input_hash, output={},
                        created_at=utcnow(), updated_at=utcnow())
                .on_conflict_do_nothing(index_elements=["stage", "entity_type", "entity_id"])
                .returning(StageRun.__table__.c.id))
        if session.execute(stmt).scalar() is not None:
            new += 1
    return new


def requeue(session: Session, stage: str, entity_type: str, entity_ids: Iterable[str]) -> int:
    """Put finished items back to pending (``--force``), resetting their attempt count."""
    ids = [str(e) for e in entity_ids]
    if not ids:
        return 0
    result = session.execute(
        update(StageRun)
        .where(StageRun.stage == stage, StageRun.entity_type == entity_type, StageRun.entity_id.in_(ids))
        .values(status="pending", attempts=0, lease_owner=None, lease_expires_at=None,
                error_class=None, error_message=None, reason=None)
    )
    return result.rowcount or 0


def _claimable(stage: str, now: dt.datetime):
    expired = and_(StageRun.status == "running", StageRun.lease_expires_at < now)
    return and_(StageRun.stage == stage, or_(StageRun.status == "pending", expired))


def _fail_exhausted(session: Session, stage: str, now: dt.datetime) -> int:
    """End items whose lease expired on their last allowed attempt."""
    result = session.execute(
        update(StageRun)
        .where(_claimable(stage, now), StageRun.attempts >= StageRun.max_attempts)
        .values(status="failed", finished_at=now, lease_owner=None, lease_expires_at=None,
                reason="attempts exhausted: lease expired on the last attempt")
    )
    return result.rowcount or 0


def claim_batch(
    session: Session,
    stage: str,
    size: int,
    *,
    lease_seconds: int = 900,
    ctx: RunContext | None = None,
) -> list[Claimed]:
    """Claim up to ``size`` items of ``stage`` for this worker; commit before returning.

    The caller's session must not hold other pending work: this commits so the claim is
    visible to other workers at once. On SQLite every transaction starts with
    ``BEGIN IMMEDIATE`` (see ``store.db``), so two claimers serialise on the write lock.
    """
    ctx = ctx or RunContext.local()
    now = utcnow()
    _fail_exhausted(session, stage, now)
    query = (
        select(StageRun)
        .where(_claimable(stage, now), StageRun.attempts < StageRun.max_attempts)
        .order_by(StageRun.id)
        .limit(size)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = session.execute(query).scalars().all()
    expires = now + dt.timedelta(seconds=lease_seconds)
    claimed = []
    for row in rows:
        row.status, row.attempts = "running", row.attempts + 1
        row.lease_owner, row.lease_expires_at, row.started_at = ctx.owner, expires, now
        row.dag_id, row.run_id, row.task_id, row.try_number = ctx.dag_id, ctx.run_id, ctx.task_id, ctx.try_number
        claimed.append(Claimed(row.id, row.stage, row.entity_type, row.entity_id, row.attempts))
    session.commit()
    return claimed


def finish(
    session: Session,
    run_id: int,
    status: str,
    *,
    owner: str | None = None,
    error: BaseException | None = None,
    reason: str | None = None,
    output: dict | None = None,
    retry: bool = False,
) -> str:
    """Record an item's outcome; return the status it ends in.

    ``retry=True`` (a transient error) puts the item back to pending while attempts remain,
    else it ends failed. A worker whose lease was taken over by another (``owner`` no
    longer matches) records nothing, so a slow zombie cannot overwrite fresh results.
    """
    row = session.get(StageRun, run_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if row is None or (owner is not None and row.lease_owner not in (owner, None)):
        return "lost-lease"
    if status == "failed" and retry and row.attempts < row.max_attempts:
        status = "pending"
    row.status = status
    row.reason = reason
    row.output = output or {}
    if error is not None:
        row.error_class = type(error).__name__
        row.error_message = str(error)[:4000]
    elif status in ("done", "skipped"):
        row.error_class = row.error_message = None
    row.lease_owner = row.lease_expires_at = None
    row.finished_at = utcnow() if status != "pending" else None
    return status


def stage_states(session: Session, stage: str, entity_type: str, entity_ids: list[str],
                 chunk: int = 500) -> list[tuple[str, str, str | None]]:
    """(entity id, status, input hash) of existing rows, looked up in chunks of ``chunk`` ids.

    Stages whose work depends on a key (model, prompt, metrics) use it to find finished
    items that a new key makes stale.
    """
    out: list[tuple[str, str, str | None]] = []
    for start in range(0, len(entity_ids), chunk):
        out += session.execute(
            select(StageRun.entity_id, StageRun.status, StageRun.input_hash)
            .where(StageRun.stage == stage, StageRun.entity_type == entity_type,
                   StageRun.entity_id.in_(entity_ids[start:start + chunk]))).all()
    return out


def counts(session: Session, stage: str | None = None) -> dict[tuple[str, str], int]:
    """Rows per (stage, status), for summaries and the UI."""
    from sqlalchemy import func

    query = select(StageRun.stage, StageRun.status, func.count()).group_by(StageRun.stage, StageRun.status)
    if stage:
        query = query.where(StageRun.stage == stage)
    return {(s, st): n for s, st, n in session.execute(query).all()}
