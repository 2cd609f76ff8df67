"""`figalign parse`: one paper to its record as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_parse(args: argparse.Namespace) -> int:
    from figalign.parsers.options import ParseOptions
    from figalign.parsers.registry import parse_path

    out_dir = Path(args.out) if args.out else Path("data") / "parse"
    options = ParseOptions(dpi=args.dpi, max_side=args.max_side)
    paper = parse_path(Path(args.path), kind=args.kind, out_dir=out_dir, pdf=args.pdf, options=options)
    json.dump(paper.to_cli_json(), sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("parse", help="parse one paper and print its record as JSON")
    p.add_argument("path", help="JATS XML, GROBID TEI, LaTeX e-print, or PDF")
    p.add_argument("--pdf", help="PDF to crop figures from (for TEI input)")
    p.add_argument("--kind", default="auto", choices=["auto", "jats", "tei", "latex", "pdf"])
    p.add_argument("--out", help="directory for figure images (default data/parse)")
    p.add_argument("--dpi", type=int, default=150, help="crop resolution for PDF figures")
    p.add_argument("--max-side", type=int, default=2048, help="longest side of written images")
    p.set_defaults(func=_cmd_parse)
