"""Harvest windows end to end against the replay server: paging, cursors, faults, resume."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from figalign.clients.http import PoliteHttp, RetryPolicy
from figalign.sources.arxiv import ArxivSource
from figalign.sources.licences import LicencePolicy
from figalign.sources.pmc import PmcSource
from figalign.stages.harvest import harvest_window
from figalign.store.db import session_scope
from figalign.store.models import HarvestCursor, Paper, StageRun
from tests.servers.fixtures_http import GETRECORDS, serve_arxiv, serve_pmc
from tests.servers.replay import Fault, ReplayServer
from tests.queue_helpers import mark_finished

START, END = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
PAGE1_IDS = ["1706.05371", "1706.09418", "1707.00874"]
ALL_IDS = PAGE1_IDS + GETRECORDS


@pytest.fixture
def server():
    with ReplayServer() as srv:
        yield srv


def http(tmp_path) -> PoliteHttp:
    return PoliteHttp(contact_email="t@example.org", lock_dir=tmp_path / "rl", interval=0.0, timeout=5,
                      retry=RetryPolicy(max_retries=3, base_s=0.01, cap_s=0.02), sleep=lambda s: None)


def arxiv(server, tmp_path) -> ArxivSource:
    return ArxivSource(http(tmp_path), server.url + "/oai", "https://arxiv.example")


def papers(engine) -> dict[str, Paper]:
    with session_scope(engine) as s:
        return {p.external_id: p for p in s.scalars(select(Paper)).all()}


def fetch_queue(engine) -> list[str]:
    with session_scope(engine) as s:
        return sorted(s.scalars(select(StageRun.entity_id).where(StageRun.stage == "fetch")).all())


def test_three_pages_harvest_every_record_once(engine, server, tmp_path):
    keys = serve_arxiv(server)
    summary = harvest_window(engine, arxiv(server, tmp_path), START, END, set_spec="physics:hep-ex")
    assert (summary.status, summary.pages, summary.records, summary.new_papers) == ("done", 3, 9, 9)
    got = papers(engine)
    assert sorted(got) == sorted(ALL_IDS)
    assert got["1601.03238"].licence == "cc-by" and got["1706.05371"].licence == "arxiv-nonexclusive"
    assert got["1401.2122"].discipline == "Mathematics"
    assert got["1706.05371"].source_urls["files"][0]["url"] == "https://arxiv.example/e-print/1706.05371"
    assert len(fetch_queue(engine)) == 9
    with session_scope(engine) as s:
        cur = s.scalars(select(HarvestCursor)).one()
        assert (cur.status, cur.pages_done, cur.records_seen, cur.resumption_token) == ("done", 3, 9, None)
        assert cur.completed_at is not None
    assert [server.count(keys[p]) for p in ("p1", "p2", "p3")] == [1, 1, 1]


def test_completed_window_is_not_harvested_again_unless_forced(engine, server, tmp_path):
    serve_arxiv(server)
    src = arxiv(server, tmp_path)
    harvest_window(engine, src, START, END, set_spec="physics:hep-ex")
    hits = len(server.hits)
    assert harvest_window(engine, src, START, END, set_spec="physics:hep-ex").status == "skipped"
    assert len(server.hits) == hits
    again = harvest_window(engine, src, START, END, set_spec="physics:hep-ex", force=True)
    assert again.status == "done" and again.new_papers == 0 and len(server.hits) == hits + 3
    assert len(papers(engine)) == 9 and len(fetch_queue(engine)) == 9


def test_503_with_retry_after_and_truncated_page_still_harvest_everything(engine, server, tmp_path):
    keys = serve_arxiv(server)
    server.fault(keys["p1"], Fault.status_code(503, retry_after=1))
    server.fault(keys["p2"], Fault.truncate())
    summary = harvest_window(engine, arxiv(server, tmp_path), START, END, set_spec="physics:hep-ex")
    assert summary.records == 9 and sorted(papers(engine)) == sorted(ALL_IDS)
    assert server.count(keys["p1"]) == 2 and server.count(keys["p2"]) == 2


class Crash(Exception):
    pass


def test_crash_mid_window_resumes_without_duplicates_or_gaps(engine, server, tmp_path):
    keys = serve_arxiv(server)
    server.fault(keys["p3"], Fault.status_code(500), Fault.status_code(500), Fault.status_code(500),
                 Fault.status_code(500))
    src = arxiv(server, tmp_path)
    with pytest.raises(Exception):
        harvest_window(engine, src, START, END, set_spec="physics:hep-ex")
    with session_scope(engine) as s:
        cur = s.scalars(select(HarvestCursor)).one()
        assert (cur.status, cur.pages_done, cur.resumption_token) == ("running", 2, "tok-3")
    assert len(papers(engine)) == 6
    summary = harvest_window(engine, src, START, END, set_spec="physics:hep-ex")
    assert summary.status == "done" and summary.pages == 1 and summary.records == 3
    assert sorted(papers(engine)) == sorted(ALL_IDS)
    assert server.count(keys["p1"]) == 1 and server.count(keys["p2"]) == 1  # resumed at page 3
    assert len(fetch_queue(engine)) == 9
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Paper)) == 9


def test_bad_resumption_token_restarts_the_window(engine, server, tmp_path):
    keys = serve_arxiv(server)
    bad = (b'<?xml version="1.0"?><OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><responseDate>x</responseDate>'
           b'<request verb="ListRecords">x</request><error code="badResumptionToken">expired</error></OAI-PMH>')
    server.fault(keys["p2"], Fault.replace(bad))
    summary = harvest_window(engine, arxiv(server, tmp_path), START, END, set_spec="physics:hep-ex")
    assert summary.restarts == 1 and summary.status == "done"
    assert server.count(keys["p1"]) == 2
    assert sorted(papers(engine)) == sorted(ALL_IDS)


def test_same_record_in_two_windows_is_one_row_updated(engine, server, tmp_path):
    serve_arxiv(server)
    src = arxiv(server, tmp_path)
    harvest_window(engine, src, START, END, set_spec="physics:hep-ex")
    with session_scope(engine) as s:
        s.execute(Paper.__table__.update().where(Paper.external_id == "1706.05371")
                  .values(title="stale", source_updated_at=dt.datetime(2017, 1, 1)))
        run = s.scalars(select(StageRun).where(StageRun.stage == "fetch")).first()
        mark_finished(s, run.id)
    # The next day's window lists the same (real) first page again.
    params = {"verb": "ListRecords", "metadataPrefix": "arXiv", "from": "2026-11-03", "until": "2026-11-03",
              "set": "physics:hep-ex"}
    from tests.servers.fixtures_http import LIST_PAGE
    server.add("/oai", LIST_PAGE.read_bytes(), params=params)
    day = dt.date(2026, 11, 3)
    summary = harvest_window(engine, src, day, day, set_spec="physics:hep-ex")
    assert summary.records == 3 and summary.new_papers == 0
    got = papers(engine)
    assert len(got) == 9
    assert got["1706.05371"].title.startswith("Evaluation of Silicon Photomultipliers")
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(HarvestCursor)) == 2
        statuses = {r.entity_id: r.status for r in s.scalars(select(StageRun).where(StageRun.stage == "fetch"))}
    assert statuses[str(got["1706.05371"].id)] == "pending"  # changed upstream: fetched again


def test_limit_stops_after_a_page_and_the_next_run_continues(engine, server, tmp_path):
    keys = serve_arxiv(server)
    src = arxiv(server, tmp_path)
    first = harvest_window(engine, src, START, END, set_spec="physics:hep-ex", limit=2)
    assert first.status == "partial" and first.records == 3
    second = harvest_window(engine, src, START, END, set_spec="physics:hep-ex")
    assert second.status == "done" and second.records == 6
    assert server.count(keys["p1"]) == 1


def test_licence_exclusions_are_recorded_not_dropped(engine, server, tmp_path):
    serve_arxiv(server)
    strict = LicencePolicy(process=frozenset({"cc-by"}))
    summary = harvest_window(engine, arxiv(server, tmp_path), START, END, set_spec="physics:hep-ex", policy=strict)
    got = papers(engine)
    assert len(got) == 9
    assert got["1601.03238"].excluded_reason is None
    assert got["1706.05371"].excluded_reason == "licence: arxiv-nonexclusive not in the process allow-list"
    assert fetch_queue(engine) == [str(got["1601.03238"].id)]
    assert summary.excluded == 8


def test_pmc_window_resolves_versions_licences_retractions_and_absences(engine, server, tmp_path):
    keys = serve_pmc(server)
    src = PmcSource(http(tmp_path), server.url + "/bucket", oai_url=server.url + "/pmc-oai/")
    summary = harvest_window(engine, src, START, END)
    assert (summary.status, summary.pages, summary.records) == ("done", 2, 4)
    got = papers(engine)
    assert sorted(got) == ["PMC1000001", "PMC1000002", "PMC1000003", "PMC1000004"]
    a = got["PMC1000001"]
    assert (a.version, a.licence, a.doi, a.retracted) == ("2", "cc-by", "10.1371/journal.pone.0000010", False)
    roles = [(f["role"], f["name"]) for f in a.source_urls["files"]]
    assert roles == [("jats", "PMC1000001.2.xml"), ("pdf", "PMC1000001.2.pdf"), ("media", "pone.0000010.g001.png"),
                     ("media", "pone.0000010.g002.png"), ("media", "pone.0000010.g003.png")]  # no supplement
    assert a.source_urls["files"][0]["url"] == server.url + "/bucket/PMC1000001.2/PMC1000001.2.xml"
    assert got["PMC1000002"].licence == "cc-by-nc-nd" and got["PMC1000002"].excluded_reason is None
    assert got["PMC1000003"].retracted and got["PMC1000003"].excluded_reason.startswith("retracted")
    assert "not in the PMC Article Datasets" in got["PMC1000004"].excluded_reason
    assert fetch_queue(engine) == sorted([str(a.id), str(got["PMC1000002"].id)])
    assert server.count(keys["PMC1000001.2"]) == 1


def test_cli_registers_commands():
    import argparse

    from figalign.cli.harvest import add_commands

    ap = argparse.ArgumentParser()
    add_commands(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["harvest", "arxiv", "--from", "2026-11-01", "--until", "2026-11-02", "--set", "cs",
                          "--limit", "5", "--force", "--overlap-days", "0"])
    assert (args.source, args.from_, args.until, args.set, args.limit, args.force, args.overlap_days) == (
        "arxiv", START, END, ["cs"], 5, True, 0)
    assert ap.parse_args(["fetch", "--limit", "3"]).limit == 3
