"""Server-side queries of the explorer: every page is one bounded, indexed query.

The store grows to millions of figures, so no page view counts or scans a whole table:

* the grid walks ``figures`` by primary key (or ``metrics`` by
  ``ix_metrics_metric_caption_kind_value``) with a keyset cursor and ``LIMIT n+1``; filters
  are ``EXISTS`` probes on indexed keys (``stage_runs``' natural key, ``metrics.figure_id``,
  ``captions.figure_id``), so the planner can run them either as per-row probes or as a
  semi-join from the selective side;
* lists of distinct values (sources, prompt hashes, metric names) use a recursive
  "loose index scan" (one index seek per distinct value) instead of ``SELECT DISTINCT``;
* the figure page fetches by primary key and foreign-key indexes only.

Sorting by a *gain* (best recaption minus original) walks the same index: the score stage
stores it as a metric row per figure (``figalign.metrics.gains``). One thing cannot be
bounded this way and says so: the stage view's counts are a count over
``ix_stage_runs_stage_status`` (cached briefly by the app).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    String,
    and_,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session, aliased

from figalign.errors import BadInputError
from figalign.metrics.gains import gain_name
from figalign.store.queue import reason_of
from figalign.store.models import (
    Artifact,
    Caption,
    CitationContextRow,
    FigureRow,
    Metric,
    Paper,
    PaperFile,
    StageRun,
    entity_number,
)

DEFAULT_LIMIT = 48
MAX_LIMIT = 200
# Which entity a stage records its stage_runs rows against (see figalign.stages.*).
STAGE_ENTITY = {"harvest": "paper", "fetch": "paper", "parse": "paper", "filter": "figure",
                "recaption": "figure", "score": "caption"}
STAGE_ORDER = ("harvest", "fetch", "parse", "filter", "recaption", "score", "export")
CAPTION_KINDS = ("original", "recaption")


SHOW_CHOICES = ("dataset", "with-image", "all")


@dataclass(frozen=True)
class GridQuery:
    """What the grid was asked for: filters, sort and page, validated."""

    source: str | None = None
    discipline: str | None = None
    licence: str | None = None
    kind: str | None = None
    stage: str | None = None
    status: str | None = None
    reason: str | None = None
    filter_reason: str | None = None
    q: str | None = None
    metric: str | None = None
    metric_kind: str = "original"
    metric_min: float | None = None
    metric_max: float | None = None
    sort: str = "-id"
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    show: str = "all"  # dataset: what an export would take (kept, with an image) | with-image | all

    def __post_init__(self) -> None:
        if self.show not in SHOW_CHOICES:
            raise BadInputError(f"show must be one of {SHOW_CHOICES}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise BadInputError(f"limit must be between 1 and {MAX_LIMIT}")
        if self.metric_kind not in CAPTION_KINDS:
            raise BadInputError(f"metric_kind must be one of {CAPTION_KINDS}")
        if self.reason and not self.stage:
            raise BadInputError("reason needs a stage")
        parse_sort(self.sort)


@dataclass(frozen=True)
class Sort:
    """``-id``/``id``, ``[-]metric:<name>:<kind>`` or ``[-]gain:<name>``."""

    by: str
    descending: bool
    metric: str | None = None
    kind: str = "original"


def parse_sort(value: str) -> Sort:
    """Turn the ``sort`` parameter into a Sort, rejecting anything else."""
    descending = value.startswith("-")
    parts = value.lstrip("-").split(":")
    if parts == ["id"]:
        return Sort("id", descending)
    if parts[0] == "metric" and len(parts) in (2, 3) and parts[1]:
        kind = parts[2] if len(parts) == 3 else "original"
        if kind not in CAPTION_KINDS:
            raise BadInputError(f"sort caption kind must be one of {CAPTION_KINDS}")
        return Sort("metric", descending, parts[1], kind)
    if parts[0] == "gain" and len(parts) == 2 and parts[1]:
        return Sort("metric", descending, gain_name(parts[1]), "recaption")  # a stored row per figure
    raise BadInputError("sort must be id, metric:<name>[:<kind>] or gain:<name> (prefix - for descending)")


@dataclass
class Page:
    """One page of results and the cursor of the next one (None on the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    extra: dict[str, Any] = field(default_factory=dict)


def encode_cursor(value: Any, ident: int) -> str:
    raw = json.dumps([value, ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    """Read a cursor made by ``encode_cursor``; a forged or broken one is a 400, not a 500."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, ident = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadInputError("invalid cursor") from exc
    if not isinstance(ident, int) or not (value is None or isinstance(value, (int, float))):
        raise BadInputError("invalid cursor")
    return value, ident


def _like_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _stage_exists(query: GridQuery, fig, reason_expr):
    """EXISTS probe on stage_runs' natural key (stage, entity_type, entity_id)."""
    entity = STAGE_ENTITY.get(query.stage, "figure")
    conds = [StageRun.stage == query.stage, StageRun.entity_type == entity]
    if query.status:
        conds.append(StageRun.status == query.status)
    if query.reason:
        conds.append(reason_expr == query.reason)
    if entity == "caption":
        cap = aliased(Caption)
        return exists(select(1).select_from(cap).join(
            StageRun, and_(*conds, StageRun.entity_id == cast(cap.id, String))).where(cap.figure_id == fig.id))
    key = fig.paper_id if entity == "paper" else fig.id
    # OFFSET 0 keeps Postgres from turning the probe into a hash semi-join over every
    # matching stage run followed by a full sort; as a per-row probe on the natural key
    # the grid's id-ordered walk stops after one page of matches.
    return exists(select(1).where(*conds, StageRun.entity_id == cast(key, String)).offset(0))


def _reads_unsettled(query: GridQuery) -> bool:
    """Whether the stage filter is read from the stage runs' side: a status that is not ``done``.

    Failures and skips are rare and sit anywhere in id order, so probing every figure from
    the newest (``_stage_exists``) can take millions of probes before one matches (13 s at
    10 M figures, docs/benchmarks.md); ix_stage_runs_unsettled_entity holds those runs in
    entity order instead (``_walk_unsettled``, ``_join_unsettled``).
    """
    return bool(query.stage and query.status and query.status != "done")


def _unsettled_select(query: GridQuery):
    """The entity numbers (``num``) of the matching stage runs, read from that index."""
    entity = STAGE_ENTITY.get(query.stage, "figure")
    runs = select(entity_number(StageRun.entity_id).label("num")).where(
        StageRun.stage == query.stage, StageRun.entity_type == entity, StageRun.status == query.status)
    if query.reason:
        runs = runs.where(reason_key() == query.reason)
    return runs


def _walk_unsettled(session: Session, stmt, query: GridQuery, descending: bool) -> list[dict]:
    """One page of a figure-level stage filter on a status not ``done``, read in figure-id
    order from ix_stage_runs_unsettled_entity a chunk of ids at a time.

    Left to itself, Postgres joins a large match (480 k pending recaptions at 10 M figures)
    by merging it with a walk of every figure from the newest, or hashes it and sorts: 2 s.
    Reading the ids in index order and fetching each chunk's figures by primary key (with
    the grid's other filters) is bounded by the page, whatever the statistics say
    (``bench/bench_store_scale.py``: the stage + status rows of the grid table).
    """
    number = entity_number(StageRun.entity_id)
    runs = _unsettled_select(query).where(number.is_not(None))
    want, chunk = query.limit + 1, 4 * (query.limit + 1)
    bound = decode_cursor(query.cursor)[1] if query.cursor else None
    rows: list[dict] = []
    while len(rows) < want:
        part = runs if bound is None else runs.where(number < bound if descending else number > bound)
        ids = session.execute(part.order_by(number.desc() if descending else number.asc()).limit(chunk)).scalars().all()
        if not ids:
            break
        rows += [dict(r._mapping) for r in session.execute(stmt.where(FigureRow.id.in_(ids)).limit(want - len(rows)))]
        if len(ids) < chunk:
            break
        bound, chunk = ids[-1], min(chunk * 2, 10_000)
    return rows


def _join_unsettled(stmt, query: GridQuery, fig, conds: list):
    """Join the grid to the matching runs (``_unsettled_select``), where the page cannot be
    walked in figure-id order: a paper-level stage, or a sort by metric. A join, not ``IN``
    (which Postgres plans as an unordered hash of every match); one row per figure, as the
    natural key (stage, entity_type, entity_id) is unique. Caption-level runs (several per
    figure) go through ``IN``."""
    runs = _unsettled_select(query).subquery("unsettled")
    entity = STAGE_ENTITY.get(query.stage, "figure")
    if entity == "caption":
        conds.append(fig.id.in_(select(Caption.figure_id).where(Caption.id.in_(select(runs.c.num)))))
        return stmt
    return stmt.join(runs, (fig.paper_id if entity == "paper" else fig.id) == runs.c.num)


def reason_key():
    """How failures are grouped and filtered: the recorded reason (it names what went wrong,
    e.g. ``over-budget: wall 120 s``), else the error class. Both columns are included in
    ix_stage_runs_unsettled_entity, so a walk down it checks this without the table."""
    return func.coalesce(reason_of(), "(none)")


def _filters(query: GridQuery, fig, paper) -> list:
    conds = []
    if query.show in ("dataset", "with-image"):
        conds.append(fig.image_artifact_id.is_not(None))
    if query.show == "dataset":
        conds.append(fig.filter_reason.is_(None))
    for column, value in ((paper.source, query.source), (paper.discipline, query.discipline),
                          (paper.licence, query.licence), (fig.kind, query.kind),
                          (fig.filter_reason, query.filter_reason)):
        if value:
            conds.append(column == value)
    if query.stage and not _reads_unsettled(query):  # else walked or joined (``grid``)
        conds.append(_stage_exists(query, fig, reason_key()))
    if query.q:
        conds.append(exists(select(1).where(Caption.figure_id == fig.id,
                                            Caption.text.ilike(_like_pattern(query.q), escape="\\"))))
    if query.metric and (query.metric_min is not None or query.metric_max is not None):
        mconds = [Metric.figure_id == fig.id, Metric.metric == query.metric, Metric.caption_kind == query.metric_kind]
        if query.metric_min is not None:
            mconds.append(Metric.value >= query.metric_min)
        if query.metric_max is not None:
            mconds.append(Metric.value <= query.metric_max)
        conds.append(exists(select(1).where(*mconds)))
    return conds


def _grid_columns(fig, paper, art):
    return (fig.id, fig.label, fig.kind, fig.width, fig.height, fig.filter_reason, fig.paper_id,
            paper.source, paper.external_id, paper.title, paper.licence, paper.discipline,
            art.sha256.label("image_sha256"))


def _keyset(value_col, id_col, descending: bool, cursor: str | None):
    """WHERE clause continuing after ``cursor`` in (value, id) order."""
    if not cursor:
        return None
    value, ident = decode_cursor(cursor)
    if value_col is None:
        return id_col < ident if descending else id_col > ident
    if descending:
        return or_(value_col < value, and_(value_col == value, id_col < ident))
    return or_(value_col > value, and_(value_col == value, id_col > ident))


def _order(value_col, id_col, descending: bool) -> list:
    if value_col is None:
        return [id_col.desc() if descending else id_col.asc()]
    if descending:
        return [value_col.desc(), id_col.desc()]
    return [value_col.asc(), id_col.asc()]


def grid(session: Session, query: GridQuery) -> Page:
    """One page of figures matching the filters, in the requested order."""
    fig, paper, art = FigureRow, Paper, Artifact
    sort = parse_sort(query.sort)
    cols = _grid_columns(fig, paper, art)
    if sort.by == "id":
        value_col = None
        stmt = select(*cols, literal_column("NULL").label("sort_value")).select_from(fig)
    else:
        value_col = Metric.value
        stmt = (select(*cols, Metric.value.label("sort_value")).select_from(Metric)
                .join(fig, fig.id == Metric.figure_id)
                .where(Metric.metric == sort.metric, Metric.caption_kind == sort.kind))
    conds = _filters(query, fig, paper)
    unsettled = _reads_unsettled(query)
    walk = unsettled and sort.by == "id" and STAGE_ENTITY.get(query.stage) == "figure"
    if unsettled and not walk:
        stmt = _join_unsettled(stmt, query, fig, conds)
    stmt = (stmt.join(paper, paper.id == fig.paper_id).outerjoin(art, art.id == fig.image_artifact_id)
            .where(*conds))
    after = _keyset(value_col, fig.id, sort.descending, query.cursor)
    if after is not None:
        stmt = stmt.where(after)
    stmt = stmt.order_by(*_order(value_col, fig.id, sort.descending))
    if walk:
        rows = _walk_unsettled(session, stmt, query, sort.descending)
    else:
        rows = [dict(r._mapping) for r in session.execute(stmt.limit(query.limit + 1))]
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    _attach_captions(session, rows)
    nxt = encode_cursor(rows[-1]["sort_value"], rows[-1]["id"]) if more and rows else None
    return Page(rows, nxt)


def _attach_captions(session: Session, rows: list[dict]) -> None:
    """Add each figure's original caption (one indexed IN query for the page)."""
    ids = [r["id"] for r in rows]
    caps: dict[int, str] = {}
    if ids:
        stmt = (select(Caption.figure_id, Caption.text)
                .where(Caption.figure_id.in_(ids), Caption.kind == "original").order_by(Caption.id))
        for fid, txt in session.execute(stmt):
            caps.setdefault(fid, txt or "")
    for r in rows:
        r["caption"] = caps.get(r["id"])


# --- figure page -------------------------------------------------------------------------


def figure_detail(session: Session, figure_id: int) -> dict[str, Any] | None:
    """Everything the figure page shows, or None when the figure does not exist."""
    fig = session.get(FigureRow, figure_id)
    if fig is None:
        return None
    paper = session.get(Paper, fig.paper_id)
    image = session.get(Artifact, fig.image_artifact_id) if fig.image_artifact_id else None
    captions = session.execute(select(Caption).where(Caption.figure_id == fig.id).order_by(Caption.id)).scalars().all()
    metrics = session.execute(select(Metric).where(Metric.figure_id == fig.id).order_by(Metric.id)).scalars().all()
    contexts = session.execute(select(CitationContextRow).where(CitationContextRow.figure_id == fig.id)
                               .order_by(CitationContextRow.position)).scalars().all()
    return {
        "figure": _figure_dict(fig, image),
        "paper": _paper_dict(paper),
        "captions": [_caption_dict(c, metrics) for c in captions],
        "contexts": [dict(position=c.position, text=c.text, section=c.section, mention=c.mention) for c in contexts],
        "stage_runs": stage_runs_for(session, fig, [c.id for c in captions]),
        "has_page": fig.page is not None and bool(fig.bbox) and pdf_artifact(session, fig.paper_id) is not None,
    }


def _figure_dict(fig: FigureRow, image: Artifact | None) -> dict[str, Any]:
    return dict(id=fig.id, figure_key=fig.figure_key, label=fig.label, number=fig.number, kind=fig.kind,
                ordinal=fig.ordinal, page=fig.page, bbox=fig.bbox, width=fig.width, height=fig.height,
                parser=fig.parser, parser_version=fig.parser_version, filter_reason=fig.filter_reason,
                duplicate_of_id=fig.duplicate_of_id, image_sha256=image.sha256 if image else None,
                image_media_type=image.media_type if image else None, subfigures=fig.subfigures)


def _paper_dict(p: Paper) -> dict[str, Any]:
    return dict(id=p.id, source=p.source, external_id=p.external_id, version=p.version, doi=p.doi, title=p.title,
                discipline=p.discipline, licence=p.licence, licence_url=p.licence_url, source_urls=p.source_urls,
                parser=p.parser, parser_version=p.parser_version, retracted=p.retracted,
                excluded_reason=p.excluded_reason)


def _caption_dict(c: Caption, metrics: list[Metric]) -> dict[str, Any]:
    return dict(id=c.id, kind=c.kind, model=c.model, prompt_hash=c.prompt_hash, params_hash=c.params_hash,
                text=c.text, status=c.status, reject_reason=c.reject_reason, endpoint=c.endpoint,
                created_at=c.created_at.isoformat() if c.created_at else None,
                metrics=[dict(metric=m.metric, model=m.model, model_version=m.model_version, value=m.value,
                              details=m.details) for m in metrics if m.caption_id == c.id])


def stage_runs_for(session: Session, fig: FigureRow, caption_ids: list[int]) -> list[dict[str, Any]]:
    """The stage_runs rows that made this figure's rows, found through their natural key."""
    wanted = [("paper", str(fig.paper_id)), ("figure", str(fig.id))] + [("caption", str(i)) for i in caption_ids]
    stages = [s for s in STAGE_ORDER]
    conds = [and_(StageRun.entity_type == et, StageRun.entity_id == eid) for et, eid in wanted]
    stmt = select(StageRun).where(StageRun.stage.in_(stages), or_(*conds)).order_by(StageRun.id)
    out = []
    for r in session.execute(stmt).scalars():
        out.append(dict(stage=r.stage, entity_type=r.entity_type, entity_id=r.entity_id, status=r.status,
                        attempts=r.attempts, error_class=r.error_class, error_message=r.error_message,
                        reason=r.reason, dag_id=r.dag_id, run_id=r.run_id, task_id=r.task_id,
                        try_number=r.try_number,
                        finished_at=r.finished_at.isoformat() if r.finished_at else None))
    return out


def pdf_artifact(session: Session, paper_id: int) -> Artifact | None:
    """The paper's PDF artifact (role ``pdf``), if it has one."""
    stmt = (select(Artifact).join(PaperFile, PaperFile.artifact_id == Artifact.id)
            .where(PaperFile.paper_id == paper_id, PaperFile.role == "pdf").order_by(PaperFile.id).limit(1))
    return session.execute(stmt).scalars().first()


def image_artifact(session: Session, sha256: str) -> Artifact | None:
    """An image artifact by its content hash; anything that is not an image is not served."""
    art = session.execute(select(Artifact).where(Artifact.sha256 == sha256)).scalars().first()
    if art is None or not (art.media_type or "").startswith("image/"):
        return None
    return art


# --- stage view --------------------------------------------------------------------------


def distinct_values(session: Session, column, where=None, limit: int = 200) -> list[Any]:
    """Distinct values of an indexed column by a recursive loose index scan.

    Each step asks the index for the next value greater than the last (one seek per
    distinct value), so 5 stages over 10 million rows cost 5 seeks, not a table scan.
    """
    table = column.table.name
    col = column.name
    extra = f" AND {where}" if where else ""
    sql = text(f"""
        WITH RECURSIVE t(v, n) AS (
            SELECT (SELECT min({col}) FROM {table} WHERE {col} IS NOT NULL{extra}), 1
            UNION ALL
            SELECT (SELECT min({col}) FROM {table} WHERE {col} > t.v{extra}), n + 1 FROM t
            WHERE t.v IS NOT NULL AND n < :limit
        )
        SELECT v FROM t WHERE v IS NOT NULL""")
    return [r[0] for r in session.execute(sql, {"limit": limit})]


def stage_counts(session: Session) -> list[dict[str, Any]]:
    """Rows per stage and status (a count over ix_stage_runs_stage_status)."""
    stmt = (select(StageRun.stage, StageRun.status, func.count())
            .group_by(StageRun.stage, StageRun.status).order_by(StageRun.stage, StageRun.status))
    return [dict(stage=s, status=st, count=n) for s, st, n in session.execute(stmt)]


def top_failures(session: Session, stages: list[str], limit: int = 10) -> list[dict[str, Any]]:
    """The most frequent failure and skip reasons per stage, with one example entity each."""
    out = []
    key = reason_key()
    for stage in stages:
        stmt = (select(StageRun.status, key.label("reason"), func.count().label("n"),
                       func.min(StageRun.entity_id).label("example"), func.min(StageRun.entity_type).label("entity_type"))
                .where(StageRun.stage == stage, StageRun.status.in_(("failed", "skipped")))
                .group_by(StageRun.status, key).order_by(StageRun.status, func.count().desc(), key).limit(limit))
        for r in session.execute(stmt):
            out.append(dict(stage=stage, status=r.status, reason=r.reason, count=r.n, example_entity=r.example,
                            entity_type=r.entity_type))
    return out


def papers_in_stage(session: Session, stage: str, status: str | None = None, reason: str | None = None, *,
                    limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page:
    """Papers whose ``stage`` row (a paper-level stage: fetch, parse) has this status and reason.

    Paper-level failures have no figures to show (a paper that failed fetch has none), so the
    stage view links here instead of to the figure grid. Walks papers in id order.
    """
    if STAGE_ENTITY.get(stage) != "paper":
        raise BadInputError(f"{stage} is not a paper-level stage")
    if not 1 <= limit <= MAX_LIMIT:
        raise BadInputError(f"limit must be between 1 and {MAX_LIMIT}")
    conds = [StageRun.stage == stage, StageRun.entity_type == "paper", StageRun.entity_id == cast(Paper.id, String)]
    if status:
        conds.append(StageRun.status == status)
    if reason:
        conds.append(reason_key() == reason)
    stmt = select(Paper.id, Paper.source, Paper.external_id, Paper.version, Paper.title, StageRun.status,
                  reason_key().label("reason"), StageRun.attempts).join(StageRun, and_(*conds))
    if cursor:
        stmt = stmt.where(Paper.id > decode_cursor(cursor)[1])
    rows = session.execute(stmt.order_by(Paper.id).limit(limit + 1)).all()
    items = [dict(id=r.id, source=r.source, external_id=r.external_id, version=r.version, title=r.title,
                  status=r.status, reason=r.reason, attempts=r.attempts) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(items, encode_cursor(None, items[-1]["id"]) if more and items else None)


# --- comparison view ---------------------------------------------------------------------


def compare(session: Session, by: str, a: str, b: str, *, limit: int = 24, cursor: str | None = None) -> Page:
    """Figures recaptioned under both A and B (prompt hashes or models), side by side."""
    if by not in ("prompt_hash", "model"):
        raise BadInputError("by must be prompt_hash or model")
    if not 1 <= limit <= MAX_LIMIT:
        raise BadInputError(f"limit must be between 1 and {MAX_LIMIT}")
    ca, cb = aliased(Caption), aliased(Caption)
    col_a, col_b = getattr(ca, by), getattr(cb, by)
    stmt = (select(ca.figure_id, ca.id.label("a_id"), cb.id.label("b_id"))
            .join(cb, and_(cb.figure_id == ca.figure_id, cb.kind == "recaption", col_b == b))
            .where(ca.kind == "recaption", col_a == a))
    if cursor:
        stmt = stmt.where(ca.figure_id > decode_cursor(cursor)[1])
    stmt = stmt.order_by(ca.figure_id, ca.id, cb.id).limit(limit * 4 + 1)
    pairs: dict[int, tuple[int, int]] = {}
    for fid, a_id, b_id in session.execute(stmt):
        if fid not in pairs and len(pairs) <= limit:
            pairs[fid] = (a_id, b_id)
    more = len(pairs) > limit
    fids = list(pairs)[:limit]
    items = _compare_items(session, fids, pairs)
    return Page(items, encode_cursor(None, fids[-1]) if more and fids else None)


def _compare_items(session: Session, fids: list[int], pairs: dict[int, tuple[int, int]]) -> list[dict[str, Any]]:
    if not fids:
        return []
    cap_ids = [i for f in fids for i in pairs[f]]
    caps = {c.id: c for c in session.execute(select(Caption).where(Caption.id.in_(cap_ids))).scalars()}
    originals = {c.figure_id: c for c in session.execute(
        select(Caption).where(Caption.figure_id.in_(fids), Caption.kind == "original")).scalars()}
    metrics = session.execute(select(Metric).where(Metric.figure_id.in_(fids))).scalars().all()
    shas = dict(session.execute(select(FigureRow.id, Artifact.sha256).join(
        Artifact, Artifact.id == FigureRow.image_artifact_id).where(FigureRow.id.in_(fids))).all())
    labels = dict(session.execute(select(FigureRow.id, FigureRow.label).where(FigureRow.id.in_(fids))).all())
    items = []
    for fid in fids:
        a_id, b_id = pairs[fid]
        orig = originals.get(fid)
        items.append(dict(figure_id=fid, label=labels.get(fid), image_sha256=shas.get(fid),
                          original=_caption_dict(orig, metrics) if orig else None,
                          a=_caption_dict(caps[a_id], metrics), b=_caption_dict(caps[b_id], metrics)))
    return items
