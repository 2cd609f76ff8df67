"""The harvest window rule: days from intervals, closing only past the lag, re-listed overlap."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from figalign.clients.http import PoliteHttp, RetryPolicy
from figalign.errors import ConfigError
from figalign.sources.arxiv import ArxivSource
from figalign.stages.harvest import harvest_days
from figalign.stages.windows import WindowRule, plan_days, window_from_interval
from figalign.store.db import session_scope
from figalign.store.models import HarvestCursor, Paper
from tests.servers.fixtures_http import GETRECORDS, real_records
from tests.servers.oai_days import OaiDays

UTC = dt.UTC


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_intervals_become_inclusive_days():
    assert window_from_interval(at(2026, 11, 30), at(2026, 12, 1)) == (dt.date(2026, 11, 30),) * 2
    assert window_from_interval(at(2026, 11, 1), at(2026, 11, 4)) == (dt.date(2026, 11, 1), dt.date(2026, 11, 3))
    # zero-length (CronTriggerTimetable, "@daily" in Airflow 3): the last day complete by then
    assert window_from_interval(at(2026, 11, 30), at(2026, 11, 30)) == (dt.date(2026, 11, 29),) * 2
    assert window_from_interval(at(2026, 12, 3, 9, 14), at(2026, 12, 3, 9, 14)) == (dt.date(2026, 12, 2),) * 2
    ny = dt.timezone(dt.timedelta(hours=-5))
    assert window_from_interval(dt.datetime(2026, 11, 29, 19, tzinfo=ny),
                                dt.datetime(2026, 11, 30, 19, tzinfo=ny)) == (dt.date(2026, 11, 30),) * 2


def test_a_day_closes_at_its_end_in_the_provider_zone_plus_the_lag():
    day = dt.date(2026, 11, 30)
    assert WindowRule().closes_at(day) == at(2026, 12, 1, 6)
    ny = WindowRule.for_source("biorxiv", env={})
    assert ny.closes_at(day) == at(2026, 12, 1, 11)  # midnight in New York is 05:00 UTC, + 6 h
    assert not WindowRule().is_closed(day, at(2026, 12, 1, 5, 59)) and WindowRule().is_closed(day, at(2026, 12, 1, 6))
    today = dt.datetime.now(UTC).date()
    assert not WindowRule(lag=dt.timedelta(0)).is_closed(today)  # today is never over


def test_rule_from_environment_and_bad_values():
    rule = WindowRule.for_source("arxiv", env={"FIGALIGN_HARVEST_OVERLAP_DAYS": "0", "FIGALIGN_HARVEST_LAG_HOURS": "1.5"})
    assert (rule.overlap_days, rule.lag, rule.tz) == (0, dt.timedelta(hours=1.5), "UTC")
    for bad in ({"FIGALIGN_HARVEST_OVERLAP_DAYS": "x"}, {"FIGALIGN_HARVEST_LAG_HOURS": "-1"}):
        with pytest.raises(ConfigError):
            WindowRule.for_source("arxiv", env=bad)


def test_plan_relists_the_overlap_before_the_first_day():
    days = plan_days(dt.date(2026, 11, 3), dt.date(2026, 11, 4), WindowRule(overlap_days=2))
    assert [(d.day.day, d.relist) for d in days] == [(1, True), (2, True), (3, False), (4, False)]
    with pytest.raises(ConfigError):
        plan_days(dt.date(2026, 11, 4), dt.date(2026, 11, 3), WindowRule())


def _source(oai: OaiDays, tmp_path) -> ArxivSource:
    http = PoliteHttp(contact_email="t@example.org", lock_dir=tmp_path / "rl", interval=0.0, timeout=5,
                      retry=RetryPolicy(max_retries=1, base_s=0.01, cap_s=0.02), sleep=lambda s: None)
    return ArxivSource(http, oai.url + "/oai", "https://arxiv.example")


def _cursors(engine) -> dict[dt.date, str]:
    with session_scope(engine) as s:
        return {c.window_start.date(): c.status for c in s.scalars(select(HarvestCursor))}


def test_today_is_listed_but_never_closed_and_is_listed_again(engine, tmp_path):
    today = dt.datetime.now(UTC).date()
    recs = [real_records(i) for i in GETRECORDS]
    with OaiDays({today: recs[:1]}, late={today: recs[1:2]}) as oai:
        rule = WindowRule(overlap_days=0, lag=dt.timedelta(0))
        (first,) = harvest_days(engine, _source(oai, tmp_path), today, today, rule=rule)
        assert (first.status, first.records) == ("open", 1)
        (again,) = harvest_days(engine, _source(oai, tmp_path), today, today, rule=rule)
        assert (again.status, again.records, again.new_papers) == ("open", 2, 1)  # not skipped: the late one too
    assert _cursors(engine) == {today: "open"}


def test_late_stamped_record_is_collected_by_the_next_days_overlap(engine, tmp_path):
    d1, d2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
    recs = [real_records(i) for i in GETRECORDS]
    with OaiDays({d1: recs[:2], d2: recs[2:3]}, late={d1: recs[3:4]}) as oai:
        rule = WindowRule(overlap_days=1)
        src = _source(oai, tmp_path)
        assert [s.status for s in harvest_days(engine, src, d1, d1, rule=rule)] == ["done", "done"]
        assert [s.status for s in harvest_days(engine, src, d1, d1, rule=rule)] == ["done", "skipped"]
        second = harvest_days(engine, src, d2, d2, rule=rule)
        assert [(s.window[0], s.status, s.records) for s in second] == [("2026-11-01", "done", 3),
                                                                        ("2026-11-02", "done", 1)]
        assert oai.requests == [("2026-10-31",) * 2, ("2026-11-01",) * 2, ("2026-10-31",) * 2,
                                ("2026-11-01",) * 2, ("2026-11-02",) * 2]
    with session_scope(engine) as s:
        assert sorted(s.scalars(select(Paper.external_id))) == sorted(GETRECORDS[:4])  # each once


def test_dropped_records_are_counted_on_the_cursor(engine, tmp_path):
    day = dt.date(2026, 11, 1)
    deleted = (b'<record><header status="deleted"><identifier>oai:arXiv.org:1111.0001</identifier>'
               b'<datestamp>2026-11-01</datestamp></header></record>')
    with OaiDays({day: [real_records(GETRECORDS[0]), deleted]}) as oai:
        (summary,) = harvest_days(engine, _source(oai, tmp_path), day, day, rule=WindowRule(overlap_days=0))
    assert summary.dropped == {"deleted record": 1} and summary.records == 2 and summary.new_papers == 1
    with session_scope(engine) as s:
        assert s.scalars(select(HarvestCursor)).one().dropped == {"deleted record": 1}


def test_status_shows_windows_and_dropped_records(engine, db_url, tmp_path, monkeypatch, capsys):
    from figalign.cli import main

    day = dt.date(2026, 11, 1)
    deleted = (b'<record><header status="deleted"><identifier>oai:arXiv.org:1111.0001</identifier>'
               b'<datestamp>2026-11-01</datestamp></header></record>')
    today = dt.datetime.now(UTC).date()
    with OaiDays({day: [real_records(GETRECORDS[0]), deleted], today: [real_records(GETRECORDS[1])]}) as oai:
        harvest_days(engine, _source(oai, tmp_path), day, day, rule=WindowRule(overlap_days=0))
        harvest_days(engine, _source(oai, tmp_path), today, today, rule=WindowRule(overlap_days=0))
    monkeypatch.setenv("FIGALIGN_DATABASE_URL", db_url)
    monkeypatch.setenv("FIGALIGN_DATA_DIR", str(tmp_path / "data"))
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "harvest arxiv    windows: done=1, open=1; 3 records listed; newest closed day 2026-11-01" in out
    assert "1 × dropped at listing: deleted record" in out
