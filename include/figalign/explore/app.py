"""The explorer's FastAPI app: HTML pages, a JSON API for each, and artifact bytes.

``create_app(settings, auth_dependency=None)`` is all the Airflow plugin and the CLI need.
The plugin passes Airflow's own auth dependency, which then guards every route (pages, API
and images alike); standalone the app is meant for 127.0.0.1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session, sessionmaker

from figalign.config import Settings, load_settings
from figalign.errors import BadInputError
from figalign.explore import queries as Q
from figalign.explore.pages import ArtifactMissing, page_etag, read_artifact, render_page_with_box
from figalign.explore.readonly import make_readonly_engine
from figalign.explore.templates import render
from figalign.storage import ArtifactStore
from figalign.store.models import STAGE_STATUSES, Caption, FigureRow, Metric, Paper, StageRun

log = logging.getLogger(__name__)
SHA256_CHARS = frozenset("0123456789abcdef")
# Behind Airflow auth the bytes are per-user, so "private"; they never change for a hash.
IMMUTABLE = "private, max-age=31536000, immutable"
# An SVG figure must not run script in the explorer's origin.
IMAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
CACHE_TTL_S = 30.0
SORTS = [("-id", "newest first"), ("id", "oldest first"),
         ("-gain:clip_cosine", "largest CLIP gain (recaption − original)"),
         ("gain:clip_cosine", "smallest CLIP gain"),
         ("-metric:clip_cosine:original", "highest CLIP (original)"),
         ("metric:clip_cosine:original", "lowest CLIP (original)"),
         ("-metric:clip_cosine:recaption", "highest CLIP (recaption)"),
         ("-metric:pppl:original", "highest PPPL (original)"),
         ("-metric:pppl:recaption", "highest PPPL (recaption)"),
         ("metric:pppl:recaption", "lowest PPPL (recaption)")]
FLOAT_FIELDS = {"metric_min", "metric_max"}
INT_FIELDS = {"limit"}


class _TTLCache:
    """A tiny per-app cache for the few aggregates that cannot be bounded (stage counts)."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._data: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        hit = self._data.get(key)
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        value = compute()
        self._data[key] = (now, value)
        return value


SHOWS = (("dataset", "kept for the dataset"), ("with-image", "has an image"), ("all", "every figure"))


def grid_query_from(params: Mapping[str, str]) -> Q.GridQuery:
    """Build a GridQuery from query parameters; empty form fields mean "not set"."""
    values: dict[str, Any] = {}
    for f in fields(Q.GridQuery):
        raw = params.get(f.name)
        if raw is None or raw.strip() == "":
            continue
        raw = raw.strip()
        try:
            values[f.name] = float(raw) if f.name in FLOAT_FIELDS else int(raw) if f.name in INT_FIELDS else raw
        except ValueError as exc:
            raise BadInputError(f"{f.name} must be a number") from exc
    return Q.GridQuery(**values)


def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _next_url(request: Request, path: str, cursor: str | None) -> str | None:
    if not cursor:
        return None
    params = {k: v for k, v in request.query_params.items() if k != "cursor" and v != ""}
    params["cursor"] = cursor
    return f"{_base(request)}{path}?{urlencode(params)}"


def _check_sha(sha: str) -> str:
    """Only a lowercase sha256 names a file; anything else (``..``, ``/``, ``%2e``) is a 404."""
    if len(sha) != 64 or not set(sha) <= SHA256_CHARS:
        raise HTTPException(404, "no such image")
    return sha


def _bytes_response(request: Request, data_fn: Callable[[], bytes], etag: str, media_type: str) -> Response:
    """Bytes with a strong ETag and immutable caching; 304 when the client already has them."""
    quoted = f'"{etag}"'
    headers = {"ETag": quoted, "Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": IMAGE_CSP}
    inm = request.headers.get("if-none-match", "")
    if quoted in [t.strip() for t in inm.split(",")] or inm.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(content=data_fn(), media_type=media_type, headers=headers)


def create_app(settings: Settings | None = None, auth_dependency: Callable | None = None) -> FastAPI:
    """The explorer over ``settings``' store; ``auth_dependency`` guards every route."""
    settings = settings or load_settings()
    engine = make_readonly_engine(settings.effective_database_url)
    make_session = sessionmaker(bind=engine, expire_on_commit=False)
    deps = [Depends(auth_dependency)] if auth_dependency else []
    app = FastAPI(title="figalign explorer", dependencies=deps, docs_url="/api/docs",
                  openapi_url="/api/openapi.json", redoc_url=None)
    app.state.engine = engine
    app.state.settings = settings
    cache = _TTLCache(CACHE_TTL_S)

    def db() -> Iterator[Session]:
        session = make_session()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    @app.exception_handler(BadInputError)
    async def _bad_input(_request: Request, exc: BadInputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def facets(session: Session) -> dict[str, list]:
        return cache.get("facets", lambda: {
            "sources": Q.distinct_values(session, Paper.__table__.c.source),
            "disciplines": Q.distinct_values(session, Paper.__table__.c.discipline),
            "licences": Q.distinct_values(session, Paper.__table__.c.licence),
            "stages": Q.distinct_values(session, StageRun.__table__.c.stage),
            "metrics": Q.distinct_values(session, Metric.__table__.c.metric),
            "kinds": Q.distinct_values(session, FigureRow.__table__.c.kind),
            "prompt_hashes": Q.distinct_values(session, Caption.__table__.c.prompt_hash, "kind = 'recaption'"),
            "models": Q.distinct_values(session, Caption.__table__.c.model, "kind = 'recaption'"),
        })

    # --- JSON API --------------------------------------------------------------------

    @app.get("/api/facets")
    def api_facets(session: Session = Depends(db)) -> dict:
        """Values the filters can take (sources, licences, stages, metrics, prompts…)."""
        return facets(session)

    @app.get("/api/figures")
    def api_figures(request: Request, session: Session = Depends(db)) -> dict:
        """The grid: filters and sort as query parameters, keyset ``cursor`` for the next page."""
        page = Q.grid(session, grid_query_from(request.query_params))
        return {"items": page.items, "next_cursor": page.next_cursor}

    @app.get("/api/figures/{figure_id}")
    def api_figure(figure_id: int, session: Session = Depends(db)) -> dict:
        detail = Q.figure_detail(session, figure_id)
        if detail is None:
            raise HTTPException(404, "no such figure")
        return detail

    def stage_data(session: Session) -> dict:
        def compute():
            counts = Q.stage_counts(session)
            stages = sorted({c["stage"] for c in counts}, key=_stage_rank)
            return {"counts": counts, "failures": Q.top_failures(session, stages)}
        return cache.get("stages", compute)

    @app.get("/api/stages")
    def api_stages(session: Session = Depends(db)) -> dict:
        """Counts per stage and status, and the top failure reasons with an example each."""
        return stage_data(session)

    @app.get("/api/missing-images")
    def api_missing_images(session: Session = Depends(db)) -> dict:
        """Figures without an image, by the parser's reason (tikz-without-pdf, …): "the source
        has none" told apart from "we failed"; filter the grid with filter_reason=no-image:<reason>."""
        from figalign.store.papers import missing_image_reasons

        return cache.get("missing-images", lambda: {"reasons": missing_image_reasons(session)})

    @app.get("/api/compare")
    def api_compare(a: str, b: str, by: str = "prompt_hash", limit: int = 24, cursor: str | None = None,
                    session: Session = Depends(db)) -> dict:
        """Figures recaptioned under both A and B, with both recaptions and their metrics."""
        page = Q.compare(session, by, a, b, limit=limit, cursor=cursor)
        return {"items": page.items, "next_cursor": page.next_cursor}

    # --- bytes -----------------------------------------------------------------------

    @app.get("/image/{sha}")
    def image(sha: str, request: Request, session: Session = Depends(db)) -> Response:
        """An image artifact by sha256 (never by path)."""
        art = Q.image_artifact(session, _check_sha(sha))
        if art is None:
            raise HTTPException(404, "no such image")
        return _bytes_response(request, lambda: _read(art), art.sha256, art.media_type)

    def _read(art) -> bytes:
        try:
            return read_artifact(art, ArtifactStore.from_settings(settings))
        except ArtifactMissing as exc:
            raise HTTPException(404, str(exc)) from exc

    @app.get("/figure/{figure_id}/page.png")
    def page_png(figure_id: int, request: Request, session: Session = Depends(db)) -> Response:
        """The figure's PDF page rendered with its box drawn."""
        fig = session.get(FigureRow, figure_id)
        pdf = Q.pdf_artifact(session, fig.paper_id) if fig else None
        if fig is None or pdf is None or fig.page is None or not fig.bbox:
            raise HTTPException(404, "no page geometry for this figure")
        etag = page_etag(pdf.sha256, fig.page, fig.bbox)
        return _bytes_response(request, lambda: render_page_with_box(_read(pdf), fig.page, fig.bbox), etag,
                               "image/png")

    # --- HTML pages ------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def grid_page(request: Request, session: Session = Depends(db)) -> str:
        # a first visit (no filters) shows what the dataset holds: kept figures with an image;
        # any filter (e.g. a stage view link to failures) searches every figure unless told
        params = dict(request.query_params) or {"show": "dataset"}
        query = grid_query_from(params)
        page = Q.grid(session, query)
        fc = facets(session)
        selects = [("source", "source", fc["sources"]), ("discipline", "discipline", fc["disciplines"]),
                   ("licence", "licence", fc["licences"]), ("kind", "kind", fc["kinds"]),
                   ("stage", "stage", fc["stages"])]
        return render("grid", base=_base(request), items=page.items, facets=fc, selects=selects,
                      statuses=STAGE_STATUSES, sorts=SORTS, params=params, shows=SHOWS,
                      next_url=_next_url(request, "/", page.next_cursor))

    @app.get("/figure/{figure_id}", response_class=HTMLResponse)
    def figure_page(figure_id: int, request: Request, session: Session = Depends(db)) -> str:
        detail = Q.figure_detail(session, figure_id)
        if detail is None:
            raise HTTPException(404, "no such figure")
        return render("figure", base=_base(request), d=detail)

    @app.get("/stages", response_class=HTMLResponse)
    def stages_page(request: Request, session: Session = Depends(db)) -> str:
        data = stage_data(session)
        table: dict[str, dict[str, int]] = {}
        for c in data["counts"]:
            table.setdefault(c["stage"], {})[c["status"]] = c["count"]
        rows = sorted(table.items(), key=lambda kv: _stage_rank(kv[0]))
        return render("stages", base=_base(request), table=rows, statuses=STAGE_STATUSES,
                      failures=data["failures"], ttl=int(CACHE_TTL_S))

    @app.get("/api/papers")
    def api_papers(stage: str, status: str | None = None, reason: str | None = None, cursor: str | None = None,
                   session: Session = Depends(db)) -> dict[str, Any]:
        page = Q.papers_in_stage(session, stage, status, reason, cursor=cursor)
        return {"items": page.items, "next_cursor": page.next_cursor}

    @app.get("/papers", response_class=HTMLResponse)
    def papers_page(request: Request, stage: str, status: str | None = None, reason: str | None = None,
                    cursor: str | None = None, session: Session = Depends(db)) -> str:
        page = Q.papers_in_stage(session, stage, status, reason, cursor=cursor)
        return render("papers", base=_base(request), items=page.items, stage=stage, status=status, reason=reason,
                      next_url=_next_url(request, "/papers", page.next_cursor))

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(request: Request, by: str = "prompt_hash", a: str = "", b: str = "",
                     cursor: str | None = None, session: Session = Depends(db)) -> str:
        page = Q.compare(session, by, a, b, cursor=cursor) if a and b else Q.Page([], None)
        fc = facets(session)
        choices = fc["prompt_hashes"] if by == "prompt_hash" else fc["models"]
        return render("compare", base=_base(request), by=by, a=a, b=b, items=page.items, choices=choices,
                      next_url=_next_url(request, "/compare", page.next_cursor))

    return app


def _stage_rank(stage: str) -> tuple[int, str]:
    order = Q.STAGE_ORDER
    return (order.index(stage) if stage in order else len(order), stage)
