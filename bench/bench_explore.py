"""Explorer latency at a million figures on Postgres: p50/p95 of the grid and figure endpoints.

Creates a throwaway database, migrates it, and generates the rows server-side with
``INSERT … SELECT generate_series`` (multi-row inserts without shipping data): N figures
(default 1,000,000) over N/50 papers, an original caption and a recaption per figure plus a
second prompt's recaption on 10 %, CLIP scores for both captions, PPPL for the original and
the stored CLIP gain per figure (4 N metric rows), a citation context per figure and a
``filter`` stage run per figure (3 % failed over four reasons). Secondary indexes are
dropped for the load and rebuilt after, then ``ANALYZE``. Requests go through the FastAPI
app in-process (routing, JSON/HTML, DB).

Baseline in the same run: the metric sort and the comparison view again after dropping the
0002 explorer indexes, to show what those indexes buy. The database is dropped at the end.
Usage: ``python bench/bench_explore.py [--n 1000000] [--requests 40] [--md]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402

ADMIN_URL = os.environ.get("FIGALIGN_BENCH_PG_URL",
                           os.environ.get("FIGALIGN_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"))
BIG_TABLES = ("papers", "artifacts", "figures", "captions", "metrics", "citation_contexts", "stage_runs")
PROMPT_A, PROMPT_B = "a" * 64, "b" * 64

LOAD_SQL = [
    """INSERT INTO papers (id, source, external_id, version, title, authors, categories, discipline, licence,
         source_urls, retracted, parser, parser_version, created_at, updated_at)
       SELECT i, (ARRAY['pmc','arxiv','biorxiv'])[1 + i % 3], 'P' || i, '', 'Paper number ' || i, '[]', '[]',
         (ARRAY['biology','physics','cs','medicine','chemistry','math','ecology','economics'])[1 + i % 8],
         (ARRAY['cc-by','cc-by-sa','cc0',NULL])[1 + i % 4], '{}', false, 'jats', '1.0', now(), now()
       FROM generate_series(1, :papers) i""",
    """INSERT INTO artifacts (id, sha256, size, media_type, storage_uri, fetched_at)
       SELECT i, md5(i::text) || md5((i + 7)::text), 1000, 'image/png', '/nowhere/' || i || '.png', now()
       FROM generate_series(1, 1000) i""",
    """INSERT INTO figures (id, figure_key, paper_id, label, number, kind, ordinal, page, bbox, image_artifact_id,
         width, height, subfigures, parser, parser_version, filter_reason, created_at, updated_at)
       SELECT i, 'F' || i, 1 + (i - 1) / 50, 'Figure ' || (1 + i % 50), (1 + i % 50)::text,
         CASE WHEN i % 10 = 0 THEN 'table' ELSE 'figure' END, i % 50, i % 12, '[50, 60, 400, 300]',
         1 + i % 1000, 640, 480, '[]', 'jats', '1.0', CASE WHEN i % 50 = 0 THEN 'duplicate' END, now(), now()
       FROM generate_series(1, :n) i""",
    """INSERT INTO captions (id, figure_id, kind, model, prompt_hash, params_hash, text, status, params, created_at)
       SELECT i, i, 'original', '', '', '', 'Figure ' || i || '. ' ||
         (ARRAY['Western blot of','Scatter plot of','Time course of','Phase diagram of','Micrograph of'])[1 + i % 5]
         || ' sample ' || (i % 997) || ' under condition ' || (i % 13) || '.', 'accepted', '{}', now()
       FROM generate_series(1, :n) i""",
    """INSERT INTO captions (id, figure_id, kind, model, prompt_hash, params_hash, text, status, params, created_at)
       SELECT :n + i, i, 'recaption', 'vlm-7b', :pa, 'p', 'The figure shows item ' || i || '.', 'accepted', '{}', now()
       FROM generate_series(1, :n) i""",
    """INSERT INTO captions (id, figure_id, kind, model, prompt_hash, params_hash, text, status, params, created_at)
       SELECT 2 * :n + i, i * 10, 'recaption', 'vlm-7b', :pb, 'p', 'Item ' || i || ', second prompt.', 'accepted',
         '{}', now()
       FROM generate_series(1, :n / 10) i""",
    """INSERT INTO metrics (id, figure_id, caption_id, caption_kind, metric, model, value, details, created_at)
       SELECT i, i, i, 'original', 'clip_cosine', 'ViT-L-14', 0.15 + ((i::bigint * 7919) % 1000) / 5000.0, '{}', now()
       FROM generate_series(1, :n) i""",
    """INSERT INTO metrics (id, figure_id, caption_id, caption_kind, metric, model, value, details, created_at)
       SELECT :n + i, i, :n + i, 'recaption', 'clip_cosine', 'ViT-L-14', 0.15 + ((i::bigint * 104729) % 1000) / 5000.0,
         '{}', now()
       FROM generate_series(1, :n) i""",
    """INSERT INTO metrics (id, figure_id, caption_id, caption_kind, metric, model, value, details, created_at)
       SELECT 2 * :n + i, i, i, 'original', 'pppl', 'scibert', 5 + ((i * 31) % 10007) / 100.0, '{}', now()
       FROM generate_series(1, :n) i""",
    # the stored gain row the score stage writes (figalign.metrics.gains): recaption minus original
    """INSERT INTO metrics (id, figure_id, caption_id, caption_kind, metric, model, value, details, created_at)
       SELECT 3 * :n + i, i, :n + i, 'recaption', 'clip_cosine_gain', 'ViT-L-14',
         ((i::bigint * 104729) % 1000) / 5000.0 - ((i::bigint * 7919) % 1000) / 5000.0, '{}', now()
       FROM generate_series(1, :n) i""",
    """INSERT INTO citation_contexts (id, figure_id, position, text, section, mention)
       SELECT i, i, 1, 'As shown in Figure ' || (1 + i % 50) || ', the signal rises.', 'Results',
         'Figure ' || (1 + i % 50)
       FROM generate_series(1, :n) i""",
    """INSERT INTO stage_runs (id, stage, entity_type, entity_id, status, attempts, max_attempts, error_class,
         error_message, output, dag_id, run_id, task_id, try_number, created_at, updated_at)
       SELECT i, 'filter', 'figure', i::text, CASE WHEN i % 33 = 0 THEN 'failed' ELSE 'done' END, 1, 3,
         CASE WHEN i % 33 = 0 THEN (ARRAY['BadInputError','PermanentError','ImageTooSmall','BlankImage'])[1 + i % 4]
         END, NULL, '{}', 'figalign_process', 'scheduled__2026-11-01', 'filter', 1, now(), now()
       FROM generate_series(1, :n) i""",
    """INSERT INTO stage_runs (id, stage, entity_type, entity_id, status, attempts, max_attempts, output, dag_id,
         run_id, task_id, try_number, created_at, updated_at)
       SELECT :n + i, 'parse', 'paper', i::text, 'done', 1, 3, '{}', 'figalign_process', 'scheduled__2026-11-01',
         'parse', 1, now(), now()
       FROM generate_series(1, :papers) i""",
]


def load(url: str, n: int) -> float:
    """Fill the migrated database; return the seconds it took."""
    t0 = time.perf_counter()
    eng = create_engine(url)
    with eng.begin() as conn:
        idx = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                                "AND tablename = ANY(:t) AND indexname NOT LIKE 'pk_%'"), {"t": list(BIG_TABLES)}).all()
        cons = conn.execute(text("SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype IN "
                                 "('u','f') AND conrelid::regclass::text = ANY(:t)"), {"t": list(BIG_TABLES)}).all()
        for table, name in cons:
            conn.execute(text(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"'))
        for name, _ in idx:
            conn.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
        params = {"n": n, "papers": max(1, n // 50), "pa": PROMPT_A, "pb": PROMPT_B}
        for sql in LOAD_SQL:
            conn.execute(text(sql), params)
        conn.execute(text("SET maintenance_work_mem = '512MB'"))
        for _name, definition in idx:
            conn.execute(text(definition))
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    eng.dispose()
    return time.perf_counter() - t0


def timed(client, paths: list[str]) -> list[float]:
    out = []
    for path in paths:
        t0 = time.perf_counter()
        resp = client.get(path)
        out.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:300]}")
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]


def deep_cursors(client, path: str, pages: int) -> list[str]:
    """Cursors of successive pages, so timed requests include deep pages, not just page 1."""
    cursors, url = [], path
    for _ in range(pages):
        nxt = client.get(url).json()["next_cursor"]
        if not nxt:
            break
        cursors.append(nxt)
        url = f"{path}{'&' if '?' in path else '?'}cursor={nxt}"
    return cursors


def scenarios(client, n: int, k: int, rnd: random.Random) -> dict[str, list[str]]:
    fids = [rnd.randrange(1, n + 1) for _ in range(k)]
    cur = deep_cursors(client, "/api/figures?limit=48", k)
    return {
        "grid, newest first (JSON)": [f"/api/figures?limit=48&cursor={c}" for c in cur][:k] or ["/api/figures"] * k,
        "grid page (HTML, thumbnails' markup)": ["/?limit=48"] * k,
        "grid, source + licence filter": [f"/api/figures?source={s}&licence=cc-by" for s in
                                          rnd.choices(["pmc", "arxiv", "biorxiv"], k=k)],
        "grid, stage=filter failed + reason": [f"/api/figures?stage=filter&status=failed&reason={r}" for r in
                                               rnd.choices(["BadInputError", "PermanentError", "BlankImage"], k=k)],
        "grid, sort by highest PPPL": ["/api/figures?sort=-metric:pppl:original"] * k,
        "grid, sort by largest CLIP gain": ["/api/figures?sort=-gain:clip_cosine"] * k,
        "grid, CLIP range 0.2-0.21": ["/api/figures?metric=clip_cosine&metric_min=0.2&metric_max=0.21"] * k,
        "grid, caption text search": [f"/api/figures?q={w}" for w in rnd.choices(["Western blot", "Micrograph",
                                                                                  "condition 7"], k=k)],
        "figure page (HTML)": [f"/figure/{f}" for f in fids],
        "figure (JSON)": [f"/api/figures/{f}" for f in fids],
        "compare two prompts": [f"/api/compare?a={PROMPT_A}&b={PROMPT_B}"] * k,
    }


def run(n: int, k: int, md: bool) -> None:
    from fastapi.testclient import TestClient

    from figalign.config import Settings
    from figalign.devtools.pgdb import create_database, drop_database
    from figalign.explore.app import create_app
    from figalign.store.migrate import upgrade

    name = f"figalign_bench_explore_{uuid.uuid4().hex[:8]}"
    url = create_database(ADMIN_URL, name)
    try:
        upgrade(url)
        secs = load(url, n)
        print(f"loaded {n:,} figures (+{4 * n:,} metrics, {2.1 * n:,.0f} captions, {n:,} stage runs) in {secs:.0f} s",
              flush=True)
        rows = measure(create_app, Settings, TestClient, url, n, k)
        print_table(rows, n, k, md)
    finally:
        drop_database(ADMIN_URL, name)


def measure(create_app, Settings, TestClient, url: str, n: int, k: int) -> list[tuple[str, list[float]]]:
    rnd = random.Random(0)
    app = create_app(Settings(database_url=url, data_dir=Path("/nonexistent")))
    rows = []
    with TestClient(app) as client:
        timed(client, ["/api/figures", "/api/facets", "/stages"])  # warm the pool and the facet cache
        for label, paths in scenarios(client, n, k, rnd).items():
            rows.append((label, timed(client, paths)))
        rows.append(("(not bounded) stage counts, uncached", _uncached_stages(app, 3)))
        _drop_explorer_indexes(url)  # baseline: the same views without the 0002 indexes
        rows.append(("baseline, no 0002 indexes: sort by highest PPPL",
                     timed(client, ["/api/figures?sort=-metric:pppl:original"] * 3)))
        rows.append(("baseline, no 0002 indexes: compare two prompts",
                     timed(client, [f"/api/compare?a={PROMPT_A}&b={PROMPT_B}"] * 3)))
    app.state.engine.dispose()
    return rows


def _uncached_stages(app, k: int) -> list[float]:
    from sqlalchemy.orm import Session

    from figalign.explore import queries as Q

    out = []
    for _ in range(k):
        t0 = time.perf_counter()
        with Session(app.state.engine) as s:
            counts = Q.stage_counts(s)
            Q.top_failures(s, sorted({c["stage"] for c in counts}))
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _drop_explorer_indexes(url: str) -> None:
    eng = create_engine(url)
    with eng.begin() as conn:
        for name in ("ix_metrics_metric_caption_kind_value", "ix_captions_kind_prompt_hash_figure_id",
                     "ix_captions_kind_model_figure_id"):
            conn.execute(text(f'DROP INDEX "{name}"'))
    eng.dispose()


def print_table(rows, n: int, k: int, md: bool) -> None:
    head = f"| request ({n:,} figures) | requests | p50 ms | p95 ms | under 200 ms at p95 |"
    print(head)
    print("|---|---|---|---|---|")
    for label, ms in rows:
        ok = "yes" if p95(ms) < 200 else "no"
        print(f"| {label} | {len(ms)} | {statistics.median(ms):.1f} | {p95(ms):.1f} | {ok} |")
    if not md:
        print(f"(p95 over {k} requests per bounded row; 'not bounded' and baseline rows: 3 requests, p95 = max)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="figure rows to generate")
    ap.add_argument("--requests", type=int, default=40, help="timed requests per scenario")
    ap.add_argument("--md", action="store_true", help="print only the markdown table")
    args = ap.parse_args(argv)
    run(args.n, args.requests, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
