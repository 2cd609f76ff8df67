"""bioRxiv / medRxiv harvesting against the replay server (constructed fixtures, documented shape).

The fixtures in tests/fixtures/biorxiv are built to the API's documented response shape,
not recorded (see their README). Paging, licences, disciplines, faults, crash + resume and
re-listings go through the real harvest stage and store.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from figalign.clients.http import PoliteHttp, RetryPolicy
from figalign.errors import ConfigError, PermanentError, TransientError
from figalign.sources import biorxiv
from figalign.sources.disciplines import DISCIPLINES, preprint_discipline
from figalign.stages.harvest import harvest_window
from figalign.store.db import session_scope
from figalign.store.models import HarvestCursor, Paper, StageRun
from tests.conftest import FIXTURES
from tests.servers.replay import Fault, ReplayServer
from tests.queue_helpers import mark_finished

DIR = FIXTURES / "biorxiv"
DAY1, DAY2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
A = "10.1101/2026.10.28.600101"
NO_LICENCE = "10.1101/2026.10.29.600102"


@pytest.fixture
def server():
    with ReplayServer() as srv:
        yield srv


def serve(server: ReplayServer) -> dict[str, str]:
    """Every fixture at its API path: /details/{server}/{from}/{until}/{cursor}."""
    keys = {}
    for path in sorted(DIR.glob("details_*.json")):
        _, srv, start, end, cursor = path.stem.split("_")
        keys[f"{srv}/{start}/{cursor}"] = server.add(f"/details/{srv}/{start}/{end}/{cursor}", path.read_bytes())
    return keys


def http(tmp_path) -> PoliteHttp:
    return PoliteHttp(contact_email="t@example.org", lock_dir=tmp_path / "rl", interval=0.0, timeout=5,
                      retry=RetryPolicy(max_retries=3, base_s=0.01, cap_s=0.02), sleep=lambda s: None)


def source(server, tmp_path, name: str = "biorxiv") -> biorxiv.BiorxivSource:
    return biorxiv.BiorxivSource(http(tmp_path), name, api_url=server.url, content_url=server.url)


def rows(engine, src: str = "biorxiv") -> dict[tuple[str, str], Paper]:
    with session_scope(engine) as s:
        return {(p.external_id, p.version): p for p in s.scalars(select(Paper).filter_by(source=src)).all()}


def fetch_queue(engine) -> list[str]:
    with session_scope(engine) as s:
        return sorted(s.scalars(select(StageRun.entity_id).where(StageRun.stage == "fetch")).all())


def page_json(name: str) -> bytes:
    return (DIR / name).read_bytes()


# ---------------------------------------------------------------- parsing


def test_details_page_reads_numbers_or_strings_and_steps_by_records_returned():
    page = biorxiv.parse_details(page_json("details_biorxiv_2026-11-01_2026-11-01_3.json"), cursor=3)
    assert (page.cursor, page.total, len(page.items)) == (3, 7, 3)  # cursor "3", total "7" are strings
    assert page.next_cursor() == 6
    last = biorxiv.parse_details(page_json("details_biorxiv_2026-11-01_2026-11-01_6.json"), cursor=6)
    assert last.next_cursor() is None


def test_no_posts_found_is_an_empty_window_and_other_statuses_are_permanent():
    empty = biorxiv.parse_details(page_json("details_medrxiv_2026-11-02_2026-11-02_0.json"), cursor=0)
    assert empty.items == [] and empty.next_cursor() is None
    with pytest.raises(PermanentError, match="Server not recognized"):
        biorxiv.parse_details(b'{"messages":[{"status":"Server not recognized"}],"collection":[]}', cursor=0)
    with pytest.raises(PermanentError, match="no messages"):
        biorxiv.parse_details(b'{"collection":[]}', cursor=0)
    with pytest.raises(TransientError, match="unreadable"):
        biorxiv.parse_details(page_json("details_biorxiv_2026-11-01_2026-11-01_0.json")[:200], cursor=0)


def test_entry_becomes_a_versioned_record_with_licence_discipline_and_files():
    item = json.loads(page_json("details_biorxiv_2026-11-01_2026-11-01_0.json"))["collection"][0]
    rec = biorxiv.to_record(item, "biorxiv", "https://www.biorxiv.org")
    assert (rec.source, rec.external_id, rec.version, rec.doi) == ("biorxiv", A, "1", A)
    assert rec.authors == ["Okafor, C.", "Lindqvist, M.", "Tanaka, H."]
    assert (rec.licence, rec.categories, rec.discipline) == ("cc-by", ["neuroscience"], "Biology")
    assert rec.published_at == rec.updated_at == dt.datetime(2026, 11, 1)
    assert [(f.role, f.name, f.url) for f in rec.files] == [
        ("pdf", "2026.10.28.600101v1.full.pdf", f"https://www.biorxiv.org/content/{A}v1.full.pdf"),
        ("jats-text", "2026.10.28.600101v1.source.xml",
         "https://www.biorxiv.org/content/early/2026/11/01/2026.10.28.600101.source.xml")]
    assert rec.extra["license_code"] == "cc_by" and rec.extra["published_doi"] is None  # "NA"


def test_later_version_without_jats_has_only_a_pdf_and_no_first_posted_date():
    item = json.loads(page_json("details_biorxiv_2026-11-01_2026-11-01_0.json"))["collection"][2]
    rec = biorxiv.to_record(item, "biorxiv", "http://mirror.test")
    assert rec.version == "2" and rec.published_at is None and rec.updated_at == dt.datetime(2026, 11, 1)
    assert [f.role for f in rec.files] == ["pdf"]
    assert rec.files[0].url == "http://mirror.test/content/10.1101/2026.09.14.600103v2.full.pdf"
    assert rec.extra["published_doi"] == "10.1000/example.2026.123"
    assert (rec.licence, rec.discipline) == ("cc-by-nc-nd", "Engineering")


@pytest.mark.parametrize("code,short", [("cc_by", "cc-by"), ("cc_by_nc", "cc-by-nc"), ("cc_by_nd", "cc-by-nd"),
                                        ("cc_by_nc_nd", "cc-by-nc-nd"), ("cc0", "cc0"),
                                        ("cc_no", "all-rights-reserved")])
def test_licence_codes_normalise(code, short):
    from figalign.sources.licences import normalise, policy_for

    assert normalise(code) == short
    excluded = policy_for("biorxiv").process_exclusion(short)
    assert (excluded is not None) == (code == "cc_no")


@pytest.mark.parametrize("server_name,category,disc", [
    ("biorxiv", "neuroscience", "Biology"), ("biorxiv", "cancer biology", "Biology"),
    ("biorxiv", "bioengineering", "Engineering"), ("biorxiv", "Pharmacology_and_Toxicology", "Medicine"),
    ("biorxiv", "epidemiology", "Medicine"), ("biorxiv", "scientific communication and education", "Other"),
    ("biorxiv", "a category added next year", "Biology"), ("medrxiv", "infectious diseases", "Medicine"),
    ("medrxiv", "health informatics", "Medicine"), ("medrxiv", None, "Medicine"), ("other", "x", "Other"),
])
def test_preprint_discipline_table(server_name, category, disc):
    assert preprint_discipline(server_name, category) == disc
    assert disc in DISCIPLINES


def test_unknown_server_sets_and_bad_urls_are_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        biorxiv.BiorxivSource(object(), "arxiv")
    src = biorxiv.BiorxivSource(object(), "medrxiv")
    assert src.name == "medrxiv" and src.content_url == "https://www.medrxiv.org"
    with pytest.raises(ConfigError, match="no sets"):
        next(src.pages(DAY1, DAY1, "neuroscience", None))
    env = {biorxiv.API_URL_ENV: "http://127.0.0.1:9", biorxiv.CONTENT_URL_ENV: "http://mirror.test/{server}"}
    got = biorxiv.source_from_env(object(), "medrxiv", env)
    assert (got.api_url, got.content_url) == ("http://127.0.0.1:9", "http://mirror.test/medrxiv")
    assert biorxiv.source_from_env(object(), "biorxiv", {}).api_url == "https://api.biorxiv.org"
    with pytest.raises(ConfigError):
        biorxiv.source_from_env(object(), "biorxiv", {biorxiv.API_URL_ENV: "ftp://x"})


# ---------------------------------------------------------------- harvest windows


def test_window_pages_by_cursor_and_records_the_cc_no_exclusion(engine, server, tmp_path):
    keys = serve(server)
    summary = harvest_window(engine, source(server, tmp_path), DAY1, DAY1)
    assert (summary.status, summary.pages, summary.records, summary.new_papers, summary.excluded) == (
        "done", 3, 7, 7, 1)
    got = rows(engine)
    assert len(got) == 7
    blocked = got[(NO_LICENCE, "1")]
    assert blocked.licence == "all-rights-reserved"
    assert blocked.excluded_reason == "licence: all-rights-reserved not in the process allow-list"
    assert got[(A, "1")].discipline == "Biology" and got[(A, "1")].licence == "cc-by"
    assert got[("10.1101/2026.10.30.600104", "1")].licence == "cc0"
    assert got[("10.1101/2026.10.30.600104", "1")].discipline == "Medicine"  # epidemiology
    assert got[("10.1101/2026.10.31.600107", "1")].categories == ["paleontology"]
    assert str(blocked.id) not in fetch_queue(engine) and len(fetch_queue(engine)) == 6
    with session_scope(engine) as s:
        cur = s.scalars(select(HarvestCursor)).one()
        assert (cur.source, cur.status, cur.pages_done, cur.records_seen, cur.resumption_token) == (
            "biorxiv", "done", 3, 7, None)
    assert [server.count(keys[f"biorxiv/2026-11-01/{c}"]) for c in (0, 3, 6)] == [1, 1, 1]
    assert all("t@example.org" in h.user_agent for h in server.hits)


def test_503_retry_after_truncated_body_and_cut_json_still_harvest_everything(engine, server, tmp_path):
    keys = serve(server)
    p1, p2, p3 = (keys[f"biorxiv/2026-11-01/{c}"] for c in (0, 3, 6))
    server.fault(p1, Fault.status_code(503, retry_after=1))
    server.fault(p2, Fault.truncate())  # Content-Length promised, half sent: the client retries
    server.fault(p3, Fault.replace(page_json("details_biorxiv_2026-11-01_2026-11-01_6.json")[:90]))  # 200, cut JSON
    summary = harvest_window(engine, source(server, tmp_path), DAY1, DAY1)
    assert summary.status == "done" and summary.records == 7 and len(rows(engine)) == 7
    assert [server.count(k) for k in (p1, p2, p3)] == [2, 2, 2]


def test_503_retry_after_is_honoured(tmp_path, server):
    keys = serve(server)
    slept: list[float] = []
    client = PoliteHttp(lock_dir=tmp_path / "rl", interval=0.0, timeout=5, sleep=slept.append,
                        retry=RetryPolicy(max_retries=2, base_s=0.01, cap_s=0.02))
    server.fault(keys["biorxiv/2026-11-01/0"], Fault.status_code(503, retry_after=7))
    src = biorxiv.BiorxivSource(client, "biorxiv", api_url=server.url)
    records, token = next(src.pages(DAY1, DAY1, "", None))
    assert len(records) == 3 and token == "3"
    assert max(slept) >= 7.0


def test_crash_mid_window_resumes_at_the_saved_cursor_without_duplicates(engine, server, tmp_path):
    keys = serve(server)
    p1, p2, p3 = (keys[f"biorxiv/2026-11-01/{c}"] for c in (0, 3, 6))
    server.fault(p3, *[Fault.status_code(500)] * 4)  # more than the client's retries
    src = source(server, tmp_path)
    with pytest.raises(TransientError):
        harvest_window(engine, src, DAY1, DAY1)
    with session_scope(engine) as s:
        cur = s.scalars(select(HarvestCursor)).one()
        assert (cur.status, cur.pages_done, cur.resumption_token) == ("running", 2, "6")
    assert len(rows(engine)) == 6
    summary = harvest_window(engine, src, DAY1, DAY1)
    assert (summary.status, summary.pages, summary.records) == ("done", 1, 1)
    assert server.count(p1) == 1 and server.count(p2) == 1  # resumed at cursor 6
    assert len(rows(engine)) == 7 and len(fetch_queue(engine)) == 6
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Paper)) == 7
    assert harvest_window(engine, src, DAY1, DAY1).status == "skipped"


def test_unusable_stored_cursor_restarts_the_window(engine, server, tmp_path):
    keys = serve(server)
    src = source(server, tmp_path)
    harvest_window(engine, src, DAY1, DAY1, limit=1)  # stops after page 1, token "3"
    with session_scope(engine) as s:
        s.scalars(select(HarvestCursor)).one().resumption_token = "not-an-offset"
    summary = harvest_window(engine, src, DAY1, DAY1)
    assert summary.restarts == 1 and summary.status == "done"
    assert server.count(keys["biorxiv/2026-11-01/0"]) == 2 and len(rows(engine)) == 7


def test_same_doi_in_two_windows_updates_its_version_row_and_adds_the_new_version(engine, server, tmp_path):
    serve(server)
    src = source(server, tmp_path)
    harvest_window(engine, src, DAY1, DAY1)
    first_id = rows(engine)[(A, "1")].id
    with session_scope(engine) as s:  # the v1 fetch finished before the next day's harvest
        run = s.scalars(select(StageRun).where(StageRun.stage == "fetch", StageRun.entity_id == str(first_id))).one()
        mark_finished(s, run.id)
    summary = harvest_window(engine, src, DAY2, DAY2)
    assert (summary.records, summary.new_papers) == (2, 1)
    got = rows(engine)
    assert len(got) == 8  # 7 + version 2 of A; v1 re-listed is the same row
    v1, v2 = got[(A, "1")], got[(A, "2")]
    assert v1.id == first_id and v1.title.endswith("(corrected title)")
    assert v1.source_updated_at == dt.datetime(2026, 11, 2)
    assert v2.title.endswith("revised") and v2.published_at is None
    assert v2.source_urls["files"][0]["name"] == "2026.10.28.600101v2.full.pdf"
    with session_scope(engine) as s:
        statuses = {r.entity_id: r.status for r in s.scalars(select(StageRun).where(StageRun.stage == "fetch"))}
    assert statuses[str(v1.id)] == "pending"  # changed upstream: fetched again
    assert statuses[str(v2.id)] == "pending"


def test_medrxiv_window_is_medicine_and_an_empty_day_completes(engine, server, tmp_path):
    serve(server)
    src = source(server, tmp_path, "medrxiv")
    summary = harvest_window(engine, src, DAY1, DAY1)
    assert (summary.status, summary.records, summary.excluded) == ("done", 2, 1)
    got = rows(engine, "medrxiv")
    assert {p.discipline for p in got.values()} == {"Medicine"}
    assert got[("10.1101/2026.10.29.26312345", "1")].source_urls["files"][1]["url"] == (
        server.url + "/content/early/2026/11/01/2026.10.29.26312345.source.xml")  # rebased from www.medrxiv.org
    empty = harvest_window(engine, src, DAY2, DAY2)
    assert (empty.status, empty.pages, empty.records) == ("done", 1, 0)
    assert rows(engine, "biorxiv") == {}


# ---------------------------------------------------------------- downstream and entry points


def test_fetch_downloads_pdf_and_jats_and_parse_chooses_the_pdf(engine, server, tmp_path):
    from figalign.config import Settings
    from figalign.stages.base import run_batch
    from figalign.stages.fetch import FetchStage
    from figalign.stages.parse import choose_input
    from figalign.storage import ArtifactStore
    from figalign.store.models import PaperFile

    serve(server)
    server.add(f"/content/{A}v1.full.pdf", b"%PDF-1.5 constructed")
    server.add("/content/early/2026/11/01/2026.10.28.600101.source.xml", b"<article/>")
    src = source(server, tmp_path)
    harvest_window(engine, src, DAY1, DAY1, limit=1)
    paper_id = rows(engine)[(A, "1")].id
    stage = FetchStage(http(tmp_path), ArtifactStore(tmp_path / "data"))
    run_batch(stage, engine, size=10)
    with session_scope(engine) as s:
        roles = sorted(s.scalars(select(PaperFile.role).where(PaperFile.paper_id == paper_id)).all())
    assert roles == ["jats-text", "pdf"]
    paths = {"jats-text": tmp_path / "a.xml", "pdf": tmp_path / "a.pdf"}
    assert choose_input(paths, Settings())[0] == "pdf"


def test_pipeline_and_cli_accept_biorxiv_and_medrxiv(sqlite_engine, sqlite_url, server, tmp_path, monkeypatch):
    import argparse

    from figalign.cli.harvest import add_commands
    from figalign.config import load_settings
    from figalign.pipeline import harvest_window as pipeline_harvest

    serve(server)
    monkeypatch.setenv(biorxiv.API_URL_ENV, server.url)
    monkeypatch.setenv("FIGALIGN_HTTP_MIN_INTERVAL_S", "0")
    monkeypatch.setenv("FIGALIGN_HARVEST_OVERLAP_DAYS", "0")  # the stand-in serves only this day
    settings = load_settings(env={"FIGALIGN_DATA_DIR": str(tmp_path / "data"), "FIGALIGN_DATABASE_URL": sqlite_url})
    out = pipeline_harvest("medrxiv", dt.datetime(2026, 11, 1), dt.datetime(2026, 11, 2), settings=settings)
    assert out["window"] == ["2026-11-01", "2026-11-01"] and out["windows"][0]["records"] == 2
    with pytest.raises(ConfigError):
        pipeline_harvest("biorxiv", dt.datetime(2026, 11, 1), dt.datetime(2026, 11, 2), sets=["cs"], settings=settings)

    ap = argparse.ArgumentParser()
    add_commands(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["harvest", "biorxiv", "--from", "2026-11-01", "--until", "2026-11-02", "--limit", "5",
                          "--force"])
    assert (args.source, args.from_, args.until, args.limit, args.force) == ("biorxiv", DAY1, DAY2, 5, True)
    assert ap.parse_args(["harvest", "medrxiv", "--from", "2026-11-01", "--until", "2026-11-01"]).source == "medrxiv"
    with pytest.raises(SystemExit):
        ap.parse_args(["harvest", "biorxiv", "--from", "2026-11-01", "--until", "2026-11-01", "--set", "x"])
