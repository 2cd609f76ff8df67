"""Two real Celery workers; one is killed mid-parse; the same DAG run recovers everything.

The deployment is docker-compose's, as plain processes (``celery_cluster.py``): scheduler,
dag-processor, api-server and two ``airflow celery worker``s (w1, w2, two slots each) on
CeleryExecutor, Redis db 11 as the broker, Airflow's metadata and Celery's results on a
throwaway Postgres database, and figalign's store on another. The committed sample papers
(two bare PDFs, one JATS package) are ingested by ``figalign_ingest_local``; its Asset
triggers ``figalign_process`` with no conf (params' defaults), whose plans spread the three
papers over three one-paper batches in two lanes: ``parse`` (the JATS paper) and
``parse_grobid`` (the PDFs, which call the GROBID stand-in).

The stand-in holds the first upload, so one ``parse_grobid`` task is provably mid-parse when
its worker's whole process tree (the Celery worker, its pool, the task supervisor, the task
and its budgeted child) gets SIGKILL. Airflow notices the missing heartbeat after
``[scheduler] task_instance_heartbeat_timeout`` (shortened to 20 s here; 300 s by default) and
retries the task after ``FIGALIGN_RETRY_DELAY_S`` (1 s here; 30 s by default) on the other
worker, where the retry takes its dead try's item over at once (no lease wait). Asserted:
both workers ran tasks, both lanes ran, every paper ends done or failed with a reason in that
same DAG run, nothing is duplicated, and the store equals a single-process CLI run of the same
folder on another database. The timings (kill → retry claimed the item → item done → run
done) are printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from figalign.store.db import make_engine, session_scope
from figalign.store.migrate import upgrade
from figalign.store.models import Artifact, PaperFile, StageRun
from tests.conftest import FIXTURES
from tests.orchestration.celery_cluster import CeleryCluster
from tests.orchestration.test_killed_task import outcome, second_database
from tests.servers.grobid_server import GrobidStandIn

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]

REDIS_DB = 11
HEARTBEAT_TIMEOUT_S = 20
PAPERS = FIXTURES / "papers"
FIGALIGN = str(Path(sys.executable).with_name("figalign"))


@pytest.fixture
def redis_broker():
    """``redis://127.0.0.1:6379/11``, flushed before and after (only that db)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"needs Redis at 127.0.0.1:6379: {exc}")
    client.flushdb()
    yield f"redis://127.0.0.1:6379/{REDIS_DB}"
    client.flushdb()
    client.close()


def wait_for(predicate, what: str, timeout: float, cluster: CeleryCluster | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if cluster is not None:
            cluster.check_alive()
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for: {what}\n" + (cluster.tails() if cluster else ""))


def cli_reference(url: str, data_dir: Path, grobid_url: str) -> dict:
    """The same folder through the figalign CLI in one process per command, no Airflow."""
    env = {**os.environ, "FIGALIGN_DATABASE_URL": url, "FIGALIGN_DATA_DIR": str(data_dir),
           "FIGALIGN_GROBID_URL": grobid_url, "FIGALIGN_HTTP_MIN_INTERVAL_S": "0"}
    for args in (["db", "upgrade"], ["ingest", str(PAPERS)], ["run", "fetch"], ["run", "parse"], ["run", "filter"]):
        subprocess.run([FIGALIGN, *args], env=env, check=True, capture_output=True, timeout=300)
    engine = make_engine(url)
    try:
        return outcome(engine)
    finally:
        engine.dispose()


class Metadata:
    """Reads Airflow's metadata database (task instances of every try, DAG runs)."""

    def __init__(self, url: str):
        self.engine = create_engine(url)

    def runs(self, dag_id: str) -> list[dict]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(text(
                "select run_id, run_type, state, start_date, end_date from dag_run where dag_id = :d "
                "order by id"), {"d": dag_id})]

    def tries(self, dag_id: str, run_id: str) -> list[dict]:
        """Every try of every task instance of a run: (task, map index, try, state, hostname, pool)."""
        cols = "task_id, map_index, try_number, state, hostname, pool, start_date, end_date"
        with self.engine.connect() as c:
            rows = c.execute(text(f"select {cols} from task_instance where dag_id = :d and run_id = :r union all "
                                  f"select {cols} from task_instance_history where dag_id = :d and run_id = :r"),
                             {"d": dag_id, "r": run_id})
            return [dict(r._mapping) for r in rows]

    def dispose(self):
        self.engine.dispose()


def held_paper_row(engine, digest: str) -> StageRun | None:
    """The parse row of the paper whose PDF is the held upload."""
    with session_scope(engine) as s:
        row = s.scalars(select(StageRun).join(PaperFile, StageRun.entity_id == PaperFile.paper_id.cast(
            StageRun.entity_id.type)).join(Artifact, Artifact.id == PaperFile.artifact_id)
            .where(StageRun.stage == "parse", PaperFile.role == "pdf", Artifact.sha256 == digest)).first()
        if row is not None:
            s.expunge(row)
        return row


def test_a_worker_killed_mid_parse_is_recovered_within_the_same_run(pg_url, redis_broker, tmp_path):
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    upgrade(pg_url)
    store = make_engine(pg_url)
    with second_database() as airflow_db, second_database() as ref_db, \
            GrobidStandIn() as grobid, GrobidStandIn() as ref_grobid:
        reference = _reference_in_background(ref_db, tmp_path / "ref_data", ref_grobid.url)
        cluster = CeleryCluster(tmp_path / "airflow", airflow_db, redis_broker, extra_env={
            "FIGALIGN_DATABASE_URL": pg_url, "FIGALIGN_DATA_DIR": str(tmp_path / "data"),
            "FIGALIGN_GROBID_URL": grobid.url, "FIGALIGN_HTTP_MIN_INTERVAL_S": "0", "FIGALIGN_RETRY_DELAY_S": "1",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        meta = Metadata(airflow_db)
        cluster.migrate()
        try:
            cluster.start_all(workers=2, concurrency=2)
            timings["ready"] = cluster.wait_ready(["figalign_ingest_local", "figalign_process"])
            print(f"\ncluster ready after {time.monotonic() - t0:.1f}s", flush=True)
            cluster.request("POST", "/api/v2/pools", {"name": "grobid", "slots": 4}, ok=(200, 201))
            cluster.request("PATCH", "/api/v2/dags/figalign_ingest_local", {"is_paused": False})
            _, ingest = cluster.request("POST", "/api/v2/dags/figalign_ingest_local/dagRuns",
                                        {"logical_date": None, "conf": {"folder": str(PAPERS)}})
            wait_for(lambda: [r for r in meta.runs("figalign_ingest_local")
                              if r["run_id"] == ingest["dag_run_id"] and r["state"] == "success"],
                     "the ingest run", 120, cluster)
            print(f"ingested after {time.monotonic() - t0:.1f}s", flush=True)
            grobid.hold_next()
            # unpaused, the process DAG's schedule fires its latest six-hourly tick at once: that one
            # run (no conf: the params' defaults, as for an Asset-triggered run) must do all the work
            cluster.request("PATCH", "/api/v2/dags/figalign_process", {"is_paused": False})
            wait_for(lambda: grobid.in_flight == 1, "the first GROBID upload (held)", 150, cluster)
            held = wait_for(lambda: held_paper_row(store, grobid.uploads[0]), "the held paper's row", 10)
            assert held.status == "running" and held.lease_owner.endswith("/1"), held.lease_owner
            dag_id, run_id, task_id, map_index, _try = held.lease_owner.rsplit("/", 4)
            assert (dag_id, task_id) == ("figalign_process", "parse_grobid") and held.run_id == run_id
            victim = wait_for(lambda: next((t["hostname"] for t in meta.tries(dag_id, run_id)
                                            if t["task_id"] == task_id and t["map_index"] == int(map_index)
                                            and t["hostname"]), None), "the held task's worker", 10)
            survivor = {"w1": "w2", "w2": "w1"}[victim]

            print(f"killing {victim} at {time.monotonic() - t0:.1f}s", flush=True)
            killed = cluster.kill(victim)
            t_kill = time.monotonic()
            grobid.release()
            assert len(killed) >= 4, killed  # worker, pool process, supervisor, task (+ the budgeted child)

            def retried():
                row = held_paper_row(store, grobid.uploads[0])
                return row if row.try_number == 2 else None

            wait_for(retried, "the retry claiming the killed item", 240, cluster)
            timings["kill_to_retry_claim"] = time.monotonic() - t_kill
            wait_for(lambda: held_paper_row(store, grobid.uploads[0]).status in ("done", "failed"),
                     "the killed item finished by the retry", 120, cluster)
            timings["kill_to_item_done"] = time.monotonic() - t_kill

            def process_run():
                runs = [r for r in meta.runs("figalign_process") if r["run_id"] == run_id]
                return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None

            run = wait_for(process_run, "the process run to end", 180, cluster)
            timings["kill_to_run_done"] = time.monotonic() - t_kill
            tries = meta.tries(dag_id, run_id)
            process_runs = [r["run_id"] for r in meta.runs("figalign_process")]
            ingest_runs = meta.runs("figalign_ingest_local")
            hosts = {t["hostname"] for r in ingest_runs for t in meta.tries("figalign_ingest_local", r["run_id"])}
            hosts |= {t["hostname"] for t in tries}
            ref = reference()
        finally:
            grobid.release()
            cluster.stop()
            meta.dispose()

    report = {k: round(v, 1) for k, v in timings.items()} | {"test_wall_s": round(time.monotonic() - t0, 1)}
    print(f"\ncelery recovery timings: {report}")
    assert run["state"] == "success" and run["run_type"] == "scheduled", run
    assert process_runs[0] == run_id, process_runs  # the first and only run that was needed
    assert hosts >= {"w1", "w2"}, hosts  # both workers ran tasks
    lanes = {(t["task_id"], t["pool"]) for t in tries if t["state"] == "success"}
    assert {("parse", "default_pool"), ("parse_grobid", "grobid")} <= lanes, lanes  # both lanes ran
    killed_try = [t for t in tries if (t["task_id"], t["map_index"]) == (task_id, int(map_index))]
    assert sorted((t["try_number"], t["hostname"]) for t in killed_try) == [(1, victim), (2, survivor)]
    assert timings["kill_to_retry_claim"] < 150, timings  # well inside the default 300 s heartbeat timeout

    after = outcome(store)
    with session_scope(store) as s:
        rows = s.scalars(select(StageRun).where(StageRun.stage.in_(("parse", "filter")))).all()
        for r in rows:  # every paper and figure ended, with a reason when it failed, in this one run
            assert r.status in ("done", "failed", "skipped") and (r.status == "done" or r.reason or r.error_class)
            assert (r.dag_id, r.run_id) == ("figalign_process", run_id), (r.stage, r.entity_id, r.run_id)
        parse = {r.entity_id: r for r in rows if r.stage == "parse"}
        killed_row = held_paper_row(store, grobid.uploads[0])
        assert (killed_row.attempts, killed_row.try_number) == (2, 2)
        assert all(r.attempts == 1 for e, r in parse.items() if e != killed_row.entity_id)
        assert sorted(r.lane for r in parse.values()) == ["default", "grobid", "grobid"]
    assert grobid.count(grobid.uploads[0]) == 2  # the killed upload, then the retry's
    assert all(grobid.count(d) == 1 for d in set(grobid.uploads) - {grobid.uploads[0]})
    # nothing lost or duplicated: per-paper figures, contexts, artifacts and outcomes equal the CLI's
    assert after == ref
    assert after["counts"]["papers"] == 3 and after["counts"]["figures"] >= 8
    store.dispose()


def _reference_in_background(url: str, data_dir: Path, grobid_url: str):
    """Start the CLI reference while the cluster boots; the returned callable waits for it."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    future = pool.submit(cli_reference, url, data_dir, grobid_url)
    pool.shutdown(wait=False)
    return lambda: future.result(timeout=300)
