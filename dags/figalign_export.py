"""Airflow DAG figalign_export: built by figalign.orchestration (logic lives in the figalign package)."""

from figalign.orchestration import build_export_dag

dag = build_export_dag()
