"""The bulk-harvest DAG: manual, a plan task feeding mapped workers, params validated."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import ParamValidationError

from tests.dags.test_dagbag import dagbag  # noqa: F401  (the module's DagBag fixture)


def test_bulk_dag_plans_then_maps_workers(dagbag):  # noqa: F811
    dag = dagbag.dags["figalign_harvest_bulk"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # manual trigger only
    assert set(dag.task_ids) == {"plan", "work"}
    work = dag.get_task("work")
    assert work.upstream_task_ids == {"plan"} and type(work).__name__.endswith("MappedOperator")
    params = dag.params
    assert params["source"] == "arxiv" and params["workers"] == 2
    params["from_yymm"] = "2301"  # assignment validates against the Param's schema
    params["months"] = ["November_2026"]
    with pytest.raises(ParamValidationError):
        params["source"] = "ssrn"
    with pytest.raises(ParamValidationError):
        params["from_yymm"] = "23-01"
    with pytest.raises(ParamValidationError):
        params["workers"] = 0
