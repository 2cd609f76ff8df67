"""DAG factory: the only module that imports ``airflow.sdk``.

DAG files in ``dags/`` call one builder each. Task bodies are thin: they turn the Airflow
context into a ``RunContext`` (so every stage-run row records dag/run/task/try ids), call
``figalign.pipeline`` and return counts — XCom never carries data. Heavy libraries load
inside tasks only, so parsing the DAG folder stays fast.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    Param,
    get_current_context,
    task,
)

PAPERS = {src: Asset(f"figalign://papers/{src}") for src in ("arxiv", "pmc", "biorxiv", "medrxiv", "local")}
FIGURES = Asset("figalign://figures")
CAPTIONS = Asset("figalign://recaptions")
METRICS = Asset("figalign://metrics")
START = datetime(2026, 1, 1)
POOLS = {name: os.environ.get(f"FIGALIGN_POOL_{name.upper()}", name) for name in ("grobid", "vllm", "gpu")}


def retry_delay(env=None) -> timedelta:
    """First retry's delay (``FIGALIGN_RETRY_DELAY_S``, default 30 s; doubled per try, capped).

    A retried batch takes its dead try's items over at once, so the delay is all that
    stands between Airflow noticing a lost worker and the work going on elsewhere.
    """
    value = (env or os.environ).get("FIGALIGN_RETRY_DELAY_S", "30")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise ValueError(f"FIGALIGN_RETRY_DELAY_S must be seconds between 0 and 3600, got {value!r}")
    return timedelta(seconds=seconds)


# a stage's lanes beyond "default" and the pool each takes (the stage class names the same
# lanes: Stage.lanes; kept literal so DAG parsing imports no stage; a test checks they agree)
LANES = {"parse": {"grobid": POOLS["grobid"]}}
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "figalign",
    "retries": 3,
    "retry_delay": retry_delay(),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}
TAGS = ["figalign"]
# kept literal (not imported from figalign.sources) so DAG parsing stays light; a test checks it
LICENCE_IDS = ["cc-by", "cc-by-sa", "cc-by-nc", "cc-by-nc-sa", "cc-by-nd", "cc-by-nc-nd", "cc0",
               "public-domain", "arxiv-nonexclusive", "other"]


def run_context(context=None):
    """The figalign RunContext of the running task instance."""
    from figalign.store.queue import RunContext

    context = context or get_current_context()
    ti = context["ti"]
    instance = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{getattr(ti, 'map_index', -1)}"
    return RunContext(owner=f"{instance}/{ti.try_number}", dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                      try_number=ti.try_number, instance=instance)


def task_settings():
    """Settings for a task: FIGALIGN_* environment overridden by Airflow connections.

    The hooks live in ``plugins/figalign_airflow`` (on sys.path inside Airflow); when the
    plugins folder is not importable (a bare ``dag.test()``), the environment alone is used.
    """
    try:
        from figalign_airflow.hooks import figalign_settings
    except ModuleNotFoundError:
        from figalign.config import load_settings

        return load_settings()
    return figalign_settings()


def _doc(name: str) -> str:
    from figalign.dag_docs import DOCS

    return DOCS[name]


# ---------------------------------------------------------------- harvest

# A daily data interval [d, d+1): the run at d+1 00:00 harvests day d, the day that just
# ended. (``"@daily"`` is a zero-length CronTriggerTimetable in Airflow 3; see stages/windows.)
HARVEST_TIMETABLE = CronDataIntervalTimetable("0 0 * * *", timezone="UTC")


def build_harvest_dag(source: str) -> DAG:
    """Daily incremental harvest of one source; the window is the run's data interval
    (plus the re-listed overlap; a day is closed only once it is over: stages.windows)."""
    with DAG(
        dag_id=f"figalign_harvest_{source}",
        schedule=HARVEST_TIMETABLE,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=TAGS + ["harvest", source],
        doc_md=_doc(f"harvest_{source}"),
        params={
            # "null" in a type makes the trigger form show the field as optional
            "sets": Param([], type=["array", "null"], items={"type": "string"},
                          description="OAI-PMH sets, e.g. cs, physics:astro-ph, q-bio (empty = all)"),
            "limit": Param(None, type=["null", "integer"], minimum=1,
                           description="stop after this many records (testing)"),
            "force": Param(False, type=["boolean", "null"],
                           description="harvest the window again even if it completed"),
            "process_licences": Param([], type=["array", "null"], items={"type": "string", "enum": LICENCE_IDS},
                                      description="licences to process (empty = every licence of the source's "
                                                  "open-access set); others are recorded as excluded"),
        },
    ) as dag:

        @task(outlets=[PAPERS[source]])
        def harvest() -> dict:
            from figalign.pipeline import harvest_window

            ctx = get_current_context()
            params = ctx["params"]
            # a run without a logical date has no data interval: its run time stands for both ends
            # (zero length = the last day complete by then)
            run_after = ctx["dag_run"].run_after
            return harvest_window(source, ctx.get("data_interval_start") or run_after,
                                  ctx.get("data_interval_end") or run_after,
                                  sets=params["sets"] or [], limit=params["limit"], force=bool(params["force"]),
                                  process_licences=params["process_licences"] or [],
                                  ctx=run_context(ctx), settings=task_settings())

        harvest()
    return dag


def build_ingest_local_dag() -> DAG:
    """Ingest a folder of papers the user already has (manual trigger)."""
    with DAG(
        dag_id="figalign_ingest_local",
        schedule=None,
        start_date=START,
        catchup=False,
        default_args=DEFAULT_ARGS,
        tags=TAGS + ["harvest", "local"],
        doc_md=_doc("ingest_local"),
        params={
            "folder": Param("tests/fixtures/papers", type="string", minLength=1,
                            description="folder of PDFs, JATS packages and LaTeX e-prints: a local path "
                                        "(a shared mount on a cluster) or an s3:// (fsspec) URL"),
            "limit": Param(None, type=["null", "integer"], minimum=1, description="ingest at most this many"),
            "licence": Param(None, type=["null", "string"],
                             description="licence of these papers, e.g. 'CC BY' or a URL (empty: read from JATS, "
                                         "else unknown and kept out of exports)"),
        },
    ) as dag:

        @task(outlets=[PAPERS["local"]])
        def ingest() -> dict:
            from figalign.pipeline import ingest_local

            params = get_current_context()["params"]
            return ingest_local(params["folder"], limit=params["limit"], licence=params["licence"],
                                settings=task_settings())

        ingest()
    return dag


# ---------------------------------------------------------------- per-batch stages

def lane_task_id(stage: str, lane: str | None) -> str:
    """``parse`` for the default lane, ``parse_grobid`` for the grobid lane."""
    return stage if lane in (None, "default") else f"{stage}_{lane}"


def _stage_task(stage: str, *, pool: str | None = None, outlets=(), lane: str | None = None):
    """A mapped task that claims and processes one batch of ``stage`` (of one lane, if given)."""

    @task(task_id=lane_task_id(stage, lane), pool=pool or "default_pool", outlets=list(outlets),
          map_index_template="batch of {{ batch }}")
    def run(batch: int) -> dict:
        """Claim and process one batch of ``batch`` items (the size ``plan_<stage>`` fitted)."""
        from figalign.pipeline import run_stage

        ctx = get_current_context()
        # plan_<stage> queued the work: a batch only claims (see pipeline.run_stage)
        return run_stage(stage, size=batch, ctx=run_context(ctx), settings=task_settings(), discover=False,
                         lane=lane)

    return run


def _plan_task(stage: str, lane: str | None = None, *, sorts_lanes: bool = False):
    """``plan_<task id>``: the batch sizes of a stage's (lane's) mapped task.

    ``sorts_lanes``: this plan (the default lane's) first sorts the stage's items into
    lanes (``pipeline.sort_lanes``); the other lanes' plans run after it and only count
    (``pipeline.plan_lane``).
    """
    # none_failed: an upstream stage with nothing to do is "skipped" (empty mapping); the
    # next stage must still look for its own pending work (e.g. local papers skip fetch).
    @task(task_id=f"plan_{lane_task_id(stage, lane)}", trigger_rule="none_failed")
    def plan() -> list[int]:
        from figalign.pipeline import plan_batches, plan_lane, sort_lanes

        params = get_current_context()["params"]
        settings = task_settings()
        if lane is None and not sorts_lanes:  # a stage without lanes: discover and count in one
            return plan_batches(stage, params["batch_size"], params["max_batches"], settings=settings)
        if sorts_lanes:
            sort_lanes(stage, settings)
        return plan_lane(stage, lane or "default", params["batch_size"], params["max_batches"], settings)

    return plan


def _laned_stage(stage: str, upstream) -> list:
    """A stage split by lane, one mapped task per lane in its own pool (``LANES``), so only
    the items that need a pool's service take its slots: ``plan_<stage>`` sorts the items
    into lanes and plans the default one; each other lane's plan follows it."""
    first = _plan_task(stage, sorts_lanes=True)()
    upstream >> first
    tasks = [_stage_task(stage, lane="default").expand(batch=first)]
    for lane, pool in LANES[stage].items():
        plan = _plan_task(stage, lane)()
        first >> plan
        tasks.append(_stage_task(stage, pool=pool, lane=lane).expand(batch=plan))
    return tasks


@task(task_id="summary", trigger_rule="all_done")
def _summary() -> dict:
    """Counts per stage for this run, logged as a table and returned for the run's XCom; fails,
    naming them, if items this run claimed are still running (pipeline.render_summary)."""
    from figalign.pipeline import render_summary

    ctx = run_context()
    return render_summary(ctx.run_id, settings=task_settings(), dag_id=ctx.dag_id)


def _batch_params(batch_size: int, max_batches: int) -> dict:
    return {
        "batch_size": Param(batch_size, type="integer", minimum=1, maximum=10000,
                            description="most items one mapped task claims (small runs are spread over "
                                        "FIGALIGN_WORKER_SLOTS smaller batches)"),
        "max_batches": Param(max_batches, type="integer", minimum=1, maximum=1000,
                             description="most mapped tasks per stage in one run"),
    }


def build_process_dag() -> DAG:
    """fetch → parse → filter over new papers, in mapped batches, when a harvest lands.

    Parse is split by lane: papers that will call GROBID go to ``parse_grobid`` (pool
    ``grobid``), the rest (JATS, LaTeX, stored TEI, PyMuPDF-only) to ``parse``.
    """
    schedule = AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 */6 * * *", timezone="UTC"),
                                   assets=(PAPERS["arxiv"] | PAPERS["pmc"] | PAPERS["biorxiv"] | PAPERS["medrxiv"]
                                           | PAPERS["local"]))
    with DAG(
        dag_id="figalign_process", schedule=schedule, start_date=START, catchup=False, max_active_runs=1,
        default_args=DEFAULT_ARGS, tags=TAGS + ["process"], doc_md=_doc("process"),
        params=_batch_params(25, 16),
    ) as dag:
        fetch = _stage_task("fetch").expand(batch=_plan_task("fetch")())
        parse = _laned_stage("parse", fetch)  # parse (default pool) and parse_grobid (grobid pool)
        filter_plan = _plan_task("filter")()
        parse >> filter_plan
        filt = _stage_task("filter", outlets=[FIGURES]).expand(batch=filter_plan)
        filt >> _summary()
    return dag


def _batch_stage_dag(stage: str, *, schedule, pool: str, outlet: Asset, tags: list[str],
                     batch_size: int, max_batches: int) -> DAG:
    """plan → mapped batches → summary, for a stage that runs on what an Asset announced."""
    with DAG(
        dag_id=f"figalign_{stage}", schedule=schedule, start_date=START, catchup=False, max_active_runs=1,
        default_args=DEFAULT_ARGS, tags=TAGS + tags, doc_md=_doc(stage),
        params=_batch_params(batch_size, max_batches),
    ) as dag:
        run = _stage_task(stage, pool=pool, outlets=[outlet]).expand(batch=_plan_task(stage)())
        run >> _summary()
    return dag


def build_recaption_dag() -> DAG:
    return _batch_stage_dag("recaption", schedule=[FIGURES], pool=POOLS["vllm"], outlet=CAPTIONS,
                            tags=["recaption", "vllm"], batch_size=64, max_batches=16)


def build_score_dag() -> DAG:
    return _batch_stage_dag("score", schedule=[CAPTIONS], pool=POOLS["gpu"], outlet=METRICS,
                            tags=["score", "gpu"], batch_size=128, max_batches=8)


def build_export_dag() -> DAG:
    with DAG(
        dag_id="figalign_export", schedule="@daily", start_date=START, catchup=False, max_active_runs=1,
        default_args=DEFAULT_ARGS, tags=TAGS + ["export"], doc_md=_doc("export"),
        params={
            "format": Param("all", enum=["all", "s1mmalign", "webdataset", "parquet"], description="export format"),
            "out": Param("", type=["string", "null"],
                         description="output folder or s3:// URL (default: <data dir>/exports/<run date>)"),
            "incremental": Param(True, type=["boolean", "null"], description="only records new since the last export"),
        },
    ) as dag:

        @task
        def export() -> dict:
            from figalign.pipeline import export_dataset

            ctx = get_current_context()
            p = ctx["params"]
            return export_dataset(p["format"], p["out"] or None, incremental=p["incremental"] is not False,
                                  label=ctx["data_interval_end"].strftime("%Y-%m-%d"), settings=task_settings())

        export()
    return dag


# ---------------------------------------------------------------- bulk sources


def _bulk_options() -> dict:
    """Requester-pays credentials from the ``figalign_bulk_aws`` connection, when defined."""
    try:
        from figalign_airflow.hooks import bulk_storage_options
    except ModuleNotFoundError:
        return {}
    return bulk_storage_options()


def build_bulk_harvest_dag() -> DAG:
    """Manual backfill from a provider's bulk bucket: queue the selection, then ``workers``
    mapped tasks claim tars/packages from the shared queue (each item once, across workers)."""
    with DAG(
        dag_id="figalign_harvest_bulk", schedule=None, start_date=START, catchup=False, max_active_runs=1,
        default_args=DEFAULT_ARGS, tags=TAGS + ["harvest", "bulk"], doc_md=_doc("harvest_bulk"),
        params={
            "source": Param("arxiv", enum=["arxiv", "biorxiv", "medrxiv"], description="whose bulk bucket"),
            "from_yymm": Param(None, type=["null", "string"], pattern="^[0-9]{4}$", description="arXiv: first month"),
            "until_yymm": Param(None, type=["null", "string"], pattern="^[0-9]{4}$", description="arXiv: last month"),
            "months": Param([], type=["array", "null"], items={"type": "string"},
                            description="bioRxiv/medRxiv: Current_Content months, e.g. November_2026"),
            "from_month": Param(None, type=["null", "string"], description="bioRxiv/medRxiv: first month, Month_Year"),
            "until_month": Param(None, type=["null", "string"], description="bioRxiv/medRxiv: last month, Month_Year"),
            "folders": Param([], type=["array", "null"], items={"type": "string"},
                             description="bioRxiv/medRxiv: other folders, e.g. Back_Content/Batch_01"),
            "limit": Param(None, type=["null", "integer"], minimum=1, description="queue at most this many items"),
            "retry_failed": Param(False, type=["boolean", "null"], description="give failed items their attempts back"),
            "workers": Param(2, type="integer", minimum=1, maximum=64, description="parallel tasks taking items"),
        },
    ) as dag:

        @task
        def plan() -> list[int]:
            from figalign.stages.bulk import plan_from_params

            params = get_current_context()["params"]
            plan_from_params(params["source"], params, task_settings(), extra_options=_bulk_options())
            return list(range(int(params["workers"])))

        @task(execution_timeout=timedelta(hours=12))
        def work(slot: int) -> dict:
            from figalign.stages.bulk import work_queue

            ctx = get_current_context()
            return work_queue(ctx["params"]["source"], task_settings(), ctx=run_context(ctx),
                              extra_options=_bulk_options())

        work.expand(slot=plan())
    return dag
