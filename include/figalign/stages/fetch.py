"""The ``fetch`` stage: download a harvested paper's files into content-addressed storage.

Input is a ``papers`` row whose ``source_urls`` the harvest filled in (arXiv: e-print and
PDF; PMC: JATS XML, PDF and figure images, each with its md5). Every file goes through the
polite client (per-host rate limit, retries, checksum and size checks) into the artifact
store, and gets a ``paper_files`` row. When all files are in, the paper is queued for
``parse``. A permanent error on any file (a 404 among many) fails the paper with that
reason; the other papers of the batch are unaffected. Files already stored for the paper
are not downloaded again when the item is retried.

A paper listed again with a newer ``updated`` date (a new arXiv version: arXiv keeps one
row per paper) is fetched again: each ``paper_files`` row remembers the listing it was
downloaded for, files of an older listing are downloaded anew, and when any file's
content changed the paper is queued for ``parse`` again, which replaces its figures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from figalign.clients.http import HttpStatusError, PoliteHttp
from figalign.sources.record import FileRef, files_from_source_urls
from figalign.stages.base import Outcome, Stage
from figalign.storage import ArtifactStore, guess_media_type, record_artifact
from figalign.store.models import Paper, PaperFile, StageRun
from figalign.store.queue import Claimed, enqueue, requeue
from figalign.store.upsert import upsert

log = logging.getLogger(__name__)

ROLE_EXT = {"eprint": ".tar.gz", "pdf": ".pdf", "jats": ".xml"}


class FetchStage(Stage):
    """Downloads files of papers queued by the harvest; queues ``parse`` when done.

    ``arxiv_pdf`` chooses whether arXiv PDFs are always fetched (``always``: the PDF and
    GROBID paths need them too) or only when the e-print is unavailable (``fallback``:
    half the requests to arxiv.org).
    """

    name = "fetch"
    entity_type = "paper"
    max_attempts = 4

    def __init__(self, http: PoliteHttp, store: ArtifactStore, *, arxiv_pdf: str = "always"):
        if arxiv_pdf not in ("always", "fallback"):
            raise ValueError("arxiv_pdf must be 'always' or 'fallback'")
        self.http = http
        self.store = store
        self.arxiv_pdf = arxiv_pdf

    def discover(self, session: Session) -> Iterable[str]:
        """Allowed papers with files to fetch but no fetch row (e.g. harvested before a crash).

        Local papers arrive with their files already stored, so they never need fetching.
        """
        queued = select(StageRun.entity_id).where(StageRun.stage == self.name, StageRun.entity_type == self.entity_type)
        rows = session.execute(select(Paper.id).where(Paper.excluded_reason.is_(None), Paper.source != "local")
                               .limit(10000)).scalars()
        already = set(session.execute(queued).scalars())
        return [str(pid) for pid in rows if str(pid) not in already]

    def process(self, session: Session, item: Claimed) -> Outcome:
        paper = session.get(Paper, int(item.entity_id))
        if paper is None:
            return Outcome.skipped("paper row no longer exists")
        if paper.excluded_reason:
            return Outcome.skipped(f"excluded: {paper.excluded_reason}")
        refs = files_from_source_urls(paper.source_urls)
        if not refs:
            return Outcome.skipped("source listed no files to fetch")
        before = {(r, n): (a, fetched_for) for r, n, a, fetched_for in session.execute(
            select(PaperFile.role, PaperFile.name, PaperFile.artifact_id, PaperFile.source_updated_at)
            .where(PaperFile.paper_id == paper.id)).all()}
        have = {key for key, (_, fetched_for) in before.items() if _current(fetched_for, paper.source_updated_at)}
        outdated = len(before) - len(have)  # files of an older listing: a new version
        fetched, total = self._fetch_all(session, paper, refs, have)
        changed = self._changed(session, paper.id, before)
        if not enqueue(session, "parse", "paper", [str(paper.id)]) and changed:
            requeue(session, "parse", "paper", [str(paper.id)])
        return Outcome.done(files=len(refs), downloaded=fetched, bytes=total, changed=changed,
                            new_version=outdated > 0)

    @staticmethod
    def _changed(session: Session, paper_id: int, before: dict) -> int:
        """Files whose content is new since the previous fetch (new and dropped files included)."""
        after = session.execute(select(PaperFile.role, PaperFile.name, PaperFile.artifact_id)
                                .where(PaperFile.paper_id == paper_id)).all()
        dropped = before.keys() - {(r, n) for r, n, _ in after}
        return sum(1 for r, n, a in after if before.get((r, n), (None,))[0] != a) + len(dropped)

    def _fetch_all(self, session: Session, paper: Paper, refs: list[FileRef], have: set) -> tuple[int, int]:
        fetched = total = 0
        for ref in refs:
            if ref.role == "pdf" and paper.source == "arxiv" and self.arxiv_pdf == "fallback" \
                    and any(r == "eprint" for r, _ in have):
                continue
            if (ref.role, ref.name) in have:
                continue
            try:
                total += self._fetch_one(session, paper, ref)
            except HttpStatusError as exc:
                if ref.role == "eprint" and exc.status == 404 and paper.source == "arxiv":
                    log.info("arXiv %s has no e-print source (PDF-only submission)", paper.external_id)
                    # an older version's e-print must not be parsed as this version's
                    session.execute(delete(PaperFile).where(PaperFile.paper_id == paper.id,
                                                            PaperFile.role == ref.role, PaperFile.name == ref.name))
                    continue
                raise
            have.add((ref.role, ref.name))
            fetched += 1
        return fetched, total

    def _fetch_one(self, session: Session, paper: Paper, ref: FileRef) -> int:
        got = self.http.download(ref.url, md5=ref.md5)
        try:
            media_type = _media_type(ref, got.content_type)
            obj = self.store.put_file(_named(got.path, ref), media_type=media_type)
        finally:
            for p in (got.path, _named(got.path, ref)):
                Path(p).unlink(missing_ok=True)
        artifact_id = record_artifact(session, obj, origin_url=ref.url)
        upsert(session, PaperFile, dict(paper_id=paper.id, role=ref.role, name=ref.name, artifact_id=artifact_id,
                                        origin_url=ref.url, source_updated_at=paper.source_updated_at),
               key=("paper_id", "role", "name"))
        return obj.size


def _current(fetched_for, listed) -> bool:
    """Whether a file fetched for listing ``fetched_for`` belongs to the paper as listed now.

    A paper without an update date never goes stale. Files fetched before listings were
    recorded (``None``) are fetched again once the paper has one: fetch only runs again
    when the harvest saw the listing change, or to retry a failed fetch.
    """
    if listed is None or fetched_for == listed:
        return True
    return fetched_for is not None and fetched_for > listed


def _named(tmp: Path, ref: FileRef) -> Path:
    """The temp file renamed to carry the right extension (the store keys files by it)."""
    ext = ROLE_EXT.get(ref.role) or ("." + ref.name.rsplit(".", 1)[-1] if "." in ref.name else "")
    target = tmp.with_name(tmp.name + ext)
    if tmp.exists():
        tmp.rename(target)
    return target


def _media_type(ref: FileRef, served: str | None) -> str | None:
    guessed = guess_media_type(ref.name + ROLE_EXT.get(ref.role, ""))
    if ref.role == "eprint":
        return "application/gzip"
    return guessed or (served.split(";")[0].strip() if served else None)
