"""Airflow DAG figalign_harvest_medrxiv: built by figalign.orchestration (logic lives in the figalign package)."""

from figalign.orchestration import build_harvest_dag

dag = build_harvest_dag("medrxiv")
