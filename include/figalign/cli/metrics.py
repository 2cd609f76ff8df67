"""`figalign score` and `figalign report`: quality metrics from the command line.

``add_commands(subparsers)`` registers both on the main parser; modules load lazily so the
CLI's other commands never import torch or matplotlib.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _engine():
    from figalign.config import load_settings
    from figalign.store.db import get_engine

    settings = load_settings()
    return settings, get_engine(settings)


def _cmd_score(args: argparse.Namespace) -> int:
    from figalign.stages.score import ScoreOptions, drain_score

    settings, engine = _engine()
    if args.backfill_gains:
        return _backfill_gains(engine)
    if args.figure_types:
        from figalign.stages.figtype import label_figures

        summary = label_figures(engine, settings, batch=args.batch_size, limit=args.limit)
        json.dump(summary.as_dict(), sys.stdout)
        sys.stdout.write("\n")
        return 0
    families = ("pppl", "clip") if args.metric == "all" else (args.metric,)
    options = ScoreOptions(metrics=families, device=args.device, dtype=args.dtype)
    summary = drain_score(engine, settings, size=args.batch_size, limit=args.limit, options=options)
    json.dump(summary.as_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


def _backfill_gains(engine) -> int:
    from figalign.metrics.gains import backfill_gains
    from figalign.store.db import session_scope

    with session_scope(engine) as session:
        rows = backfill_gains(session)
    json.dump({"gain_rows": rows}, sys.stdout)
    sys.stdout.write("\n")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from figalign.report import write_report

    _, engine = _engine()
    report = write_report(engine, Path(args.out))
    json.dump({"out": str(args.out), "files": report["files"]}, sys.stdout)
    sys.stdout.write("\n")
    return 0


def add_commands(subparsers) -> None:
    """Register `score` and `report` on the CLI's subparsers."""
    p = subparsers.add_parser("score", help="score accepted captions: SciBERT pseudo-perplexity and CLIP score")
    p.add_argument("--limit", type=int, default=None, help="score at most N captions")
    p.add_argument("--metric", choices=["pppl", "clip", "all"], default="all")
    p.add_argument("--batch-size", type=int, default=32, help="captions claimed and scored per model pass")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 …")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--backfill-gains", action="store_true",
                   help="only store the CLIP gain rows of already scored figures (stores scored before "
                        "gains were stored), then exit; loads no model")
    p.add_argument("--figure-types", action="store_true",
                   help="label each kept figure's type (plot, photograph, table …) zero-shot with the configured "
                        "CLIP model and prompts/figure_types_v1.json, stored as figtype:<label> metric rows")
    p.set_defaults(func=_cmd_score)
    r = subparsers.add_parser("report", help="write the quality report (JSON, Markdown, PNG plots)")
    r.add_argument("--out", required=True, help="output directory")
    r.set_defaults(func=_cmd_report)
