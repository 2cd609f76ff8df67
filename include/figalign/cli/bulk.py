"""`figalign harvest arxiv-bulk|biorxiv-bulk|medrxiv-bulk`: the providers' bulk buckets.

Each command queues the selected tars or MECA packages as work items (``stages.bulk``) and
runs them to the end in this process; another process running the same command at the
same time shares the queue (each item is claimed by exactly one). Run again, it skips what
is done and resumes the rest; ``--retry-failed`` gives failed items their attempts back.
"""

from __future__ import annotations

import argparse
import json
import re
import sys


def _yymm(value: str) -> str:
    from figalign.sources.arxiv_bulk import yymm_key

    try:
        yymm_key(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def _runtime(source: str):
    from figalign.config import load_settings
    from figalign.sources.bulk_s3 import BulkLocation
    from figalign.storage import ArtifactStore
    from figalign.store.db import get_engine

    settings = load_settings()
    return settings, get_engine(settings), BulkLocation.from_env(source), ArtifactStore(settings.data_dir)


def _run(stage, engine, plan, args) -> int:
    from figalign.stages.base import drain

    print(json.dumps({"plan": plan.as_dict()}), file=sys.stdout)
    summary = drain(stage, engine, size=args.batch_size)
    print(json.dumps(summary.as_dict()), file=sys.stdout)
    return 0 if not summary.statuses.get("failed") else 1


def _cmd_arxiv(args: argparse.Namespace) -> int:
    from figalign.stages.bulk import ArxivBulkStage, plan_arxiv

    settings, engine, location, store = _runtime("arxiv")
    stage = ArxivBulkStage(location, store, arxiv_base_url=settings.arxiv_base_url)
    plan = plan_arxiv(engine, stage, args.from_yymm, args.until_yymm, retry_failed=args.retry_failed,
                      limit=args.limit)
    return _run(stage, engine, plan, args)


def _cmd_meca(args: argparse.Namespace) -> int:
    from figalign.sources.meca import month_folder, month_range
    from figalign.stages.bulk import MecaBulkStage, plan_meca

    source = args.source.removesuffix("-bulk")
    try:
        folders = [month_folder(m) for m in args.month or []]
        if args.from_month or args.until_month:
            if not (args.from_month and args.until_month):
                raise SystemExit("--from-month and --until-month go together")
            folders += month_range(args.from_month, args.until_month)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    folders += [f.strip("/") for f in args.folder or [] if re.match(r"^[A-Za-z0-9_./-]+$", f) and ".." not in f]
    if not folders:
        raise SystemExit("give --month, --from-month/--until-month or --folder")
    settings, engine, location, store = _runtime(source)
    stage = MecaBulkStage(source, location, store)
    plan = plan_meca(engine, stage, folders, retry_failed=args.retry_failed, limit=args.limit)
    return _run(stage, engine, plan, args)


def _common(p) -> None:
    p.add_argument("--limit", type=int, help="queue at most N items (tars or packages) this time")
    p.add_argument("--retry-failed", action="store_true", help="give failed items their attempts back")
    p.add_argument("--batch-size", type=int, default=1, help="items claimed per batch (default 1)")


def add_bulk_commands(hs) -> None:
    """Register the bulk commands on `figalign harvest`'s subparsers."""
    p = hs.add_parser("arxiv-bulk", help="arXiv source tars from s3://arxiv (requester pays; FIGALIGN_ARXIV_BULK_URL)")
    p.add_argument("--from-yymm", type=_yymm, required=True, help="first month, YYMM (e.g. 2301)")
    p.add_argument("--until-yymm", type=_yymm, required=True, help="last month (inclusive), YYMM")
    _common(p)
    p.set_defaults(func=_cmd_arxiv)
    for name in ("biorxiv", "medrxiv"):
        p = hs.add_parser(f"{name}-bulk", help=f"{name} MECA packages from s3://{name}-src-monthly (requester pays; "
                                                f"FIGALIGN_{name.upper()}_BULK_URL)")
        p.add_argument("--month", action="append", help="Current_Content month, Month_Year (e.g. November_2026)")
        p.add_argument("--from-month", help="first month of a range, Month_Year")
        p.add_argument("--until-month", help="last month of a range (inclusive), Month_Year")
        p.add_argument("--folder", action="append", help="any folder of the bucket, e.g. Back_Content/Batch_01")
        _common(p)
        p.set_defaults(func=_cmd_meca)
