"""`figalign ingest | run | status`: drive stages from the shell, no Airflow needed."""

from __future__ import annotations

import argparse
import json


def _ingest(args: argparse.Namespace) -> int:
    from figalign.pipeline import ingest_local

    print(json.dumps(ingest_local(args.folder, limit=args.limit, licence=args.licence), indent=2))
    return 0


def _run(args: argparse.Namespace) -> int:
    from figalign.pipeline import run_stage

    total_claimed = 0
    for i in range(args.max_batches):
        result = run_stage(args.stage, size=args.batch_size, discover=i == 0)
        print(json.dumps(result))
        total_claimed += int(result.get("claimed", 0))
        if not result.get("claimed"):
            break
    return 0


def _status(args: argparse.Namespace) -> int:
    from figalign.pipeline import all_reasons, harvest_status, render_summary

    if getattr(args, "reasons", False):
        for r in all_reasons(getattr(args, "stage", None)):
            print(f"{r['stage']:<10} {r['status']:<8} {r['count']:>7} × {r['reason']}   (e.g. {r['example']})")
        return 0

    for source, info in harvest_status().items():
        windows = ", ".join(f"{k}={v}" for k, v in sorted(info["windows"].items()))
        print(f"harvest {source:<8} windows: {windows}; {info['records']} records listed; "
              f"newest closed day {info['newest_closed_day'] or '-'}")
        for reason, n in sorted(info["dropped"].items()):
            print(f"{'':<10}   {n} × dropped at listing: {reason}")
    out = render_summary(None)
    for stage, info in out["stages"].items():
        counts = ", ".join(f"{k}={v}" for k, v in sorted(info["counts"].items()))
        print(f"{stage:<10} {counts}")
        for reason, n in info["top_reasons"].items():
            print(f"{'':<10}   {n} × {reason}")
    _print_missing_images()
    return 0


def _print_missing_images() -> None:
    """Figures by where their image came from, and those without one by the parser's reason
    ("none in the source" vs "we failed")."""
    from figalign.config import load_settings
    from figalign.store.db import get_engine, session_scope
    from figalign.store.papers import image_origins, missing_image_reasons

    with session_scope(get_engine(load_settings())) as session:
        reasons = missing_image_reasons(session)
        origins = image_origins(session)
    if origins:
        print(f"{'images':<10} {sum(origins.values())} figures")
        for origin, n in origins.items():
            print(f"{'':<10}   {n} × {origin}")
    if reasons:
        print(f"{'no image':<10} {sum(reasons.values())} figures")
        for reason, n in reasons.items():
            print(f"{'':<10}   {n} × {reason}")


def add_commands(sub) -> None:
    from figalign.pipeline import STAGES

    p = sub.add_parser("ingest", help="store a local folder of papers and queue them for parsing")
    p.add_argument("folder")
    p.add_argument("--limit", type=int)
    p.add_argument("--licence", help="licence of these papers as you know it (URL or code, e.g. 'CC BY')")
    p.set_defaults(func=_ingest)
    r = sub.add_parser("run", help="run a stage until nothing is left to claim")
    r.add_argument("stage", choices=STAGES)
    r.add_argument("--batch-size", type=int, default=50)
    r.add_argument("--max-batches", type=int, default=1000)
    r.set_defaults(func=_run)
    s = sub.add_parser("status", help="items per stage and status, with top failure reasons")
    s.add_argument("--reasons", action="store_true", help="list every reason with its count and an example id")
    s.add_argument("--stage", help="with --reasons: only this stage")
    s.set_defaults(func=_status)
