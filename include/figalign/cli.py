"""`figalign …`: every stage runnable without Airflow.

Subcommands import their modules lazily so `figalign config` never loads torch or PyMuPDF.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from figalign.errors import FigalignError


def _cmd_parse(args: argparse.Namespace) -> int:
    from figalign.parsers.options import ParseOptions
    from figalign.parsers.registry import parse_path

    out_dir = Path(args.out) if args.out else Path("data") / "parse"
    options = ParseOptions(dpi=args.dpi, max_side=args.max_side)
    paper = parse_path(Path(args.path), kind=args.kind, out_dir=out_dir, pdf=args.pdf, options=options)
    json.dump(paper.to_cli_json(), sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def _add_parse(sub) -> None:
    p = sub.add_parser("parse", help="parse one paper and print its record as JSON")
    p.add_argument("path", help="JATS XML, GROBID TEI, LaTeX e-print, or PDF")
    p.add_argument("--pdf", help="PDF to crop figures from (for TEI input)")
    p.add_argument("--kind", default="auto", choices=["auto", "jats", "tei", "latex", "pdf"])
    p.add_argument("--out", help="directory for figure images (default data/parse)")
    p.add_argument("--dpi", type=int, default=150, help="crop resolution for PDF figures")
    p.add_argument("--max-side", type=int, default=2048, help="longest side of written images")
    p.set_defaults(func=_cmd_parse)


def _cmd_config(args: argparse.Namespace) -> int:
    from figalign.config import load_settings

    settings = load_settings()
    width = max(len(k) for k in settings.masked())
    for key, value in settings.masked().items():
        print(f"{key:<{width}}  {value}")
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    from figalign.config import load_settings
    from figalign.store import migrate

    url = load_settings().effective_database_url
    if args.action == "upgrade":
        migrate.upgrade(url, args.revision or "head")
    elif args.action == "downgrade":
        migrate.downgrade(url, args.revision or "-1")
    elif args.action == "check":
        diff = migrate.pending_diff(url)
        if diff:
            print("models and database differ:", *diff, sep="\n  ")
            return 1
    print(f"store at revision {migrate.current_revision(url)} (head {migrate.head_revision()})")
    return 0


def _add_admin(sub) -> None:
    c = sub.add_parser("config", help="print the effective configuration (secrets masked)")
    c.set_defaults(func=_cmd_config)
    d = sub.add_parser("db", help="migrate or inspect the provenance store")
    d.add_argument("action", choices=["upgrade", "downgrade", "current", "check"])
    d.add_argument("revision", nargs="?", help="target revision (upgrade: head; downgrade: -1)")
    d.set_defaults(func=_cmd_db)


def _add_optional(sub) -> None:
    """Register subcommands that live in their own modules (harvest, recaption, metrics…)."""
    import importlib

    for name in ("cli_harvest", "cli_pipeline", "cli_recaption", "cli_metrics", "cli_export", "cli_explore"):
        try:
            module = importlib.import_module(f"figalign.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"figalign.{name}":
                raise
            continue
        module.add_commands(sub)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="figalign", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)
    _add_parse(sub)
    _add_admin(sub)
    _add_optional(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        return args.func(args)
    except FigalignError as exc:
        print(f"figalign: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
