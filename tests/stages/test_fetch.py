"""The fetch stage: files into content-addressed storage, md5 checks, 404 on one file."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import select

from figalign.clients.http import PoliteHttp, RetryPolicy
from figalign.sources.arxiv import ArxivSource
from figalign.sources.pmc import PmcSource
from figalign.stages.base import drain
from figalign.stages.fetch import FetchStage
from figalign.stages.harvest import harvest_window
from figalign.storage import ArtifactStore
from figalign.store.db import session_scope
from figalign.store.models import Artifact, Paper, PaperFile, StageRun
from tests.servers.fixtures_http import GETRECORDS, fixture_path, serve_arxiv, serve_arxiv_files, serve_pmc
from tests.servers.replay import Fault, ReplayServer

START, END = dt.date(2026, 11, 1), dt.date(2026, 11, 2)


@pytest.fixture
def server():
    with ReplayServer() as srv:
        yield srv


def http(tmp_path) -> PoliteHttp:
    return PoliteHttp(lock_dir=tmp_path / "rl", interval=0.0, timeout=5,
                      retry=RetryPolicy(max_retries=2, base_s=0.01, cap_s=0.02), sleep=lambda s: None)


def runs(engine, stage: str) -> dict[str, StageRun]:
    with session_scope(engine) as s:
        return {r.entity_id: r for r in s.scalars(select(StageRun).where(StageRun.stage == stage))}


def paper_ids(engine) -> dict[str, int]:
    with session_scope(engine) as s:
        return {p.external_id: p.id for p in s.scalars(select(Paper))}


def harvest_pmc(engine, server, tmp_path):
    src = PmcSource(http(tmp_path), server.url + "/bucket", oai_url=server.url + "/pmc-oai/")
    harvest_window(engine, src, START, END)


def test_pmc_fetch_stores_xml_pdf_and_figures_and_queues_parse(engine, server, tmp_path):
    serve_pmc(server)
    harvest_pmc(engine, server, tmp_path)
    store = ArtifactStore(tmp_path / "data")
    summary = drain(FetchStage(http(tmp_path), store), engine, size=10)
    assert dict(summary.statuses) == {"done": 2}
    ids = paper_ids(engine)
    with session_scope(engine) as s:
        files = s.execute(select(PaperFile.role, PaperFile.name, Artifact.sha256, Artifact.storage_uri)
                          .join(Artifact, Artifact.id == PaperFile.artifact_id)
                          .where(PaperFile.paper_id == ids["PMC1000001"])).all()
    assert sorted((r, n) for r, n, _, _ in files) == [
        ("jats", "PMC1000001.2.xml"), ("media", "pone.0000010.g001.png"), ("media", "pone.0000010.g002.png"),
        ("media", "pone.0000010.g003.png"), ("pdf", "PMC1000001.2.pdf")]
    for role, name, sha, uri in files:
        rel = f"PMC1000001.2/{name}"
        assert sha == hashlib.sha256(fixture_path(rel).read_bytes()).hexdigest()
        assert open(uri, "rb").read() == fixture_path(rel).read_bytes()
    assert "pone.0000010.s001.xls" not in {k.rsplit("/", 1)[-1] for k in (h.key for h in server.hits)}
    assert set(runs(engine, "parse")) == {str(ids["PMC1000001"]), str(ids["PMC1000002"])}
    # a second drain does nothing
    before = len(server.hits)
    assert drain(FetchStage(http(tmp_path), store), engine).claimed == 0
    assert len(server.hits) == before


def test_md5_mismatch_is_retried_then_stored(engine, server, tmp_path):
    keys = serve_pmc(server)
    harvest_pmc(engine, server, tmp_path)
    server.fault(keys["PMC1000001.2/pone.0000010.g002.png"], Fault.corrupt())
    summary = drain(FetchStage(http(tmp_path), ArtifactStore(tmp_path / "data")), engine)
    assert dict(summary.statuses) == {"done": 2}
    assert server.count(keys["PMC1000001.2/pone.0000010.g002.png"]) == 2


def test_404_on_one_file_fails_that_paper_permanently_and_others_finish(engine, server, tmp_path):
    keys = serve_pmc(server)
    harvest_pmc(engine, server, tmp_path)
    server.fault(keys["PMC1000001.2/pone.0000010.g003.png"], Fault.status_code(404))
    summary = drain(FetchStage(http(tmp_path), ArtifactStore(tmp_path / "data")), engine)
    ids = paper_ids(engine)
    fetch = runs(engine, "fetch")
    bad, good = fetch[str(ids["PMC1000001"])], fetch[str(ids["PMC1000002"])]
    assert (bad.status, bad.error_class, bad.attempts) == ("failed", "HttpStatusError", 1)
    assert "404" in bad.error_message
    assert good.status == "done"
    assert set(runs(engine, "parse")) == {str(ids["PMC1000002"])}
    assert server.count(keys["PMC1000001.2/pone.0000010.g003.png"]) == 1  # never retried
    with session_scope(engine) as s:  # the failed paper's transaction rolled back
        assert not s.scalars(select(PaperFile).where(PaperFile.paper_id == ids["PMC1000001"])).all()
    assert summary.statuses["failed"] == 1


def test_arxiv_fetch_gets_eprint_and_pdf_from_the_configured_host(engine, server, tmp_path):
    serve_arxiv(server)
    ids = ["1706.05371", "1706.09418", "1707.00874", *GETRECORDS]
    serve_arxiv_files(server, ids)
    harvest_window(engine, ArxivSource(http(tmp_path), server.url + "/oai", server.url), START, END,
                   set_spec="physics:hep-ex")
    summary = drain(FetchStage(http(tmp_path), ArtifactStore(tmp_path / "data")), engine)
    assert dict(summary.statuses) == {"done": 9}
    with session_scope(engine) as s:
        rows = s.execute(select(PaperFile.role, Artifact.media_type, Artifact.storage_uri)
                         .join(Artifact, Artifact.id == PaperFile.artifact_id)).all()
    assert sorted({(r, m) for r, m, _ in rows}) == [("eprint", "application/gzip"), ("pdf", "application/pdf")]
    assert len(rows) == 18 and all(u.endswith((".tar.gz", ".pdf")) for _, _, u in rows)


def test_discover_finds_every_unqueued_paper_however_many_are_queued(engine, tmp_path):
    """discover used to read 10,000 papers (no order) and drop the queued ones: once those
    were queued, the papers after them were never found again."""
    import datetime as _dt

    from sqlalchemy import insert

    now = _dt.datetime(2026, 1, 1)
    papers = [dict(id=i, source="pmc", external_id=f"PMC{i}", version="", title="t", authors=[], categories=[],
                   source_urls={}, retracted=False, created_at=now, updated_at=now) for i in range(1, 10_061)]
    papers += [dict(papers[0], id=20_001, external_id="PMC-local", source="local"),
               dict(papers[0], id=20_002, external_id="PMC-excluded", excluded_reason="licence: not open")]
    queued = [dict(stage="fetch", entity_type="paper", entity_id=str(i), status="done", attempts=1, max_attempts=3,
                   lane="default", output={}, created_at=now, updated_at=now) for i in range(1, 10_001)]
    with session_scope(engine) as s:
        s.execute(insert(Paper), papers)
        s.execute(insert(StageRun), queued)
    with session_scope(engine) as s:
        found = list(FetchStage(http(tmp_path), ArtifactStore(tmp_path / "data")).discover(s))
    assert found == [str(i) for i in range(10_001, 10_061)]
