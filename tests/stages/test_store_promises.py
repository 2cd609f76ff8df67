"""Regression tests for the store's promises: fencing, versions, races, isolation, no I/O in
write transactions, renewed leases. Each runs on SQLite and Postgres."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time

import pytest
from sqlalchemy import select, text, update

from figalign.config import Settings
from figalign.dedup import image_hashes
from figalign.filters import FilterPolicy
from figalign.records import Figure, FigureImage, ParsedPaper
from figalign.sources.local import ingest
from figalign.stages.base import LOST, Outcome, Stage, drain, run_batch, run_item
from figalign.stages.fetch import FetchStage
from figalign.stages.filter import FilterStage
from figalign.stages.parse import GROBID_ORIGIN, ParseStage
from figalign.storage import ArtifactStore, record_artifact
from figalign.store.db import make_engine, session_scope
from figalign.store.models import FigureRow, Paper, PaperFile, StageRun
from figalign.store.papers import save_parsed, store_images
from figalign.store.queue import RunContext, claim_batch, enqueue, requeue
from figalign.store.upsert import upsert
from tests.conftest import FIXTURES
from tests.figure_store import FigureStore, synthetic_figure

CAPTION = "Figure 1. Firing rate of the recorded neurons over time."
ACL_PDF = FIXTURES / "tei" / "2020.acl-main.207.pdf"
ACL_TEI = FIXTURES / "tei" / "2020.acl-main.207.tei.xml"


def _run(engine, stage: str, entity: str) -> StageRun:
    with session_scope(engine) as s:
        return s.scalars(select(StageRun).where(StageRun.stage == stage, StageRun.entity_id == entity)).one()


# -- fencing ------------------------------------------------------------------------------

class Writes(Stage):
    """Writes a paper row (its data) in the fenced transaction."""

    name, entity_type = "t", "paper"

    def process(self, session, item) -> Outcome:
        upsert(session, Paper, dict(source="t", external_id=f"{item.entity_id}-{item.token[:6]}", version=""),
               ("source", "external_id", "version"))
        return Outcome.done()


def _papers(engine) -> list[str]:
    with session_scope(engine) as s:
        return sorted(s.scalars(select(Paper.external_id).where(Paper.source == "t")))


def test_a_stale_worker_after_requeue_writes_nothing_and_the_rerun_stands(engine):
    with session_scope(engine) as s:
        enqueue(s, "t", "paper", ["a"])
    with session_scope(engine) as s:
        (stale,) = claim_batch(s, "t", 1, ctx=RunContext("w1"))
    with session_scope(engine) as s:
        requeue(s, "t", "paper", ["a"])  # forced re-run / new version while w1 works
    assert run_item(Writes(), engine, stale)[0] == LOST
    assert _papers(engine) == [] and _run(engine, "t", "a").status == "pending"
    summary = run_batch(Writes(), engine, ctx=RunContext("w2"))
    assert summary.statuses == {"done": 1} and len(_papers(engine)) == 1


def test_a_late_failure_never_overwrites_the_result_of_the_worker_that_took_over(engine):
    with session_scope(engine) as s:
        enqueue(s, "t", "paper", ["a"])
    with session_scope(engine) as s:
        (first,) = claim_batch(s, "t", 1, ctx=RunContext("w1"))
        s.execute(update(StageRun).values(lease_expires_at=dt.datetime(2000, 1, 1)))  # w1 stalls: lease lapses
    assert run_batch(Writes(), engine, ctx=RunContext("w2")).statuses == {"done": 1}

    class Fails(Writes):
        def process(self, session, item):
            raise RuntimeError("late crash")

    assert run_item(Fails(), engine, first)[0] == LOST
    row = _run(engine, "t", "a")
    assert (row.status, row.error_class, row.attempts) == ("done", None, 2)


def test_a_batch_longer_than_its_lease_keeps_it(engine):
    class Slow(Writes):
        lease_seconds = 2  # renewed every second by the batch's LeaseKeeper

        def compute(self, item, loaded):
            time.sleep(1.2)  # three items: 3.6 s, well past the 2 s lease

    with session_scope(engine) as s:
        enqueue(s, "t", "paper", ["a", "b", "c"])
    stolen: list = []

    def thief():
        for _ in range(6):
            time.sleep(0.6)
            with session_scope(engine) as s:
                stolen.extend(claim_batch(s, "t", 3, ctx=RunContext("thief")))

    t = threading.Thread(target=thief)
    t.start()
    summary = run_batch(Slow(), engine, size=3, ctx=RunContext("slow"))
    t.join()
    assert stolen == [] and summary.statuses == {"done": 3}


# -- versions: derived files ----------------------------------------------------------------

def _acl_paper(engine, settings, tmp_path) -> int:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / ACL_PDF.name).write_bytes(ACL_PDF.read_bytes())
    with session_scope(engine) as s:
        (pid,) = ingest(s, ArtifactStore(settings.data_dir), folder)
    return pid


def _add_tei(engine, settings, pid: int, derived_from: int | None, origin: str) -> None:
    store = ArtifactStore(settings.data_dir)
    with session_scope(engine) as s:
        obj = store.put_bytes(ACL_TEI.read_bytes(), media_type="application/tei+xml", ext=".tei.xml")
        upsert(s, PaperFile, dict(paper_id=pid, role="tei", name="2020.acl-main.207.tei.xml",
                                  artifact_id=record_artifact(s, obj), origin_url=origin,
                                  derived_from_artifact_id=derived_from), ("paper_id", "role", "name"))


def _parse_once(engine, settings, pid: int) -> str:
    with session_scope(engine) as s:
        requeue(s, "parse", "paper", [str(pid)])
    assert drain(ParseStage(settings), engine).statuses == {"done": 1}
    with session_scope(engine) as s:
        return s.get(Paper, pid).parser


def test_a_new_versions_pdf_is_never_read_through_an_older_versions_tei(engine, db_url, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url)
    pid = _acl_paper(engine, settings, tmp_path)
    with session_scope(engine) as s:
        pdf_artifact = s.scalars(select(PaperFile.artifact_id).where(PaperFile.paper_id == pid)).one()
        old_pdf = record_artifact(s, ArtifactStore(settings.data_dir).put_bytes(b"%PDF-1.4 older version",
                                                                                 ext=".pdf"))
    grobid = "http://grobid.example" + GROBID_ORIGIN
    _add_tei(engine, settings, pid, derived_from=old_pdf, origin=grobid)  # computed from v1's PDF
    assert _parse_once(engine, settings, pid) == "pdf"
    _add_tei(engine, settings, pid, derived_from=None, origin=grobid)  # stored before derivations were recorded
    assert _parse_once(engine, settings, pid) == "pdf"
    _add_tei(engine, settings, pid, derived_from=pdf_artifact, origin=grobid)  # from the current PDF
    assert _parse_once(engine, settings, pid) == "tei"


def test_grobid_tei_is_bound_to_the_pdf_it_came_from_and_no_transaction_waits_on_it(engine, db_url, tmp_path,
                                                                                   monkeypatch):
    from figalign.clients.grobid import GrobidClient
    from tests.servers.grobid_server import GrobidStandIn

    probe = tmp_path / "probe.txt"  # the call happens in the item's child process: report through a file
    real = GrobidClient.process_fulltext

    def probed(self, *args, **kwargs):
        with open(probe, "a") as fh:
            fh.write(open_write_transactions(db_url) + "\n")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GrobidClient, "process_fulltext", probed)
    with GrobidStandIn() as grobid:
        settings = Settings(data_dir=tmp_path / "data", database_url=db_url, grobid_url=grobid.url)
        pid = _acl_paper(engine, settings, tmp_path)
        assert drain(ParseStage(settings), engine).statuses == {"done": 1}
    assert probe.read_text().splitlines() == ["none"]
    with session_scope(engine) as s:
        rows = {r.role: r for r in s.scalars(select(PaperFile).where(PaperFile.paper_id == pid))}
        assert rows["tei"].derived_from_artifact_id == rows["pdf"].artifact_id
        assert s.get(Paper, pid).parser == "tei"


# -- no network I/O inside a write transaction ------------------------------------------------

def open_write_transactions(db_url: str) -> str:
    """'none' when no other connection holds a write transaction on the store, else what does."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.split("///", 1)[1], timeout=0.3)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.rollback()
            return "none"
        except sqlite3.OperationalError as exc:
            return f"sqlite: {exc}"
        finally:
            conn.close()
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()")).scalar()
        return "none" if n == 0 else f"postgres: {n} connection(s) idle in transaction"
    finally:
        engine.dispose()


def test_fetch_holds_no_transaction_while_downloading(engine, db_url, tmp_path):
    from tests.servers.fixtures_http import serve_pmc
    from tests.servers.replay import ReplayServer
    from tests.stages.test_fetch import harvest_pmc, http

    with ReplayServer() as server:
        serve_pmc(server)
        harvest_pmc(engine, server, tmp_path)
        stage = FetchStage(http(tmp_path), ArtifactStore(tmp_path / "data"))
        seen: list[str] = []
        real = stage.http.download

        def probed(url, **kwargs):
            seen.append(open_write_transactions(db_url))
            return real(url, **kwargs)

        stage.http.download = probed
        assert drain(stage, engine).statuses == {"done": 2}
    assert len(seen) == 7 and set(seen) == {"none"}, seen  # 2 JATS, 2 PDFs, 3 figure images


def test_filter_reads_no_image_inside_a_write_transaction(db_url, tmp_path):
    """On object storage an image read is a GET: the fenced transaction (row locks) must not
    wait on it. Before filter had load/compute/save, every read here was inside one."""
    fs = FigureStore(tmp_path, db_url)
    try:
        image = synthetic_figure(31)
        kept = fs.figure(fs.paper("PMC1"), image, caption=CAPTION)
        dup = fs.figure(fs.paper("PMC2"), image, caption=CAPTION)
        with session_scope(fs.engine) as s:
            enqueue(s, "filter", "figure", [str(kept), str(dup)])
        stage = _filter(fs)
        seen: list[str] = []
        real = stage.store.read_bytes

        def probed(uri):
            seen.append(open_write_transactions(db_url))
            return real(uri)

        stage.store.read_bytes = probed
        assert drain(stage, fs.engine).statuses == {"done": 2}
        assert seen == ["none", "none"]
        with session_scope(fs.engine) as s:
            assert s.get(FigureRow, dup).duplicate_of_id == kept and s.get(FigureRow, kept).filter_reason is None
    finally:
        fs.engine.dispose()


# -- isolation ---------------------------------------------------------------------------------

def test_one_bad_pmc_article_is_recorded_and_its_window_goes_on(engine, tmp_path):
    from figalign.store.models import HarvestCursor
    from tests.servers.fixtures_http import serve_pmc
    from tests.servers.replay import ReplayServer
    from tests.stages.test_fetch import harvest_pmc

    with ReplayServer() as server:
        serve_pmc(server)
        server.add("/bucket/metadata/PMC1000002.1.json", b"{not json")
        harvest_pmc(engine, server, tmp_path)
    with session_scope(engine) as s:
        got = {p.external_id: p for p in s.scalars(select(Paper))}
        assert s.scalars(select(HarvestCursor.status)).all() == ["done"]
    assert got["PMC1000002"].excluded_reason.startswith("pmc: PMC metadata for PMC1000002 is not JSON")
    assert got["PMC1000001"].excluded_reason is None and got["PMC1000001"].version == "2"


# -- duplicates after re-parse, and two filter workers ----------------------------------------------

@pytest.fixture
def fs(tmp_path, db_url):
    store = FigureStore(tmp_path, db_url)
    yield store
    store.engine.dispose()


def _filter(fs: FigureStore, **policy) -> FilterStage:
    return FilterStage(settings=Settings(data_dir=fs.data_dir, database_url=fs.url), policy=FilterPolicy(**policy))


def _parsed(tmp_path, name: str, images: dict[str, bytes]) -> ParsedPaper:
    figures = []
    for i, (fid, data) in enumerate(images.items()):
        path = tmp_path / f"{name}-{fid}.png"
        path.write_bytes(data)
        phash, _ = image_hashes(data)
        figures.append(Figure(id=f"{name}:{fid}", label=f"Figure {i + 1}", kind="figure", caption=CAPTION,
                              ordinal=i, number=str(i + 1), image=FigureImage(str(path), 480, 360, phash)))
    return ParsedPaper(paper_id=name, title="T", abstract=None, parser="test", parser_version="1", figures=figures)


def _save(fs: FigureStore, pid: int, parsed: ParsedPaper) -> list[int]:
    images = store_images(fs.store, parsed)
    with session_scope(fs.engine) as s:
        ids = save_parsed(s, s.get(Paper, pid), parsed, images)
        enqueue(s, "filter", "figure", [str(i) for i in ids])
    return ids


@pytest.mark.parametrize("change", ["removed", "changed"])
def test_reparse_releases_duplicates_of_a_removed_or_changed_figure(fs, tmp_path, change):
    shared = synthetic_figure(11)
    p1, p2 = fs.paper("PMC1"), fs.paper("PMC2")
    (x,) = _save(fs, p1, _parsed(tmp_path, "p1", {"fig1": shared}))
    (y,) = _save(fs, p2, _parsed(tmp_path, "p2", {"fig1": shared}))
    drain(_filter(fs), fs.engine)
    with session_scope(fs.engine) as s:
        assert s.get(FigureRow, y).duplicate_of_id == x
    again = {"fig2": synthetic_figure(12)} if change == "removed" else {"fig1": synthetic_figure(12)}
    _save(fs, p1, _parsed(tmp_path, "p1", again))
    with session_scope(fs.engine) as s:
        fig = s.get(FigureRow, y)
        assert (fig.filter_reason, fig.duplicate_of_id) == (None, None)
    assert _run(fs.engine, "filter", str(y)).status == "pending"
    drain(_filter(fs), fs.engine)
    with session_scope(fs.engine) as s:
        assert s.get(FigureRow, y).filter_reason is None  # kept: its original is gone


def test_two_filter_workers_never_leave_a_duplicate_of_a_dropped_original(fs):
    """Worker A links Y to X while worker B is filtering X out (retracted). Whatever the
    timing, Y must not stay a duplicate of a figure that is not kept."""
    image = synthetic_figure(21)
    x = fs.figure(fs.paper("PMC1", retracted=True), image, caption=CAPTION)
    y = fs.figure(fs.paper("PMC2"), image, caption=CAPTION)
    with session_scope(fs.engine) as s:
        enqueue(s, "filter", "figure", [str(y)])
    with session_scope(fs.engine) as s:
        (item_y,) = claim_batch(s, "filter", 1, ctx=RunContext("A"))
        enqueue(s, "filter", "figure", [str(x)])
    with session_scope(fs.engine) as s:
        (item_x,) = claim_batch(s, "filter", 1, ctx=RunContext("B"))
    a, b = _filter(fs), _filter(fs)
    chose, b_done = threading.Event(), threading.Event()
    real = a._original_of

    def slow_original_of(*args):
        found = real(*args)
        chose.set()
        b_done.wait(2.0)  # give B every chance to commit in between
        return found

    a._original_of = slow_original_of
    worker_a = threading.Thread(target=run_item, args=(a, fs.engine, item_y))
    worker_a.start()
    assert chose.wait(10)
    worker_b = threading.Thread(target=lambda: (run_item(b, fs.engine, item_x), b_done.set()))
    worker_b.start()
    worker_a.join(20)
    worker_b.join(20)
    with session_scope(fs.engine) as s:
        fx, fy = s.get(FigureRow, x), s.get(FigureRow, y)
        assert fx.filter_reason == "retracted"
        assert fy.duplicate_of_id is None, "Y still names a dropped original"
    drain(_filter(fs), fs.engine)
    with session_scope(fs.engine) as s:
        assert s.get(FigureRow, y).filter_reason is None
