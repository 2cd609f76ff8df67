"""The parse stage: a fetched paper's files → figures, captions and contexts in the store.

Which parser runs depends on what the paper has, best first: JATS XML (publisher
structure, exact captions), the LaTeX e-print (the authors' own captions and images),
GROBID TEI with the PDF (when a GROBID server is configured or a TEI is stored), and
finally the PyMuPDF-only PDF path, which needs no server.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from figalign.config import Settings, load_settings
from figalign.errors import BadInputError, PermanentError
from figalign.parsers.options import ParseOptions
from figalign.parsers.registry import parse_path
from figalign.stages.base import Outcome, Stage
from figalign.storage import ArtifactStore
from figalign.store.models import Artifact, Paper, PaperFile
from figalign.store.papers import save_parsed
from figalign.store.queue import Claimed, enqueue, requeue

PREFERENCE = ("jats", "eprint", "tei", "pdf")


def _safe_name(name: str, fallback: str) -> str:
    """A file name with no directory parts, so stored names cannot escape the work dir."""
    base = Path(name or "").name
    return base if base not in ("", ".", "..") else fallback


def materialise(session: Session, store: ArtifactStore, paper_id: int, workdir: Path) -> dict[str, Path]:
    """Copy a paper's files into ``workdir`` under their original names; map role -> path.

    JATS packages reference figure files by name, so media files are laid out beside the
    XML exactly as the publisher's package had them.
    """
    rows = session.execute(
        select(PaperFile.role, PaperFile.name, Artifact.storage_uri, Artifact.sha256)
        .join(Artifact, Artifact.id == PaperFile.artifact_id)
        .where(PaperFile.paper_id == paper_id)
    ).all()
    paths: dict[str, Path] = {}
    for role, name, uri, sha in rows:
        target = workdir / _safe_name(name, f"{role}-{sha[:12]}")
        target.write_bytes(store.read_bytes(uri))
        if role != "media":
            paths.setdefault(role, target)
    return paths


def grobid_tei(session: Session, store: ArtifactStore, paper: Paper, pdf: Path, settings: Settings) -> Path:
    """Ask GROBID for the PDF's TEI, keep it as the paper's ``tei`` file, return its path.

    Storing the TEI means a re-parse (new parser version) never calls GROBID again.
    """
    from figalign.clients.grobid import GrobidClient, GrobidConfig
    from figalign.storage import record_artifact
    from figalign.store.upsert import upsert

    tei = GrobidClient(GrobidConfig(url=settings.grobid_url)).process_fulltext(pdf, name=pdf.name)
    obj = store.put_bytes(tei.encode("utf-8"), media_type="application/tei+xml", ext=".tei.xml")
    artifact_id = record_artifact(session, obj, origin_url=f"{settings.grobid_url}/api/processFulltextDocument")
    upsert(session, PaperFile, dict(paper_id=paper.id, role="tei", name=pdf.stem + ".tei.xml",
                                    artifact_id=artifact_id), ("paper_id", "role", "name"))
    out = pdf.with_name(pdf.stem + ".tei.xml")
    out.write_text(tei, encoding="utf-8")
    return out


def choose_input(paths: dict[str, Path], settings: Settings) -> tuple[str, Path, Path | None]:
    """Pick (parser kind, input, pdf) from the files a paper has."""
    if "jats" in paths:
        return "jats", paths["jats"], None
    if "eprint" in paths:  # the arXiv PDF, when fetched, gives LaTeX figures their typeset crop
        return "auto", paths["eprint"], paths.get("pdf")
    if "tei" in paths:
        return "tei", paths["tei"], paths.get("pdf")
    if "pdf" in paths:
        return ("grobid" if settings.grobid_url else "pdf"), paths["pdf"], None
    raise PermanentError(f"paper has no parsable file (roles: {sorted(paths) or 'none'})")


class ParseStage(Stage):
    name = "parse"
    entity_type = "paper"

    def __init__(self, settings: Settings | None = None, options: ParseOptions | None = None):
        self.settings = settings or load_settings()
        self.options = options or ParseOptions()
        self.store = ArtifactStore(self.settings.data_dir)

    def process(self, session: Session, item: Claimed) -> Outcome:
        paper = session.get(Paper, int(item.entity_id))
        if paper is None:
            raise PermanentError(f"paper {item.entity_id} is not in the store")
        workdir = Path(tempfile.mkdtemp(prefix="figalign-parse-"))
        try:
            paths = materialise(session, self.store, paper.id, workdir)
            kind, path, pdf = choose_input(paths, self.settings)
            if kind == "grobid":
                kind, pdf, path = "tei", path, grobid_tei(session, self.store, paper, path, self.settings)
            parsed = parse_path(path, kind=kind, out_dir=workdir / "out", pdf=pdf,
                                paper_id=f"{paper.source}:{paper.external_id}", options=self.options)
            ids = save_parsed(session, self.store, paper, parsed)
        except BadInputError as exc:
            raise PermanentError(f"bad input: {exc}") from exc
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        # new figures are queued; figures a re-parse updated go through filtering again
        enqueue(session, "filter", "figure", [str(i) for i in ids])
        requeue(session, "filter", "figure", [str(i) for i in ids])
        with_images = sum(1 for f in parsed.figures if f.image)
        return Outcome.done(parser=parsed.parser, figures=len(ids), images=with_images,
                            contexts=sum(len(f.contexts) for f in parsed.figures),
                            warnings=parsed.warnings[:5])
