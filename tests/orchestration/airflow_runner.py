"""Run figalign DAGs with ``dag.test()`` in a subprocess with its own AIRFLOW_HOME.

Airflow reads its configuration at import time, so every test (and the benchmark) gets a
fresh interpreter pointed at a private, migrated AIRFLOW_HOME. One subprocess runs a list
of DAG runs in order (one Airflow start-up for all of them) and prints, per run, its state,
run id and the task instances it ran (task id, map index, try, seconds, XCom return value),
which the benchmark uses to separate Airflow's overhead from the stage work.

``FIGALIGN_TEST_LEASE_S`` (test-only) shortens the parse stage's lease inside the
subprocess so a killed worker's claim expires within the test's patience.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
AIRFLOW = Path(sys.executable).with_name("airflow")

RUNNER = r"""
import datetime as dt, json, os, sys, time
if os.environ.get("FIGALIGN_TEST_LEASE_S"):
    from figalign.stages.parse import ParseStage
    ParseStage.lease_seconds = int(os.environ["FIGALIGN_TEST_LEASE_S"])
from airflow.dag_processing.dagbag import DagBag
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from sqlalchemy import select

def task_rows(dag_id, run_id):
    with create_session() as s:
        tis = s.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)).all()
        rows = []
        for ti in tis:
            xcom = s.scalar(select(XComModel.value).where(
                XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.task_id == ti.task_id,
                XComModel.map_index == ti.map_index, XComModel.key == "return_value"))
            seconds = (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else None
            rows.append({"task_id": ti.task_id, "map_index": ti.map_index, "try_number": ti.try_number,
                         "state": str(ti.state), "seconds": seconds,
                         "xcom": xcom if isinstance(xcom, (dict, list, int, str, type(None))) else str(xcom)})
        return rows

bag = DagBag(dag_folder=sys.argv[1])
if bag.import_errors:
    raise SystemExit(f"import errors: {bag.import_errors}")
out = []
for spec in json.loads(sys.argv[2]):
    kwargs = {"run_conf": spec.get("conf")}
    if spec.get("logical_date"):
        kwargs["logical_date"] = dt.datetime.fromisoformat(spec["logical_date"]).replace(tzinfo=dt.timezone.utc)
    print("STARTING " + spec["dag_id"], flush=True)
    started = time.perf_counter()
    run = bag.dags[spec["dag_id"]].test(**kwargs)
    out.append({"dag_id": spec["dag_id"], "state": str(run.state), "run_id": run.run_id,
                "wall_s": round(time.perf_counter() - started, 3),
                "tasks": task_rows(spec["dag_id"], run.run_id)})
print("RESULT " + json.dumps(out, default=str), flush=True)
"""


def airflow_env(home: Path, store_url: str, data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a DAG-running subprocess: private Airflow home, figalign store and data dir."""
    env = dict(os.environ)
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                "FIGALIGN_DATABASE_URL": store_url, "FIGALIGN_DATA_DIR": str(data_dir),
                "FIGALIGN_HTTP_MIN_INTERVAL_S": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    env.update(extra or {})
    return env


def migrate_home(home: Path) -> Path:
    """A migrated Airflow metadata DB (SQLite) in ``home`` (~6 s)."""
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(home, "sqlite://", home)
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)
    return home


def runner_command(specs: list[dict]) -> list[str]:
    return [sys.executable, "-c", RUNNER, str(DAGS), json.dumps(specs)]


def parse_result(stdout: str) -> list[dict] | None:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT "):]) if lines else None


def run_dags(env: dict[str, str], specs: list[dict], *, timeout: float = 900) -> list[dict]:
    """Run the DAG runs in ``specs`` ({dag_id, conf?, logical_date?}) in one subprocess."""
    proc = subprocess.run(runner_command(specs), env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=str(ROOT))
    result = parse_result(proc.stdout)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"dag.test runner failed (rc={proc.returncode}):\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-4000:]}")
    return result


def start_dags(env: dict[str, str], specs: list[dict], log_file) -> subprocess.Popen:
    """Start the runner in its own process group (so it can be killed whole); output to ``log_file``."""
    return subprocess.Popen(runner_command(specs), env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            cwd=str(ROOT), start_new_session=True)


def states(result: list[dict]) -> list[tuple[str, str]]:
    return [(r["dag_id"], r["state"]) for r in result]
