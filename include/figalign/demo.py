"""`make demo`: the whole pipeline under Airflow on embedded defaults, no servers, no network.

It migrates the SQLite store, checks the DAG folder with DagBag, then runs the DAGs with
``dag.test()`` against a private Airflow home: ingest the committed sample papers (and
``../shared/corpus`` when present) → fetch/parse/filter → recaption → score → export. Stages
whose services are not configured (vLLM, model weights) record "skipped" with the reason. At
the end it prints what was counted and where to look.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_CORPUS = ROOT.parent / "shared" / "corpus"
CORPUS_PICKS = ["jats/plos_pone.0038869", "jats/pmc", "jats/plos_xml", "latex/1706.03762.tar.gz",
                "latex/2004.14974.gz", "latex/1803.07574.tar.gz", "pdf/futoma2017improved.pdf",
                "pdf/grobid_test_0908.0054.pdf", "grobid_tei/0046d83a.pdf"]
DAG_ORDER = ["figalign_ingest_local", "figalign_process", "figalign_recaption", "figalign_score",
             "figalign_export"]


def _setup_env(data_dir: str, local_dir: Path) -> Path:
    home = local_dir / "airflow_demo"
    os.environ.setdefault("FIGALIGN_DATA_DIR", data_dir)
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    })
    sys.path.insert(0, str(ROOT / "plugins"))
    return home


SAMPLES = ROOT / "tests" / "fixtures" / "papers"


def _corpus_folder(local_dir: Path) -> Path | None:
    """A selection of ../shared/corpus linked into one folder (licences unknown to us)."""
    if not SHARED_CORPUS.exists():
        return None
    folder = local_dir / "demo_corpus"
    folder.mkdir(parents=True, exist_ok=True)
    picks: list[Path] = []
    for rel in CORPUS_PICKS:
        src = SHARED_CORPUS / rel
        if src.is_dir() and not any(src.glob("*.pdf")) and not any(src.glob("*.png")) and not any(src.glob("*.tif")):
            picks.extend(sorted(p for p in src.iterdir() if p.suffix in (".xml", ".nxml")))
        elif src.exists():
            picks.append(src)
    for src in picks:
        link = folder / src.name
        if not link.exists():
            link.symlink_to(src.resolve())
    return folder


def _ingest_runs(local_dir: Path) -> list[dict]:
    """The committed samples are CC BY (see their README); corpus papers get their licence
    from their own metadata or stay unknown (kept out of the export, with that reason)."""
    runs = [{"folder": str(SAMPLES), "licence": "CC BY"}]
    corpus = _corpus_folder(local_dir)
    if corpus is not None:
        runs.append({"folder": str(corpus), "licence": None})
    return runs


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _data_dirs() -> tuple[str, Path]:
    """The data dir (a folder or an ``s3://`` URL, kept as text) and a local folder for what
    must be local: Airflow's home and the linked demo corpus (``./data`` for a URL)."""
    from figalign.location import is_url

    data_dir = os.environ.get("FIGALIGN_DATA_DIR") or str(ROOT / "data")
    if is_url(data_dir):
        return data_dir, (ROOT / "data").resolve()
    return str(Path(data_dir).resolve()), Path(data_dir).resolve()


def main() -> int:
    data_dir, local_dir = _data_dirs()
    home = _setup_env(data_dir, local_dir)
    from figalign.config import load_settings
    from figalign.store.migrate import upgrade

    t0 = _step("provenance store")
    settings = load_settings()
    upgrade(settings.effective_database_url)
    print(f"migrated {settings.effective_database_url}")

    _step("DAG integrity")
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    print(f"{len(bag.dags)} DAGs in {time.perf_counter() - started:.2f}s, import errors: {bag.import_errors or 'none'}")
    if bag.import_errors:
        return 1

    _step("Airflow metadata database")
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL, env=os.environ)
    print(f"AIRFLOW_HOME={home}")

    runs = [(dag_id, conf) for conf in _ingest_runs(local_dir) for dag_id in DAG_ORDER[:1]]
    runs += [(dag_id, None) for dag_id in DAG_ORDER[1:]]
    timings: dict[str, float] = {}
    for dag_id, conf in runs:
        start = _step(f"dag.test({dag_id}{', ' + json.dumps(conf) if conf else ''})")
        run = bag.dags[dag_id].test(run_conf=conf)
        timings[dag_id] = round(timings.get(dag_id, 0) + time.perf_counter() - start, 1)
        print(f"{dag_id}: {run.state} in {time.perf_counter() - start:.1f}s")
        if str(run.state) not in ("success", "DagRunState.SUCCESS"):
            print(f"{dag_id} did not succeed; see the task logs under {home / 'logs'}")
            return 1
    return _report(settings, [c["folder"] for c in _ingest_runs(local_dir)], timings, time.perf_counter() - t0)


def _report(settings, folders: list[str], timings: dict, seconds: float) -> int:
    from figalign.pipeline import render_summary

    summary = render_summary(None, settings=settings)
    print("\n== what was counted (stage: status counts; top reasons)")
    for stage, info in summary["stages"].items():
        counts = ", ".join(f"{k}={v}" for k, v in sorted(info["counts"].items()))
        print(f"  {stage:<10} {counts}")
        for reason, n in info["top_reasons"].items():
            print(f"  {'':<10}   {n} × {reason}")
    _print_figures(settings)
    from figalign.location import is_url, join

    exports = [] if is_url(settings.data_dir) else sorted(Path(settings.data_dir, "exports").glob("*/*/README.md"))
    print(f"\n== done in {seconds:.0f}s; per DAG: {json.dumps(timings)}")
    print(f"input folders:     {', '.join(folders)}")
    print(f"store:             {settings.effective_database_url}")
    print(f"artifacts:         {join(settings.data_dir, 'objects')}")
    if is_url(settings.data_dir):
        print(f"export + card:     {join(settings.data_dir, 'exports')}")
    if exports:
        print(f"export + card:     {exports[-1].parent}")
    print("inspect:           .venv/bin/figalign status    |   make airflow  (UI at http://localhost:8080)")
    for line in _service_hints(summary["stages"], settings):
        print(line)
    return 0


def _service_hints(stages: dict, settings) -> list[str]:
    """What to set for the stages that were skipped for want of a service, and what then happens."""
    lines = []
    if stages.get("recaption", {}).get("counts", {}).get("skipped") and not settings.vllm_base_url:
        lines.append("recaption skipped: set FIGALIGN_VLLM_BASE_URL=http://<host>:8000/v1 and FIGALIGN_VLLM_MODEL="
                     "<served model> (a vLLM OpenAI-compatible server) and run `make demo` again: each kept figure "
                     "gets a recaption, visible with `figalign explore` and in the export (see docs/recaption.md)")
    if stages.get("score", {}).get("counts", {}).get("skipped"):
        lines.append("score skipped: put the SciBERT and CLIP weights where FIGALIGN_PPPL_MODEL / FIGALIGN_CLIP_MODEL "
                     "and FIGALIGN_CLIP_PRETRAINED point (a local folder or Hugging Face cache) to get PPPL and CLIP "
                     "scores for original and recaptions, and the report's before/after comparison")
    return lines


def _print_figures(settings) -> None:
    """Figures kept for the dataset, and why the others were left out."""
    from sqlalchemy import func, select

    from figalign.store.db import get_engine, session_scope
    from figalign.store.models import Export, FigureRow

    with session_scope(get_engine(settings)) as session:
        rows = session.execute(select(FigureRow.filter_reason, func.count()).group_by(FigureRow.filter_reason)).all()
        exports = session.execute(select(Export.format, Export.samples, Export.since)
                                  .order_by(Export.id.desc()).limit(3)).all()
    kept = sum(n for reason, n in rows if reason is None)
    print(f"\n== figures: {sum(n for _, n in rows)} parsed, {kept} kept for the dataset")
    for reason, n in sorted(((r, n) for r, n in rows if r), key=lambda x: -x[1]):
        print(f"  {n:>5} × {reason}")
    print("== exported samples: " + ", ".join(f"{fmt}={n}" for fmt, n, _ in exports))
    if exports and exports[0][2] is not None:  # a re-run: exports are incremental
        print(f"   (incremental: only what changed since the previous export at {exports[0][2]:%Y-%m-%d %H:%M:%S}; "
              "`make clean-data` starts over)")


if __name__ == "__main__":
    sys.exit(main())
