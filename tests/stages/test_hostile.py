"""Hostile and broken papers beside good ones: ingest → parse → filter, on both backends.

The good papers end done with their figures; every hostile entry ends failed or skipped
with a specific reason; nothing is created outside the data and temp folders; no byte of
a file outside the input reaches any output; each parse child stayed within its memory
budget; and the temp folder holds nothing of figalign's afterwards.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from figalign.config import Settings
from figalign.pipeline import all_reasons, ingest_local
from figalign.stages.base import drain
from figalign.stages.budget import Budget
from figalign.stages.filter import FilterStage
from figalign.stages.parse import ParseStage
from figalign.store.db import session_scope
from figalign.store.models import Artifact, Caption, FigureRow, Paper, StageRun
from tests.hostile_corpus import build
from tests.parsers.test_ghostscript import brightness

pytestmark = pytest.mark.slow
BUDGET = Budget(wall_s=8, memory_mb=1200, tmp_mb=64)


def test_hostile_papers_are_refused_on_record_and_harm_nothing(engine, db_url, tmp_path, monkeypatch):
    tmp = Path(tempfile.gettempdir())  # the secret sits where Ghostscript's -dSAFER alone would allow it
    work = tmp_path / "tmp"  # the run's own temp folder, which must end empty
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    monkeypatch.setenv("TMPDIR", str(work))
    secret = tmp / f"figalign-secret-{uuid.uuid4().hex}.txt"
    secret.write_text("TOPSECRET-" + uuid.uuid4().hex)
    target = tmp / f"figalign-owned-{uuid.uuid4().hex}.txt"
    try:
        expect = build(tmp_path / "in", secret, target)
        settings = Settings(data_dir=tmp_path / "data", database_url=db_url)
        ingest_local(str(tmp_path / "in"), settings=settings)
        drain(ParseStage(settings, budget=BUDGET), engine, size=4)
        drain(FilterStage(settings), engine)
        assert not target.exists()
        assert list(work.iterdir()) == [], "temp folders left behind"
        check_outcomes(engine, expect)
        check_outputs(engine, tmp_path / "data", secret.read_text())
        listed = {(r["stage"], r["reason"]) for r in all_reasons(settings=settings)}
        assert ("ingest", "refused at ingest: empty file: " + str((tmp_path / "in" / "empty.pdf"))) in listed
    finally:
        secret.unlink(missing_ok=True)
        target.unlink(missing_ok=True)


def check_outcomes(engine, expect: dict[str, str]) -> None:
    with session_scope(engine) as s:
        papers = {p.id: p for p in s.scalars(select(Paper))}
        runs = s.scalars(select(StageRun)).all()
    ingest = {r.entity_id: r for r in runs if r.stage == "ingest"}
    parse = {papers[int(r.entity_id)].external_id: r for r in runs if r.stage == "parse"}
    for name in ("pone.0000010", "2020.acl-main.207", "pbio.0020317"):
        assert parse[name].status == "done", (name, parse[name].reason)
        assert parse[name].output["peak_mb"] <= BUDGET.memory_mb
    assert parse["pone.0000010"].output["figures"] >= 3
    for name, fragment in expect.items():
        stem = name.split(".")[0] if not name.endswith(".tar.gz") else name[: -len(".tar.gz")]
        row = parse.get(stem) or ingest[name]
        if not fragment:
            assert row.status == "done", (name, row.reason)
            continue
        assert row.status in ("failed", "skipped"), (name, row.status)
        assert fragment in (row.reason or ""), (name, row.reason)
        assert "figalign-item-" not in row.reason and "figalign-parse-" not in (row.error_message or ""), row.reason


def check_outputs(engine, data_dir: Path, secret_text: str) -> None:
    with session_scope(engine) as s:
        captions = s.scalars(select(Caption.text).where(Caption.kind == "original")).all()
        nasty = sorted(c for c in captions if c and "of cells" in c)
        assert nasty == ["Counts per hour of cells.", "Rates over time (reversed) of cells."]  # controls, bidi gone
        bomb = s.scalars(select(FigureRow).where(FigureRow.figure_key.like("%nasty%"))).one()
        assert bomb.image_artifact_id is None
        drawn = s.scalars(select(FigureRow).join(Paper, Paper.id == FigureRow.paper_id)
                          .where(Paper.external_id == "escape")).one()
        image = s.get(Artifact, drawn.image_artifact_id)
        assert brightness(Path(image.storage_uri)) > 200  # the EPS saw nothing outside its sandbox
    marker = secret_text.encode()
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes(), f"secret leaked into {path}"
