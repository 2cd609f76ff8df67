"""`figalign harvest arxiv|pmc|biorxiv|medrxiv …` and `figalign fetch`: the harvesting commands.

``add_commands(subparsers)`` registers them on the main CLI. They assume a migrated store
(`figalign db upgrade`). A multi-day ``--from/--until`` range is harvested one day-window
at a time, so a daily run and a months-long backfill produce the same windows, each
exactly once (a finished window is skipped unless ``--force``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {value!r}") from exc


def day_windows(start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    """[start, end] as one-day windows (OAI from/until are inclusive days)."""
    if end < start:
        raise ValueError("--until is before --from")
    return [(start + dt.timedelta(days=i),) * 2 for i in range((end - start).days + 1)]


def _runtime():
    from figalign.clients.http import PoliteHttp
    from figalign.config import load_settings
    from figalign.store.db import get_engine

    settings = load_settings()
    return settings, get_engine(settings), PoliteHttp.from_settings(settings)


def _cmd_harvest(args: argparse.Namespace) -> int:
    from figalign.stages.harvest import harvest_window

    settings, engine, http = _runtime()
    if args.source == "arxiv":
        from figalign.sources.arxiv import ArxivSource

        source = ArxivSource(http, settings.arxiv_oai_url, settings.arxiv_base_url)
    elif args.source in ("biorxiv", "medrxiv"):
        from figalign.sources.biorxiv import source_from_env

        source = source_from_env(http, args.source)
    else:
        from figalign.sources.pmc import PMC_OAI_URL, PmcSource

        source = PmcSource(http, settings.pmc_base_url, oai_url=args.oai_url or PMC_OAI_URL)
    remaining = args.limit
    for start, end in day_windows(args.from_, args.until):
        for set_spec in getattr(args, "set", None) or [""]:
            summary = harvest_window(engine, source, start, end, set_spec=set_spec, limit=remaining, force=args.force)
            print(json.dumps(summary.as_dict()), file=sys.stdout)
            if remaining is not None:
                remaining -= summary.records
                if remaining <= 0:
                    return 0
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from figalign.stages.base import drain, run_batch
    from figalign.stages.fetch import FetchStage
    from figalign.storage import ArtifactStore

    settings, engine, http = _runtime()
    stage = FetchStage(http, ArtifactStore(Path(settings.data_dir)), arxiv_pdf=args.arxiv_pdf)
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
        p.set_defaults(func=_cmd_harvest)
    f = subparsers.add_parser("fetch", help="download files of harvested papers into the artifact store")
    f.add_argument("--limit", type=int, help="process at most N papers (one batch)")
    f.add_argument("--arxiv-pdf", choices=["always", "fallback"], default="always",
                   help="fetch arXiv PDFs always, or only when the e-print is missing")
    f.set_defaults(func=_cmd_fetch)
