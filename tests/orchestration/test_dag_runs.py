"""End to end under Airflow: dag.test() of ingest → process against a Postgres store.

Each DAG run executes in a subprocess with its own AIRFLOW_HOME (Airflow reads its config at
import time). Checks the store afterwards: papers, figures, contexts, complete stage runs that
carry the Airflow ids, and that a second run of the same DAG is a no-op.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from figalign.store.db import make_engine, session_scope
from figalign.store.migrate import upgrade
from figalign.store.models import CitationContextRow, FigureRow, Paper, StageRun
from tests.conftest import FIXTURES, ROOT

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

RUNNER = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {}
for dag_id in sys.argv[3:]:
    conf = json.loads(sys.argv[2]) if dag_id == "figalign_ingest_local" else None
    run = bag.dags[dag_id].test(run_conf=conf)
    out[dag_id] = [str(run.state), run.run_id]
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    env = _env(home, "sqlite://", home)
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, check=True,
                   capture_output=True, timeout=300)
    return home


def _env(home: Path, store_url: str, data_dir: Path) -> dict:
    env = dict(os.environ)
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "FIGALIGN_DATABASE_URL": store_url,
                "FIGALIGN_DATA_DIR": str(data_dir)})
    return env


def _run_dags(home: Path, store_url: str, data_dir: Path, *dag_ids: str) -> dict:
    conf = json.dumps({"folder": str(FIXTURES / "papers")})
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(ROOT / "dags"), conf, *dag_ids],
                          env=_env(home, store_url, data_dir), capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def _counts(engine) -> dict:
    with session_scope(engine) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                for m in (Paper, FigureRow, CitationContextRow, StageRun)}


def test_ingest_and_process_under_airflow_then_a_second_run_is_a_noop(airflow_home, pg_url, tmp_path):
    upgrade(pg_url)
    engine = make_engine(pg_url)
    result = _run_dags(airflow_home, pg_url, tmp_path / "data", "figalign_ingest_local", "figalign_process")
    assert {k: v[0] for k, v in result.items()} == {"figalign_ingest_local": "success", "figalign_process": "success"}
    process_run = result["figalign_process"][1]
    first = _counts(engine)
    assert first["papers"] == 3 and first["figures"] >= 8 and first["citation_contexts"] > 0
    with session_scope(engine) as s:
        rows = s.scalars(select(StageRun)).all()
        assert {r.status for r in rows} <= {"done", "skipped"}, [(r.stage, r.status, r.error_message) for r in rows]
        parse_rows = [r for r in rows if r.stage == "parse"]
        assert len(parse_rows) == 3 and all(r.dag_id == "figalign_process" and r.run_id == process_run
                                            and r.task_id == "parse" and r.try_number == 1 for r in parse_rows)
        assert {r.stage for r in rows} == {"ingest", "parse", "filter"}
        ingest = sorted((r.entity_id, r.status) for r in rows if r.stage == "ingest")
        assert ingest == [("2020.acl-main.207.pdf", "done"), ("README.md", "skipped"), ("pbio.0020317.pdf", "done"),
                          ("pone.0000010", "done")]

    again = _run_dags(airflow_home, pg_url, tmp_path / "data", "figalign_process")
    assert again["figalign_process"][0] == "success"
    assert _counts(engine) == first
    engine.dispose()
