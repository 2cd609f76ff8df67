"""Airflow DAG figalign_harvest_bulk: built by figalign.orchestration (logic lives in the figalign package)."""

from figalign.orchestration import build_bulk_harvest_dag

dag = build_bulk_harvest_dag()
