"""Test helper: put a stage-run row into a finished state, as if a worker had finished it.

Workers finish items through the fenced ``queue.finish`` with their claim; tests that only
need "this item was done earlier" set the row directly instead of faking a claim.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from figalign.store.models import StageRun, utcnow


def mark_finished(session: Session, run_id: int, status: str = "done") -> None:
    session.execute(update(StageRun).where(StageRun.id == run_id)
                    .values(status=status, lease_owner=None, lease_token=None, lease_expires_at=None,
                            finished_at=utcnow()))
