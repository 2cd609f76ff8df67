"""`figalign recaption`: recaption figures through the configured vLLM endpoint.

``--dry-run`` builds and prints the exact JSON request for the next figures (the base64
image shortened in the printout only) and sends and writes nothing, so a prompt can be
inspected before any GPU time is spent.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_commands(subparsers) -> None:
    """Register the ``recaption`` subcommand on the main CLI's subparsers."""
    p = subparsers.add_parser("recaption", help="recaption figures with a vision-language model (vLLM)")
    p.add_argument("--limit", type=int, help="at most this many figures")
    p.add_argument("--model", help="model name (default FIGALIGN_VLLM_MODEL)")
    p.add_argument("--dry-run", action="store_true", help="print the request(s) that would be sent; send nothing")
    p.add_argument("--force", action="store_true", help="redo figures already recaptioned with this key")
    p.add_argument("--batch-size", type=int, default=64, help="figures claimed and sent together")
    p.add_argument("--max-in-flight", type=int, default=16, help="concurrent requests to the endpoint")
    p.set_defaults(func=_cmd_recaption)


def _cmd_recaption(args: argparse.Namespace) -> int:
    from figalign.config import load_settings
    from figalign.store.db import get_engine
    from figalign.store.migrate import upgrade

    settings = load_settings(vllm_model=args.model)
    upgrade(settings.effective_database_url)
    engine = get_engine(settings)
    if args.dry_run:
        return _dry_run(engine, settings, args)
    from figalign.stages.recaption import drain_recaption

    summary = drain_recaption(engine, settings, limit=args.limit, batch_size=args.batch_size, force=args.force,
                              model=args.model, client_overrides={"max_in_flight": args.max_in_flight})
    json.dump(summary.as_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


def _dry_run(engine, settings, args: argparse.Namespace) -> int:
    from figalign.recaption.prompt import shorten_for_print
    from figalign.stages.recaption import dry_run_requests, pending_ids

    ids = pending_ids(engine, settings, limit=args.limit or 1, model=args.model)
    if not ids:
        print("nothing to recaption", file=sys.stderr)
        return 0
    url = f"{settings.vllm_base_url.rstrip('/') or '<FIGALIGN_VLLM_BASE_URL not set>'}/chat/completions"
    for figure_id, body in zip(ids, dry_run_requests(engine, settings, ids, model=args.model)):
        json.dump({"figure_id": figure_id, "method": "POST", "url": url, "body": shorten_for_print(body)},
                  sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    return 0
