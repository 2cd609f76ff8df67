"""The quality report: tables (report.json, report.md) and plots (PNGs) from the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from figalign.store.db import session_scope


def write_report(engine: Engine, out_dir: Path) -> dict[str, Any]:
    """Build the report from the store and write report.json, report.md and PNGs to ``out_dir``.

    Reads only; safe to run while stages are writing (it sees one consistent snapshot per
    query). Returns the report dict with the written file names under ``files``.
    """
    from figalign.report.plots import write_plots
    from figalign.report.tables import build_report, caption_lengths, metric_series, to_markdown

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with session_scope(engine) as session:
        report = build_report(session)
        metrics, lengths = metric_series(session), caption_lengths(session)
    pngs = [p.name for p in write_plots(metrics, lengths, out_dir)]
    report["files"] = ["report.json", "report.md", *pngs]
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(to_markdown(report, pngs) + "\n", encoding="utf-8")
    return report
