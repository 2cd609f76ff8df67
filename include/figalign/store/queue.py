"""The work queue: stage-run rows claimed with leases.

Each (stage, entity) has one ``stage_runs`` row. ``enqueue`` adds pending rows (a no-op for
rows that exist), ``claim_batch`` hands each claimable row to exactly one worker — with
``FOR UPDATE SKIP LOCKED`` on Postgres and SQLite's single-writer lock otherwise — and
``finish`` records the outcome. A worker that dies leaves its lease to expire; the next
claim takes the item back, counting the attempt, and an item past ``max_attempts`` ends
``failed`` with its last error instead of looping forever.

Fencing: every claim gives the row a fresh random ``lease_token`` (and ``requeue`` and every
outcome clear it). Only the holder of the row's current token may record an outcome:
``fence`` checks it under a row lock (``FOR UPDATE`` on Postgres; SQLite's write lock,
taken at ``BEGIN IMMEDIATE``) at the start of the transaction that also carries the
stage's data writes, and raises ``LeaseLost`` otherwise, so a worker that lost its item —
requeued for a re-run, or taken over after its lease expired — writes nothing at all.
Live workers keep their leases with ``renew``; a lease is short, so a dead worker's items
come back quickly.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session

from figalign.store.models import StageRun, utcnow
from figalign.store.upsert import insert_for


class LeaseLost(Exception):
    """This worker no longer holds the item's lease: it must write nothing for it."""

    def __init__(self, run_id: int, why: str):
        super().__init__(f"stage run {run_id}: {why}")
        self.run_id = run_id


@dataclass(frozen=True)
class Claimed:
    """One claimed item: what a stage needs to process it and to report back.

    ``token`` is the claim's fencing token; outcomes are accepted only with it.
    """

    run_id: int
    stage: str
    entity_type: str
    entity_id: str
    attempts: int
    token: str = ""


@dataclass(frozen=True)
class RunContext:
    """Who is doing the work: an Airflow task instance or a CLI process."""

    owner: str
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    instance: str | None = None  # the task instance across tries ("dag/run/task/map"): a retry's own earlier claims

    @classmethod
    def local(cls) -> "RunContext":
        """A CLI batch; the random part keeps batches run side by side in one process apart."""
        return cls(owner=f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}")


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
        .values(status="pending", attempts=0, lease_owner=None, lease_expires_at=None, lease_token=None,
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
        .values(status="failed", finished_at=now, lease_owner=None, lease_expires_at=None, lease_token=None,
                reason="attempts exhausted: lease expired on the last attempt")
    )
    return result.rowcount or 0


def _earlier_owners(ctx: RunContext) -> list[str]:
    """Lease owners of this task instance's earlier tries (none for a first try or a CLI run)."""
    if not ctx.instance or not ctx.try_number or ctx.try_number <= 1:
        return []
    return [f"{ctx.instance}/{n}" for n in range(1, ctx.try_number)]


def _take_over_earlier_tries(session: Session, stage: str, ctx: RunContext, now: dt.datetime) -> int:
    """A retried task gets its earlier try's items back at once, not when their leases lapse.

    Its earlier try is dead (Airflow retries a task only once it has failed or its worker
    stopped heartbeating), so those leases are expired now and the claim below takes them,
    all of them and before any other item, counting the attempt; fencing keeps a zombie of
    the earlier try from writing anything.
    """
    earlier = _earlier_owners(ctx)
    if not earlier:
        return 0
    result = session.execute(update(StageRun)
                             .where(StageRun.stage == stage, StageRun.status == "running",
                                    StageRun.lease_owner.in_(earlier))
                             .values(lease_expires_at=now - dt.timedelta(seconds=1)))
    return result.rowcount or 0


def claim_batch(
    session: Session,
    stage: str,
    size: int,
    *,
    lease_seconds: int = 120,
    ctx: RunContext | None = None,
    lane: str | None = None,
) -> list[Claimed]:
    """Claim up to ``size`` items of ``stage`` for this worker; commit before returning.

    ``lane`` (``None``: any) claims only items planned into that lane. A retried task
    claims every item its earlier tries left behind first, even more than ``size``: they
    are its own batch, and nothing else in the run would pick them up before their leases
    lapse. The caller's session must not hold other pending work: this commits so the
    claim is visible to other workers at once. On SQLite every transaction starts with
    ``BEGIN IMMEDIATE`` (see ``store.db``), so two claimers serialise on the write lock.
    """
    ctx = ctx or RunContext.local()
    now = utcnow()
    taken_over = _take_over_earlier_tries(session, stage, ctx, now)
    _fail_exhausted(session, stage, now)
    claimable = and_(_claimable(stage, now), StageRun.attempts < StageRun.max_attempts)
    if lane is not None:
        claimable = and_(claimable, StageRun.lane == lane)
    order = [StageRun.id]
    if earlier := _earlier_owners(ctx):
        order.insert(0, case((StageRun.lease_owner.in_(earlier), 0), else_=1))  # its own items first
    query = select(StageRun).where(claimable).order_by(*order).limit(max(size, taken_over))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = session.execute(query).scalars().all()
    expires = now + dt.timedelta(seconds=lease_seconds)
    claimed = []
    for row in rows:
        row.status, row.attempts = "running", row.attempts + 1
        row.lease_owner, row.lease_expires_at, row.started_at = ctx.owner, expires, now
        row.lease_token = secrets.token_hex(16)
        row.dag_id, row.run_id, row.task_id, row.try_number = ctx.dag_id, ctx.run_id, ctx.task_id, ctx.try_number
        claimed.append(Claimed(row.id, row.stage, row.entity_type, row.entity_id, row.attempts, row.lease_token))
    session.commit()
    return claimed


def _locked_row(session: Session, run_id: int) -> StageRun | None:
    """The stage-run row, locked for this transaction (SQLite: already, by BEGIN IMMEDIATE)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    return session.get(StageRun, run_id, with_for_update=postgres, populate_existing=True)


def fence(session: Session, item: Claimed) -> StageRun:
    """Lock the item's row and check this worker still holds its lease; else ``LeaseLost``.

    Call it first in the transaction that writes the item's results: the lock is held
    until that transaction ends, so no requeue or new claim can slip in between the check
    and the writes.
    """
    row = _locked_row(session, item.run_id)
    if row is None:
        raise LeaseLost(item.run_id, "row no longer exists")
    if row.status != "running" or not item.token or row.lease_token != item.token:
        raise LeaseLost(item.run_id, f"lease taken over (status {row.status}, {'another' if row.lease_token else 'no'} "
                                     "lease holder)")
    return row


def finish(
    session: Session,
    item: Claimed,
    status: str,
    *,
    error: BaseException | None = None,
    reason: str | None = None,
    output: dict | None = None,
    retry: bool = False,
    error_text: str | None = None,
) -> str:
    """Record the outcome of an item this worker holds; return the status it ends in.

    Fenced (see ``fence``): raises ``LeaseLost`` when the lease is no longer this
    worker's, so the caller's transaction — with any data written for the item — rolls
    back. ``retry=True`` (a transient error) puts the item back to pending while attempts
    remain, else it ends failed. ``error_text`` replaces the error's message (e.g. scrubbed).
    """
    row = fence(session, item)
    if status == "failed" and retry and row.attempts < row.max_attempts:
        status = "pending"
    row.status = status
    row.reason = reason
    row.output = output or {}
    if error is not None:
        row.error_class = type(error).__name__
        row.error_message = (error_text if error_text is not None else str(error))[:4000]
    elif status in ("done", "skipped"):
        row.error_class = row.error_message = None
    row.lease_owner = row.lease_expires_at = row.lease_token = None
    row.finished_at = utcnow() if status != "pending" else None
    return status


def renew(session: Session, items: Iterable[Claimed], lease_seconds: int) -> set[int]:
    """Extend the leases this worker still holds; return the run ids it still holds.

    A plain ``UPDATE … WHERE lease_token = :token``, so a lease already taken over is not
    touched (and its run id is missing from the result).
    """
    expires = utcnow() + dt.timedelta(seconds=lease_seconds)
    held: set[int] = set()
    for item in items:
        result = session.execute(
            update(StageRun)
            .where(StageRun.id == item.run_id, StageRun.status == "running", StageRun.lease_token == item.token)
            .values(lease_expires_at=expires))
        if result.rowcount:
            held.add(item.run_id)
    return held


def unfinished_claims(session: Session, stage: str, ctx: RunContext) -> list[StageRun]:
    """Items of ``stage`` this task instance (any of its tries; a CLI process: itself) claimed
    and left ``running``: after its batch there must be none."""
    owners = [ctx.owner, *_earlier_owners(ctx)]
    return list(session.scalars(select(StageRun)
                                .where(StageRun.stage == stage, StageRun.status == "running",
                                       StageRun.lease_owner.in_(owners))
                                .order_by(StageRun.id)))


def assign_lanes(session: Session, stage: str, lane_of: Callable[[list[str]], dict[str, str]], *,
                 default: str = "default", chunk: int = 500) -> int:
    """Put the claimable items of ``stage`` into their lanes; return how many rows changed lane.

    ``lane_of(entity ids)`` names each item's lane (an id it leaves out goes to ``default``).
    Only items nobody holds move (pending, or running past their lease), so a lane never
    changes under a worker. Called by a stage's plan, before it counts each lane.
    """
    now = utcnow()
    ids = list(session.scalars(select(StageRun.entity_id).where(_claimable(stage, now))))
    lanes = lane_of(ids) if ids else {}
    by_lane: dict[str, list[str]] = {}
    for entity_id in ids:
        by_lane.setdefault(lanes.get(entity_id, default), []).append(entity_id)
    changed = 0
    for lane, members in by_lane.items():
        for start in range(0, len(members), chunk):
            result = session.execute(
                update(StageRun)
                .where(_claimable(stage, now), StageRun.lane != lane,
                       StageRun.entity_id.in_(members[start:start + chunk]))
                .values(lane=lane))
            changed += result.rowcount or 0
    return changed


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


def reason_of():
    """An item's reason as recorded: its ``reason`` (it names what happened), else its error class."""
    from sqlalchemy import func

    return func.coalesce(StageRun.reason, StageRun.error_class)


def counts(session: Session, stage: str | None = None) -> dict[tuple[str, str], int]:
    """Rows per (stage, status), for summaries and the UI."""
    from sqlalchemy import func

    query = select(StageRun.stage, StageRun.status, func.count()).group_by(StageRun.stage, StageRun.status)
    if stage:
        query = query.where(StageRun.stage == stage)
    return {(s, st): n for s, st, n in session.execute(query).all()}
