"""Orchestration benchmark: the demo path under Airflow against the same stages without it.

For each batch size, a fresh SQLite store (the demo's default) and a fresh AIRFLOW_HOME;
one subprocess runs ``dag.test()`` of ingest_local → process → recaption → score → export
over the committed sample papers (tests/fixtures/papers), exactly as ``make demo`` does
(no endpoint, no model weights: recaption and score record "skipped"). Measured:

* end-to-end papers/minute: the DAG runs' wall time (Airflow start-up of the process
  excluded and reported apart), against a baseline that runs the same stages in-process
  through ``figalign.pipeline`` (the CLI path) on the same inputs in the same run;
* per-stage time shares from ``stage_runs`` (a batch's span: its claim time to its last
  item's finish);
* Airflow's own overhead per mapped task: the task instance's wall time minus the stage
  work it wrapped (``seconds`` of the batch summary the task returns through XCom).

Run: ``.venv/bin/python bench/bench_orchestration.py [--sizes 1,4,25]`` (~2–3 min, 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# the demo path: no model downloads (score records "skipped" with the loader's message)
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

from tests.orchestration.airflow_runner import airflow_env, migrate_home, run_dags  # noqa: E402

PAPERS = ROOT / "tests" / "fixtures" / "papers"
DAG_IDS = ["figalign_ingest_local", "figalign_process", "figalign_recaption", "figalign_score", "figalign_export"]
MAPPED = {"fetch", "parse", "filter", "recaption", "score"}


def n_papers() -> int:
    return sum(1 for p in PAPERS.iterdir() if p.name != "README.md")


def specs(batch_size: int, out_dir: Path) -> list[dict]:
    batch = {"batch_size": batch_size, "max_batches": 1000}
    conf = {"figalign_ingest_local": {"folder": str(PAPERS)}, "figalign_export": {"out": str(out_dir)}}
    return [{"dag_id": d, "conf": conf.get(d, batch if d != "figalign_export" else None)} for d in DAG_IDS]


def stage_shares(url: str) -> dict[str, float]:
    """Seconds per stage: per batch (items sharing a claim time), claim to last finish."""
    from sqlalchemy import select

    from figalign.store.db import make_engine, session_scope
    from figalign.store.models import StageRun

    engine = make_engine(url)
    spans: dict[tuple, list] = defaultdict(list)
    with session_scope(engine) as s:
        for stage, started, finished in s.execute(select(StageRun.stage, StageRun.started_at, StageRun.finished_at)):
            if started and finished:
                spans[(stage, started)].append(finished)
    engine.dispose()
    out: dict[str, float] = defaultdict(float)
    for (stage, started), finished in spans.items():
        out[stage] += (max(finished) - started).total_seconds()
    return dict(out)


def airflow_case(batch_size: int, work: Path) -> dict:
    """One demo pass under Airflow; returns timings, shares and per-mapped-task overhead."""
    from figalign.store.migrate import upgrade

    url = f"sqlite:///{work / 'store.db'}"
    upgrade(url)
    home = migrate_home(work / "airflow_home")
    env = airflow_env(home, url, work / "data")
    started = time.perf_counter()
    result = run_dags(env, specs(batch_size, work / "export"))
    process_wall = time.perf_counter() - started
    bad = [(r["dag_id"], r["state"]) for r in result if r["state"] != "success"]
    if bad:
        raise RuntimeError(f"DAG runs failed: {bad}")
    dag_wall = sum(r["wall_s"] for r in result)
    overheads, task_s, work_s = [], [], []
    for run in result:
        for ti in run["tasks"]:
            xcom = ti["xcom"]
            if ti["task_id"] in MAPPED and ti["map_index"] >= 0 and isinstance(xcom, dict) and ti["seconds"]:
                task_s.append(ti["seconds"])
                work_s.append(xcom["seconds"])
                overheads.append(ti["seconds"] - xcom["seconds"])
    all_tasks = sum(len(r["tasks"]) for r in result)
    ti_sum = sum(ti["seconds"] or 0.0 for r in result for ti in r["tasks"])
    return {"batch_size": batch_size, "process_wall_s": process_wall, "dag_wall_s": dag_wall,
            "startup_s": process_wall - dag_wall, "task_instances": all_tasks,
            "between_tasks_s": dag_wall - ti_sum, "mapped_tasks": len(overheads),
            "mapped_task_s": _mean(task_s), "stage_work_s": _mean(work_s), "overhead_s": _mean(overheads),
            "overhead_sum_s": sum(overheads), "stage_seconds": stage_shares(url)}


def baseline(work: Path) -> dict:
    """The same stages through figalign.pipeline in this process (the CLI path), batch 25."""
    from figalign.config import load_settings
    from figalign.pipeline import STAGES, export_dataset, ingest_local, plan_batches, run_stage
    from figalign.store.migrate import upgrade

    url = f"sqlite:///{work / 'store.db'}"
    upgrade(url)
    os.environ.pop("FIGALIGN_VLLM_BASE_URL", None)
    settings = load_settings({"FIGALIGN_DATABASE_URL": url, "FIGALIGN_DATA_DIR": str(work / "data")})
    started = time.perf_counter()
    ingest_local(str(PAPERS), settings=settings)
    for stage in STAGES:
        for _ in plan_batches(stage, 25, 1000, settings=settings):
            run_stage(stage, size=25, settings=settings)
    export_dataset("all", str(work / "export"), settings=settings)
    return {"wall_s": time.perf_counter() - started, "stage_seconds": stage_shares(url)}


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def shares_text(seconds: dict[str, float]) -> str:
    total = sum(seconds.values()) or 1.0
    return ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(seconds.items(), key=lambda kv: -kv[1]))


def report(cases: list[dict], base: dict) -> str:
    n = n_papers()
    lines = [f"papers: {n} (tests/fixtures/papers); baseline (same stages in-process, no Airflow): "
             f"{base['wall_s']:.1f} s = {n / base['wall_s'] * 60:.1f} papers/min; "
             f"stage shares {shares_text(base['stage_seconds'])}", "",
             "| batch size | mapped tasks | all task instances | DAG runs wall | papers/min (DAG runs) | × baseline time "
             "| process start-up | mean mapped task | mean stage work in it | Airflow overhead per mapped task "
             "| overhead total | dag.test time outside task instances |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        lines.append(f"| {c['batch_size']} | {c['mapped_tasks']} | {c['task_instances']} | {c['dag_wall_s']:.1f} s "
                     f"| {n / c['dag_wall_s'] * 60:.1f} | {c['dag_wall_s'] / base['wall_s']:.1f} "
                     f"| {c['startup_s']:.1f} s | {c['mapped_task_s']:.2f} s | {c['stage_work_s']:.2f} s "
                     f"| {c['overhead_s']:.2f} s | {c['overhead_sum_s']:.1f} s | {c['between_tasks_s']:.1f} s |")
    lines.append("")
    for c in cases:
        lines.append(f"stage shares, batch {c['batch_size']}: {shares_text(c['stage_seconds'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,4,25", help="batch sizes to compare")
    ap.add_argument("--json", type=Path, help="also write raw numbers here")
    args = ap.parse_args(argv)
    cases = []
    with tempfile.TemporaryDirectory(prefix="figalign-bench-orch-") as tmp:
        base = baseline(Path(tmp) / "baseline")
        for size in (int(s) for s in args.sizes.split(",")):
            work = Path(tmp) / f"b{size}"
            work.mkdir()
            cases.append(airflow_case(size, work))
            print(f"batch {size}: {json.dumps(cases[-1], default=str)}", flush=True)
    print(report(cases, base))
    if args.json:
        args.json.write_text(json.dumps({"baseline": base, "cases": cases}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
