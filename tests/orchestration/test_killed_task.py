"""A parse task killed mid-batch (SIGKILL) and retried loses nothing and duplicates nothing.

The committed sample papers are ingested and processed under ``dag.test()`` with GROBID
configured (the two bare PDFs go through the GROBID stand-in). The stand-in holds the first
upload, so the mapped ``parse`` task is provably inside its batch — items claimed, one
request in flight — when the whole Airflow process group gets SIGKILL: the worker dies
with no chance to record anything. The lease is shortened to a few seconds inside the
subprocess (test-only ``FIGALIGN_TEST_LEASE_S``); once it has expired, the next run of
``figalign_process`` claims the orphaned items again and finishes them.

The reference is a clean run of the same stages, without Airflow, on a second database:
row counts and per-stage outcomes must be equal, the killed item must show two attempts,
and GROBID must have seen the killed paper exactly twice and every other paper once.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from figalign.store.db import make_engine, session_scope
from figalign.store.migrate import upgrade
from figalign.store.models import Artifact, CitationContextRow, FigureRow, Paper, PaperFile, StageRun, utcnow
from tests.conftest import FIXTURES, throwaway_database
from tests.orchestration.airflow_runner import airflow_env, migrate_home, parse_result, run_dags, start_dags, states
from tests.servers.grobid_server import GrobidStandIn

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

LEASE_S = 8
PATIENCE_S = 300
TABLES = (Paper, PaperFile, Artifact, FigureRow, CitationContextRow, StageRun)


def wait_for(predicate, what: str, timeout: float = PATIENCE_S, proc=None):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the Airflow process ended (rc={proc.returncode}) before: {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for: {what}")


def outcome(engine) -> dict:
    """Row counts, and per stage the sorted statuses (what a clean run must also produce)."""
    with session_scope(engine) as s:
        counts = {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in TABLES}
        statuses = {}
        for stage, status in s.execute(select(StageRun.stage, StageRun.status)):
            statuses.setdefault(stage, []).append(status)
        figures = dict(s.execute(select(Paper.external_id, func.count(FigureRow.id))
                                 .join(FigureRow, FigureRow.paper_id == Paper.id, isouter=True)
                                 .group_by(Paper.external_id)).all())
    return {"counts": counts, "statuses": {k: sorted(v) for k, v in statuses.items()}, "figures": figures}


def second_database():
    """A second fresh Postgres database (the clean reference run), dropped afterwards."""
    return throwaway_database("figalign_ref")


def clean_run(url: str, data_dir: Path, grobid_url: str) -> dict:
    """The same stages, same inputs, no Airflow and no kill: the reference outcome."""
    from figalign.config import load_settings
    from figalign.pipeline import ingest_local, plan_batches, run_stage

    upgrade(url)
    settings = load_settings({"FIGALIGN_DATABASE_URL": url, "FIGALIGN_DATA_DIR": str(data_dir),
                              "FIGALIGN_GROBID_URL": grobid_url})
    ingest_local(str(FIXTURES / "papers"), settings=settings)
    for stage in ("fetch", "parse", "filter"):
        for _ in plan_batches(stage, 25, 16, settings=settings):
            run_stage(stage, size=25, settings=settings)
    engine = make_engine(url)
    try:
        return outcome(engine)
    finally:
        engine.dispose()


def running_parse_items(engine) -> list[StageRun]:
    with session_scope(engine) as s:
        rows = s.scalars(select(StageRun).where(StageRun.stage == "parse", StageRun.status == "running")).all()
        s.expunge_all()
        return rows


def test_parse_killed_mid_batch_then_retried_equals_a_clean_run(pg_url, tmp_path):
    upgrade(pg_url)
    engine = make_engine(pg_url)
    home = migrate_home(tmp_path / "airflow_home")
    with GrobidStandIn() as grobid:
        env = airflow_env(home, pg_url, tmp_path / "data",
                          {"FIGALIGN_GROBID_URL": grobid.url, "FIGALIGN_TEST_LEASE_S": str(LEASE_S)})
        grobid.hold_next()
        specs = [{"dag_id": "figalign_ingest_local", "conf": {"folder": str(FIXTURES / "papers")}},
                 {"dag_id": "figalign_process"}]
        with open(tmp_path / "killed.log", "w") as log:
            proc = start_dags(env, specs, log)
            try:
                wait_for(lambda: grobid.in_flight == 1, "the parse task's first GROBID upload", proc=proc)
                claimed = wait_for(lambda: running_parse_items(engine), "parse items claimed", proc=proc)
            finally:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
        grobid.release()
        assert parse_result((tmp_path / "killed.log").read_text()) is None  # it never got to report
        killed_pdf = grobid.uploads[0]
        killed_owner = {r.lease_owner for r in claimed}
        # batches are fitted to the work (3 papers: one each); the killed one is the first try of one,
        # in the grobid lane (it is a bare PDF, uploaded to GROBID)
        assert len(killed_owner) == 1 and re.search(r"/parse_grobid/\d+/1$", killed_owner.pop())
        with session_scope(engine) as s:
            assert s.scalar(select(func.count()).select_from(StageRun)
                            .where(StageRun.stage == "parse", StageRun.status == "failed")) == 0
        expires = max(r.lease_expires_at for r in claimed)
        wait_for(lambda: utcnow() > expires, "the dead worker's lease to expire", timeout=LEASE_S * 4)

        retry = run_dags(env, [{"dag_id": "figalign_process"}])
        assert states(retry) == [("figalign_process", "success")]
        after = outcome(engine)
        with session_scope(engine) as s:
            parse_runs = {r.entity_id: r for r in s.scalars(select(StageRun).where(StageRun.stage == "parse"))}
            redone = {r.entity_id for r in claimed}
            for entity_id, run in parse_runs.items():
                assert run.status in ("done", "failed") and run.run_id is not None
                if entity_id in redone:
                    assert (run.attempts, run.run_id) == (2, retry[0]["run_id"]), entity_id
                else:
                    assert run.attempts == 1, entity_id
        assert grobid.count(killed_pdf) == 2  # the held upload, and once more after the retry
        assert all(grobid.count(d) == 1 for d in set(grobid.uploads) - {killed_pdf})
        uploads_by_airflow = len(grobid.uploads)

        with second_database() as ref_url:
            reference = clean_run(ref_url, tmp_path / "ref_data", grobid.url)
        assert len(grobid.uploads) - uploads_by_airflow == uploads_by_airflow - 1
    assert after == reference
    assert after["counts"]["papers"] == 3 and after["counts"]["figures"] >= 8
    engine.dispose()
