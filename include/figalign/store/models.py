"""SQLAlchemy 2 typed models of the provenance store.

Every table has a natural key with a unique constraint, so every write can be an upsert
and re-running a stage never duplicates rows. Times are naive UTC (SQLite keeps no zone).
Schema changes go through Alembic migrations in ``store/migrations``; a test checks that
autogenerate finds no difference between these models and the migrations.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STAGE_STATUSES = ("pending", "running", "done", "failed", "skipped")
OPEN_SQL = "status IN ('pending', 'running')"  # stage runs a claim may still take
# Stage runs the explorer filters by (0011): not done, against an entity with a numeric id.
UNSETTLED_SQL = "status <> 'done' AND entity_type IN ('paper', 'figure', 'caption')"


class entity_number(FunctionElement):
    """A stage run's ``entity_id`` as the entity's integer id, NULL when it is not digits.

    Indexed (0011), so the explorer can walk a stage's failures in figure-id order. On
    Postgres a bare cast would fail, at insert time, for any row whose id is not a number
    (``file``, ``tar`` entities; test rows), so it is guarded; SQLite's CAST never fails.
    The same expression must appear in queries for the index to serve them.
    """

    type = BigInteger()
    inherit_cache = True
    name = "entity_number"


@compiles(entity_number)
def _entity_number(element, compiler, **kw):
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


@compiles(entity_number, "postgresql")
def _entity_number_pg(element, compiler, **kw):
    arg = compiler.process(element.clauses, **kw)
    return f"(CASE WHEN {arg} ~ '^[0-9]{{1,18}}$' THEN CAST({arg} AS BIGINT) END)"


def utcnow() -> dt.datetime:
    """Naive UTC now: the one time convention of the store."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Paper(TimestampMixin, Base):
    """One version of one paper from one source (arXiv 2411.01234 v2, PMC123 v1)."""

    __tablename__ = "papers"
    # discipline/licence: explorer filters and their value lists (0002_explorer_indexes).
    __table_args__ = (UniqueConstraint("source", "external_id", "version"),
                      Index("ix_papers_discipline", "discipline"), Index("ix_papers_licence", "licence"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(16), default="")
    doi: Mapped[str | None] = mapped_column(String(256))
    title: Mapped[str | None] = mapped_column(Text)
    abstract: Mapped[str | None] = mapped_column(Text)
    authors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    categories: Mapped[list[Any]] = mapped_column(JSON, default=list)
    discipline: Mapped[str | None] = mapped_column(String(64))
    licence: Mapped[str | None] = mapped_column(String(64))
    licence_url: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    source_updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    source_urls: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    retracted: Mapped[bool] = mapped_column(Boolean, default=False)
    excluded_reason: Mapped[str | None] = mapped_column(Text)
    parser: Mapped[str | None] = mapped_column(String(64))
    parser_version: Mapped[str | None] = mapped_column(String(32))
    schema_version: Mapped[str | None] = mapped_column(String(16))


class Artifact(Base):
    """A content-addressed file: identical bytes are stored once, whoever fetched them."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str | None] = mapped_column(String(128))
    storage_uri: Mapped[str] = mapped_column(Text)
    origin_url: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class PaperFile(Base):
    """Which artifact plays which role for a paper (its PDF, JATS XML, e-print, TEI)."""

    __tablename__ = "paper_files"
    __table_args__ = (UniqueConstraint("paper_id", "role", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(512), default="")
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"))
    origin_url: Mapped[str | None] = mapped_column(Text)
    # the paper's source_updated_at when this file was fetched: a newer listing means a new version
    source_updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # for a derived file (GROBID TEI): the artifact it was computed from (0004)
    derived_from_artifact_id: Mapped[int | None] = mapped_column(ForeignKey("artifacts.id"))


# Figures a duplicate may link to (filters.kept_condition); the near-duplicate band indexes
# hold only these rows (0009_phash_segments).
KEPT_SQL = "filter_reason IS NULL AND image_artifact_id IS NOT NULL"
PHASH_BANDS = 3


def _band_index(band: int) -> Index:
    """One band of the near-duplicate index: band value first, then what the lookup checks
    (the whole hash and the id), so a probe is an index-only scan on Postgres."""
    kept = sql_text(KEPT_SQL)
    return Index(f"ix_figures_phash_b{band}_kept", f"phash_b{band}", "phash_bits", "id",
                 postgresql_where=kept, sqlite_where=kept)


class FigureRow(TimestampMixin, Base):
    """A figure or table of a parsed paper, with where it came from and why it was dropped.

    ``phash_bits`` and ``phash_b0..2`` are ``phash`` as a signed 64-bit integer and its three
    bands (``figalign.dedup.phash_columns`` derives them; whoever writes ``phash`` writes
    them too): the store-resident near-duplicate index of ``figalign.store.duplicates``.
    """

    __tablename__ = "figures"
    __table_args__ = (Index("ix_figures_phash", "phash"), Index("ix_figures_pixel_sha256", "pixel_sha256"),
                      Index("ix_figures_kind", "kind"), *(_band_index(b) for b in range(PHASH_BANDS)),
                      # the explorer's filter_reason filter walks this newest first (0009)
                      Index("ix_figures_filter_reason_id", "filter_reason", "id",
                            postgresql_where=sql_text("filter_reason IS NOT NULL"),
                            sqlite_where=sql_text("filter_reason IS NOT NULL")))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    figure_key: Mapped[str] = mapped_column(String(256), unique=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    label: Mapped[str | None] = mapped_column(String(64))
    number: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    page: Mapped[int | None] = mapped_column(Integer)
    bbox: Mapped[list[Any] | None] = mapped_column(JSON)
    image_artifact_id: Mapped[int | None] = mapped_column(ForeignKey("artifacts.id"))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    phash: Mapped[str | None] = mapped_column(String(32))
    pixel_sha256: Mapped[str | None] = mapped_column(String(64))
    phash_bits: Mapped[int | None] = mapped_column(BigInteger)
    phash_b0: Mapped[int | None] = mapped_column(Integer)
    phash_b1: Mapped[int | None] = mapped_column(Integer)
    phash_b2: Mapped[int | None] = mapped_column(Integer)
    subfigures: Mapped[list[Any]] = mapped_column(JSON, default=list)
    parser: Mapped[str] = mapped_column(String(64))
    parser_version: Mapped[str] = mapped_column(String(32))
    filter_reason: Mapped[str | None] = mapped_column(Text)
    image_origin: Mapped[str | None] = mapped_column(String(32))  # records.IMAGE_ORIGINS (migration 0010)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("figures.id"))


class CitationContextRow(Base):
    """A body sentence that references a figure, in reading order."""

    __tablename__ = "citation_contexts"
    __table_args__ = (UniqueConstraint("figure_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    figure_id: Mapped[int] = mapped_column(ForeignKey("figures.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    section: Mapped[str | None] = mapped_column(Text)
    mention: Mapped[str | None] = mapped_column(String(128))


class Caption(Base):
    """An original caption or a model's recaption, with everything needed to reproduce it.

    The natural key includes model, prompt hash and parameter hash: a new prompt version
    adds rows and keeps the old ones for comparison.
    """

    __tablename__ = "captions"
    # The kind-first indexes let the explorer's comparison view walk one prompt's or one
    # model's recaptions in figure order (0002_explorer_indexes).
    __table_args__ = (UniqueConstraint("figure_id", "kind", "model", "prompt_hash", "params_hash"),
                      Index("ix_captions_kind_prompt_hash_figure_id", "kind", "prompt_hash", "figure_id"),
                      Index("ix_captions_kind_model_figure_id", "kind", "model", "figure_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    figure_id: Mapped[int] = mapped_column(ForeignKey("figures.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(256), default="")
    prompt_hash: Mapped[str] = mapped_column(String(64), default="")
    params_hash: Mapped[str] = mapped_column(String(64), default="")
    text: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    reject_reason: Mapped[str | None] = mapped_column(Text)
    raw_text: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    endpoint: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Metric(Base):
    """One score of one caption of one figure by one model (PPPL, CLIP score)."""

    __tablename__ = "metrics"
    # Sorting and range-filtering by a score walks this index (0002_explorer_indexes).
    __table_args__ = (UniqueConstraint("caption_id", "metric", "model"),
                      Index("ix_metrics_metric_caption_kind_value", "metric", "caption_kind", "value"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    figure_id: Mapped[int] = mapped_column(ForeignKey("figures.id", ondelete="CASCADE"), index=True)
    caption_id: Mapped[int] = mapped_column(ForeignKey("captions.id", ondelete="CASCADE"))
    caption_kind: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str | None] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class StageRun(Base):
    """The state of one item in one stage: the queue, the audit trail and the retry count.

    Claiming sets ``lease_owner``/``lease_expires_at``; a worker that dies leaves an
    expired lease that the next claim picks up. ``attempts`` stops an item that keeps
    failing from looping forever: past ``max_attempts`` it ends ``failed`` with its error.
    """

    __tablename__ = "stage_runs"
    # The two partial indexes (0009) serve the claim and ``pending``: open rows in id order,
    # and open rows on their last attempt (ended by each claim once their lease lapses).
    __table_args__ = (
        UniqueConstraint("stage", "entity_type", "entity_id"),
        # claims filter stage, status and (for a stage with lanes) lane (0006)
        Index("ix_stage_runs_stage_status_lane", "stage", "status", "lane"),
        Index("ix_stage_runs_stage_id_open", "stage", "id", postgresql_where=sql_text(OPEN_SQL),
              sqlite_where=sql_text(OPEN_SQL)),
        Index("ix_stage_runs_stage_id_last_attempt", "stage", "id",
              postgresql_where=sql_text(f"{OPEN_SQL} AND attempts >= max_attempts"),
              sqlite_where=sql_text(f"{OPEN_SQL} AND attempts >= max_attempts")),
        # the explorer's "stage X failed (with reason R)" walks this in entity order (0011);
        # on Postgres index-only, the reason checked from the included columns
        Index("ix_stage_runs_unsettled_entity", "stage", "entity_type", "status", entity_number(sql_text("entity_id")),
              postgresql_include=["entity_id", "reason", "error_class"],
              postgresql_where=sql_text(UNSETTLED_SQL), sqlite_where=sql_text(UNSETTLED_SQL)),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(32))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # which kind of worker slot the item needs (0006): e.g. parse's "grobid" lane for a PDF-only
    # paper with GROBID configured; planned per lane, claimed only by that lane's tasks
    lane: Mapped[str] = mapped_column(String(32), default="default", server_default="default")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(256))
    # fencing token of the current claim (0004): only its holder may record the outcome
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    input_hash: Mapped[str | None] = mapped_column(String(64))
    error_class: Mapped[str | None] = mapped_column(String(128))
    error_message: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    output: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dag_id: Mapped[str | None] = mapped_column(String(250))
    run_id: Mapped[str | None] = mapped_column(String(250))
    task_id: Mapped[str | None] = mapped_column(String(250))
    try_number: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class HarvestCursor(Base):
    """Where a harvest of one source, set and window stands, so a crash resumes there."""

    __tablename__ = "harvest_cursors"
    __table_args__ = (UniqueConstraint("source", "set_spec", "window_start", "window_end"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    set_spec: Mapped[str] = mapped_column(String(128), default="")
    window_start: Mapped[dt.datetime] = mapped_column(DateTime)
    window_end: Mapped[dt.datetime] = mapped_column(DateTime)
    resumption_token: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="running")
    records_seen: Mapped[int] = mapped_column(Integer, default=0)
    pages_done: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # records the listing dropped while reading it, by reason (0004)
    dropped: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Export(Base):
    """One export run: format, where it went, what it held, and its manifest hash."""

    __tablename__ = "exports"
    __table_args__ = (UniqueConstraint("format", "out_dir", "manifest_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    format: Mapped[str] = mapped_column(String(32))
    out_dir: Mapped[str] = mapped_column(Text)
    since: Mapped[dt.datetime | None] = mapped_column(DateTime)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    shards: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RateLimitSlot(Base):
    """Per-host turn of the rate limiter shared by every machine (``clients/ratelimit_pg.py``).

    Times are the database's clock (timezone-aware), so workers with skewed clocks agree."""

    __tablename__ = "rate_limit_slots"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    next_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    holder: Mapped[str | None] = mapped_column(String(255))
    held_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
