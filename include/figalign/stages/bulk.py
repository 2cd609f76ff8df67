"""Bulk harvesting: arXiv source tars and bioRxiv/medRxiv MECA packages as work items.

Each tar (``bulk_arxiv``, entity ``tar``: its manifest filename) or package
(``bulk_biorxiv``/``bulk_medrxiv``, entity ``meca``: its key) is one ``stage_runs`` item,
claimed with a lease like any stage's item, so two workers never take the same tar, a
killed worker's tar is taken again once its lease lapses, and a tar already done is not
read again. ``plan_*`` puts the selected tars or packages on the queue; ``drain`` (CLI) or
an Airflow task runs them.

``compute`` streams the archive (no transaction open) and puts each usable member into the
content-addressed artifact store — harmless if the item never saves: objects are keyed by
their hash. ``save`` then writes, in the fenced transaction, the papers' ``paper_files``
rows and queues ``parse``; a tar whose md5 does not match the manifest writes nothing and
is retried (transient), and ends failed with that reason once its attempts are used up.
Refused members are listed with their reasons in the item's output.

Joining with the harvests: arXiv papers are keyed by id with an empty version, as the OAI
harvest keys them. A paper the harvest already knows gets the files attached; an unknown
id gets a row excluded with ``AWAITING_METADATA`` (no licence yet, so it is neither fetched
nor parsed), which the OAI harvest replaces with the real metadata and licence decision
when it lists the paper. Bulk files carry the tar's timestamp as the listing they belong
to and the names the HTTP harvest gives them, so the fetch stage counts them as already
downloaded (``stages.fetch``) and only downloads what a newer version changed.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from figalign.errors import BadInputError, PermanentError
from figalign.sources import arxiv_bulk, meca
from figalign.sources.arxiv import file_refs as arxiv_file_refs
from figalign.sources.biorxiv import JATS_ROLE
from figalign.sources.bulk_s3 import BulkLocation, classified
from figalign.sources.licences import LicencePolicy, policy_for
from figalign.stages.base import Outcome, Stage
from figalign.storage import ArtifactStore, StoredObject, record_artifact
from figalign.store.db import session_scope
from figalign.store.models import Paper, PaperFile, StageRun, utcnow
from figalign.store.queue import Claimed, enqueue, requeue, stage_states
from figalign.store.text import clean
from figalign.store.upsert import upsert

log = logging.getLogger(__name__)

AWAITING_METADATA = "awaiting metadata: files came from the bulk source; the OAI harvest supplies licence and metadata"
PAPER_KEY = ("source", "external_id", "version")
TAR_NAME = re.compile(r"^src/arXiv_src_\d{4}_\d{3}\.tar$")
MAX_LISTED_REFUSALS = 50
MEDIA = {"eprint": ("application/gzip", ".tar.gz"), "pdf": ("application/pdf", ".pdf")}


@dataclass
class PlanSummary:
    """What a plan put on the queue, small enough to print or pass through XCom."""

    stage: str
    selected: int = 0
    enqueued: int = 0
    requeued: int = 0
    done_before: int = 0
    refused: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _plan(engine: Engine, stage: Stage, items: dict[str, str | None], summary: PlanSummary, *,
          retry_failed: bool) -> PlanSummary:
    """Queue ``items`` (entity id -> content hash); requeue done ones whose hash changed (a
    replaced tar) and, with ``retry_failed``, failed ones."""
    summary.selected = len(items)
    with session_scope(engine) as session:
        for entity_id, digest in items.items():
            summary.enqueued += enqueue(session, stage.name, stage.entity_type, [entity_id],
                                        max_attempts=stage.max_attempts, input_hash=digest)
        again = []
        for entity_id, status, digest in stage_states(session, stage.name, stage.entity_type, list(items)):
            if status == "done" and items[entity_id] and digest != items[entity_id]:
                again.append(entity_id)
            elif status == "failed" and retry_failed:
                again.append(entity_id)
            elif status in ("done", "skipped"):
                summary.done_before += 1
        summary.requeued = requeue(session, stage.name, stage.entity_type, again)
        for entity_id in again:
            _set_hash(session, stage, entity_id, items[entity_id])
    return summary


def _set_hash(session: Session, stage: Stage, entity_id: str, digest: str | None) -> None:
    session.execute(StageRun.__table__.update()
                    .where(StageRun.stage == stage.name, StageRun.entity_type == stage.entity_type,
                           StageRun.entity_id == entity_id).values(input_hash=digest))


def _attach(session: Session, paper_id: int, role: str, name: str, obj: StoredObject, origin: str,
            stamp: dt.datetime | None) -> bool | None:
    """Record a bulk file as the paper's ``role`` file unless it already has a file as new or
    newer; True when the content changed, False when equal, None when the paper's own was kept."""
    row = session.execute(select(PaperFile.artifact_id, PaperFile.source_updated_at)
                          .where(PaperFile.paper_id == paper_id, PaperFile.role == role,
                                 PaperFile.name == name)).first()
    if row is not None and row.source_updated_at is not None and stamp is not None and row.source_updated_at > stamp:
        return None
    artifact_id = record_artifact(session, obj, origin_url=origin)
    upsert(session, PaperFile, dict(paper_id=paper_id, role=role, name=name, artifact_id=artifact_id,
                                    origin_url=origin, source_updated_at=stamp), key=("paper_id", "role", "name"))
    return row is None or row.artifact_id != artifact_id


def _queue_parse(session: Session, paper_id: int, changed: bool) -> None:
    if not enqueue(session, "parse", "paper", [str(paper_id)]) and changed:
        requeue(session, "parse", "paper", [str(paper_id)])


def _modified(fs_info: dict) -> dt.datetime:
    """An object's modification time as naive UTC (S3 LastModified, a file's mtime)."""
    value = fs_info.get("LastModified") or fs_info.get("mtime") or fs_info.get("created")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC).replace(tzinfo=None)
    return utcnow()


# --- arXiv ---------------------------------------------------------------------------------


@dataclass
class TarJob:
    """One tar: its manifest entry (load), then what was stored and refused (compute)."""

    entry: arxiv_bulk.TarEntry
    stamp: dt.datetime | None = None
    stored: list[tuple[str, str, str, StoredObject]] = field(default_factory=list)  # (id, role, member, object)
    refused: list[arxiv_bulk.Refused] = field(default_factory=list)
    bytes: int = 0


class ArxivBulkStage(Stage):
    """Streams arXiv source tars into the artifact store and attaches e-prints and PDFs."""

    name = "bulk_arxiv"
    entity_type = "tar"
    max_attempts = 3
    lease_seconds = 300  # renewed every quarter while a tar streams

    def __init__(self, location: BulkLocation, store: ArtifactStore, *, arxiv_base_url: str = "https://arxiv.org"):
        self.location = location
        self.store = store
        self.arxiv_base_url = arxiv_base_url
        self._manifest: dict[str, arxiv_bulk.TarEntry] | None = None

    def manifest(self) -> dict[str, arxiv_bulk.TarEntry]:
        """The manifest's entries by filename, read once per stage object."""
        if self._manifest is None:
            entries = arxiv_bulk.parse_manifest(self.location.read_bytes(arxiv_bulk.MANIFEST_KEY))
            self._manifest = {e.filename: e for e in entries}
        return self._manifest

    def load(self, session: Session, item: Claimed) -> TarJob:
        entry = self.manifest().get(item.entity_id)
        if entry is None:
            raise PermanentError(f"{item.entity_id} is no longer in {arxiv_bulk.MANIFEST_KEY}")
        return TarJob(entry)

    def compute(self, item: Claimed, job: TarJob) -> TarJob:
        def keep(member: arxiv_bulk.Member) -> None:
            media_type, ext = MEDIA[member.role]
            job.stored.append((member.arxiv_id, member.role, member.name,
                               self.store.put_bytes(member.data, media_type=media_type, ext=ext)))

        with self.location.open(job.entry.filename, block_size=8 << 20) as fh, classified(job.entry.filename):
            job.stamp = job.entry.timestamp or _modified(fh.fs.info(fh.path))
            job.bytes = arxiv_bulk.read_members(fh, max_member_bytes=self.location.max_member_bytes,
                                                expected_md5=job.entry.md5sum, on_member=keep,
                                                on_refused=job.refused.append)
        for refused in job.refused:
            log.warning("%s: refused member %r: %s", job.entry.filename, refused.name, refused.reason)
        return job

    def save(self, session: Session, item: Claimed, job: TarJob) -> Outcome:
        counts: Counter = Counter()
        for arxiv_id, role, member, obj in job.stored:
            paper_id, excluded = self._paper(session, arxiv_id, job, counts)
            eprint, pdf = arxiv_file_refs(arxiv_id, self.arxiv_base_url)
            name = eprint.name if role == "eprint" else pdf.name
            changed = _attach(session, paper_id, role, name, obj, self.location.uri(f"{job.entry.filename}#{member}"),
                              job.stamp)
            counts["kept_newer" if changed is None else "attached"] += 1
            if not excluded and changed is not None:
                _queue_parse(session, paper_id, bool(changed))
                counts["queued_parse"] += 1
        refusals = {r.name: r.reason for r in job.refused[:MAX_LISTED_REFUSALS]}
        return Outcome.done(members=len(job.stored), refused=len(job.refused), refusals=refusals,
                            bytes=job.bytes, **counts)

    def _paper(self, session: Session, arxiv_id: str, job: TarJob, counts: Counter) -> tuple[int, str | None]:
        key = dict(source="arxiv", external_id=arxiv_id, version="")
        row = session.execute(select(Paper.id, Paper.excluded_reason).filter_by(**key)).first()
        if row is not None:
            counts["known_papers"] += 1
            return row.id, row.excluded_reason
        counts["new_papers"] += 1
        paper_id = upsert(session, Paper, {**key, "excluded_reason": AWAITING_METADATA, "authors": [],
                                           "categories": [], "source_urls": {"files": [],
                                                                             "bulk": job.entry.filename}},
                          key=PAPER_KEY, update=())
        return paper_id, AWAITING_METADATA


def plan_arxiv(engine: Engine, stage: ArxivBulkStage, from_yymm: str, until_yymm: str, *,
               retry_failed: bool = False, limit: int | None = None) -> PlanSummary:
    """Queue the manifest's tars of ``from_yymm`` … ``until_yymm``; a tar name that is not
    arXiv's pattern is refused (it would be a key of our choosing in a paid bucket)."""
    summary = PlanSummary(stage.name)
    chosen = {}
    for entry in arxiv_bulk.select_months(list(stage.manifest().values()), from_yymm, until_yymm):
        if not TAR_NAME.match(entry.filename):
            summary.refused[entry.filename] = "not an arXiv source tar name (src/arXiv_src_YYMM_NNN.tar)"
            continue
        chosen[entry.filename] = entry.md5sum
        if limit is not None and len(chosen) >= limit:
            break
    return _plan(engine, stage, chosen, summary, retry_failed=retry_failed)


# --- bioRxiv / medRxiv -----------------------------------------------------------------------


@dataclass
class MecaJob:
    key: str
    stamp: dt.datetime | None = None
    meta: meca.JatsMeta | None = None
    excluded: str | None = None
    stored: list[tuple[str, str, StoredObject]] = field(default_factory=list)  # (role, name, object)
    refused: list[tuple[str, str]] = field(default_factory=list)


class MecaBulkStage(Stage):
    """Reads MECA packages: the JATS, PDF and figure files of one posted version each."""

    entity_type = "meca"
    max_attempts = 3
    lease_seconds = 300

    def __init__(self, source: str, location: BulkLocation, store: ArtifactStore,
                 policy: LicencePolicy | None = None, *, max_package_bytes: int | None = None):
        if source not in ("biorxiv", "medrxiv"):
            raise ValueError("MECA bulk sources are biorxiv and medrxiv")
        self.source = source
        self.name = f"bulk_{source}"
        self.location = location
        self.store = store
        self.policy = policy or policy_for(source)
        self.max_package_bytes = max_package_bytes or 4 * location.max_member_bytes

    def load(self, session: Session, item: Claimed) -> MecaJob:
        return MecaJob(item.entity_id)

    def compute(self, item: Claimed, job: MecaJob) -> MecaJob:
        with self.location.open(job.key, block_size=4 << 20) as fh, classified(job.key):
            job.stamp = _modified(fh.fs.info(fh.path))
            try:
                zf = zipfile.ZipFile(fh)
            except (zipfile.BadZipFile, zlib.error) as exc:
                raise BadInputError(f"not a zip (MECA) package: {exc}") from exc
            with zf:
                package = meca.read_package(zf, max_member_bytes=self.location.max_member_bytes,
                                            max_total_bytes=self.max_package_bytes)
        job.meta = meca.jats_meta(package.jats.data)
        job.refused = package.refused
        job.excluded = self.policy.process_exclusion(job.meta.licence)
        if job.excluded:  # as the HTTP harvest: an excluded paper keeps its row, its files are not taken
            return job
        stem = f"{job.meta.doi.rsplit('/', 1)[-1]}v{job.meta.version}"
        jats = self.store.put_bytes(package.jats.data, media_type="application/xml", ext=".xml")
        job.stored.append(("jats", package.jats.name, jats))
        job.stored.append((JATS_ROLE, f"{stem}.source.xml", jats))  # what fetch would download as jats-text
        if package.pdf is not None:
            job.stored.append(("pdf", f"{stem}.full.pdf",
                               self.store.put_bytes(package.pdf.data, media_type="application/pdf", ext=".pdf")))
        for f in package.media:
            ext = "." + f.name.rsplit(".", 1)[-1].lower() if "." in f.name else ""
            job.stored.append(("media", f.name, self.store.put_bytes(f.data, media_type=_image_type(ext), ext=ext)))
        return job

    def save(self, session: Session, item: Claimed, job: MecaJob) -> Outcome:
        meta = job.meta
        key = dict(source=self.source, external_id=meta.doi, version=meta.version)
        before = session.execute(select(Paper.id, Paper.excluded_reason, Paper.licence).filter_by(**key)).first()
        values = {**key, "doi": meta.doi, "licence": meta.licence, "licence_url": meta.licence_url,
                  "excluded_reason": job.excluded, "authors": [], "categories": [],
                  "title": clean(meta.title, "title")[0], "source_urls": {"files": [], "bulk": job.key}}
        paper_id = upsert(session, Paper, values, key=PAPER_KEY, update=())
        # the harvest's licence decision stands for a paper it listed; the package's fills a gap
        excluded = before.excluded_reason if before is not None and before.licence else job.excluded
        if before is not None and not before.licence and meta.licence:
            paper = session.get(Paper, paper_id)
            paper.licence, paper.licence_url, paper.excluded_reason = meta.licence, meta.licence_url, job.excluded
        changed = False
        for role, name, obj in job.stored:
            changed |= bool(_attach(session, paper_id, role, name, obj, self.location.uri(f"{job.key}#{name}"),
                                    job.stamp))
        if job.stored and not excluded:
            _queue_parse(session, paper_id, changed)
        refusals = dict(job.refused[:MAX_LISTED_REFUSALS])
        if excluded:
            return Outcome.done(paper_id=paper_id, excluded=excluded, refused=len(job.refused), refusals=refusals)
        return Outcome.done(paper_id=paper_id, new_paper=before is None, files=len(job.stored),
                            figures=sum(1 for r, _, _ in job.stored if r == "media"),
                            refused=len(job.refused), refusals=refusals)


def _image_type(ext: str) -> str | None:
    return {".tif": "image/tiff", ".tiff": "image/tiff", ".gif": "image/gif", ".jpg": "image/jpeg",
            ".jpeg": "image/jpeg", ".png": "image/png"}.get(ext)


def plan_meca(engine: Engine, stage: MecaBulkStage, folders: list[str], *, retry_failed: bool = False,
              limit: int | None = None) -> PlanSummary:
    """Queue every ``.meca`` under ``folders`` (e.g. ``Current_Content/November_2026``)."""
    summary = PlanSummary(stage.name)
    chosen: dict[str, str | None] = {}
    for folder in folders:
        for key in stage.location.find(folder, ".meca"):
            chosen[key] = None
            if limit is not None and len(chosen) >= limit:
                break
    return _plan(engine, stage, chosen, summary, retry_failed=retry_failed)


# --- one entry point for the CLI and the Airflow tasks -------------------------------------------


def bulk_stage(source: str, settings, *, env=None, extra_options=None) -> ArxivBulkStage | MecaBulkStage:
    """The bulk stage of ``source`` (arxiv, biorxiv, medrxiv) for these settings; storage
    options (e.g. credentials of an Airflow connection) on top of the environment's."""
    location = BulkLocation.from_env(source, env, extra_options)
    store = ArtifactStore.from_settings(settings)
    if source == "arxiv":
        return ArxivBulkStage(location, store, arxiv_base_url=settings.arxiv_base_url)
    return MecaBulkStage(source, location, store)


def plan_bulk(engine: Engine, stage: ArxivBulkStage | MecaBulkStage, *, from_yymm: str | None = None,
              until_yymm: str | None = None, months: list[str] | None = None, from_month: str | None = None,
              until_month: str | None = None, folders: list[str] | None = None, retry_failed: bool = False,
              limit: int | None = None) -> PlanSummary:
    """Queue a selection: arXiv by YYMM range; bioRxiv/medRxiv by months, a month range or
    folders. A selection that names nothing is a ``ValueError`` (the caller's input)."""
    if isinstance(stage, ArxivBulkStage):
        if not (from_yymm and until_yymm):
            raise ValueError("arXiv bulk needs from_yymm and until_yymm (YYMM)")
        return plan_arxiv(engine, stage, from_yymm, until_yymm, retry_failed=retry_failed, limit=limit)
    chosen = [meca.month_folder(m) for m in months or []]
    if from_month or until_month:
        if not (from_month and until_month):
            raise ValueError("from_month and until_month go together")
        chosen += meca.month_range(from_month, until_month)
    for folder in folders or []:
        if not re.match(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?$", folder) or ".." in folder.split("/"):
            raise ValueError(f"not a bucket folder: {folder!r}")
        chosen.append(folder.strip("/"))
    if not chosen:
        raise ValueError("name months (Month_Year), a month range or folders")
    return plan_meca(engine, stage, chosen, retry_failed=retry_failed, limit=limit)


def plan_from_params(source: str, params: dict, settings, *, extra_options=None) -> dict:
    """The Airflow plan task's body: queue the run's selection; return its counts."""
    from figalign.store.db import get_engine

    stage = bulk_stage(source, settings, extra_options=extra_options)
    plan = plan_bulk(get_engine(settings), stage, from_yymm=params.get("from_yymm"),
                     until_yymm=params.get("until_yymm"), months=params.get("months") or [],
                     from_month=params.get("from_month"), until_month=params.get("until_month"),
                     folders=params.get("folders") or [], retry_failed=bool(params.get("retry_failed")),
                     limit=params.get("limit"))
    return plan.as_dict()


def work_queue(source: str, settings, *, ctx=None, extra_options=None, max_items: int | None = None) -> dict:
    """One worker's share: claim and process items of the source's bulk stage, one at a
    time, until none is left (or ``max_items``); several run side by side, each item once."""
    from figalign.stages.base import BatchSummary, run_batch
    from figalign.store.db import get_engine

    stage = bulk_stage(source, settings, extra_options=extra_options)
    engine = get_engine(settings)
    total = BatchSummary(stage.name)
    while max_items is None or total.claimed < max_items:
        batch = run_batch(stage, engine, size=1, ctx=ctx, discover=False)
        total.add(batch)
        if batch.claimed == 0:
            break
    return total.as_dict()
