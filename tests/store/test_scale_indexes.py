"""The partial indexes of 0009 are usable by the queries they were made for.

A partial index serves a query only when Postgres can prove the query's WHERE implies the
index's; a reworded condition silently turns a claim back into a sort of the whole backlog.
These tests ask the planner (sequential scans off, so a tiny table does not decide it) which
index each query takes. The 10 M-row timings are in docs/benchmarks.md
(bench/bench_store_scale.py); filter's discover, rewritten there, is checked for results.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql

from figalign.store.db import session_scope
from figalign.store.models import StageRun, utcnow
from figalign.store.queue import _claimable, claim_batch, enqueue, finish


def _plan(engine, stmt) -> str:
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        return "\n".join(conn.execute(text(f"EXPLAIN {sql}")).scalars())


def test_claim_walks_the_open_rows_index(pg_engine):
    now = utcnow()
    claim = select(StageRun).where(_claimable("filter", now), StageRun.attempts < StageRun.max_attempts) \
        .order_by(StageRun.id).limit(25)
    assert "ix_stage_runs_stage_id_open" in _plan(pg_engine, claim)
    exhausted = update(StageRun).where(_claimable("filter", now), StageRun.attempts >= StageRun.max_attempts) \
        .values(status="failed")
    assert "ix_stage_runs_stage_id_last_attempt" in _plan(pg_engine, exhausted)


def test_claim_still_takes_pending_and_lapsed_and_ends_exhausted(engine):
    """What the indexes serve, on both backends: pending and lapsed rows are claimed in id
    order, live leases are not, and a lapsed lease on its last attempt ends failed."""
    with session_scope(engine) as s:
        enqueue(s, "filter", "figure", [str(i) for i in range(1, 7)])
    past = utcnow() - dt.timedelta(minutes=5)
    with session_scope(engine) as s:
        first = claim_batch(s, "filter", 3)
    with session_scope(engine) as s:  # 1 lapsed, 2 lapsed on its last attempt, 3 live
        s.execute(update(StageRun).where(StageRun.entity_id == "1").values(lease_expires_at=past))
        s.execute(update(StageRun).where(StageRun.entity_id == "2").values(lease_expires_at=past, attempts=3))
    with session_scope(engine) as s:
        got = claim_batch(s, "filter", 10)
    assert [c.entity_id for c in first] == ["1", "2", "3"]
    assert [c.entity_id for c in got] == ["1", "4", "5", "6"]
    with session_scope(engine) as s:
        states = dict(s.execute(select(StageRun.entity_id, StageRun.status)).all())
        for item in got:
            finish(s, item, "done")
    assert states == {"1": "running", "2": "failed", "3": "running", "4": "running", "5": "running", "6": "running"}


def test_pending_count_uses_the_open_rows_index(pg_engine):
    from sqlalchemy import func

    now = utcnow()
    count = select(func.count()).select_from(StageRun).where(
        StageRun.stage == "parse",
        (StageRun.status == "pending") | ((StageRun.status == "running") & (StageRun.lease_expires_at < now)))
    assert "ix_stage_runs_stage_id_open" in _plan(pg_engine, count)


def test_duplicate_lookup_probes_the_band_indexes(pg_engine):
    import random

    from figalign.store.duplicates import _postgres_rows
    from tests.store.test_duplicates import _fill, _random_store

    _fill(pg_engine, _random_store(2000, random.Random(3)))
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE figures"))
    captured = {}
    with session_scope(pg_engine) as s:
        real = s.execute

        def spy(stmt, params=None, **kw):
            captured.update(sql=stmt.text, params=params)
            return real(stmt, params, **kw)

        s.execute = spy
        assert _postgres_rows(s, [(5000, "0123456789abcdef", "a" * 64)], 6) == []
    with pg_engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(conn.execute(text("EXPLAIN " + captured["sql"]), captured["params"]).scalars())
    for band in range(3):
        assert f"Index Only Scan using ix_figures_phash_b{band}_kept" in plan, plan
    assert "ix_figures_pixel_sha256" in plan, plan


def test_filter_discover_finds_figures_without_a_filter_row(tmp_path):
    from figalign.config import Settings
    from figalign.stages.filter import FilterStage
    from tests.figure_store import FigureStore, synthetic_figure

    fs = FigureStore(tmp_path)
    paper = fs.paper("PMC1")
    ids = [fs.figure(paper, synthetic_figure(i), caption="Figure 1. A plot of things over time.") for i in range(3)]
    with session_scope(fs.engine) as s:
        enqueue(s, "filter", "figure", [str(ids[1])])
        enqueue(s, "parse", "figure", [str(ids[2])])  # another stage's row does not count
    stage = FilterStage(settings=Settings(data_dir=fs.data_dir, database_url=fs.url))
    with session_scope(fs.engine) as s:
        assert list(stage.discover(s)) == [str(ids[0]), str(ids[2])]
    fs.engine.dispose()
