"""The local source: a folder of papers becomes stored artifacts queued for parsing."""

from __future__ import annotations

import shutil

from sqlalchemy import func, select

from figalign.sources.local import ingest, scan
from figalign.storage import ArtifactStore
from figalign.store.db import session_scope
from figalign.store.models import Artifact, Paper, PaperFile, StageRun
from tests.conftest import FIXTURES

PAPERS = FIXTURES / "papers"


def test_scan_groups_a_jats_package_with_its_pdf_and_images():
    found = {p.external_id: p for p in scan(PAPERS)}
    assert set(found) == {"pone.0000010", "pbio.0020317", "2020.acl-main.207", "README.md"}
    assert found["README.md"].skipped_reason  # not a paper: recorded, not fatal
    roles = sorted((role, path.name) for role, path in found["pone.0000010"].files)
    assert roles == [("jats", "pone.0000010.xml"), ("media", "pone.0000010.g001.png"),
                     ("media", "pone.0000010.g002.png"), ("media", "pone.0000010.g003.png"),
                     ("pdf", "pone.0000010.pdf")]


def test_ingest_twice_stores_each_file_once_and_queues_each_paper_once(sqlite_engine, tmp_path):
    store = ArtifactStore(tmp_path / "data")
    skipped: list = []
    for _ in range(2):
        with session_scope(sqlite_engine) as s:
            ids = ingest(s, store, PAPERS, skipped=skipped)
    assert len(ids) == 3 and [name for name, _ in skipped] == ["README.md", "README.md"]
    with session_scope(sqlite_engine) as s:
        assert s.scalar(select(func.count()).select_from(Paper)) == 3
        assert s.scalar(select(func.count()).select_from(PaperFile)) == 7
        assert s.scalar(select(func.count()).select_from(Artifact)) == 7
        assert s.scalar(select(func.count()).select_from(StageRun).where(StageRun.stage == "parse")) == 3
    stored = list((tmp_path / "data" / "objects").rglob("*.*"))
    assert len(stored) == 7


def test_identical_bytes_under_two_names_are_stored_once(sqlite_engine, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(PAPERS / "pbio.0020317.pdf", folder / "a.pdf")
    shutil.copy(PAPERS / "pbio.0020317.pdf", folder / "b.pdf")
    with session_scope(sqlite_engine) as s:
        assert len(ingest(s, ArtifactStore(tmp_path / "data"), folder)) == 2
    with session_scope(sqlite_engine) as s:
        assert s.scalar(select(func.count()).select_from(Artifact)) == 1


def test_a_stated_licence_is_normalised_and_stored(sqlite_engine, tmp_path):
    with session_scope(sqlite_engine) as s:
        ingest(s, ArtifactStore(tmp_path / "data"), PAPERS, licence="CC BY")
    with session_scope(sqlite_engine) as s:
        assert {p.licence for p in s.scalars(select(Paper))} == {"cc-by"}


def test_jats_media_are_matched_inside_doi_style_hrefs(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text('<article xmlns:xlink="http://www.w3.org/1999/xlink"><body><fig><graphic '
                   'xlink:href="info:doi/10.1371/journal.pone.0038869.g001"/></fig></body></article>')
    (tmp_path / "pone.0038869.g001.tif").write_bytes(b"II*\x00")
    (tmp_path / "unrelated.png").write_bytes(b"\x89PNG")
    (paper,) = list(scan(tmp_path))
    assert sorted(p.name for _, p in paper.files) == ["a.xml", "pone.0038869.g001.tif"]
