"""Benchmark: CPU cost per paper and per figure of each CPU stage, for docs/scaling.md.

What a cluster needs is CPU-seconds per unit of work, not wall time on a shared machine:
CPU time (this process plus reaped children, ``getrusage``) barely moves when other work
shares the cores, wall time does. For each kind of paper (LaTeX e-prints, JATS packages,
plain PDFs, PDFs with a GROBID TEI) the real stages run in one process on a fresh SQLite
store, as the CLI runs them: ingest → parse (budgeted child per batch, as in production)
→ filter → export (WebDataset and S1-MMAlign). Rates are papers (figures) per CPU-second,
i.e. per core. The GROBID kind measures figalign's side (upload, TEI parse, PyMuPDF
crops) against the recorded-TEI stand-in; GROBID's own CPU is not in it.

    PYTHONPATH=include:. .venv/bin/python bench/bench_stage_rates.py [--repeat 2]

Baseline in the same run: a bare PyMuPDF text pass over the same PDFs (``get_text`` per
page), so the PDF rate can be compared with bench_pdf_parse's ratio.
"""

from __future__ import annotations

import argparse
import logging
import resource
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]
CORPUS = ROOT.parent / "shared" / "corpus"


def cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def kinds() -> dict[str, list[Path]]:
    """Inputs per kind: the shared corpus where present, else the committed sample papers."""
    from tests.conftest import FIXTURES

    if not CORPUS.is_dir():
        papers = sorted((FIXTURES / "papers").iterdir())
        return {"sample papers": papers}
    tei_pdfs = [p for p in sorted((CORPUS / "grobid_tei").glob("*.pdf"))
                if p.with_name(p.stem + ".tei.xml").is_file()]
    return {
        "latex": sorted(p for p in (CORPUS / "latex").iterdir() if p.is_file()),
        "jats": sorted(p for p in (CORPUS / "jats").iterdir() if p.is_dir() and any(p.glob("*.xml"))),
        "pdf": sorted((CORPUS / "pdf").glob("*.pdf")),
        "pdf+grobid": tei_pdfs,
    }


def run_kind(name: str, inputs: list[Path], work: Path, grobid_url: str) -> dict:
    """ingest → parse → filter → export over ``inputs``; CPU seconds per stage."""
    from figalign.config import Settings
    from figalign.export import run_export
    from figalign.export.options import ExportOptions
    from figalign.pipeline import ingest_local
    from figalign.stages.base import drain
    from figalign.stages.filter import FilterStage, kept_condition
    from figalign.stages.parse import ParseStage
    from figalign.store.db import make_engine, session_scope
    from figalign.store.migrate import upgrade
    from figalign.storage import ArtifactStore
    from figalign.store.models import Artifact, FigureRow
    from sqlalchemy import func, select

    folder = work / "in"
    folder.mkdir(parents=True)
    for src in inputs:
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, folder / src.name)
    url = f"sqlite:///{work / 'store.db'}"
    upgrade(url)
    engine = make_engine(url)
    settings = Settings(data_dir=work / "data", database_url=url, grobid_url=grobid_url if "grobid" in name else "")
    out = {"papers": len(inputs)}
    t = cpu()
    ingest_local(str(folder), licence="CC BY", settings=settings)  # a licence, so exports take them
    out["ingest"] = cpu() - t
    t = cpu()
    parsed = drain(ParseStage(settings), engine, size=8)
    out["parse"] = cpu() - t
    out["parsed"] = parsed.statuses.get("done", 0)
    t = cpu()
    drain(FilterStage(settings), engine, size=50)
    out["filter"] = cpu() - t
    with session_scope(engine) as s:
        out["figures"] = s.scalar(select(func.count()).select_from(FigureRow)) or 0
        out["kept"] = s.scalar(select(func.count()).select_from(FigureRow).where(kept_condition())) or 0
        out["stored"] = s.scalar(select(func.coalesce(func.sum(Artifact.size), 0))) or 0
    options = ExportOptions(include_unrecaptioned=True)  # no VLM here: export the original captions
    for fmt in ("webdataset", "s1mmalign"):
        t = cpu()
        run_export(engine, ArtifactStore(settings.data_dir), fmt, work / f"export-{fmt}", options=options)
        out[f"export {fmt}"] = cpu() - t
    engine.dispose()
    return out


def floor_text_pass(pdfs: list[Path]) -> float:
    import pymupdf

    t = cpu()
    for pdf in pdfs:
        with pymupdf.open(pdf) as doc:
            for page in doc:
                page.get_text("dict")
    return cpu() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    from tests.servers.grobid_server import GrobidStandIn

    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rates-") as tmp, GrobidStandIn() as grobid:
        # warm imports (torch-free path) so the first kind does not pay them
        run_kind("warm", kinds()[next(iter(kinds()))][:1], Path(tmp) / "warm", grobid.url)
        for _ in range(args.repeat):
            for name, inputs in kinds().items():
                got = run_kind(name, inputs, Path(tmp) / f"{name}-{uuid.uuid4().hex[:6]}", grobid.url)
                prev = best.get(name)
                best[name] = got if prev is None else {k: min(v, prev[k]) if isinstance(v, float) else v
                                                         for k, v in got.items()}
        pdfs = kinds().get("pdf", [])
        floor = min(floor_text_pass(pdfs) for _ in range(args.repeat)) if pdfs else 0.0
    print("| kind | papers | figures (kept) | parse CPU s/paper | papers/s per core | filter ms/figure "
          "| export WebDataset ms/kept | export S1-MMAlign ms/kept | stored MB/paper |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in best.items():
        per_paper = r["parse"] / max(1, r["papers"])
        kept = max(1, r["kept"])
        print(f"| {name} | {r['papers']} ({r['parsed']} parsed) | {r['figures']} ({r['kept']}) | {per_paper:.3f} "
              f"| {1 / per_paper:.2f} | {1000 * r['filter'] / max(1, r['figures']):.1f} "
              f"| {1000 * r['export webdataset'] / kept:.1f} | {1000 * r['export s1mmalign'] / kept:.1f} "
              f"| {r['stored'] / 1e6 / max(1, r['papers']):.2f} |")
    if pdfs:
        pdf = best["pdf"]
        print(f"\nbaseline: bare PyMuPDF get_text('dict') over the {len(pdfs)} PDFs: {floor:.2f} CPU s; "
              f"pdf parse stage {pdf['parse']:.2f} CPU s = {pdf['parse'] / floor:.2f}x the floor "
              f"(crops rendered, PNG, pHash, store writes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
