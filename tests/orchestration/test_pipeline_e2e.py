"""The whole pipeline under Airflow: harvest → process → recaption → score → export.

Every DAG runs with ``dag.test()`` in a subprocess with its own AIRFLOW_HOME, against a
fresh Postgres store and local stand-ins, no network:

* arXiv OAI-PMH: the replay server serves one daily window (2026-11-01) as two pages of
  real recorded records (the recorded ListRecords page, then two recorded GetRecord
  records), and the file URLs of those records:
  - 1706.05371: a real arXiv e-print (``../shared/corpus/latex/1708.00137.tar.gz``) → LaTeX parser
  - 1601.03238 (CC BY): a PDF with recorded GROBID TEI (``grobid_tei/0046d83a``) → TEI + crops
  - 1706.09418: the committed ACL PDF (recorded TEI without coordinates) → figures, no images
  - 1707.00874: the committed PLoS Biology PDF, for which GROBID has no TEI → 500 → parse fails
  - 1401.2122: no files at all (404) → fetch fails
  The e-print and the second TEI come from ``../shared/corpus``: the test skips without it.
* GROBID: ``tests/servers/grobid_server.py`` (recorded TEI by PDF sha256; one 503 first).
* vLLM: ``tests/servers/openai_server.py``. Models for score: tiny BERT / open_clip built here.

A second run of every DAG over the same window must change nothing and ask no server again.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from figalign.store.db import make_engine, session_scope
from figalign.store.migrate import upgrade
from figalign.store.models import (
    Artifact,
    Caption,
    CitationContextRow,
    Export,
    FigureRow,
    HarvestCursor,
    Metric,
    Paper,
    PaperFile,
    StageRun,
)
from tests.conftest import FIXTURES, require_corpus
from tests.orchestration.airflow_runner import airflow_env, migrate_home, run_dags, states
from tests.servers.fixtures_http import first_page_with_token, list_page, real_records
from tests.servers.grobid_server import GrobidStandIn, sha256
from tests.servers.oai_days import NO_RECORDS
from tests.servers.openai_server import OpenAIServer
from tests.servers.replay import ReplayServer

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAY = "2026-11-01"
OVERLAP = ("2026-10-30", "2026-10-31")
WINDOW = {"verb": "ListRecords", "metadataPrefix": "arXiv", "from": DAY, "until": DAY}
ACL_PDF = FIXTURES / "papers" / "2020.acl-main.207.pdf"
PBIO_PDF = FIXTURES / "papers" / "pbio.0020317.pdf"
TABLES = (Paper, PaperFile, Artifact, FigureRow, CitationContextRow, Caption, Metric, StageRun, HarvestCursor)
DAG_IDS = ["figalign_harvest_arxiv", "figalign_process", "figalign_recaption", "figalign_score", "figalign_export"]


def serve_window(server: ReplayServer, eprint: Path, tei_pdf: Path) -> dict[str, str]:
    """One OAI day in two pages of real records, plus each record's files (see module doc);
    the two days before it (the re-listed overlap) have no records."""
    for day in OVERLAP:
        server.add("/oai", NO_RECORDS, params={**WINDOW, "from": day, "until": day})
    keys = {"p1": server.add("/oai", first_page_with_token("e2e-2"), params=WINDOW),
            "p2": server.add("/oai", list_page([real_records("1601.03238"), real_records("1401.2122")], None),
                             params={"verb": "ListRecords", "resumptionToken": "e2e-2"})}
    server.add("/e-print/1706.05371", eprint.read_bytes())
    server.add("/pdf/1706.05371", ACL_PDF.read_bytes())
    server.add("/pdf/1601.03238", tei_pdf.read_bytes())
    server.add("/pdf/1706.09418", ACL_PDF.read_bytes())
    server.add("/pdf/1707.00874", PBIO_PDF.read_bytes())
    return keys


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from tests.metrics.tiny_models import tiny_model_settings

    paths = tiny_model_settings(tmp_path_factory.mktemp("models"))
    return {f"FIGALIGN_{field.upper()}": value for field, value in paths.items()}


def snapshot(engine) -> dict:
    """Row counts of every pipeline table, and each stage run's (status, attempts, Airflow run)."""
    with session_scope(engine) as s:
        counts = {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in TABLES}
        runs = {r.id: (r.stage, r.entity_id, r.status, r.attempts, r.run_id, r.finished_at)
                for r in s.scalars(select(StageRun))}
    return {"counts": counts, "stage_runs": runs}


def specs(out_dir: Path) -> list[dict]:
    # a manual run's data interval is the day before its logical date: [DAY, DAY + 1)
    return [{"dag_id": "figalign_harvest_arxiv", "logical_date": "2026-11-02T00:00:00"},
            {"dag_id": "figalign_process"}, {"dag_id": "figalign_recaption"}, {"dag_id": "figalign_score"},
            {"dag_id": "figalign_export", "conf": {"format": "all", "out": str(out_dir)}}]


def test_min_interval_env_lowers_only_when_set(monkeypatch, tmp_path):
    from figalign.clients.http import DEFAULT_INTERVAL_S, PoliteHttp, min_interval_from_env
    from figalign.config import load_settings
    from figalign.errors import ConfigError

    settings = load_settings({"FIGALIGN_DATA_DIR": str(tmp_path)})
    monkeypatch.delenv("FIGALIGN_HTTP_MIN_INTERVAL_S", raising=False)
    assert PoliteHttp.from_settings(settings).limiter.interval == DEFAULT_INTERVAL_S == 3.0
    monkeypatch.setenv("FIGALIGN_HTTP_MIN_INTERVAL_S", "0.25")
    assert PoliteHttp.from_settings(settings).limiter.interval == 0.25
    assert PoliteHttp.from_settings(settings, interval=5.0).limiter.interval == 5.0
    for bad in ("-1", "soon"):
        with pytest.raises(ConfigError):
            min_interval_from_env({"FIGALIGN_HTTP_MIN_INTERVAL_S": bad})


def test_full_pipeline_under_airflow_then_a_second_run_is_a_noop(pg_url, tmp_path, tiny_models):
    eprint = require_corpus("latex", "1708.00137.tar.gz")
    tei_pdf = require_corpus("grobid_tei", "0046d83a.pdf")
    upgrade(pg_url)
    engine = make_engine(pg_url)
    home = migrate_home(tmp_path / "airflow_home")
    with ReplayServer() as arxiv, GrobidStandIn(busy_first=1) as grobid, OpenAIServer() as vllm:
        keys = serve_window(arxiv, eprint, tei_pdf)
        env = airflow_env(home, pg_url, tmp_path / "data", {
            "FIGALIGN_ARXIV_OAI_URL": arxiv.url + "/oai", "FIGALIGN_ARXIV_BASE_URL": arxiv.url,
            "FIGALIGN_GROBID_URL": grobid.url, "FIGALIGN_VLLM_BASE_URL": vllm.base_url,
            "FIGALIGN_VLLM_MODEL": vllm.state.model, **tiny_models})
        first = run_dags(env, specs(tmp_path / "export1"))
        assert states(first) == [(d, "success") for d in DAG_IDS], json.dumps(first)[-3000:]
        after_first = snapshot(engine)
        traffic = (len(arxiv.hits), list(grobid.uploads), len(vllm.state.requests))
        check_store(engine, first)
        assert [arxiv.count(keys[p]) for p in ("p1", "p2")] == [1, 1]
        # three PDFs went to GROBID once each (the e-print paper needs none); the first upload got
        # the 503 and was sent again, honouring Retry-After
        assert grobid.uploads[0] == grobid.uploads[1] and len(grobid.uploads) == 4
        assert sorted(grobid.uploads[1:]) == sorted(sha256(p.read_bytes()) for p in (tei_pdf, ACL_PDF, PBIO_PDF))
        assert vllm.state.shape_errors == []
        check_export(engine, tmp_path / "export1", first[-1])

        second = run_dags(env, specs(tmp_path / "export2"))
        assert states(second) == [(d, "success") for d in DAG_IDS], json.dumps(second)[-3000:]
        assert snapshot(engine) == after_first  # no new rows, no stage run touched
        # no work repeated: the closed day is skipped, only the two overlap days are listed again
        assert (len(arxiv.hits) - 2, list(grobid.uploads), len(vllm.state.requests)) == traffic
        harvest = second[0]["tasks"][0]["xcom"]["windows"]
        assert [(w["window"][0], w["status"]) for w in harvest] == [
            ("2026-10-30", "done"), ("2026-10-31", "done"), (DAY, "skipped")]
        assert {f["format"]: f["samples"] for f in second[-1]["tasks"][0]["xcom"]["formats"]} == {
            "s1mmalign": 0, "webdataset": 0, "parquet": 0}
    engine.dispose()


def check_store(engine, result: list[dict]) -> None:
    """Papers, figures, contexts, recaptions, metrics and stage runs after the first pass."""
    run_ids = {r["dag_id"]: r["run_id"] for r in result}
    with session_scope(engine) as s:
        papers = {p.external_id: p for p in s.scalars(select(Paper))}
        assert sorted(papers) == ["1401.2122", "1601.03238", "1706.05371", "1706.09418", "1707.00874"]
        figures = s.scalars(select(FigureRow)).all()
        by_paper = {}
        for f in figures:
            by_paper.setdefault(papers_by_id(papers)[f.paper_id], []).append(f)
        assert {k: len(v) for k, v in by_paper.items()} == {"1706.05371": 3, "1601.03238": 4, "1706.09418": 5}
        assert all(f.image_artifact_id for f in by_paper["1706.05371"] + by_paper["1601.03238"])
        assert not any(f.image_artifact_id for f in by_paper["1706.09418"])  # TEI without coordinates
        assert s.scalar(select(func.count()).select_from(CitationContextRow)) >= 5
        runs = s.scalars(select(StageRun)).all()
        assert {r.status for r in runs} <= {"done", "skipped", "failed"}, [(r.stage, r.status) for r in runs]
        failed = {(r.stage, papers_by_id(papers)[int(r.entity_id)]) for r in runs if r.status == "failed"}
        assert failed == {("fetch", "1401.2122"), ("parse", "1707.00874")}, failed
        reasons = {r.stage: r.reason or r.error_message for r in runs if r.status == "failed"}
        assert "404" in reasons["fetch"] and "500" in reasons["parse"]
        for r in runs:
            dag = {"fetch": "figalign_process", "parse": "figalign_process", "filter": "figalign_process",
                   "recaption": "figalign_recaption", "score": "figalign_score"}[r.stage]
            task = r.stage if r.lane == "default" else f"{r.stage}_{r.lane}"  # parse_grobid: calls GROBID
            assert (r.dag_id, r.run_id, r.task_id, r.try_number) == (dag, run_ids[dag], task, 1), r.id
        # the PDF-only papers (GROBID configured) took the grobid lane; the e-print did not
        assert {papers_by_id(papers)[int(r.entity_id)] for r in runs if r.lane == "grobid"} == {
            "1601.03238", "1706.09418", "1707.00874"}
        assert sorted({r.stage for r in runs}) == ["fetch", "filter", "parse", "recaption", "score"]
        assert sum(r.stage == "fetch" for r in runs) == 5 and sum(r.stage == "parse" for r in runs) == 4
        kept_with_image = [f.id for f in figures if f.image_artifact_id and f.filter_reason is None
                           and f.duplicate_of_id is None]
        assert kept_with_image
        recaps = s.scalars(select(Caption).where(Caption.kind == "recaption")).all()
        assert sorted(c.figure_id for c in recaps) == sorted(kept_with_image)
        assert all(c.status == "accepted" and c.model == "test-vlm" and c.text for c in recaps)
        metrics = s.scalars(select(Metric)).all()
        assert {m.metric for m in metrics} == {"pppl", "clip_cosine", "clip_cosine_sentmean", "clip_cosine_gain",
                                               "clip_cosine_sentmean_gain"}
        scored = {(m.caption_id, m.metric) for m in metrics}
        assert len(scored) == len(metrics)  # one row per (caption, metric)
        assert all((c.id, "pppl") in scored and (c.id, "clip_cosine") in scored for c in recaps)
        assert all((c.id, "clip_cosine_gain") in scored for c in recaps)  # one recaption each: it is the best
        cursors = {c.window_start.date().isoformat(): c for c in s.scalars(select(HarvestCursor))}
        assert sorted(cursors) == [*OVERLAP, DAY]
        assert (cursors[DAY].status, cursors[DAY].pages_done, cursors[DAY].records_seen) == ("done", 2, 5)


def papers_by_id(papers: dict) -> dict[int, str]:
    return {p.id: ext for ext, p in papers.items()}


def check_export(engine, out_dir: Path, export_run: dict) -> None:
    """The WebDataset export loads with `webdataset` and `datasets`; only CC BY figures are in it."""
    import webdataset as wds

    formats = {f["format"]: f for f in export_run["tasks"][0]["xcom"]["formats"]}
    with session_scope(engine) as s:
        cc_by = s.scalar(select(Paper.id).where(Paper.external_id == "1601.03238"))
        expected = set(s.scalars(select(FigureRow.id).where(
            FigureRow.paper_id == cc_by, FigureRow.filter_reason.is_(None), FigureRow.duplicate_of_id.is_(None),
            FigureRow.image_artifact_id.is_not(None))))
        assert s.scalar(select(func.count()).select_from(Export)) == 3
    assert expected and {f["samples"] for f in formats.values()} == {len(expected)}
    urls = sorted(glob.glob(str(out_dir / "webdataset" / "data" / "*.tar")))
    seen = {json.loads(sample["json"])["figure_id"] for sample in wds.WebDataset(urls, shardshuffle=False,
                                                                                   empty_check=False)}
    assert seen == expected
    cache = str(out_dir.parent / "hf-cache")  # inside the test's tmp_path
    os.environ.update(HF_DATASETS_OFFLINE="1")
    import datasets

    ds = datasets.load_dataset(str(out_dir / "webdataset"), split="train", cache_dir=cache)
    assert {row["json"]["figure_id"] for row in ds} == expected
    assert (out_dir / "webdataset" / "README.md").is_file()
