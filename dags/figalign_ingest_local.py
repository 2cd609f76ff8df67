"""Airflow DAG figalign_ingest_local: built by figalign.orchestration (logic lives in the figalign package)."""

from figalign.orchestration import build_ingest_local_dag

dag = build_ingest_local_dag()
