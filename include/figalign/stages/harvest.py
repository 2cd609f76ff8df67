"""Harvest one window of one source into ``papers``, resumably and exactly once.

A window (source, set, from, until) has one ``harvest_cursors`` row. Each page is written
in one transaction together with the cursor's new resumption token, so after a crash the
next run starts at the first page not yet committed: nothing is skipped and, because
papers are upserts on (source, external_id, version), nothing is duplicated when a page
is replayed. A completed window is not harvested again unless forced. When the provider
rejects a stored token (``badResumptionToken``) the window restarts from its first page,
which the upserts make harmless.

A window is closed (``done``) only once it is over (``stages.windows``): a window still
in progress is listed in full but left ``open``, and listed again by the next run.
``harvest_days`` applies the whole window rule — one window per day, plus re-listing the
overlap days before the first — for the CLI and the Airflow tasks alike.

Licence and retraction decisions are stored on the paper (``licence``,
``excluded_reason``); excluded papers keep their row and are simply not queued for
fetch. Records a listing cannot turn into a paper (deleted, no identifier) are counted
by reason on the cursor (``dropped``). New or changed papers are queued for ``fetch``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from figalign.sources.licences import LicencePolicy, policy_for
from figalign.sources.oaipmh import BadResumptionToken
from figalign.sources.record import Dropped, PaperRecord
from figalign.stages.windows import WindowRule, plan_days
from figalign.store.db import session_scope
from figalign.store.models import HarvestCursor, Paper, utcnow
from figalign.store.queue import enqueue, requeue
from figalign.store.text import clean
from figalign.store.upsert import upsert

log = logging.getLogger(__name__)
CURSOR_KEY = ("source", "set_spec", "window_start", "window_end")


class HarvestSource(Protocol):
    name: str

    def pages(self, start: dt.date, end: dt.date, set_spec: str, token: str | None
              ) -> Iterator[tuple[list[PaperRecord | Dropped], str | None]]: ...


@dataclass
class HarvestSummary:
    """What one call did, small enough to print or pass through XCom."""

    source: str
    set_spec: str
    window: tuple[str, str]
    status: str = "running"
    pages: int = 0
    records: int = 0
    new_papers: int = 0
    excluded: int = 0
    queued_fetch: int = 0
    restarts: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day)


def open_cursor(session: Session, source: str, set_spec: str, start: dt.date, end: dt.date,
                *, force: bool) -> HarvestCursor:
    """The window's cursor row, created if absent and reset when forced."""
    key = dict(source=source, set_spec=set_spec, window_start=_midnight(start), window_end=_midnight(end))
    upsert(session, HarvestCursor, {**key, "status": "running", "records_seen": 0, "pages_done": 0},
           key=CURSOR_KEY, update=())
    if force:
        upsert(session, HarvestCursor, {**key, "status": "running", "resumption_token": None, "records_seen": 0,
                                        "pages_done": 0, "completed_at": None, "started_at": utcnow()},
               key=CURSOR_KEY)
    return session.execute(select(HarvestCursor).filter_by(**key)).scalar_one()


def harvest_days(engine: Engine, source: HarvestSource, start: dt.date, end: dt.date, *, set_spec: str = "",
                 limit: int | None = None, force: bool = False, policy: LicencePolicy | None = None,
                 rule: WindowRule | None = None, now: dt.datetime | None = None) -> list[HarvestSummary]:
    """Harvest ``[start, end]`` by the window rule: one window per day, after re-listing the
    overlap days before ``start``. ``limit`` is shared by all of them."""
    rule = rule or WindowRule.for_source(source.name)
    summaries = []
    for window in plan_days(start, end, rule):
        summary = harvest_window(engine, source, window.day, window.day, set_spec=set_spec, limit=limit,
                                 force=force or window.relist, policy=policy, rule=rule, now=now)
        if window.relist:
            summary.notes.append(f"re-listed: overlap of {rule.overlap_days} day(s) before {start}")
        summaries.append(summary)
        if limit is not None:
            limit -= summary.records
            if limit <= 0:
                break
    return summaries


def harvest_window(engine: Engine, source: HarvestSource, start: dt.date, end: dt.date, *, set_spec: str = "",
                   limit: int | None = None, force: bool = False, policy: LicencePolicy | None = None,
                   rule: WindowRule | None = None, now: dt.datetime | None = None) -> HarvestSummary:
    """Harvest [start, end] of ``source`` (optionally one set); resume or skip as the cursor says.

    ``limit`` stops after the page on which ``limit`` records were reached; the cursor
    keeps its token, so the next call continues from there. The window ends ``done`` only
    if ``end`` is over by ``rule`` at ``now``; else ``open``, to be listed again.
    """
    policy = policy or policy_for(source.name)
    rule = rule or WindowRule.for_source(source.name)
    summary = HarvestSummary(source.name, set_spec, (start.isoformat(), end.isoformat()))
    with session_scope(engine) as session:
        cursor = open_cursor(session, source.name, set_spec, start, end, force=force)
        cursor_id, token, status = cursor.id, cursor.resumption_token, cursor.status
    if status == "done":
        summary.status = "skipped"
        summary.notes.append("window already harvested (use force to repeat)")
        return summary
    closed = rule.is_closed(end, now)
    for attempt in range(2):
        try:
            _run_pages(engine, source, cursor_id, start, end, set_spec, token, limit, policy, summary, closed)
            if summary.status == "open":
                summary.notes.append(f"window not over until {rule.closes_at(end).isoformat()} "
                                     "(end of day + safety lag): listed, left open for the next run")
            return summary
        except BadResumptionToken as exc:
            if attempt:
                raise
            summary.restarts += 1
            summary.notes.append(f"{exc}; restarting the window from its first page")
            log.warning("%s %s %s..%s: %s; restarting window", source.name, set_spec, start, end, exc)
            token = None
    return summary


def _run_pages(engine, source, cursor_id, start, end, set_spec, token, limit, policy, summary, closed) -> None:
    """Store each page with the cursor's new token in one transaction (the page itself is
    fetched before it opens: no network I/O inside a write transaction)."""
    first = token is None
    for records, next_token in source.pages(start, end, set_spec, token):
        dropped = Counter()
        with session_scope(engine) as session:
            for record in records:
                if isinstance(record, Dropped):
                    dropped[record.reason] += 1
                else:
                    _store_record(session, record, policy, summary)
            cursor = session.get(HarvestCursor, cursor_id)
            if first:  # a listing from its first page: counts start again
                cursor.pages_done = cursor.records_seen = 0
                cursor.dropped, first = {}, False
            cursor.resumption_token = next_token
            cursor.pages_done += 1
            cursor.records_seen += len(records)
            cursor.dropped = dict(Counter(cursor.dropped or {}) + dropped)
            if next_token is None:
                cursor.status = "done" if closed else "open"
                cursor.completed_at = utcnow()
            summary.status = cursor.status
        for reason, n in dropped.items():
            summary.dropped[reason] = summary.dropped.get(reason, 0) + n
        summary.pages += 1
        summary.records += len(records)
        if next_token is not None and limit is not None and summary.records >= limit:
            summary.status = "partial"
            summary.notes.append(f"stopped at --limit {limit}; the next run resumes the window")
            return


def _store_record(session: Session, record: PaperRecord, policy: LicencePolicy, summary: HarvestSummary) -> None:
    """Upsert one paper; queue (or re-queue) fetch when it is new or changed and allowed."""
    reason = record.excluded_reason or policy.process_exclusion(record.licence)
    key = dict(source=record.source, external_id=record.external_id, version=record.version)
    before = session.execute(select(Paper.id, Paper.source_updated_at).filter_by(**key)).first()
    paper_id = upsert(session, Paper, _paper_values(record, reason), key=("source", "external_id", "version"))
    summary.new_papers += before is None
    if reason:
        summary.excluded += 1
        return
    changed = before is not None and record.updated_at is not None and before.source_updated_at != record.updated_at
    queued = enqueue(session, "fetch", "paper", [str(paper_id)])
    if not queued and changed:
        queued = requeue(session, "fetch", "paper", [str(paper_id)])
    summary.queued_fetch += queued


def _paper_values(record: PaperRecord, reason: str | None) -> dict:
    values = dict(
        source=record.source, external_id=record.external_id, version=record.version,
        licence=record.licence, licence_url=record.licence_url, retracted=record.retracted,
        excluded_reason=reason, source_urls=record.source_urls(), source_updated_at=record.updated_at,
    )
    optional = dict(doi=record.doi, title=clean(record.title, "title")[0], abstract=clean(record.abstract, "abstract")[0],
                    published_at=record.published_at,
                    discipline=record.discipline,
                    authors=record.authors or None, categories=record.categories or None)
    values.update({k: v for k, v in optional.items() if v is not None})  # never blank what another source filled
    return values
