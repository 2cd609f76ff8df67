"""DAG integrity: every file in dags/ imports through DagBag, fast, with the expected shape."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import ParamValidationError

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
EXPECTED = {"figalign_harvest_arxiv", "figalign_harvest_pmc", "figalign_harvest_biorxiv", "figalign_harvest_medrxiv",
            "figalign_ingest_local", "figalign_process", "figalign_recaption", "figalign_score", "figalign_export",
            "figalign_harvest_bulk"}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(DAGS))
    bag.load_seconds = time.perf_counter() - started
    return bag


def test_every_dag_file_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED
    assert len(list(DAGS.glob("*.py"))) == len(EXPECTED)


def test_parsing_the_folder_takes_under_two_seconds(dagbag):
    assert dagbag.load_seconds < 2.0, f"DagBag took {dagbag.load_seconds:.2f}s"


def test_dag_files_import_nothing_heavy():
    """Parsing must not load torch, PyMuPDF, transformers or the OpenAI client."""
    code = (
        "import sys, runpy, glob\n"
        f"for f in sorted(glob.glob({str(DAGS)!r} + '/*.py')): runpy.run_path(f)\n"
        "heavy = [m for m in ('torch', 'pymupdf', 'fitz', 'transformers', 'open_clip', 'openai', 'lxml') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"heavy modules imported at parse time: {out.stdout}"


def test_every_dag_is_documented_tagged_and_retrying(dagbag):
    for dag in dagbag.dags.values():
        assert dag.doc_md and "figalign" in dag.doc_md
        assert "figalign" in dag.tags
        for t in dag.tasks:
            assert t.retries >= 1 and t.execution_timeout is not None, (dag.dag_id, t.task_id)


def test_process_dag_maps_stages_in_order_with_pools(dagbag):
    dag = dagbag.dags["figalign_process"]
    ids = set(dag.task_ids)
    assert {"plan_fetch", "fetch", "plan_parse", "parse", "plan_parse_grobid", "parse_grobid", "plan_filter",
            "filter", "summary"} <= ids
    assert "plan_parse" in dag.get_task("fetch").downstream_task_ids
    assert "parse" in dag.get_task("plan_parse").downstream_task_ids
    # a stage with nothing to do (empty mapping -> skipped) must not skip the next stage's planning
    assert dag.get_task("plan_parse").trigger_rule == "none_failed"
    assert dag.get_task("plan_filter").trigger_rule == "none_failed"
    assert dag.get_task("plan_parse_grobid").trigger_rule == "none_failed"
    assert dagbag.dags["figalign_recaption"].get_task("recaption").pool == "vllm"
    assert dagbag.dags["figalign_score"].get_task("score").pool == "gpu"


def test_only_parse_work_that_calls_grobid_takes_a_grobid_slot(dagbag):
    """Parse is split by lane: ``parse`` (default pool) and ``parse_grobid`` (grobid pool), each
    mapped over its own plan; the lane plan follows ``plan_parse`` (which sorts the items into
    lanes), and filtering waits for both lanes."""
    from figalign.orchestration import LANES
    from figalign.stages.parse import ParseStage

    dag = dagbag.dags["figalign_process"]
    parse, grobid = dag.get_task("parse"), dag.get_task("parse_grobid")
    assert (parse.pool, grobid.pool) == ("default_pool", "grobid")
    assert parse.upstream_task_ids == {"plan_parse"} and grobid.upstream_task_ids == {"plan_parse_grobid"}
    assert dag.get_task("plan_parse_grobid").upstream_task_ids == {"plan_parse"}
    assert dag.get_task("plan_filter").upstream_task_ids == {"parse", "parse_grobid"}
    assert set(ParseStage.lanes) == {"default", *LANES["parse"]}
    # only parse has lanes: no other task of any DAG takes the grobid pool
    assert [(d.dag_id, t.task_id) for d in dagbag.dags.values() for t in d.tasks if t.pool == "grobid"] == [
        ("figalign_process", "parse_grobid")]


def test_retry_delay_comes_from_the_environment():
    from datetime import timedelta

    from figalign.orchestration import retry_delay

    assert retry_delay({}) == timedelta(seconds=30)
    assert retry_delay({"FIGALIGN_RETRY_DELAY_S": "1.5"}) == timedelta(seconds=1.5)
    for bad in ("-1", "soon", "7200"):
        with pytest.raises(ValueError, match="FIGALIGN_RETRY_DELAY_S"):
            retry_delay({"FIGALIGN_RETRY_DELAY_S": bad})


def test_harvest_dags_are_daily_without_catchup_and_validate_params(dagbag):
    for source in ("arxiv", "pmc", "biorxiv", "medrxiv"):
        dag = dagbag.dags[f"figalign_harvest_{source}"]
        assert dag.catchup is False
        # whole-day data intervals, not "@daily" (a zero-length trigger timetable in Airflow 3)
        assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
        assert dag.timetable.expression == "0 0 * * *"
        assert set(dag.params.keys()) == {"sets", "limit", "force", "process_licences"}
        with pytest.raises(ParamValidationError, match="minimum"):
            dag.params["limit"] = 0


def test_tasks_back_off_exponentially_and_stages_are_mapped_with_outlets(dagbag):
    """Retries back off exponentially (capped); per-batch stages are mapped; sources publish Assets."""
    for dag in dagbag.dags.values():
        for t in dag.tasks:
            assert t.retry_exponential_backoff and t.max_retry_delay is not None, (dag.dag_id, t.task_id)
    stages = {"figalign_process": ("fetch", "parse", "filter"), "figalign_recaption": ("recaption",),
              "figalign_score": ("score",)}
    for dag_id, task_ids in stages.items():
        dag = dagbag.dags[dag_id]
        for task_id in task_ids + (("parse_grobid",) if dag_id == "figalign_process" else ()):
            task = dag.get_task(task_id)
            assert type(task).__name__.endswith("MappedOperator"), (dag_id, task_id)
            assert f"plan_{task_id}" in task.upstream_task_ids
        assert "summary" in dag.task_ids and dag.get_task("summary").trigger_rule == "all_done"
    outlets = {d: {a.name for t in dagbag.dags[d].tasks for a in t.outlets} for d in dagbag.dag_ids}
    assert outlets["figalign_harvest_arxiv"] == {"figalign://papers/arxiv"}
    assert outlets["figalign_harvest_pmc"] == {"figalign://papers/pmc"}
    assert outlets["figalign_harvest_biorxiv"] == {"figalign://papers/biorxiv"}
    assert outlets["figalign_harvest_medrxiv"] == {"figalign://papers/medrxiv"}
    assert outlets["figalign_ingest_local"] == {"figalign://papers/local"}
    assert outlets["figalign_process"] == {"figalign://figures"}


def test_process_dag_runs_when_any_source_publishes_papers(dagbag):
    condition = dagbag.dags["figalign_process"].timetable.asset_condition
    assert {a.name for a in condition.objects} == {f"figalign://papers/{s}"
                                                  for s in ("arxiv", "pmc", "biorxiv", "medrxiv", "local")}


def test_licence_param_choices_match_the_licence_ids(dagbag):
    from figalign.orchestration import LICENCE_IDS
    from figalign.sources.licences import ALL

    assert set(LICENCE_IDS) == set(ALL)
    dag = dagbag.dags["figalign_harvest_arxiv"]
    with pytest.raises(ParamValidationError):
        dag.params["process_licences"] = ["cc-by", "gpl"]


def test_a_process_allow_list_excludes_other_licences_with_a_reason():
    from figalign.errors import ConfigError
    from figalign.pipeline import licence_policy

    policy = licence_policy("arxiv", ["cc-by", "cc0"])
    assert policy.process_exclusion("cc-by") is None
    assert "cc-by-nc not in the process allow-list" in policy.process_exclusion("cc-by-nc")
    assert licence_policy("arxiv", []).process_exclusion("arxiv-nonexclusive") is None
    with pytest.raises(ConfigError):
        licence_policy("arxiv", ["gpl"])


def test_trigger_forms_mark_only_parameters_without_defaults_as_required(dagbag):
    """The form shows a field as required unless its type admits null: a parameter whose
    default is empty or false (sets, force, licences, out …) must not look required."""
    for dag in dagbag.dags.values():
        for name, param in dag.params.items():
            kinds = param.schema.get("type")
            if kinds is None or param.value not in ([], False, "", None):
                continue  # enum-only, or prefilled with a real value (batch sizes, the folder)
            assert "null" in (kinds if isinstance(kinds, list) else [kinds]), (dag.dag_id, name, kinds)
