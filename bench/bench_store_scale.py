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


def create_db(name: str) -> str:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_db(name: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figures", type=int, default=200_000, help="stored figures to generate")
    ap.add_argument("--new", type=int, default=None, help="new figures to dedup (default: figures / 10)")
    ap.add_argument("--samples", type=int, default=40, help="timed calls per query")
    ap.add_argument("--keep", action="store_true", help="keep the database (print its name)")
    ap.add_argument("--reuse", help="measure an existing database made with --keep (skips generation)")
    ap.add_argument("--generate-only", action="store_true", help="generate and stop (implies --keep)")
    ap.add_argument("--md", action="store_true", help="print only the markdown tables")
    args = ap.parse_args(argv)
    new = args.figures // 10 if args.new is None else args.new
    name = args.reuse or f"figalign_bench_scale_{uuid.uuid4().hex[:8]}"
    keep = args.keep or args.generate_only or bool(args.reuse)
    try:
        if args.reuse:
            url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
            gen = None
        else:
            from figalign.store.migrate import upgrade

            url = create_db(name)
            print(f"database {name}: generating {args.figures:,} figures + {new:,} new", flush=True)
            upgrade(url)
            t0 = time.perf_counter()
            gen = generate(url, args.figures, new)
            gen["total"] = time.perf_counter() - t0
            print(f"generated in {gen['total']:.0f} s; database {db_size(url) / 2**30:.1f} GiB", flush=True)
        if not args.generate_only:
            from bench_store_scale_measure import run_all  # noqa: E402 (next to this file)

            run_all(url, args.samples, gen, md=args.md)
    finally:
        if keep:
            print(f"kept database {name}", flush=True)
        else:
            drop_db(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
