"""The local source: ingest a folder of papers a user already has.

Each entry of the folder is one paper: a PDF, an arXiv e-print (tar/tar.gz/gz/zip), a JATS
XML file (its figure files are the images in the same folder whose names its
``<graphic>`` elements use), or a sub-folder holding any of those. Files are stored as
content-addressed artifacts and each paper is queued for parsing.

The folder may also be an fsspec URL (``s3://bucket/papers``): ``mirrored`` copies it into
a local temp folder for the scan and the papers keep the URL as their origin. A *local*
folder is read on whichever worker runs the task, so on a cluster it must be a mount every
worker shares (or use a URL).
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from figalign import location
from figalign.errors import BadInputError, ConfigError
from figalign.parsers.registry import default_paper_id, detect_kind
from figalign.storage import ArtifactStore, record_artifact
from figalign.store.models import Paper, PaperFile
from figalign.store.queue import enqueue
from figalign.store.upsert import upsert

log = logging.getLogger(__name__)
ROLE_BY_KIND = {"pdf": "pdf", "jats": "jats", "latex": "eprint", "tei": "tei"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp", ".eps"}


@dataclass
class LocalPaper:
    external_id: str
    files: list[tuple[str, Path]] = field(default_factory=list)
    skipped_reason: str | None = None
    name: str = ""  # the folder entry's own name, as the user knows it


def _jats_media(xml: Path) -> list[Path]:
    """Image files beside a JATS XML that its graphics reference.

    Hrefs name files in many ways ("pone.0000010.g001", "g001.tif",
    "info:doi/10.1371/journal.pone.0038869.g001"), so a file belongs to the article when its
    name stem appears inside one of the hrefs.
    """
    text = xml.read_text("utf-8", "replace")
    refs = [h.lower() for h in re.findall(r'xlink:href="([^"]+)"', text)]
    return sorted(p for p in xml.parent.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and any(p.stem.lower() in ref for ref in refs))


def _entry(path: Path) -> LocalPaper:
    paper = LocalPaper(default_paper_id(path))
    try:
        kind = detect_kind(path)
    except BadInputError as exc:
        paper.skipped_reason = str(exc)
        return paper
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.is_file()]
        for f in files:
            if f.suffix.lower() in (".xml", ".nxml", ".pdf") or f.name.endswith((".tar.gz", ".tgz")):
                paper.files.extend(_entry(f).files)
        if not paper.files:
            paper.skipped_reason = "folder holds no PDF, JATS XML or e-print"
        return paper
    paper.files.append((ROLE_BY_KIND[kind], path))
    if kind == "jats":
        paper.files.extend(("media", m) for m in _jats_media(path))
    return paper


def scan(folder: Path) -> Iterator[LocalPaper]:
    """Papers in a folder: top-level files and sub-folders, in name order.

    A PDF beside a JATS XML of the same stem belongs to that XML's paper; images are
    only ever media of a JATS paper, never papers of their own.
    """
    folder = Path(folder)
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    stems_with_xml = {p.name.split(".xml")[0].split(".nxml")[0] for p in entries if p.suffix in (".xml", ".nxml")}
    for path in entries:
        if path.is_file() and (path.suffix.lower() in IMAGE_SUFFIXES or
                               (path.suffix == ".pdf" and path.stem in stems_with_xml)):
            continue
        paper = _entry(path)
        paper.name = path.name
        if path.suffix in (".xml", ".nxml") and (path.with_suffix(".pdf")).exists():
            paper.files.append(("pdf", path.with_suffix(".pdf")))
        yield paper


@contextlib.contextmanager
def mirrored(url: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[Path]:
    """A local copy of the folder at ``url`` (every file below it), removed afterwards."""
    fs, root = location.filesystem(url, storage_options)
    if not fs.isdir(root):
        raise ConfigError(f"local source folder does not exist: {url}")
    tmp = Path(tempfile.mkdtemp(prefix="figalign-ingest-"))
    try:
        root = root.rstrip("/")
        for remote in sorted(fs.find(root)):
            rel = posixpath.relpath(remote, root)
            if rel.startswith("..") or any(part.startswith(".") for part in rel.split("/")):
                continue
            target = tmp.joinpath(*rel.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(target))
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _origin(folder: Path, path: Path, origin: str | None) -> str:
    """Where a file came from: its ``file://`` URI, or its URL under the ingested URL."""
    if origin is None:
        return path.resolve().as_uri()
    return location.join(origin, path.relative_to(folder).as_posix())


def ingest(session: Session, store: ArtifactStore, folder: Path, *, limit: int | None = None,
           skipped: list[tuple[str, str]] | None = None, licence: str | None = None,
           origin: str | None = None) -> list[int]:
    """Store each paper of ``folder`` and queue it for parsing; return paper ids.

    Entries that are not papers (a README, an empty folder) are appended to ``skipped``
    with the reason instead of stopping the ingest. ``licence`` is the user's statement of
    the papers' licence (a URL or code such as "CC BY"); without it a paper's licence comes
    from its own JATS metadata when the parser finds one, and stays unknown otherwise
    (which keeps it out of exports under the default policy, with that reason recorded).
    ``origin`` is the URL ``folder`` is a copy of (``mirrored``): recorded instead of paths.
    """
    from figalign.sources.licences import normalise

    licence_id = normalise(licence)
    ids: list[int] = []
    for local in scan(folder):
        if limit is not None and len(ids) >= limit:
            break
        if local.skipped_reason:
            log.warning("local source: skipping %s: %s", local.external_id, local.skipped_reason)
            if skipped is not None:
                skipped.append((local.external_id, local.skipped_reason))
            record_ingest(session, local.name, "skipped", f"refused at ingest: {local.skipped_reason}")
            continue
        values = dict(source="local", external_id=local.external_id, version="",
                      source_urls={"folder": origin or str(Path(folder).resolve())})
        if licence_id:
            values.update(licence=licence_id, licence_url=licence)
        paper_id = upsert(session, Paper, values, ("source", "external_id", "version"),
                          update=[k for k in values if k in ("source_urls", "licence", "licence_url")])
        for role, path in local.files:
            obj = store.put_file(path)
            origin_url = _origin(Path(folder), path, origin)
            artifact_id = record_artifact(session, obj, origin_url=origin_url)
            upsert(session, PaperFile, dict(paper_id=paper_id, role=role, name=path.name, artifact_id=artifact_id,
                                            origin_url=origin_url), ("paper_id", "role", "name"))
        ids.append(paper_id)
        record_ingest(session, local.name, "done", None, paper_id=paper_id)
    enqueue(session, "parse", "paper", [str(i) for i in ids])
    return ids


def record_ingest(session: Session, name: str, status: str, reason: str | None, **output) -> None:
    """One ``ingest`` stage row per folder entry (keyed by its name): what became of it.

    A refused entry (empty, unknown kind, no paper in a folder) is thus on record, counted
    by ``figalign status`` and listed in the explorer's stage view, like any stage's items.
    """
    from figalign.store.models import StageRun, utcnow
    from figalign.store.text import clean

    now = utcnow()
    upsert(session, StageRun, dict(stage="ingest", entity_type="file", entity_id=clean(name)[0][:256], status=status,
                                   attempts=1, max_attempts=1, reason=reason, output=output, started_at=now,
                                   finished_at=now, lease_owner=None, lease_token=None, lease_expires_at=None),
           ("stage", "entity_type", "entity_id"))
