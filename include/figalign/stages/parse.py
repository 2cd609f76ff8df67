"""The parse stage: a fetched paper's files → figures, captions and contexts in the store.

Which parser runs depends on what the paper has, best first: JATS XML (publisher
structure, exact captions), the LaTeX e-print (the authors' own captions and images),
GROBID TEI with the PDF (when a GROBID server is configured or a TEI is stored), and
finally the PyMuPDF-only PDF path, which needs no server.

A GROBID TEI is a derived file: it is stored bound to the PDF artifact it was computed
from, and used only while that PDF is the paper's current one, so a new version is never
parsed through an older version's TEI.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from figalign.config import Settings, load_settings
from figalign.errors import BadInputError, PermanentError
from figalign.parsers.options import ParseOptions
from figalign.parsers.registry import parse_path
from figalign.records import ParsedPaper
from figalign.stages.base import Outcome, Stage
from figalign.stages.budget import Budget
from figalign.storage import ArtifactStore, StoredObject, record_artifact
from figalign.store.models import Artifact, Paper, PaperFile
from figalign.store.papers import StoredImage, save_parsed, store_images
from figalign.store.queue import Claimed, enqueue, requeue
from figalign.store.upsert import upsert

PREFERENCE = ("jats", "eprint", "tei", "pdf")


def _safe_name(name: str, fallback: str) -> str:
    """A file name with no directory parts, so stored names cannot escape the work dir."""
    base = Path(name or "").name
    return base if base not in ("", ".", "..") else fallback


GROBID_ORIGIN = "/api/processFulltextDocument"


@dataclass(frozen=True)
class StoredFile:
    """One of a paper's files as the store has it (read in ``load``, copied in ``compute``)."""

    role: str
    name: str
    uri: str
    sha256: str
    artifact_id: int
    origin_url: str | None
    derived_from: int | None


@dataclass
class ParseJob:
    """One paper's parse: its files (load), then the parsed record and stored images (compute)."""

    paper_id: int
    paper_key: str
    files: list[StoredFile]
    parsed: ParsedPaper | None = None
    images: dict[str, StoredImage] = field(default_factory=dict)
    tei: tuple[StoredObject, str, int] | None = None  # a new GROBID TEI: (object, name, pdf artifact id)


def load_files(session: Session, paper_id: int) -> list[StoredFile]:
    return load_files_of(session, [paper_id]).get(paper_id, [])


def load_files_of(session: Session, paper_ids: list[int]) -> dict[int, list[StoredFile]]:
    """The stored files of several papers in one query: paper id → files."""
    rows = session.execute(
        select(PaperFile.paper_id, PaperFile.role, PaperFile.name, Artifact.storage_uri, Artifact.sha256,
               Artifact.id, PaperFile.origin_url, PaperFile.derived_from_artifact_id)
        .join(Artifact, Artifact.id == PaperFile.artifact_id)
        .where(PaperFile.paper_id.in_(paper_ids))
    ).all()
    out: dict[int, list[StoredFile]] = {}
    for paper_id, *row in rows:
        out.setdefault(paper_id, []).append(StoredFile(*row))
    return out


def materialise(store: ArtifactStore, files: list[StoredFile], workdir: Path) -> dict[str, tuple[Path, StoredFile]]:
    """Copy a paper's usable files into ``workdir`` under their original names; map role ->
    (path, the stored file it is).

    JATS packages reference figure files by name, so media files are laid out beside the
    XML exactly as the publisher's package had them. A derived file (GROBID TEI) computed
    from another PDF than the paper's current one — an older version's — is left out.
    """
    pdf_ids = {f.artifact_id for f in files if f.role == "pdf"}
    paths: dict[str, tuple[Path, StoredFile]] = {}
    for f in files:
        if f.role == "tei" and not tei_is_current(f, pdf_ids):
            continue
        target = workdir / _safe_name(f.name, f"{f.role}-{f.sha256[:12]}")
        target.write_bytes(store.read_bytes(f.uri))
        if f.role != "media":
            paths.setdefault(f.role, (target, f))
    return paths


def tei_is_current(tei: StoredFile, pdf_ids: set[int]) -> bool:
    """A TEI belongs to the paper as it is now: computed from its current PDF, or supplied
    with the paper (not by GROBID). GROBID TEIs stored before derivations were recorded
    name no PDF, so they are recomputed rather than trusted."""
    if tei.derived_from is not None:
        return tei.derived_from in pdf_ids
    return not (tei.origin_url or "").endswith(GROBID_ORIGIN)


def grobid_tei(store: ArtifactStore, pdf: Path, settings: Settings) -> tuple[Path, StoredObject]:
    """Ask GROBID for the PDF's TEI (outside any transaction); store its bytes, return its path.

    Storing the TEI means a re-parse (new parser version) never calls GROBID again.
    """
    from figalign.clients.grobid import GrobidClient, GrobidConfig

    tei = GrobidClient(GrobidConfig(url=settings.grobid_url)).process_fulltext(pdf, name=pdf.name)
    obj = store.put_bytes(tei.encode("utf-8"), media_type="application/tei+xml", ext=".tei.xml")
    out = pdf.with_name(pdf.stem + ".tei.xml")
    out.write_text(tei, encoding="utf-8")
    return out, obj


def record_tei(session: Session, paper_id: int, job_tei: tuple[StoredObject, str, int], settings: Settings) -> None:
    """Keep a new GROBID TEI as the paper's ``tei`` file, bound to the PDF it came from."""
    obj, name, pdf_artifact_id = job_tei
    artifact_id = record_artifact(session, obj, origin_url=f"{settings.grobid_url}{GROBID_ORIGIN}")
    upsert(session, PaperFile, dict(paper_id=paper_id, role="tei", name=name, artifact_id=artifact_id,
                                    origin_url=f"{settings.grobid_url}{GROBID_ORIGIN}",
                                    derived_from_artifact_id=pdf_artifact_id), ("paper_id", "role", "name"))


def usable_roles(files: list[StoredFile]) -> set[str]:
    """The roles ``materialise`` would hand to ``choose_input`` (an older version's TEI left out)."""
    pdf_ids = {f.artifact_id for f in files if f.role == "pdf"}
    return {f.role for f in files if f.role != "media" and (f.role != "tei" or tei_is_current(f, pdf_ids))}


def needs_grobid(files: list[StoredFile], settings: Settings) -> bool:
    """Whether parsing these files will call GROBID: ``choose_input`` would pick ``grobid``."""
    roles = usable_roles(files)
    return bool(settings.grobid_url) and "pdf" in roles and not roles & {"jats", "eprint", "tei"}


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
    """Reads files (load), parses and stores images outside any transaction (compute), then
    writes figures, captions and contexts in the fenced transaction (save).

    ``compute`` runs within the item's budget (default 120 s, 2 GB, 1 GB temp disk;
    ``FIGALIGN_PARSE_WALL_S`` / ``_MEMORY_MB`` / ``_TMP_MB``), in a child process.
    """

    name = "parse"
    entity_type = "paper"
    lanes = ("default", "grobid")  # grobid: the paper will call GROBID (pool ``grobid``)

    def __init__(self, settings: Settings | None = None, options: ParseOptions | None = None,
                 budget: Budget | None = None):
        self.settings = settings or load_settings()
        self.budget = budget or Budget.for_stage("parse")
        options = options or ParseOptions()
        # an archive may unpack to half the item's temp disk (it is written twice: gunzip, untar)
        self.options = replace(options, max_archive_bytes=min(options.max_archive_bytes, self.budget.archive_cap()))
        self.store = ArtifactStore.from_settings(self.settings)

    def warm_up(self) -> None:
        """Import every parser (PyMuPDF, lxml, Pillow …) in the worker, once per batch, so each
        item's forked child shares them instead of importing them again: ~40 ms per paper
        (bench/bench_hostile.py, budget overhead)."""
        from figalign.parsers.registry import KINDS, parser_module

        for kind in KINDS:
            parser_module(kind)
        import imagehash  # noqa: F401  (image hashing, used for every figure)
        import PIL.Image  # noqa: F401

    def budget_setup(self) -> None:
        """In the item's child: images larger than the memory budget can decode are refused."""
        from figalign.parsers import images

        images.MAX_PIXELS = min(images.MAX_PIXELS, self.budget.image_pixel_cap())

    def lane_of(self, session: Session, entity_ids: list[str], chunk: int = 500) -> dict[str, str]:
        """``grobid`` for each paper whose parse will call GROBID (``needs_grobid``)."""
        out: dict[str, str] = {}
        ids = [int(i) for i in entity_ids if i.isdigit()]
        for start in range(0, len(ids), chunk):
            for paper_id, files in load_files_of(session, ids[start:start + chunk]).items():
                if needs_grobid(files, self.settings):
                    out[str(paper_id)] = "grobid"
        return out

    def load(self, session: Session, item: Claimed) -> ParseJob:
        paper = session.get(Paper, int(item.entity_id))
        if paper is None:
            raise PermanentError(f"paper {item.entity_id} is not in the store")
        return ParseJob(paper.id, f"{paper.source}:{paper.external_id}", load_files(session, paper.id))

    def compute(self, item: Claimed, job: ParseJob) -> ParseJob:
        workdir = Path(tempfile.mkdtemp(prefix="figalign-parse-"))
        try:
            files = materialise(self.store, job.files, workdir)
            kind, path, pdf = choose_input({role: p for role, (p, _) in files.items()}, self.settings)
            if kind == "grobid":
                kind, pdf = "tei", path
                path, obj = grobid_tei(self.store, pdf, self.settings)
                job.tei = (obj, path.name, files["pdf"][1].artifact_id)
            job.parsed = parse_path(path, kind=kind, out_dir=workdir / "out", pdf=pdf,
                                    paper_id=job.paper_key, options=self.options)
            job.images = store_images(self.store, job.parsed)
        except BadInputError as exc:
            raise PermanentError(f"bad input: {exc}") from exc
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return job

    def save(self, session: Session, item: Claimed, job: ParseJob) -> Outcome:
        paper = session.get(Paper, job.paper_id)
        if paper is None:
            raise PermanentError(f"paper {item.entity_id} is not in the store")
        if job.tei is not None:
            record_tei(session, paper.id, job.tei, self.settings)
        parsed = job.parsed
        ids = save_parsed(session, paper, parsed, job.images)
        # new figures are queued; figures a re-parse updated go through filtering again
        enqueue(session, "filter", "figure", [str(i) for i in ids])
        requeue(session, "filter", "figure", [str(i) for i in ids])
        with_images = sum(1 for f in parsed.figures if f.image)
        return Outcome.done(parser=parsed.parser, figures=len(ids), images=with_images,
                            contexts=sum(len(f.contexts) for f in parsed.figures),
                            warnings=parsed.warnings[:5])
