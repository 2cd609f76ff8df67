"""`figalign filter` and `figalign export`: the filter stage and dataset export from the shell."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from figalign.errors import ConfigError


def _parse_since(value: str | None) -> dt.datetime | None:
    """An ISO date or date-time, as naive UTC (the store's time convention)."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"--since must be an ISO date (2025-01-31 or 2025-01-31T12:00), got {value!r}") from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _policy(args: argparse.Namespace):
    from figalign.filters import FilterPolicy

    policy = FilterPolicy.from_env()
    return policy.with_licences(args.allow_licence) if args.allow_licence else policy


def _quality(args: argparse.Namespace):
    """FIGALIGN_QUALITY_* with the command line's thresholds on top."""
    from figalign.export.quality import QualityPolicy

    flags = frozenset(args.drop_flag) if args.drop_flag else None
    types = frozenset(args.drop_figure_type) if args.drop_figure_type else None
    return QualityPolicy.from_env().merged(
        min_clip_original=args.min_clip_original, min_clip_recaption=args.min_clip_recaption,
        min_clip_gain=args.min_clip_gain, pppl_min=args.pppl_min, pppl_max=args.pppl_max, drop_flags=flags,
        drop_figure_types=types, min_figure_type_score=args.min_figure_type_score,
        clip_metric=args.clip_metric)


def _cmd_filter(args: argparse.Namespace) -> int:
    from figalign.config import load_settings
    from figalign.stages.base import run_batch
    from figalign.stages.filter import FilterStage
    from figalign.store.db import get_engine

    settings = load_settings()
    engine = get_engine(settings)
    stage = FilterStage(settings=settings, policy=_policy(args))
    total: dict[str, int] = {}
    processed, first = 0, True
    while args.limit is None or processed < args.limit:
        size = args.batch if args.limit is None else min(args.batch, args.limit - processed)
        batch = run_batch(stage, engine, size=size, discover=first)
        first = False
        for status, n in batch.statuses.items():
            total[status] = total.get(status, 0) + n
        processed += batch.claimed
        if batch.claimed == 0:
            break
    json.dump({"stage": "filter", "processed": processed, "statuses": total}, sys.stdout)
    sys.stdout.write("\n")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from figalign.config import load_settings
    from figalign.export import run_export
    from figalign.export.options import ExportOptions
    from figalign.filters import parse_licences
    from figalign.storage import ArtifactStore
    from figalign.store.db import get_engine

    settings = load_settings()
    options = ExportOptions(embed_images=args.embed_images, max_shard_samples=args.shard_samples,
                            max_shard_bytes=args.shard_bytes, max_tar_bytes=args.tar_bytes,
                            include_unrecaptioned=args.include_unrecaptioned, gzip_level=args.gzip_level,
                            licences=parse_licences(args.licences), units=args.units)
    results = run_export(get_engine(settings), ArtifactStore.from_settings(settings), args.format, args.out,
                         since=_parse_since(args.since), incremental=args.incremental, policy=_policy(args),
                         options=options, quality=_quality(args))
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def add_commands(sub) -> None:
    """Register `filter` and `export` on the top-level subparsers."""
    f = sub.add_parser("filter", help="run the filter + dedup stage over queued figures")
    f.add_argument("--limit", type=int, help="process at most N figures (default: all queued)")
    f.add_argument("--batch", type=int, default=200, help="figures per claimed batch")
    f.add_argument("--allow-licence", action="append", default=[], metavar="ID",
                   help="also allow this licence id (e.g. cc-by-nc); repeatable; opt-in")
    f.set_defaults(func=_cmd_filter)

    e = sub.add_parser("export", help="export kept figures as a dataset with manifest and card")
    e.add_argument("--out", required=True,
                   help="output folder or fsspec URL such as s3://bucket/exports/v1 "
                        "(format sub-folders for --format all)")
    e.add_argument("--format", default="all", choices=["s1mmalign", "webdataset", "parquet", "all"])
    e.add_argument("--since", help="only figures/captions/metrics new or changed since this ISO date (UTC)")
    e.add_argument("--incremental", action="store_true", help="--since = the last export of each format")
    e.add_argument("--embed-images", action=argparse.BooleanOptionalAction, default=True,
                   help="Parquet: embed image bytes (default; --no-embed-images writes metadata only)")
    e.add_argument("--include-unrecaptioned", action="store_true",
                   help="S1-MMAlign: also export samples without a recaption (the published set has none)")
    e.add_argument("--units", choices=["figures", "panels", "both"], default="figures",
                   help="WebDataset/Parquet: whole figures (default), per-panel pairs (sub-caption + panel image), "
                        "or both; S1-MMAlign always ships whole figures")
    e.add_argument("--gzip-level", type=int, default=0,
                   help="S1-MMAlign: gzip level of the image archives (0: stored; images are compressed already)")
    e.add_argument("--allow-licence", action="append", default=[], metavar="ID",
                   help="also allow this licence id (e.g. cc-by-nc) beyond FIGALIGN_PROCESS_LICENCES; repeatable")
    e.add_argument("--licences", default="", metavar="IDS",
                   help="cut the release to these licence ids (comma list, e.g. cc-by,cc0) from what was processed")
    e.add_argument("--shard-samples", type=int, default=10_000, help="WebDataset/Parquet: samples per shard")
    e.add_argument("--shard-bytes", type=int, default=1 << 30, help="WebDataset/Parquet: bytes per shard")
    e.add_argument("--tar-bytes", type=int, default=2 << 30,
                   help="S1-MMAlign: bytes per image archive piece (.partaa, .partab … past it)")
    q = e.add_argument_group("quality policy (over FIGALIGN_QUALITY_*; unset: keep everything)")
    q.add_argument("--min-clip-original", type=float, help="drop samples whose original caption's CLIP is below")
    q.add_argument("--min-clip-recaption", type=float, help="remove recaptions whose CLIP is below")
    q.add_argument("--min-clip-gain", type=float, help="keep a recaption only if its CLIP gain is at least this")
    q.add_argument("--pppl-min", type=float, help="PPPL lower bound per caption")
    q.add_argument("--pppl-max", type=float, help="PPPL upper bound per caption")
    q.add_argument("--drop-flag", action="append", default=[], metavar="FLAG",
                   help="remove recaptions with this validation flag (e.g. ungrounded-number); repeatable")
    q.add_argument("--drop-figure-type", action="append", default=[], metavar="LABEL",
                   help="drop figures whose zero-shot type is LABEL (e.g. table: tables rendered as images); "
                        "needs `figalign score --figure-types`; repeatable")
    q.add_argument("--min-figure-type-score", type=float,
                   help="probability a figure-type label needs before --drop-figure-type acts (default 0)")
    q.add_argument("--clip-metric", choices=["clip_cosine_sentmean", "clip_cosine"],
                   help="CLIP series the thresholds read (default: clip_cosine_sentmean, the headline)")
    e.set_defaults(func=_cmd_export)
