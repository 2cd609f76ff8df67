"""`figalign …`: every stage runnable without Airflow.

One module per command group (``figalign.cli.harvest``, ``figalign.cli.export``…), each with an
``add_commands(sub)``. Subcommands import their modules lazily so `figalign config` never loads
torch or PyMuPDF.
"""

from __future__ import annotations

import argparse
import logging
import sys

from figalign.errors import FigalignError

#: One module per command group, registered in this order (``figalign --help`` lists them so).
COMMAND_GROUPS = ("parse", "admin", "harvest", "pipeline", "recaption", "metrics", "export", "explore")


def _add_commands(sub) -> None:
    """Register every command group; each lives in its own module of this package."""
    import importlib

    for name in COMMAND_GROUPS:
        importlib.import_module(f"figalign.cli.{name}").add_commands(sub)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="figalign", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)
    _add_commands(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        return args.func(args)
    except FigalignError as exc:
        print(f"figalign: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


