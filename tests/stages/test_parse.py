"""The parse stage on real, openly licensed papers: figures, captions, contexts, images."""

from __future__ import annotations

from sqlalchemy import func, select

from figalign.config import load_settings
from figalign.sources.local import ingest
from figalign.stages.base import drain
from figalign.stages.parse import ParseStage
from figalign.storage import ArtifactStore
from figalign.store.db import session_scope
from figalign.store.models import Artifact, Caption, CitationContextRow, FigureRow, Paper, StageRun
from tests.conftest import FIXTURES


def _setup(engine, tmp_path, db_url):
    settings = load_settings({"FIGALIGN_DATA_DIR": str(tmp_path / "data"), "FIGALIGN_DATABASE_URL": db_url})
    with session_scope(engine) as s:
        ingest(s, ArtifactStore(settings.data_dir), FIXTURES / "papers")
    return settings


def test_parse_stage_writes_figures_captions_contexts_and_images(engine, db_url, tmp_path):
    settings = _setup(engine, tmp_path, db_url)
    summary = drain(ParseStage(settings), engine)
    assert summary.statuses["done"] == 3
    with session_scope(engine) as s:
        plos = s.scalars(select(Paper).where(Paper.external_id == "pone.0000010")).one()
        assert plos.parser == "jats" and "Streptococcus" in plos.title
        figs = s.scalars(select(FigureRow).where(FigureRow.paper_id == plos.id).order_by(FigureRow.ordinal)).all()
        assert [f.number for f in figs if f.kind == "figure"] == ["1", "2", "3"]
        fig1 = figs[0]
        prefix = f"{plos.source}:{plos.external_id}{plos.version and 'v' + plos.version.lstrip('v')}:"
        assert fig1.figure_key == prefix + "fig1"  # the paper id once, not repeated from the parser's id
        image = s.get(Artifact, fig1.image_artifact_id)
        assert image.media_type == "image/png" and image.size > 1000 and fig1.width > 100
        caption = s.scalars(select(Caption).where(Caption.figure_id == fig1.id, Caption.kind == "original")).one()
        assert "pharyngitis" in caption.text.lower()
        contexts = s.scalars(select(CitationContextRow).where(CitationContextRow.figure_id == fig1.id)).all()
        assert contexts and all("Figure 1" in c.text or "Fig" in c.text for c in contexts)
        # the PDF-only ACL paper went through the PyMuPDF path
        acl = s.scalars(select(Paper).where(Paper.external_id == "2020.acl-main.207")).one()
        assert acl.parser == "pdf"
        # every parsed figure was queued for filtering
        n_figs = s.scalar(select(func.count()).select_from(FigureRow))
        assert s.scalar(select(func.count()).select_from(StageRun).where(StageRun.stage == "filter")) == n_figs


def test_reparsing_changes_nothing(engine, db_url, tmp_path):
    settings = _setup(engine, tmp_path, db_url)
    drain(ParseStage(settings), engine)

    def snapshot():
        with session_scope(engine) as s:
            return (s.scalar(select(func.count()).select_from(FigureRow)),
                    s.scalar(select(func.count()).select_from(Caption)),
                    s.scalar(select(func.count()).select_from(CitationContextRow)),
                    sorted(s.scalars(select(FigureRow.figure_key))))

    before = snapshot()
    with session_scope(engine) as s:
        s.execute(StageRun.__table__.update().where(StageRun.stage == "parse").values(status="pending", attempts=0))
    assert drain(ParseStage(settings), engine).statuses["done"] == 3
    assert snapshot() == before


def test_a_paper_without_parsable_files_fails_with_a_reason(engine, db_url, tmp_path):
    settings = _setup(engine, tmp_path, db_url)
    with session_scope(engine) as s:
        from figalign.store.queue import enqueue
        from figalign.store.upsert import upsert

        pid = upsert(s, Paper, dict(source="local", external_id="empty", version=""), ("source", "external_id", "version"))
        enqueue(s, "parse", "paper", [str(pid)])
    drain(ParseStage(settings), engine)
    with session_scope(engine) as s:
        row = s.scalars(select(StageRun).where(StageRun.stage == "parse", StageRun.entity_id == str(pid))).one()
        assert row.status == "failed" and row.error_class == "PermanentError" and "no parsable file" in row.error_message
