"""Airflow DAG figalign_process: built by figalign.orchestration (logic lives in the figalign package)."""

from figalign.orchestration import build_process_dag

dag = build_process_dag()
