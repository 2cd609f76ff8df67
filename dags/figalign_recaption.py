"""Airflow DAG figalign_recaption: built by figalign.orchestration (logic lives in the figalign package)."""

from figalign.orchestration import build_recaption_dag

dag = build_recaption_dag()
