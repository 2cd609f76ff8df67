"""`figalign harvest arxiv|pmc|biorxiv|medrxiv …` (and the bulk sources, ``cli.bulk``) and `figalign fetch`: the harvesting commands.

``add_commands(subparsers)`` registers them on the main CLI. They assume a migrated store
(`figalign db upgrade`). A ``--from/--until`` range follows the same window rule as the
Airflow runs (``figalign.stages.windows``): one window per day, the overlap days before
``--from`` listed again, and a day closed only once it is over (a closed window is
skipped unless ``--force``; today's is listed but stays open).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {value!r}") from exc


def _runtime():
    from figalign.clients.http import PoliteHttp
    from figalign.config import load_settings
    from figalign.store.db import get_engine

    settings = load_settings()
    return settings, get_engine(settings), PoliteHttp.from_settings(settings)


def _cmd_harvest(args: argparse.Namespace) -> int:
    from figalign.pipeline import harvest_source
    from figalign.stages.harvest import harvest_days
    from figalign.stages.windows import WindowRule

    settings, engine, http = _runtime()
    if args.source == "pmc" and args.oai_url:
        from figalign.sources.pmc import PmcSource

        source = PmcSource(http, settings.pmc_base_url, oai_url=args.oai_url)
    else:
        source = harvest_source(args.source, settings, http)
    rule = WindowRule.for_source(args.source)
    if args.overlap_days is not None:
        rule = dataclasses.replace(rule, overlap_days=args.overlap_days)
    if args.until < args.from_:
        raise SystemExit("--until is before --from")
    remaining = args.limit
    for set_spec in getattr(args, "set", None) or [""]:
        for summary in harvest_days(engine, source, args.from_, args.until, set_spec=set_spec, limit=remaining,
                                    force=args.force, rule=rule):
            print(json.dumps(summary.as_dict()), file=sys.stdout)
            if remaining is not None:
                remaining -= summary.records
        if remaining is not None and remaining <= 0:
            return 0
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from figalign.stages.base import drain, run_batch
    from figalign.stages.fetch import FetchStage
    from figalign.storage import ArtifactStore

    settings, engine, http = _runtime()
    stage = FetchStage(http, ArtifactStore.from_settings(settings), arxiv_pdf=args.arxiv_pdf)
    summary = run_batch(stage, engine, size=args.limit) if args.limit else drain(stage, engine)
    print(json.dumps(summary.as_dict()))
    return 0 if not summary.statuses.get("failed") else 1


def add_commands(subparsers) -> None:
    """Register `harvest` and `fetch` on the main parser's subparsers."""
    h = subparsers.add_parser("harvest", help="harvest new papers of a window from a source")
    hs = h.add_subparsers(dest="source", required=True)
    for name, help_text in (("arxiv", "arXiv OAI-PMH (metadataPrefix=arXiv)"),
                            ("pmc", "PubMed Central: OAI-PMH discovery + PMC Cloud metadata")):
        p = hs.add_parser(name, help=help_text)
        p.add_argument("--from", dest="from_", type=_date, required=True, help="first day, YYYY-MM-DD")
        p.add_argument("--until", type=_date, required=True, help="last day (inclusive), YYYY-MM-DD")
        p.add_argument("--set", action="append",
                       help="OAI set (repeatable), e.g. cs, physics:astro-ph, q-bio; pmc default pmc-open")
        p.add_argument("--limit", type=int, help="stop after about N records (whole pages); resumable")
        p.add_argument("--force", action="store_true", help="harvest windows again even if done")
        p.add_argument("--overlap-days", type=int, help="days before --from to list again (default 2)")
        if name == "pmc":
            p.add_argument("--oai-url", help="PMC OAI-PMH base URL (default: PMC's)")
        p.set_defaults(func=_cmd_harvest)
    for name in ("biorxiv", "medrxiv"):
        # no --set: the API's category filter silently returns every category for a bad name
        p = hs.add_parser(name, help=f"{name} via api.biorxiv.org/details (host: FIGALIGN_BIORXIV_API_URL)")
        p.add_argument("--from", dest="from_", type=_date, required=True, help="first day, YYYY-MM-DD")
        p.add_argument("--until", type=_date, required=True, help="last day (inclusive), YYYY-MM-DD")
        p.add_argument("--limit", type=int, help="stop after about N records (whole pages); resumable")
        p.add_argument("--force", action="store_true", help="harvest windows again even if done")
        p.add_argument("--overlap-days", type=int, help="days before --from to list again (default 2)")
        p.set_defaults(func=_cmd_harvest)
    from figalign.cli.bulk import add_bulk_commands

    add_bulk_commands(hs)
    f = subparsers.add_parser("fetch", help="download files of harvested papers into the artifact store")
    f.add_argument("--limit", type=int, help="process at most N papers (one batch)")
    f.add_argument("--arxiv-pdf", choices=["always", "fallback"], default="always",
                   help="fetch arXiv PDFs always, or only when the e-print is missing")
    f.set_defaults(func=_cmd_fetch)
