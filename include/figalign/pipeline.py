"""Run any stage by name: the one entry point shared by the CLI, the demo and Airflow tasks.

Keeping the name → stage mapping here (with lazy imports) means DAG files and the CLI never
import torch, PyMuPDF or the OpenAI client until a task actually runs that stage.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from sqlalchemy import func, select

from figalign.config import Settings, load_settings
from figalign.stages.base import BatchSummary, run_batch
from figalign.store.db import get_engine, session_scope
from figalign.store.models import StageRun
from figalign.store.queue import RunContext

log = logging.getLogger(__name__)

# stage name -> (module, class) for stages that follow the plain Stage contract
STAGE_CLASSES = {
    "fetch": ("figalign.stages.fetch", "FetchStage"),
    "parse": ("figalign.stages.parse", "ParseStage"),
    "filter": ("figalign.stages.filter", "FilterStage"),
}
# stage name -> (module, function) for stages that batch their items themselves
STAGE_FUNCTIONS = {
    "recaption": ("figalign.stages.recaption", "run_recaption_batch"),
    "score": ("figalign.stages.score", "run_score_batch"),
}
# batching stages queue their own work (their keys include model, prompt and metric choices)
QUEUE_PREPARERS = {
    "recaption": ("figalign.stages.recaption", "RecaptionStage"),
    "score": ("figalign.stages.score", "ScoreStage"),
}
STAGES = ("fetch", "parse", "filter", "recaption", "score")


def make_stage(name: str, settings: Settings):
    """Build a plain stage from settings (fetch needs its polite HTTP client and store)."""
    module, cls = STAGE_CLASSES[name]
    stage_cls = getattr(importlib.import_module(module), cls)
    if name == "fetch":
        from figalign.clients.http import PoliteHttp
        from figalign.storage import ArtifactStore

        return stage_cls(PoliteHttp.from_settings(settings), ArtifactStore(settings.data_dir))
    return stage_cls(settings=settings)


def run_stage(name: str, *, size: int = 50, ctx: RunContext | None = None,
              settings: Settings | None = None, **options: Any) -> dict[str, Any]:
    """Claim and process one batch of ``name``; return counts (small enough for XCom)."""
    settings = settings or load_settings()
    engine = get_engine(settings)
    ctx = ctx or RunContext.local()
    if name in STAGE_FUNCTIONS:
        module, fn = STAGE_FUNCTIONS[name]
        result = getattr(importlib.import_module(module), fn)(engine, settings, size, ctx, **options)
    else:
        result = run_batch(make_stage(name, settings), engine, size=size, ctx=ctx)
    return result.as_dict() if isinstance(result, BatchSummary) else dict(result)


def enqueue_stage(name: str, settings: Settings | None = None) -> int:
    """Queue whatever a plain stage discovers as ready; return how many were new."""
    from figalign.stages.base import enqueue_discovered

    settings = settings or load_settings()
    if name in QUEUE_PREPARERS:
        module, cls = QUEUE_PREPARERS[name]
        stage = getattr(importlib.import_module(module), cls)(settings)
        with session_scope(get_engine(settings)) as session:
            return stage.prepare_queue(session)
    if name not in STAGE_CLASSES:
        return 0
    return enqueue_discovered(make_stage(name, settings), get_engine(settings))


def pending(name: str, settings: Settings | None = None) -> int:
    """Items of a stage that a worker could claim now (pending, or running past its lease)."""
    from figalign.store.models import utcnow

    settings = settings or load_settings()
    with session_scope(get_engine(settings)) as session:
        now = utcnow()
        return session.scalar(
            select(func.count()).select_from(StageRun).where(
                StageRun.stage == name,
                (StageRun.status == "pending") | ((StageRun.status == "running") & (StageRun.lease_expires_at < now)),
            )
        ) or 0


def plan_batches(name: str, size: int, max_batches: int, settings: Settings | None = None) -> list[int]:
    """Batch numbers to map over: enough batches of ``size`` for what is pending now."""
    enqueue_stage(name, settings)
    n = pending(name, settings)
    return list(range(min(max_batches, -(-n // size)))) if n else []


def summary(settings: Settings | None = None) -> dict[str, dict[str, int]]:
    """Rows per stage and status over the whole store."""
    from figalign.store.queue import counts

    settings = settings or load_settings()
    with session_scope(get_engine(settings)) as session:
        out: dict[str, dict[str, int]] = {}
        for (stage, status), n in counts(session).items():
            out.setdefault(stage, {})[status] = n
        return out


def ingest_local(folder: str, *, limit: int | None = None, licence: str | None = None,
                 settings: Settings | None = None) -> dict[str, Any]:
    """Store a folder of papers and queue them for parsing (the `local` source)."""
    from pathlib import Path

    from figalign.errors import ConfigError
    from figalign.sources.local import ingest
    from figalign.storage import ArtifactStore

    settings = settings or load_settings()
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"local source folder does not exist: {path.resolve()}")
    skipped: list[tuple[str, str]] = []
    with session_scope(get_engine(settings)) as session:
        ids = ingest(session, ArtifactStore(settings.data_dir), path, limit=limit, skipped=skipped, licence=licence)
    return {"source": "local", "papers": len(ids), "skipped": len(skipped),
            "skipped_examples": [f"{name}: {why}" for name, why in skipped[:5]]}


def render_summary(run_id: str | None, settings: Settings | None = None) -> dict[str, Any]:
    """Counts per stage and status for one Airflow run (or all runs), plus top failure reasons.

    The table is logged, so it shows in the task log, and returned as the task's XCom.
    """
    from collections import Counter

    settings = settings or load_settings()
    with session_scope(get_engine(settings)) as session:
        query = select(StageRun.stage, StageRun.status, StageRun.reason, StageRun.error_class)
        if run_id:
            query = query.where(StageRun.run_id == run_id)
        rows = session.execute(query).all()
    stages: dict[str, Counter] = {}
    reasons: dict[str, Counter] = {}
    for stage, status, reason, error_class in rows:
        stages.setdefault(stage, Counter())[status] += 1
        if status in ("failed", "skipped"):
            reasons.setdefault(stage, Counter())[(reason or error_class or "?")[:100]] += 1
    out = {s: {"counts": dict(c), "top_reasons": dict(reasons.get(s, Counter()).most_common(3))}
           for s, c in sorted(stages.items())}
    lines = ["| stage | " + " | ".join(STATUS_COLUMNS) + " | top reasons |",
             "|---|" + "---|" * len(STATUS_COLUMNS) + "---|"]
    for stage, info in out.items():
        cells = " | ".join(str(info["counts"].get(c, 0)) for c in STATUS_COLUMNS)
        why = "; ".join(f"{r} ({n})" for r, n in info["top_reasons"].items())
        lines.append(f"| {stage} | {cells} | {why} |")
    log.info("figalign run summary (%s):\n%s", run_id or "all runs", "\n".join(lines))
    return {"run_id": run_id, "stages": out}


STATUS_COLUMNS = ("pending", "running", "done", "skipped", "failed")


def harvest_window(source: str, interval_start, interval_end, *, sets=(), limit: int | None = None,
                   force: bool = False, process_licences=(), ctx: RunContext | None = None,
                   settings: Settings | None = None) -> dict[str, Any]:
    """Harvest one Airflow data interval of ``source`` (OAI days are inclusive).

    A daily run's interval [d, d+1) is the single OAI day d, so daily runs and backfills
    produce the same windows, each harvested exactly once (the cursor skips a done window
    unless ``force``).
    """
    import datetime as dt

    from figalign.clients.http import PoliteHttp
    from figalign.stages.harvest import harvest_window as harvest

    settings = settings or load_settings()
    start = interval_start.date()
    end = max(start, (interval_end - dt.timedelta(seconds=1)).date())
    http = PoliteHttp.from_settings(settings)
    if source == "arxiv":
        from figalign.sources.arxiv import ArxivSource

        src = ArxivSource(http, settings.arxiv_oai_url, settings.arxiv_base_url)
    elif source == "pmc":
        from figalign.sources.pmc import PMC_OAI_URL, PmcSource

        src = PmcSource(http, settings.pmc_base_url, oai_url=PMC_OAI_URL)
    elif source in ("biorxiv", "medrxiv"):
        from figalign.sources.biorxiv import source_from_env

        src = source_from_env(http, source)  # takes no sets: a non-empty one is a ConfigError
    else:
        raise ValueError(f"unknown harvest source {source!r}")
    policy = licence_policy(source, process_licences)
    results = [harvest(get_engine(settings), src, start, end, set_spec=set_spec, limit=limit, force=force,
                       policy=policy).as_dict()
               for set_spec in (list(sets) or [""])]
    return {"source": source, "window": [start.isoformat(), end.isoformat()], "sets": results}


def export_dataset(fmt: str = "all", out: str | None = None, *, incremental: bool = True, label: str | None = None,
                   settings: Settings | None = None) -> dict[str, Any]:
    """Export the kept figures (default folder: <data dir>/exports/<label>/<format>).

    FIGALIGN_RELEASE_LICENCES (comma list) cuts the release to those licences, as the
    CLI's ``--licences`` does; unset, it ships every licence that was processed.
    """
    import datetime as dt
    import os
    from pathlib import Path

    from figalign.export import run_export
    from figalign.export.options import ExportOptions
    from figalign.filters import parse_licences
    from figalign.storage import ArtifactStore

    settings = settings or load_settings()
    label = label or dt.date.today().isoformat()
    out_dir = Path(out) if out else Path(settings.data_dir) / "exports" / label
    options = ExportOptions(licences=parse_licences(os.environ.get("FIGALIGN_RELEASE_LICENCES")))
    results = run_export(get_engine(settings), ArtifactStore(settings.data_dir), fmt, out_dir, incremental=incremental,
                         options=options)
    return {"out_dir": str(out_dir), "formats": [{k: r[k] for k in ("format", "samples", "shards", "bytes")}
                                                 for r in results]}


def licence_policy(source: str, process_licences=()):
    """The source's licence policy, with the process allow-list replaced when one is given.

    Papers outside the allow-list keep their row with the reason (never silently dropped).
    """
    from dataclasses import replace

    from figalign.errors import ConfigError
    from figalign.sources.licences import ALL, policy_for

    policy = policy_for(source)
    if not process_licences:
        return policy
    unknown = set(process_licences) - ALL
    if unknown:
        raise ConfigError(f"unknown licence ids {sorted(unknown)}; choose from {sorted(ALL)}")
    return replace(policy, process=frozenset(process_licences))
