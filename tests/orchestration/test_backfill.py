"""A backfill over three daily windows harvests each window exactly once.

`airflow backfill create` only creates runs; a running scheduler (and, in Airflow 3, an
api-server for the execution API) executes them — about 20 s of start-up and ~1 GB of
workers on this 2-core machine, which is too heavy for the suite. The backfill's effect
is driven directly instead: ``dag.test(logical_date=…)`` of ``figalign_harvest_arxiv``
for three consecutive days — exactly the runs a backfill over those days creates, each
with its own data interval — plus a repeat of the middle day, all in one Airflow process.
The README documents the real command; ``make airflow`` gives the scheduler it needs.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from figalign.store.db import make_engine, session_scope
from figalign.store.migrate import upgrade
from figalign.store.models import HarvestCursor, Paper, StageRun
from tests.orchestration.airflow_runner import airflow_env, migrate_home, run_dags, states
from tests.servers.fixtures_http import GETRECORDS, LIST_PAGE, list_page, real_records
from tests.servers.replay import ReplayServer

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]


def serve_days(server: ReplayServer) -> dict[str, str]:
    """One single-page window per day, each of real recorded records; route key per day."""
    bodies = [LIST_PAGE.read_bytes(), list_page([real_records(i) for i in GETRECORDS[:3]], None),
              list_page([real_records(i) for i in GETRECORDS[3:]], None)]
    return {day: server.add("/oai", body, params={"verb": "ListRecords", "metadataPrefix": "arXiv",
                                                  "from": day, "until": day})
            for day, body in zip(DAYS, bodies)}


def test_three_daily_windows_are_each_harvested_exactly_once(pg_url, tmp_path):
    upgrade(pg_url)
    engine = make_engine(pg_url)
    home = migrate_home(tmp_path / "airflow_home")
    with ReplayServer() as server:
        keys = serve_days(server)
        env = airflow_env(home, pg_url, tmp_path / "data", {"FIGALIGN_ARXIV_OAI_URL": server.url + "/oai",
                                                            "FIGALIGN_ARXIV_BASE_URL": server.url})
        runs = run_dags(env, [{"dag_id": "figalign_harvest_arxiv", "logical_date": f"{day}T00:00:00"}
                              for day in DAYS + DAYS[1:2]])
        assert states(runs) == [("figalign_harvest_arxiv", "success")] * 4
        assert len({r["run_id"] for r in runs}) == 4
        windows = [r["tasks"][0]["xcom"]["window"] for r in runs]
        assert windows == [[d, d] for d in DAYS + DAYS[1:2]]  # each run's data interval is its own day
        statuses = [r["tasks"][0]["xcom"]["sets"][0]["status"] for r in runs]
        assert statuses == ["done", "done", "done", "skipped"]
        assert {day: server.count(key) for day, key in keys.items()} == {day: 1 for day in DAYS}
        assert len(server.hits) == 3
    with session_scope(engine) as s:
        cursors = s.scalars(select(HarvestCursor).order_by(HarvestCursor.window_start)).all()
        assert [(c.status, c.window_start, c.window_end, c.pages_done, c.records_seen) for c in cursors] == [
            ("done", dt.datetime.fromisoformat(d), dt.datetime.fromisoformat(d), 1, 3) for d in DAYS]
        assert s.scalar(select(func.count()).select_from(Paper)) == 9
        fetch = s.scalars(select(StageRun.entity_id).where(StageRun.stage == "fetch")).all()
        assert len(fetch) == len(set(fetch)) == 9  # every paper queued for fetch once
    engine.dispose()
