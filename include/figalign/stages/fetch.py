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

Downloads happen in ``compute``, outside any transaction: the rows are written afterwards,
in the fenced write transaction, so a slow download never holds a lock on the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import String, cast, delete, exists, select
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
        ``NOT EXISTS`` on the queue's natural key (an anti-join in the server, as filter's
        discover): it used to read 10,000 papers in no order and drop the queued ones in
        Python, so once those were queued no later paper was ever found.
        """
        queued = exists().where(StageRun.stage == self.name, StageRun.entity_type == self.entity_type,
                                StageRun.entity_id == cast(Paper.id, String))
        rows = session.execute(select(Paper.id).where(Paper.excluded_reason.is_(None), Paper.source != "local", ~queued)
                               .order_by(Paper.id)).scalars()
        return [str(pid) for pid in rows]

    def load(self, session: Session, item: Claimed) -> "FetchPlan | Outcome":
        """What to download: the paper's listed files not already stored for this listing."""
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
        return FetchPlan(paper.id, paper.source, paper.external_id, paper.source_updated_at, refs, before, have)

    def compute(self, item: Claimed, plan: "FetchPlan | Outcome") -> "FetchPlan | Outcome":
        """Download into the artifact store, outside any transaction (content-addressed, so a
        retry or a lost lease leaves at most an unreferenced copy, never a wrong row)."""
        if isinstance(plan, Outcome):
            return plan
        have = set(plan.have)
        for ref in plan.refs:
            if ref.role == "pdf" and plan.source == "arxiv" and self.arxiv_pdf == "fallback" \
                    and any(r == "eprint" for r, _ in have):
                continue
            if (ref.role, ref.name) in have:
                continue
            try:
                plan.stored.append((ref, self._download(ref)))
            except HttpStatusError as exc:
                if ref.role == "eprint" and exc.status == 404 and plan.source == "arxiv":
                    log.info("arXiv %s has no e-print source (PDF-only submission)", plan.external_id)
                    plan.missing.append(ref)  # an older version's e-print must not be parsed as this one's
                    continue
                raise
            have.add((ref.role, ref.name))
        return plan

    def save(self, session: Session, item: Claimed, plan: "FetchPlan | Outcome") -> Outcome:
        if isinstance(plan, Outcome):
            return plan
        for ref in plan.missing:
            session.execute(delete(PaperFile).where(PaperFile.paper_id == plan.paper_id,
                                                    PaperFile.role == ref.role, PaperFile.name == ref.name))
        for ref, obj in plan.stored:
            artifact_id = record_artifact(session, obj, origin_url=ref.url)
            upsert(session, PaperFile, dict(paper_id=plan.paper_id, role=ref.role, name=ref.name,
                                            artifact_id=artifact_id, origin_url=ref.url,
                                            source_updated_at=plan.listed_at),
                   key=("paper_id", "role", "name"))
        changed = self._changed(session, plan.paper_id, plan.before)
        if not enqueue(session, "parse", "paper", [str(plan.paper_id)]) and changed:
            requeue(session, "parse", "paper", [str(plan.paper_id)])
        return Outcome.done(files=len(plan.refs), downloaded=len(plan.stored),
                            bytes=sum(obj.size for _, obj in plan.stored), changed=changed,
                            new_version=len(plan.before) > len(plan.have))

    @staticmethod
    def _changed(session: Session, paper_id: int, before: dict) -> int:
        """Files whose content is new since the previous fetch (new and dropped files included)."""
        after = session.execute(select(PaperFile.role, PaperFile.name, PaperFile.artifact_id)
                                .where(PaperFile.paper_id == paper_id)).all()
        dropped = before.keys() - {(r, n) for r, n, _ in after}
        return sum(1 for r, n, a in after if before.get((r, n), (None,))[0] != a) + len(dropped)

    def _download(self, ref: FileRef):
        got = self.http.download(ref.url, md5=ref.md5)
        try:
            media_type = _media_type(ref, got.content_type)
            return self.store.put_file(_named(got.path, ref), media_type=media_type)
        finally:
            for p in (got.path, _named(got.path, ref)):
                Path(p).unlink(missing_ok=True)


@dataclass
class FetchPlan:
    """One paper's fetch: what it lists and has (read first), what was stored (computed)."""

    paper_id: int
    source: str
    external_id: str
    listed_at: object  # the paper's source_updated_at when planned: files are stamped with it
    refs: list[FileRef]
    before: dict
    have: set
    stored: list = field(default_factory=list)
    missing: list = field(default_factory=list)


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
