"""Airflow DAG figalign_score: built by figalign.orchestration (logic lives in the figalign package)."""

from figalign.orchestration import build_score_dag

dag = build_score_dag()
