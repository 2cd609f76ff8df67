"""Harvest runs on the intervals Airflow's own timetable gives: every record collected once.

`airflow backfill create` only creates runs; a running scheduler executes them (about
20 s of start-up and ~1 GB of workers here, too heavy for the suite). So the test asks the
harvest DAG's real timetable (``next_dagrun_info``, what the scheduler and a backfill
call) for the data intervals of three consecutive days ending yesterday, and runs them
with ``dag.test`` — a manual run whose interval Airflow infers from its logical date, so
each is given its interval's end, which infers exactly that interval — then one more run
triggered "now", as the UI's trigger form does. The arXiv stand-in serves real recorded
records by datestamp and stamps one record with the first day only after that day was
listed; the re-listed overlap must still collect it. The safety lag is set to 48 h so
that which windows may close does not depend on the hour the suite runs.
"""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest
from sqlalchemy import func, select

from figalign.store.db import make_engine, session_scope
from figalign.store.migrate import upgrade
from figalign.store.models import HarvestCursor, Paper, StageRun
from tests.orchestration.airflow_runner import airflow_env, migrate_home, run_dags, states
from tests.servers.fixtures_http import GETRECORDS, real_records
from tests.servers.oai_days import OaiDays

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def scheduler_intervals(first_day: dt.date, n: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """The data intervals the scheduler gives ``figalign_harvest_arxiv`` from ``first_day`` on."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    from figalign.orchestration import HARVEST_TIMETABLE

    timetable = coerce_to_core_timetable(HARVEST_TIMETABLE)
    restriction = TimeRestriction(earliest=pendulum.datetime(first_day.year, first_day.month, first_day.day,
                                                             tz="UTC"), latest=None, catchup=True)
    out, last = [], None
    for _ in range(n):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        out.append((info.data_interval.start, info.data_interval.end))
        last = info.data_interval
    return out


def test_scheduled_days_and_a_ui_trigger_collect_every_record_exactly_once(db_url, tmp_path):
    today = dt.datetime.now(dt.UTC).date()
    d1, d2, d3 = (today - dt.timedelta(days=k) for k in (3, 2, 1))
    intervals = scheduler_intervals(d1, 3)
    assert [(s.date(), e.date()) for s, e in intervals] == [(d1, d2), (d2, d3), (d3, today)]  # whole days
    recs = [real_records(i) for i in GETRECORDS]
    upgrade(db_url)
    engine = make_engine(db_url)
    home = migrate_home(tmp_path / "airflow_home")
    with OaiDays({d1: recs[:2], d2: recs[2:3], d3: recs[3:4]}, late={d1: recs[4:5]}) as oai:
        env = airflow_env(home, db_url, tmp_path / "data", {
            "FIGALIGN_ARXIV_OAI_URL": oai.url + "/oai", "FIGALIGN_ARXIV_BASE_URL": oai.url,
            "FIGALIGN_HARVEST_LAG_HOURS": "48"})
        specs = [{"dag_id": "figalign_harvest_arxiv", "logical_date": end.isoformat()} for _, end in intervals]
        runs = run_dags(env, specs + [{"dag_id": "figalign_harvest_arxiv"}])  # the last: triggered now
        assert states(runs) == [("figalign_harvest_arxiv", "success")] * 4
        xcoms = [r["tasks"][0]["xcom"] for r in runs]
        assert [x["window"] for x in xcoms] == [[d.isoformat()] * 2 for d in (d1, d2, d3, d3)]
        # each run lists its day after re-listing the two days before it
        listed = [(d - dt.timedelta(days=k)).isoformat() for d in (d1, d2, d3, d3) for k in (2, 1, 0)]
        assert oai.requests == [(d, d) for d in listed]
    with session_scope(engine) as s:
        papers = s.scalars(select(Paper.external_id)).all()
        assert sorted(papers) == sorted(GETRECORDS[:5])  # the late-stamped record too, each once
        fetch = s.scalars(select(StageRun.entity_id).where(StageRun.stage == "fetch")).all()
        assert len(fetch) == len(set(fetch)) == 5
        cursors = {c.window_start.date(): c.status for c in s.scalars(select(HarvestCursor))}
        # with a 48 h lag only d1 and the days before it are over; d2, d3 were listed but stay open
        assert cursors[d1] == "done" and cursors[d2] == cursors[d3] == "open"
        assert s.scalar(select(func.count()).select_from(HarvestCursor)) == 5
    engine.dispose()
