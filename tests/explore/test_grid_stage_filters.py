"""The grid's stage filters against a brute-force answer, on both backends.

A stage filter on a status that is not ``done`` is read from the stage runs' side
(``queries._join_unsettled``: ix_stage_runs_unsettled_entity, walked in entity order); the
rest probe each figure (``_stage_exists``). Whatever path a query takes, paging through it
with cursors must give exactly the figures whose stage run matches, in the requested order,
each once — for figure-, paper- and caption-level stages, beside rows of entities whose ids
are not numbers (``file`` ingest rows, bulk ``tar`` rows).
"""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from figalign.explore import queries as Q
from figalign.store.db import session_scope
from figalign.store.models import Caption, FigureRow, StageRun
from figalign.store.upsert import upsert
from tests.figure_store import FigureStore

STATUSES = ("done", "failed", "skipped", "pending", "running")
REASONS = ("corrupt archive", "no figures", None)


@pytest.fixture
def store(tmp_path, db_url):
    fs = FigureStore(tmp_path, db_url)
    papers = [fs.paper(f"PMC{i}") for i in range(7)]
    for i in range(40):
        fs.figure(papers[i % 7], None, caption=f"Figure {i}. A measured curve of sample {i}.")
    yield fs
    fs.engine.dispose()


def _run(session, stage: str, entity: str, entity_id: str, k: int) -> tuple[str, str | None]:
    status = STATUSES[k % len(STATUSES)]
    reason = REASONS[(k // 5) % len(REASONS)] if status in ("failed", "skipped") else None
    error = "BadInputError" if status == "failed" and reason is None else None
    upsert(session, StageRun, dict(stage=stage, entity_type=entity, entity_id=entity_id, status=status,
                                   reason=reason, error_class=error, output={}),
           ("stage", "entity_type", "entity_id"))
    return status, reason or error or "(none)"


def _seed_runs(fs: FigureStore) -> dict[tuple[str, str], dict[int, tuple[str, str]]]:
    """Stage runs in a spread of states; per (stage, entity) the state of each entity id."""
    truth: dict[tuple[str, str], dict[int, tuple[str, str]]] = {}
    with session_scope(fs.engine) as s:
        figures = s.execute(select(FigureRow.id, FigureRow.paper_id).order_by(FigureRow.id)).all()
        captions = s.execute(select(Caption.id)).scalars().all()
        for k, (fid, _) in enumerate(figures):
            truth.setdefault(("filter", "figure"), {})[fid] = _run(s, "filter", "figure", str(fid), k * 7)
            if k % 3:
                truth.setdefault(("recaption", "figure"), {})[fid] = _run(s, "recaption", "figure", str(fid), k)
        for k, pid in enumerate(sorted({p for _, p in figures})):
            truth.setdefault(("parse", "paper"), {})[pid] = _run(s, "parse", "paper", str(pid), k * 3 + 1)
        for k, cid in enumerate(captions):
            truth.setdefault(("score", "caption"), {})[cid] = _run(s, "score", "caption", str(cid), k * 11)
        for k, name in enumerate(["paper-a.pdf", "x/y.tar", "12ab"]):  # ids that are not numbers
            _run(s, "ingest", "file", name, 1)
            _run(s, "parse", "paper", name, 1)
    return truth


def _expected(fs: FigureStore, truth, stage: str, status: str | None, reason: str | None) -> list[int]:
    entity = Q.STAGE_ENTITY[stage]
    with session_scope(fs.engine) as s:
        figures = s.execute(select(FigureRow.id, FigureRow.paper_id)).all()
        caption_figure = dict(s.execute(select(Caption.id, Caption.figure_id)).all())
    runs = truth[(stage, entity)]
    match = {e for e, (st, why) in runs.items() if (status is None or st == status) and (reason is None or why == reason)}
    if entity == "figure":
        return sorted(f for f, _ in figures if f in match)
    if entity == "paper":
        return sorted(f for f, p in figures if p in match)
    return sorted({caption_figure[c] for c in match})


def _paged(fs: FigureStore, **params) -> list[int]:
    got, cursor = [], None
    with Session(fs.engine) as s:
        for _ in range(100):
            page = Q.grid(s, Q.GridQuery(limit=3, cursor=cursor, **params))
            got += [row["id"] for row in page.items]
            cursor = page.next_cursor
            if cursor is None:
                return got
    raise AssertionError("paging did not end")


def test_stage_filters_page_exactly_the_matching_figures_in_order(store):
    truth = _seed_runs(store)
    checked = 0
    for stage, status, reason in itertools.product(("filter", "recaption", "parse", "score"),
                                                   (None, *STATUSES), (None, "corrupt archive", "BadInputError")):
        if reason and status not in ("failed", "skipped"):
            continue
        expected = _expected(store, truth, stage, status, reason)
        for sort, order in (("-id", expected[::-1]), ("id", expected)):
            got = _paged(store, stage=stage, status=status, reason=reason, sort=sort)
            assert got == order, (stage, status, reason, sort)
        checked += bool(expected)
    assert checked >= 30, "the seeded states must give many non-empty filters"


def test_unsettled_filters_combine_with_figure_filters(store):
    truth = _seed_runs(store)
    with session_scope(store.engine) as s:
        table = s.execute(select(FigureRow.id).order_by(FigureRow.id).limit(10)).scalars().all()[::2]
        for fid in table:
            s.get(FigureRow, fid).kind = "table"
    expected = [f for f in _expected(store, truth, "filter", "failed", None) if f in table]
    assert expected, "some failed figures are tables"
    assert _paged(store, stage="filter", status="failed", kind="table") == expected[::-1]
