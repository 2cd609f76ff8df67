"""The store at the paper's size on Postgres: queue, plan, status, explorer grid and dedup.

Creates a throwaway database, migrates it to head, and generates rows server-side with
``INSERT … SELECT generate_series`` (nothing travels from Python): ``--figures`` stored
figures (default 200,000; the paper's size is 10,000,000) over ``0.16 ×`` as many papers,
plus ``--new`` (default a tenth) figures that parse has just added and filter has not seen;
and 2.5 stage runs per stored figure over fetch, parse, filter, recaption and score, with a
realistic mix of statuses (mostly done, a pending tail, some running with live and lapsed
leases, failures with reasons). pHashes are md5-random, with planted near-duplicates (1 %,
1–2 bits apart, already filtered as duplicates) and new figures that copy stored ones at
0–6 bits. Secondary indexes are dropped for the load and rebuilt after, then ``VACUUM
ANALYZE``. Timed, through the real functions (p50/p95 over ``--samples`` calls each):

* claim + finish of a batch (``store.queue.claim_batch`` then ``finish`` per item, fenced);
* ``pipeline.pending`` and ``pipeline.plan_batches`` (what a DAG run's plan task calls);
* ``pipeline.summary`` (``figalign status``);
* explorer grid pages (``explore.queries.grid``): the default view, a source + licence
  filter, a stage=filter failed + reason filter, and the dataset view;
* a near-duplicate lookup of one hash (``store.duplicates.find_originals``);
* dedup throughput: every new figure looked up against the stored ones in batches.

Usage: ``python bench/bench_store_scale.py [--figures 200000] [--new N] [--samples 40]
[--keep] [--reuse DBNAME] [--md]``. ``--keep`` leaves the database for another run with
``--reuse`` (generating 10 M figures takes a while); without it the database is dropped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402

from figalign.devtools.pgdb import create_database, database_url, drop_database  # noqa: E402

ADMIN_URL = os.environ.get("FIGALIGN_BENCH_PG_URL",
                           os.environ.get("FIGALIGN_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"))
BIG_TABLES = ("papers", "artifacts", "figures", "stage_runs")
ARTIFACTS = 1000

# :n stored figures, :m new ones (ids n+1 .. n+m), :p papers. Bits are the md5 of the id.
HASH = "('x' || substr(md5({id}::text), 1, 16))::bit(64)::bigint"
COLS = "phash, phash_bits, phash_b0, phash_b1, phash_b2"  # from b, the bits (figalign.dedup.phash_columns)
VALUES = ("lpad(to_hex(b), 16, '0'), b, ((b >> 42) & 4194303)::int, ((b >> 21) & 2097151)::int, "
          "(b & 2097151)::int")
LOAD_SQL = [
    """INSERT INTO papers (id, source, external_id, version, title, authors, categories, discipline, licence,
         source_urls, retracted, parser, parser_version, created_at, updated_at)
       SELECT i, (ARRAY['pmc','arxiv','biorxiv'])[1 + i % 3], 'P' || i, '', 'Paper number ' || i, '[]', '[]',
         (ARRAY['biology','physics','cs','medicine','chemistry','math','ecology','economics'])[1 + i % 8],
         (ARRAY['cc-by','cc-by-sa','cc0',NULL])[1 + i % 4], '{}', false, 'jats', '1.0', now(), now()
       FROM generate_series(1, :p) i""",
    f"""INSERT INTO artifacts (id, sha256, size, media_type, storage_uri, fetched_at)
       SELECT i, md5(i::text) || md5((i + 7)::text), 1000, 'image/png', '/nowhere/' || i || '.png', now()
       FROM generate_series(1, {ARTIFACTS}) i""",
    # the stored figures: 10 % tables (filtered), 4 % caption-filtered, 2 % without an image,
    # 1 % planted near-duplicates of the figure 7 ids below (1-2 bits flipped), already
    # filtered as such; the rest kept
    f"""INSERT INTO figures (id, figure_key, paper_id, label, number, kind, ordinal, image_artifact_id, width, height,
         {COLS}, pixel_sha256, subfigures, parser, parser_version, filter_reason, duplicate_of_id,
         created_at, updated_at)
       SELECT i, 'F' || i, 1 + ((i - 1)::bigint * :p) / (:n + :m), 'Figure ' || (1 + i % 9), (1 + i % 9)::text,
         CASE WHEN i % 10 = 0 THEN 'table' ELSE 'figure' END, i % 9,
         CASE WHEN i % 50 = 11 THEN NULL ELSE 1 + i % {ARTIFACTS} END, 640, 480, {VALUES},
         md5(i::text) || md5((i + 1000000000)::text), '[]', 'jats', '1.0',
         CASE WHEN i % 10 = 0 THEN 'table:tabular' WHEN i % 50 = 11 THEN 'no-image'
              WHEN i % 100 = 37 THEN 'duplicate-of:F' || (i - 7) WHEN i % 25 = 3 THEN 'caption:too-short' END,
         CASE WHEN i % 100 = 37 THEN i - 7 END, now(), now()
       FROM (SELECT i, CASE WHEN i % 100 = 37
                 THEN {HASH.format(id='(i - 7)')} # (1::bigint << (i % 61)) # (1::bigint << (i % 13))
                 ELSE {HASH.format(id='i')} END AS b FROM generate_series(1, :n) i) g""",
    # the new figures: 2 % copy a random stored figure with 0-6 bits flipped
    f"""INSERT INTO figures (id, figure_key, paper_id, label, number, kind, ordinal, image_artifact_id, width, height,
         {COLS}, pixel_sha256, subfigures, parser, parser_version, created_at, updated_at)
       SELECT i, 'F' || i, 1 + ((i - 1)::bigint * :p) / (:n + :m), 'Figure 1', '1', 'figure', 0, 1 + i % {ARTIFACTS},
         640, 480, {VALUES}, md5(i::text) || md5((i + 1000000000)::text), '[]', 'jats', '1.0', now(), now()
       FROM (SELECT i, CASE WHEN i % 50 = 7 THEN {HASH.format(id='(1 + i % :n)')} # ((1::bigint << (i % 7 * (i % 2))) - 1)
                 ELSE {HASH.format(id='i')} END AS b FROM generate_series(:n + 1, :n + :m) i) g""",
]


def stage_sql(n: int, m: int, p: int) -> list[tuple[str, str, int, str]]:
    """(stage, entity type, rows, status expression over i = 1..rows): 2.5 n rows in all."""
    recaption = int(0.6 * n)
    score = max(0, int(2.5 * n) - 2 * p - (n + m) - recaption)
    tail = "CASE WHEN i > {done} THEN 'pending' WHEN i % 97 = 5 THEN 'failed' WHEN i % 211 = 9 THEN 'skipped' " \
           "ELSE 'done' END"
    return [
        ("fetch", "paper", p, tail.format(done=p)),
        ("parse", "paper", p, tail.format(done=int(0.985 * p))),
        # the new figures' filter rows: pending, a few hundred running (half past their lease)
        ("filter", "figure", n + m, f"CASE WHEN i > {n} + 400 THEN 'pending' WHEN i > {n} THEN 'running' "
                                    "WHEN i % 97 = 5 THEN 'failed' ELSE 'done' END"),
        ("recaption", "figure", recaption, tail.format(done=int(0.92 * recaption))),
        ("score", "caption", score, tail.format(done=int(0.95 * score))),
    ]


def stage_insert(stage: str, entity: str, rows: int, status: str, first_id: int) -> str:
    return f"""INSERT INTO stage_runs (id, stage, entity_type, entity_id, status, attempts, max_attempts, lease_owner,
         lease_token, lease_expires_at, reason, error_class, output, dag_id, run_id, task_id, try_number,
         created_at, started_at, finished_at, updated_at)
       SELECT {first_id} + i, '{stage}', '{entity}', i::text, s, CASE WHEN s = 'pending' THEN 0 ELSE 1 END, 3,
         CASE WHEN s = 'running' THEN 'bench-worker' END, CASE WHEN s = 'running' THEN md5(i::text)::varchar(32) END,
         CASE WHEN s = 'running' THEN now() AT TIME ZONE 'utc' + (CASE WHEN i % 2 = 0 THEN 1 ELSE -1 END)
              * interval '10 minutes' END,
         CASE WHEN s = 'failed' THEN (ARRAY['over-budget: wall 120 s','no figures','corrupt archive'])[1 + i % 3]
              WHEN s = 'skipped' THEN 'no endpoint configured' END,
         CASE WHEN s = 'failed' THEN (ARRAY['PermanentError','BadInputError'])[1 + i % 2] END,
         '{{}}', 'figalign_process', 'scheduled__2026-11-01', '{stage}', 1, now(), now(),
         CASE WHEN s IN ('done','failed','skipped') THEN now() END, now()
       FROM (SELECT i, {status} AS s FROM generate_series(1, {rows}) i) g"""


def _secondary(conn) -> tuple[list, list]:
    idx = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                            "AND tablename = ANY(:t) AND indexname NOT LIKE 'pk_%'"), {"t": list(BIG_TABLES)}).all()
    cons = conn.execute(text("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                             "WHERE contype IN ('u','f') AND conrelid::regclass::text = ANY(:t)"),
                        {"t": list(BIG_TABLES)}).all()
    return idx, cons


def generate(url: str, n: int, m: int) -> dict[str, float]:
    """Fill the migrated database; return seconds per step."""
    p = max(1, int(0.16 * n))
    times: dict[str, float] = {}
    eng = create_engine(url)
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SET synchronous_commit = off"))
        conn.execute(text("SET maintenance_work_mem = '1GB'"))
        idx, cons = _secondary(conn)
        unique_idx = {c[1] for c in cons}
        for table, name, _ in cons:
            conn.execute(text(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"'))
        for name, _ in idx:
            if name not in unique_idx:
                conn.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
        params = {"n": n, "m": m, "p": p}
        for i, sql in enumerate(LOAD_SQL):
            t0 = time.perf_counter()
            conn.execute(text(sql), params)
            times[f"load {i}"] = time.perf_counter() - t0
            print(f"  load step {i}: {times[f'load {i}']:.0f} s", flush=True)
        first = 0
        for stage, entity, rows, status in stage_sql(n, m, p):
            t0 = time.perf_counter()
            conn.execute(text(stage_insert(stage, entity, rows, status, first)))
            first += rows
            times[f"stage_runs {stage}"] = time.perf_counter() - t0
            print(f"  stage_runs {stage} ({rows:,}): {times[f'stage_runs {stage}']:.0f} s", flush=True)
        t0 = time.perf_counter()
        for _name, definition in idx:
            if _name not in unique_idx:
                conn.execute(text(definition))
        for table, name, definition in cons:
            conn.execute(text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}'))
        for table in BIG_TABLES:
            conn.execute(text(f'SELECT setval(pg_get_serial_sequence(\'{table}\', \'id\'), '
                              f'(SELECT max(id) FROM "{table}"))'))
        times["indexes"] = time.perf_counter() - t0
        print(f"  indexes and constraints: {times['indexes']:.0f} s", flush=True)
        t0 = time.perf_counter()
        conn.execute(text("VACUUM ANALYZE"))
        times["vacuum analyze"] = time.perf_counter() - t0
    eng.dispose()
    return times


def db_size(url: str) -> int:
    eng = create_engine(url)
    with eng.connect() as conn:
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
    eng.dispose()
    return size




def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]


def timed(fn, k: int) -> list[float]:
    """Milliseconds of ``k`` calls of ``fn(i)``."""
    out = []
    for i in range(k):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def store_size(url: str) -> dict[str, int]:
    eng = create_engine(url)
    with eng.connect() as conn:
        counts = {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in ("papers", "figures", "stage_runs")}
        counts["new"] = conn.execute(text("SELECT count(*) FROM stage_runs WHERE stage = 'filter' "
                                          "AND status IN ('pending','running')")).scalar()
    eng.dispose()
    return counts


# -- the measurements ----------------------------------------------------------------------
def measure_queue(engine, settings, k: int) -> list[tuple[str, list[float], float | None]]:
    """Claim + finish a batch of 25 (the real queue functions), on the big and a small backlog."""
    from figalign import pipeline
    from figalign.store.db import session_scope
    from figalign.store.queue import RunContext, claim_batch, finish

    rows = []
    for stage in ("filter", "parse"):
        claims: list[float] = []

        def claim_and_finish(i, stage=stage, claims=claims):
            t0 = time.perf_counter()
            with session_scope(engine) as s:
                items = claim_batch(s, stage, 25, lease_seconds=300, ctx=RunContext(f"bench/{i}"))
            claims.append((time.perf_counter() - t0) * 1000)
            for item in items:
                with session_scope(engine) as s:
                    finish(s, item, "done", output={"bench": True})

        total = timed(claim_and_finish, k)
        rows.append((f"claim a batch of 25 ({stage})", claims, 50))
        rows.append((f"claim + finish a batch of 25 ({stage}, one fenced txn per item)", total, None))
        rows.append((f"pending ({stage})", timed(lambda i, st=stage: pipeline.pending(st, settings), k), None))
    return rows


def measure_plan(url: str, k: int) -> list[tuple[str, list[float], float | None]]:
    """What a DAG run's plan task calls: the stage's discover (enqueue) then ``pending``.
    Under a 10-minute statement timeout, so a query that does not scale shows as an error."""
    from sqlalchemy.exc import OperationalError

    from figalign import pipeline
    from figalign.config import Settings

    settings = Settings(database_url=url + "?options=-cstatement_timeout%3D600000", data_dir=Path("/nonexistent"))
    rows = []
    for stage in ("parse", "filter", "fetch"):
        label = f"plan_batches ({stage}: discover + pending)"
        try:
            rows.append((label, timed(lambda i, st=stage: pipeline.plan_batches(st, 200, 64, settings, slots=8), k),
                         None))
        except OperationalError as exc:
            print(f"{label}: {str(exc).splitlines()[0]}", flush=True)
            rows.append((label + " — statement timeout (10 min)", [600_000.0], None))
    return rows


def measure_status(settings, k: int) -> list[tuple[str, list[float], float | None]]:
    from figalign import pipeline

    return [("status: pipeline.summary (every stage x status)", timed(lambda i: pipeline.summary(settings), k), None)]


GRIDS = {
    "grid, default view (newest first)": {},
    "grid, default view, page 20": {"_pages": 20},
    "grid, dataset view (kept, with image)": {"show": "dataset"},
    "grid, source + licence filter": {"source": "arxiv", "licence": "cc-by"},
    "grid, kind=table, oldest first": {"kind": "table", "sort": "id"},
    "grid, stage=filter failed + reason": {"stage": "filter", "status": "failed", "reason": "corrupt archive"},
    "grid, stage=filter failed + reason, oldest first": {"stage": "filter", "status": "failed",
                                                         "reason": "corrupt archive", "sort": "id"},
    "grid, stage=parse failed + reason (paper-level)": {"stage": "parse", "status": "failed",
                                                        "reason": "corrupt archive"},
    "grid, stage=recaption pending": {"stage": "recaption", "status": "pending"},
    "grid, stage=recaption done": {"stage": "recaption", "status": "done"},
    "grid, filter_reason=no-image": {"filter_reason": "no-image"},
}


def measure_grid(engine, k: int) -> list[tuple[str, list[float], float | None]]:
    from sqlalchemy.orm import Session

    from figalign.explore import queries as Q

    rows = []
    with Session(engine) as s:
        Q.grid(s, Q.GridQuery())  # warm
        for label, params in GRIDS.items():
            params = dict(params)
            pages = params.pop("_pages", 0)
            cursor = None
            for _ in range(pages):
                cursor = Q.grid(s, Q.GridQuery(cursor=cursor, **params)).next_cursor
            query = Q.GridQuery(cursor=cursor, **params)

            def one(i, query=query, label=label):
                page = Q.grid(s, query)
                if not page.items:
                    raise RuntimeError(f"{label}: empty page")
                s.rollback()

            rows.append((label, timed(one, k), 200))
    return rows


def prewarm(engine) -> float:
    """Read the band indexes into the OS cache (``pg_prewarm``), as a running store has them."""
    t0 = time.perf_counter()
    with engine.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_prewarm"))
        for band in range(3):
            conn.execute(text(f"SELECT pg_prewarm('ix_figures_phash_b{band}_kept', 'read')"))
        conn.commit()
    return time.perf_counter() - t0


def measure_lookup(engine, k: int) -> list[tuple[str, list[float], float | None]]:
    """One figure's lookup, as the filter stage makes it: random new figures; first with the
    band indexes as the generation left them in memory, then read into the OS cache."""
    import random

    from sqlalchemy.orm import Session

    from figalign.store.duplicates import find_originals

    with Session(engine) as s:
        top = s.execute(text("SELECT max(id) FROM figures")).scalar()
        ids = random.Random(0).sample(range(top - 900_000 if top > 1_000_000 else 1, top + 1), k)
        probes = [tuple(r) for r in s.execute(text("SELECT id, phash, pixel_sha256 FROM figures WHERE id = ANY(:ids)"),
                                               {"ids": ids}).all()]

        def one(i):
            find_originals(s, [probes[i % len(probes)]], 6)
            s.rollback()

        cold = timed(one, k)
        secs = prewarm(engine)
        warm = timed(one, k)
        return [("near-duplicate lookup of one figure, band indexes not in memory", cold, 20),
                (f"near-duplicate lookup of one figure, band indexes in the OS cache (read in {secs:.0f} s)",
                 warm, 20)]


def _dedup_range(url: str, lo: int, hi: int, batch: int) -> tuple[int, int, int]:
    """Look up figures lo..hi-1 in batches; (figures, with a match, near matches)."""
    from sqlalchemy.orm import Session

    from figalign.store.duplicates import find_originals

    from figalign.store.db import make_engine

    eng = make_engine(url)
    looked = found = near = 0
    with Session(eng) as s:
        for start in range(lo, hi, batch):
            probes = [tuple(r) for r in s.execute(text(
                "SELECT id, phash, pixel_sha256 FROM figures WHERE id >= :a AND id < :b ORDER BY id"),
                {"a": start, "b": min(hi, start + batch)}).all()]
            for matches in find_originals(s, probes, 6).values():
                looked += 1
                found += bool(matches)
                near += any(m.how == "near" for m in matches)
            s.rollback()
    eng.dispose()
    return looked, found, near


def measure_dedup(url: str, new: int, workers: int, batch: int = 500) -> dict:
    """Every one of ``new`` new figures (the highest ids) looked up against all lower ids."""
    from concurrent.futures import ProcessPoolExecutor

    eng = create_engine(url)
    with eng.connect() as conn:
        top = conn.execute(text("SELECT max(id) FROM figures")).scalar()
    eng.dispose()
    lo = top - new + 1
    bounds = [lo + (top + 1 - lo) * w // workers for w in range(workers + 1)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_dedup_range, [url] * workers, bounds[:-1], bounds[1:], [batch] * workers))
    secs = time.perf_counter() - t0
    looked, found, near = (sum(p[i] for p in parts) for i in range(3))
    return {"figures": looked, "with_match": found, "near": near, "seconds": secs, "workers": workers, "batch": batch}


def measure(url: str, k: int, dedup: int, workers: int, only: set[str] | None = None, dedup_batch: int = 500) -> dict:
    from figalign.config import Settings

    from figalign.store.db import make_engine

    settings = Settings(database_url=url, data_dir=Path("/nonexistent"))
    engine = make_engine(url)  # the store's own engine settings
    rows: list[tuple[str, list[float], float | None]] = []
    groups = only or {"claim", "plan", "status", "grid", "lookup", "dedup"}
    if "claim" in groups:
        rows += measure_queue(engine, settings, k)
    if "plan" in groups:
        rows += measure_plan(url, max(3, k // 10))
    if "status" in groups:
        rows += measure_status(settings, max(3, k // 10))
    if "grid" in groups:
        rows += measure_grid(engine, k)
    if "lookup" in groups:
        rows += measure_lookup(engine, k)
    engine.dispose()
    out = {"rows": rows}
    if "dedup" in groups and dedup:
        out["dedup"] = measure_dedup(url, dedup, workers, dedup_batch)
    return out


def print_tables(url: str, result: dict, gen: dict | None, args) -> None:
    sizes = store_size(url)
    print(f"\nstore: {sizes['figures']:,} figures ({sizes['new']:,} not yet filtered), {sizes['papers']:,} papers, "
          f"{sizes['stage_runs']:,} stage runs; database {db_size(url) / 2**30:.1f} GiB"
          + (f"; generated in {gen['total']:.0f} s" if gen else ""))
    print("| query | calls | p50 ms | p95 ms | target p95 |")
    print("|---|---|---|---|---|")
    for label, ms, target in result["rows"]:
        goal = "" if target is None else f"< {target} ms: {'yes' if p95(ms) < target else '**no**'}"
        print(f"| {label} | {len(ms)} | {statistics.median(ms):.1f} | {p95(ms):.1f} | {goal} |")
    d = result.get("dedup")
    if d:
        rate = d["figures"] / d["seconds"]
        print(f"\ndedup: {d['figures']:,} new figures against the stored ones in {d['seconds']:.0f} s "
              f"({rate:,.0f} figures/s, {d['workers']} processes, batches of {d['batch']}); "
              f"{d['with_match']:,} with a match ({d['near']:,} near); 1 M at this rate: {1e6 / rate / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figures", type=int, default=200_000, help="stored figures to generate")
    ap.add_argument("--new", type=int, default=None, help="new figures to dedup (default: figures / 10)")
    ap.add_argument("--samples", type=int, default=40, help="timed calls per query")
    ap.add_argument("--keep", action="store_true", help="keep the database (print its name)")
    ap.add_argument("--reuse", help="measure an existing database made with --keep (skips generation)")
    ap.add_argument("--generate-only", action="store_true", help="generate and stop (implies --keep)")
    ap.add_argument("--dedup", type=int, default=0, help="new figures to dedup (default: all --new)")
    ap.add_argument("--workers", type=int, default=2, help="processes for the dedup throughput run")
    ap.add_argument("--dedup-batch", type=int, default=500, help="figures per find_originals call in the dedup run")
    ap.add_argument("--only", default="", help="comma-separated measurement groups (claim,plan,status,grid,dedup)")
    ap.add_argument("--md", action="store_true", help="print only the markdown tables")
    args = ap.parse_args(argv)
    new = args.figures // 10 if args.new is None else args.new
    name = args.reuse or f"figalign_bench_scale_{uuid.uuid4().hex[:8]}"
    keep = args.keep or args.generate_only or bool(args.reuse)
    try:
        if args.reuse:
            url = database_url(ADMIN_URL, name)
            gen = None
        else:
            from figalign.store.migrate import upgrade

            url = create_database(ADMIN_URL, name)
            print(f"database {name}: generating {args.figures:,} figures + {new:,} new", flush=True)
            upgrade(url)
            t0 = time.perf_counter()
            gen = generate(url, args.figures, new)
            gen["total"] = time.perf_counter() - t0
            print(f"generated in {gen['total']:.0f} s; database {db_size(url) / 2**30:.1f} GiB", flush=True)
        if not args.generate_only:
            only = set(filter(None, args.only.split(","))) or None
            dedup = args.dedup or (store_size(url)["new"] if args.reuse else new)
            rows = measure(url, args.samples, dedup, args.workers, only, args.dedup_batch)
            print_tables(url, rows, gen, args)
    finally:
        if keep:
            print(f"kept database {name}", flush=True)
        else:
            drop_database(ADMIN_URL, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
