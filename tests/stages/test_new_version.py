"""A new arXiv version end to end: harvest lists the paper again with a newer ``updated``
date → fetch downloads the new e-print → parse replaces the figures → what was derived
from a changed figure (recaptions, metrics) is dropped and queued again; unchanged
figures keep theirs. The OAI record is arXiv's own (recorded), with only its ``updated``
date moved for the second listing; the e-prints are LaTeX packages built here.
"""

from __future__ import annotations

import datetime as dt
import io
import tarfile

import pytest
from sqlalchemy import select

from figalign.config import load_settings
from figalign.sources.arxiv import ArxivSource
from figalign.stages.base import drain
from figalign.stages.fetch import FetchStage
from figalign.stages.harvest import harvest_window
from figalign.stages.parse import ParseStage
from figalign.storage import ArtifactStore
from figalign.store.db import session_scope
from figalign.store.models import Caption, FigureRow, Metric, PaperFile, StageRun
from figalign.store.queue import enqueue
from figalign.store.upsert import upsert
from tests.figure_store import synthetic_figure
from tests.servers.fixtures_http import list_page, real_records
from tests.servers.replay import ReplayServer
from tests.stages.test_fetch import http
from tests.queue_helpers import mark_finished

ARXIV_ID = "1401.2122"
DAY1, DAY2 = dt.date(2026, 11, 1), dt.date(2026, 11, 3)
A, B = "Figure 1", "Figure 2"
TEX = r"""\documentclass{article}
\usepackage{graphicx}
\begin{document}
\title{Versioned figures}
\maketitle
As Figure~\ref{fig:a} shows, the rate rises. Figure~\ref{fig:b} compares both detectors.
\begin{figure}\centering\includegraphics{rate.png}
\caption{%s}\label{fig:a}\end{figure}
\begin{figure}\centering\includegraphics{detectors.png}
\caption{Efficiency of the two detectors against photon energy.}\label{fig:b}\end{figure}
\end{document}
"""


def eprint(caption_a: str, seed_a: int) -> bytes:
    """A gzipped tar e-print: main.tex and two PNG figures."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in (("main.tex", (TEX % caption_a).encode()), ("rate.png", synthetic_figure(seed_a)),
                           ("detectors.png", synthetic_figure(99))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def listing(server: ReplayServer, day: dt.date, updated: str | None) -> None:
    record = real_records(ARXIV_ID)
    if updated:
        record = record.replace(b"<updated>2017-10-23</updated>", f"<updated>{updated}</updated>".encode())
    params = {"verb": "ListRecords", "metadataPrefix": "arXiv", "from": day.isoformat(), "until": day.isoformat()}
    server.add("/oai", list_page([record], None), params=params)


def figures(engine) -> dict[str, tuple[int, str]]:
    """label ("Figure 1") → (figure id, original caption)."""
    with session_scope(engine) as s:
        rows = s.execute(select(FigureRow.id, FigureRow.label, Caption.text).join(Caption, Caption.figure_id == FigureRow.id)
                         .where(Caption.kind == "original")).all()
    return {label: (fid, text) for fid, label, text in rows}


def derive(engine, fig_ids: list[int]) -> None:
    """What recaption and score would have left: a recaption, metrics, and done stage runs."""
    with session_scope(engine) as s:
        for fid in fig_ids:
            original = s.scalar(select(Caption.id).where(Caption.figure_id == fid, Caption.kind == "original"))
            recap = upsert(s, Caption, dict(figure_id=fid, kind="recaption", model="m", prompt_hash="p",
                                            params_hash="q", text="A recaption.", status="accepted"),
                           ("figure_id", "kind", "model", "prompt_hash", "params_hash"))
            for cid, kind in ((original, "original"), (recap, "recaption")):
                upsert(s, Metric, dict(figure_id=fid, caption_id=cid, caption_kind=kind, metric="clip_cosine",
                                       model="clip", value=0.3), ("caption_id", "metric", "model"))
            for stage, etype, eid in (("recaption", "figure", fid), ("score", "caption", original)):
                enqueue(s, stage, etype, [str(eid)])
                run = s.scalar(select(StageRun.id).where(StageRun.stage == stage, StageRun.entity_id == str(eid)))
                mark_finished(s, run)


def state(engine, stage: str, entity_id: int) -> str:
    with session_scope(engine) as s:
        return s.scalar(select(StageRun.status).where(StageRun.stage == stage, StageRun.entity_id == str(entity_id)))


@pytest.fixture
def server():
    with ReplayServer() as srv:
        yield srv


def test_a_new_arxiv_version_is_fetched_reparsed_and_its_changed_figures_redone(engine, db_url, server, tmp_path):
    settings = load_settings({"FIGALIGN_DATA_DIR": str(tmp_path / "data"), "FIGALIGN_DATABASE_URL": db_url})
    source = ArxivSource(http(tmp_path), server.url + "/oai", server.url)
    fetch = FetchStage(http(tmp_path), ArtifactStore(settings.data_dir), arxiv_pdf="fallback")
    listing(server, DAY1, None)
    server.add(f"/e-print/{ARXIV_ID}", eprint("Event rate against time for the first run.", 1))

    harvest_window(engine, source, DAY1, DAY1)
    assert dict(drain(fetch, engine).statuses) == {"done": 1}
    assert dict(drain(ParseStage(settings), engine).statuses) == {"done": 1}
    v1 = figures(engine)
    assert sorted(v1) == [A, B] and v1[A][1] == "Event rate against time for the first run."
    derive(engine, [v1[A][0], v1[B][0]])

    # version 2: figure 1 has a corrected caption and a new plot; figure 2 is unchanged
    listing(server, DAY2, "2026-11-02")
    server.add(f"/e-print/{ARXIV_ID}", eprint("Event rate against time, corrected for dead time.", 2))
    harvest_window(engine, source, DAY2, DAY2)
    fetched = drain(fetch, engine)
    assert dict(fetched.statuses) == {"done": 1}
    with session_scope(engine) as s:
        run = s.scalars(select(StageRun).where(StageRun.stage == "fetch")).one()
        assert run.output["changed"] == 1 and run.output["new_version"] is True
        file = s.scalars(select(PaperFile).where(PaperFile.role == "eprint")).one()
        assert file.source_updated_at == dt.datetime(2026, 11, 2)
    assert dict(drain(ParseStage(settings), engine).statuses) == {"done": 1}

    v2 = figures(engine)
    assert v2[A] == (v1[A][0], "Event rate against time, corrected for dead time.")  # same row, new content
    assert v2[B] == v1[B]
    with session_scope(engine) as s:
        kept = {fid: s.scalar(select(Caption.id).where(Caption.figure_id == fid, Caption.kind == "recaption"))
                for fid in (v1[A][0], v1[B][0])}
        metrics = {fid: len(s.scalars(select(Metric).where(Metric.figure_id == fid)).all())
                   for fid in (v1[A][0], v1[B][0])}
        originals = {fid: s.scalar(select(Caption.id).where(Caption.figure_id == fid, Caption.kind == "original"))
                     for fid in (v1[A][0], v1[B][0])}
    assert kept[v1[A][0]] is None and kept[v1[B][0]] is not None
    assert metrics == {v1[A][0]: 0, v1[B][0]: 2}
    assert state(engine, "recaption", v1[A][0]) == "pending" and state(engine, "recaption", v1[B][0]) == "done"
    assert state(engine, "score", originals[v1[A][0]]) == "pending"
    assert state(engine, "score", originals[v1[B][0]]) == "done"

    # the same version listed again: nothing is queued, nothing downloaded
    listing(server, DAY2 + dt.timedelta(days=1), "2026-11-02")
    hits = len(server.hits)
    harvest_window(engine, source, DAY2 + dt.timedelta(days=1), DAY2 + dt.timedelta(days=1))
    assert drain(fetch, engine).claimed == 0
    assert [h.key for h in server.hits[hits:] if "e-print" in h.key] == []
    assert sum(1 for h in server.hits if "e-print" in h.key) == 2


def test_a_new_version_without_latex_source_drops_the_old_eprint_and_takes_the_pdf(engine, server, tmp_path):
    """v2 is PDF-only (arXiv answers 404 for its e-print): v1's e-print must not be parsed as v2."""
    from tests.servers.replay import Fault

    fetch = FetchStage(http(tmp_path), ArtifactStore(tmp_path / "data"), arxiv_pdf="fallback")
    source = ArxivSource(http(tmp_path), server.url + "/oai", server.url)
    listing(server, DAY1, None)
    key = server.add(f"/e-print/{ARXIV_ID}", eprint("Event rate against time for the first run.", 1))
    server.add(f"/pdf/{ARXIV_ID}", b"%PDF-1.5 version 2, no source")
    harvest_window(engine, source, DAY1, DAY1)
    drain(fetch, engine)
    listing(server, DAY2, "2026-11-02")
    server.fault(key, Fault.status_code(404))
    harvest_window(engine, source, DAY2, DAY2)
    assert dict(drain(fetch, engine).statuses) == {"done": 1}
    with session_scope(engine) as s:
        roles = s.execute(select(PaperFile.role, PaperFile.source_updated_at)).all()
        run = s.scalars(select(StageRun).where(StageRun.stage == "fetch")).one()
    assert roles == [("pdf", dt.datetime(2026, 11, 2))]
    assert run.output["changed"] == 2  # the e-print dropped, the PDF new
    assert state(engine, "parse", run.entity_id) == "pending"
