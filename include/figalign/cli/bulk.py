"""`figalign harvest arxiv-bulk|biorxiv-bulk|medrxiv-bulk`: the providers' bulk buckets.

Each command queues the selected tars or MECA packages as work items (``stages.bulk``) and
runs them to the end in this process; another process running the same command at the
same time shares the queue (each item is claimed by exactly one). Run again, it skips what
is done and resumes the rest; ``--retry-failed`` gives failed items their attempts back.
"""

from __future__ import annotations

import argparse
import json
import sys


def _yymm(value: str) -> str:
    from figalign.sources.arxiv_bulk import yymm_key

    try:
        yymm_key(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def _cmd(args: argparse.Namespace) -> int:
    from figalign.config import load_settings
    from figalign.stages.base import drain
    from figalign.stages.bulk import bulk_stage, plan_bulk
    from figalign.store.db import get_engine

    source = args.source.removesuffix("-bulk")
    settings = load_settings()
    engine = get_engine(settings)
    stage = bulk_stage(source, settings)
    try:
        selection = (dict(from_yymm=args.from_yymm, until_yymm=args.until_yymm) if source == "arxiv" else
                     dict(months=args.month, from_month=args.from_month, until_month=args.until_month,
                          folders=args.folder))
        plan = plan_bulk(engine, stage, retry_failed=args.retry_failed, limit=args.limit, **selection)
    except ValueError as exc:
        raise SystemExit(f"figalign harvest {args.source}: {exc}") from exc
    print(json.dumps({"plan": plan.as_dict()}), file=sys.stdout)
    summary = drain(stage, engine, size=args.batch_size)
    print(json.dumps(summary.as_dict()), file=sys.stdout)
    return 0 if not summary.statuses.get("failed") else 1


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
    p.set_defaults(func=_cmd)
    for name in ("biorxiv", "medrxiv"):
        p = hs.add_parser(f"{name}-bulk", help=f"{name} MECA packages from s3://{name}-src-monthly (requester pays; "
                                                f"FIGALIGN_{name.upper()}_BULK_URL)")
        p.add_argument("--month", action="append", help="Current_Content month, Month_Year (e.g. November_2026)")
        p.add_argument("--from-month", help="first month of a range, Month_Year")
        p.add_argument("--until-month", help="last month of a range (inclusive), Month_Year")
        p.add_argument("--folder", action="append", help="any folder of the bucket, e.g. Back_Content/Batch_01")
        _common(p)
        p.set_defaults(func=_cmd)
