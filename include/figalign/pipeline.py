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

        return stage_cls(PoliteHttp.from_settings(settings), ArtifactStore.from_settings(settings))
    return stage_cls(settings=settings)


def run_stage(name: str, *, size: int = 50, ctx: RunContext | None = None,
              settings: Settings | None = None, discover: bool = True, lane: str | None = None,
              **options: Any) -> dict[str, Any]:
    """Claim and process one batch of ``name`` (of ``lane`` only, when given); return counts
    (small enough for XCom).

    ``discover=False`` when the work was queued already (Airflow's ``plan_<stage>``; a CLI
    loop after its first batch): re-queueing in every batch would put back the items an
    earlier batch of the same run skipped (e.g. for want of model weights) again and again.
    Raises ``UnfinishedWork`` rather than return while an item it claimed is still running.
    """
    from figalign.stages.base import check_finished

    settings = settings or load_settings()
    engine = get_engine(settings)
    ctx = ctx or RunContext.local()
    if name in STAGE_FUNCTIONS:
        module, fn = STAGE_FUNCTIONS[name]
        result = getattr(importlib.import_module(module), fn)(engine, settings, size, ctx, discover=discover,
                                                              **options)
        check_finished(engine, name, ctx)
    else:
        result = run_batch(make_stage(name, settings), engine, size=size, ctx=ctx, discover=discover, lane=lane)
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


def pending(name: str, settings: Settings | None = None, lane: str | None = None) -> int:
    """Items of a stage (of one lane, when given) that a worker could claim now (pending, or
    running past its lease)."""
    from figalign.store.models import utcnow

    settings = settings or load_settings()
    with session_scope(get_engine(settings)) as session:
        now = utcnow()
        query = select(func.count()).select_from(StageRun).where(
            StageRun.stage == name,
            (StageRun.status == "pending") | ((StageRun.status == "running") & (StageRun.lease_expires_at < now)),
        )
        if lane is not None:
            query = query.where(StageRun.lane == lane)
        return session.scalar(query) or 0


def plan_batches(name: str, size: int, max_batches: int, settings: Settings | None = None,
                 slots: int | None = None, lane: str | None = None) -> list[int]:
    """Batch sizes to map over, fitted to the work: what is pending now, spread over ``slots``.

    ``size`` is the most a batch takes; a small run is cut into at least ``slots`` batches
    (``FIGALIGN_WORKER_SLOTS``, default 4: the parallel task slots of the deployment) so
    it still spreads over workers, and a huge one is capped at ``max_batches`` batches of
    ``size`` (the next run takes the rest). Each mapped task claims the size it is given.
    ``lane``: only the items already sorted into that lane (``plan_lanes`` sorts them);
    without one, every lane together (the CLI's way).
    """
    enqueue_stage(name, settings)
    return fit_batches(pending(name, settings, lane), size, max_batches, slots)


def fit_batches(n: int, size: int, max_batches: int, slots: int | None = None) -> list[int]:
    """``n`` pending items as batch sizes: at most ``size`` each, spread over at least
    ``slots`` batches when that is possible, at most ``max_batches`` batches."""
    if not n:
        return []
    slots = slots or worker_slots()
    per = max(1, min(size, -(-n // slots)))
    return [per] * min(max_batches, -(-n // per))


def plan_lanes(name: str, size: int, max_batches: int, settings: Settings | None = None,
               slots: int | None = None) -> dict[str, list[int]]:
    """``plan_batches`` for each lane of a plain stage: lane → batch sizes.

    The stage first sorts its claimable items into lanes (``sort_lanes``), then each lane's
    pending count is fitted on its own (``plan_lane``), so a lane of two items still spreads
    over two tasks whatever the other lanes hold. Every lane of the stage has a key (an empty
    list: nothing to do).
    """
    lanes = sort_lanes(name, settings)
    return {lane: plan_lane(name, lane, size, max_batches, settings, slots) for lane in lanes}


def sort_lanes(name: str, settings: Settings | None = None) -> tuple[str, ...]:
    """Queue what the stage discovers, then sort its claimable items into lanes
    (``Stage.lane_of``; parse: ``grobid`` for a paper that will call GROBID); the lanes."""
    from figalign.store.queue import assign_lanes

    settings = settings or load_settings()
    enqueue_stage(name, settings)
    stage = make_stage(name, settings)
    if len(stage.lanes) > 1:
        with session_scope(get_engine(settings)) as session:
            assign_lanes(session, name, lambda ids: stage.lane_of(session, ids), default=stage.lanes[0])
    return tuple(stage.lanes)


def plan_lane(name: str, lane: str, size: int, max_batches: int, settings: Settings | None = None,
              slots: int | None = None) -> list[int]:
    """Batch sizes for one lane's items as ``sort_lanes`` left them: a count, no discovery."""
    return fit_batches(pending(name, settings, lane), size, max_batches, slots)


def worker_slots(env=None) -> int:
    """Parallel task slots the deployment has for one stage (``FIGALIGN_WORKER_SLOTS``)."""
    import os

    from figalign.errors import ConfigError

    value = (env or os.environ).get("FIGALIGN_WORKER_SLOTS", "4")
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"FIGALIGN_WORKER_SLOTS must be a positive integer, got {value!r}")
    return int(value)


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
    """Store a folder of papers and queue them for parsing (the `local` source).

    ``folder`` is a local folder (on a cluster: a mount every worker shares, since the task
    runs on any of them) or an fsspec folder URL such as ``s3://bucket/papers``.
    """
    import contextlib
    from pathlib import Path

    from figalign import location
    from figalign.errors import ConfigError
    from figalign.sources.local import ingest, mirrored
    from figalign.storage import ArtifactStore

    settings = settings or load_settings()
    store = ArtifactStore.from_settings(settings)
    skipped: list[tuple[str, str]] = []
    with contextlib.ExitStack() as stack:
        if location.is_url(folder):
            path, origin = stack.enter_context(mirrored(folder, store.options_for(folder))), folder
        else:
            path, origin = Path(folder), None
            if not path.is_dir():
                raise ConfigError(f"local source folder does not exist: {path.resolve()}")
        with session_scope(get_engine(settings)) as session:
            ids = ingest(session, store, path, limit=limit, skipped=skipped, licence=licence, origin=origin)
    return {"source": "local", "papers": len(ids), "skipped": len(skipped),
            "skipped_examples": [f"{name}: {why}" for name, why in skipped[:5]]}


def render_summary(run_id: str | None, settings: Settings | None = None, *, dag_id: str | None = None
                   ) -> dict[str, Any]:
    """Counts per stage and status for one Airflow run (or all runs), plus top failure reasons.

    The table is logged, so it shows in the task log, and returned as the task's XCom. For
    one run, items it claimed that are still ``running`` at its end raise ``UnfinishedWork``
    naming them: the run must not end "success" with work it took unfinished.
    """
    from collections import Counter

    from figalign.errors import UnfinishedWork

    settings = settings or load_settings()
    with session_scope(get_engine(settings)) as session:
        query = select(StageRun.stage, StageRun.status, StageRun.reason, StageRun.error_class,
                       StageRun.entity_type, StageRun.entity_id)
        if run_id:
            query = query.where(StageRun.run_id == run_id)
        if dag_id:
            query = query.where(StageRun.dag_id == dag_id)
        rows = session.execute(query).all()
    stages: dict[str, Counter] = {}
    reasons: dict[str, Counter] = {}
    for stage, status, reason, error_class, _type, _id in rows:
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
    running = [f"{r[0]} {r[4]} {r[5]}" for r in rows if r[1] == "running"]
    if run_id and running:
        raise UnfinishedWork(f"run {run_id}", sorted(running))
    return {"run_id": run_id, "stages": out}


STATUS_COLUMNS = ("pending", "running", "done", "skipped", "failed")


def all_reasons(stage: str | None = None, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every failure and skip reason (and the filter's decisions), with counts and one example id.

    Reasons that embed another id (``duplicate-of:<figure key>``) are grouped without it.
    """
    import re
    from collections import Counter

    from figalign.store.queue import reason_of

    settings = settings or load_settings()
    reason = reason_of()
    query = (select(StageRun.stage, StageRun.status, reason, func.count(), func.min(StageRun.entity_id))
             .where(reason.is_not(None)).group_by(StageRun.stage, StageRun.status, reason))
    if stage:
        query = query.where(StageRun.stage == stage)
    counts: Counter = Counter()
    examples: dict[tuple, str] = {}
    with session_scope(get_engine(settings)) as session:
        for st, status, why, n, example in session.execute(query):
            key = (st, status, re.sub(r"(duplicate-of:)\S+", r"\1<figure>", why))
            counts[key] += n
            examples.setdefault(key, example)
    return [{"stage": k[0], "status": k[1], "reason": k[2], "count": n, "example": examples[k]}
            for k, n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][2]))]


def harvest_status(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Per source: windows by state (done / open / running), records listed, and records
    dropped at listing time by reason (deleted, no identifier …), so none goes uncounted."""
    from collections import Counter

    from figalign.store.models import HarvestCursor

    settings = settings or load_settings()
    out: dict[str, dict[str, Any]] = {}
    with session_scope(get_engine(settings)) as session:
        rows = session.execute(select(HarvestCursor.source, HarvestCursor.status, HarvestCursor.records_seen,
                                      HarvestCursor.dropped, HarvestCursor.window_end)).all()
    for source, status, seen, dropped, end in rows:
        info = out.setdefault(source, {"windows": Counter(), "records": 0, "dropped": Counter(), "newest": None})
        info["windows"][status] += 1
        info["records"] += seen or 0
        info["dropped"].update(dropped or {})
        if status == "done" and (info["newest"] is None or end.date().isoformat() > info["newest"]):
            info["newest"] = end.date().isoformat()
    return {src: {"windows": dict(i["windows"]), "records": i["records"], "dropped": dict(i["dropped"]),
                  "newest_closed_day": i["newest"]} for src, i in sorted(out.items())}


def harvest_source(source: str, settings: Settings, http=None):
    """The harvest source object for a name (``arxiv``, ``pmc``, ``biorxiv``, ``medrxiv``)."""
    from figalign.clients.http import PoliteHttp

    http = http or PoliteHttp.from_settings(settings)
    if source == "arxiv":
        from figalign.sources.arxiv import ArxivSource

        return ArxivSource(http, settings.arxiv_oai_url, settings.arxiv_base_url)
    if source == "pmc":
        from figalign.sources.pmc import PMC_OAI_URL, PmcSource

        return PmcSource(http, settings.pmc_base_url, oai_url=PMC_OAI_URL)
    if source in ("biorxiv", "medrxiv"):
        from figalign.sources.biorxiv import source_from_env

        return source_from_env(http, source)  # takes no sets: a non-empty one is a ConfigError
    raise ValueError(f"unknown harvest source {source!r}")


def harvest_window(source: str, interval_start, interval_end, *, sets=(), limit: int | None = None,
                   force: bool = False, process_licences=(), ctx: RunContext | None = None,
                   settings: Settings | None = None) -> dict[str, Any]:
    """Harvest one Airflow data interval of ``source`` by the window rule (``stages.windows``).

    The interval becomes inclusive days (``window_from_interval``); each day is a window,
    the overlap days before it are listed again, and a day is closed only once it is over
    plus the safety lag, so scheduled runs, backfills and UI triggers all collect every
    record exactly once. Returns plain JSON types (XCom is shown over REST).
    """
    from figalign.stages.harvest import harvest_days
    from figalign.stages.windows import window_from_interval

    settings = settings or load_settings()
    start, end = window_from_interval(interval_start, interval_end)
    src = harvest_source(source, settings)
    policy = licence_policy(source, process_licences)
    results = []
    for set_spec in (list(sets) or [""]):
        results += [s.as_dict() for s in harvest_days(get_engine(settings), src, start, end, set_spec=set_spec,
                                                      limit=limit, force=force, policy=policy)]
    return {"source": source, "window": [start.isoformat(), end.isoformat()], "windows": results,
            "records": sum(r["records"] for r in results), "new_papers": sum(r["new_papers"] for r in results),
            "open": sorted({r["window"][0] for r in results if r["status"] == "open"})}


def export_dataset(fmt: str = "all", out: str | None = None, *, incremental: bool = True, label: str | None = None,
                   settings: Settings | None = None) -> dict[str, Any]:
    """Export the kept figures (default folder: <data dir>/exports/<label>/<format>).

    FIGALIGN_RELEASE_LICENCES (comma list) cuts the release to those licences, as the
    CLI's ``--licences`` does; unset, it ships every licence that was processed.
    """
    import datetime as dt
    import os

    from figalign import location
    from figalign.export import run_export
    from figalign.export.options import ExportOptions
    from figalign.filters import parse_licences
    from figalign.storage import ArtifactStore

    settings = settings or load_settings()
    label = label or dt.date.today().isoformat()
    out_dir = out or location.join(settings.data_dir, "exports", label)
    options = ExportOptions(licences=parse_licences(os.environ.get("FIGALIGN_RELEASE_LICENCES")))
    results = run_export(get_engine(settings), ArtifactStore.from_settings(settings), fmt, out_dir,
                         incremental=incremental, options=options)
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
