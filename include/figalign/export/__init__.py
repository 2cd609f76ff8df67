"""Dataset export: S1-MMAlign (JSONL + image tars), WebDataset shards, Parquet; with a card.

``run_export`` is the one entry point (CLI and Airflow): select samples from the store
(``common``), stream them through a format writer, write ``manifest.json`` and the card,
and upsert a row in the store's ``exports`` table. One format goes straight into the
output folder; ``all`` writes one sub-folder per format, each a self-contained dataset.

The output may be an fsspec URL (``s3://bucket/exports/2026-12-03``): the writers, which
hash shards while they are written and rename finished parts into place, then write into
a local staging folder (``FIGALIGN_EXPORT_STAGING_DIR``, else the system temp dir) that is
uploaded object by object, ``manifest.json`` last, so a reader that finds the manifest
finds every file it lists. The staging folder is removed whether or not the upload worked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from figalign import location
from figalign.errors import ConfigError
from figalign.export.card import CardStats, write_card
from figalign.export.common import iter_samples
from figalign.export.manifest import MANIFEST, build_manifest, record_export, write_manifest
from figalign.export.options import ExportOptions
from figalign.export.quality import QualityPolicy, quality_rules
from figalign.export.selection import Selection, licence_rule, require_recaption
from figalign.export.units import require_panel_pair
from figalign.filters import FilterPolicy
from figalign.storage import ArtifactStore
from figalign.store.db import session_scope
from figalign.store.models import Export

log = logging.getLogger(__name__)
FORMATS = ("s1mmalign", "webdataset", "parquet")


def _writer(fmt: str):
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)} or all")
    return importlib.import_module(f"figalign.export.{fmt}").write


def last_export_time(engine: Engine, fmt: str) -> dt.datetime | None:
    """When the latest export of ``fmt`` was made: the ``since`` of an incremental export."""
    with session_scope(engine) as session:
        return session.execute(select(func.max(Export.created_at)).where(Export.format == fmt)).scalar()


def release_rules(fmt: str, options: ExportOptions, policy: FilterPolicy, quality: QualityPolicy) -> list:
    """The rules that narrow this release (``selection``), in order: the release's licence
    filter, the quality policy (drop samples, remove recaptions), then (S1-MMAlign)
    recaptioned pairs only."""
    rules = []
    if options.licences:
        unprocessed = options.licences - policy.licences
        if unprocessed:
            raise ConfigError(f"--licences {','.join(sorted(unprocessed))}: not in the processing allow-list "
                              f"({','.join(sorted(policy.licences))}); add them to FIGALIGN_PROCESS_LICENCES "
                              "(and re-run filter, recaption and score) or pass --allow-licence")
        rules.append(licence_rule(options.licences))
    if units_for(fmt, options) != "figures":
        rules.append(require_panel_pair)
    rules += quality_rules(quality)
    if fmt == "s1mmalign" and not options.include_unrecaptioned:
        rules.append(require_recaption)
    return rules


def units_for(fmt: str, options: ExportOptions) -> str:
    """The units this format ships: S1-MMAlign's published layout holds whole figures only."""
    return "figures" if fmt == "s1mmalign" else options.units


def licence_summary(policy: FilterPolicy, options: ExportOptions) -> dict[str, Any]:
    """For the manifest and card: what was processed and what this release was cut to."""
    return {"processed": sorted(policy.licences), "release": sorted(options.licences) if options.licences else None}


STAGING_ENV = "FIGALIGN_EXPORT_STAGING_DIR"


@contextlib.contextmanager
def _output_folder(target: str, store: ArtifactStore) -> Iterator[Path]:
    """A local folder the writers fill: ``target`` itself, or (a URL) a staging folder that
    is published to ``target`` (manifest last) when the block ends without an error."""
    if not location.is_url(target):
        path = location.local_path(target)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    staging = Path(tempfile.mkdtemp(prefix="figalign-export-", dir=os.environ.get(STAGING_ENV) or None))
    try:
        yield staging
        uploaded = location.publish_tree(staging, target, store.options_for(target), last=(MANIFEST,))
        log.info("export: uploaded %d files to %s", len(uploaded), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_one(engine: Engine, store: ArtifactStore, fmt: str, out_dir: str | os.PathLike, *,
               since: dt.datetime | None = None, policy: FilterPolicy | None = None,
               options: ExportOptions | None = None, quality: QualityPolicy | None = None) -> dict[str, Any]:
    """Export one format into ``out_dir`` (a folder or an fsspec URL); return a summary
    (small enough for XCom)."""
    target = os.fspath(out_dir)
    with _output_folder(target, store) as folder:
        summary = _export_into(engine, store, fmt, folder, since=since, policy=policy, options=options,
                               quality=quality)
    where = target if location.is_url(target) else str(Path(target).resolve())
    with session_scope(engine) as session:
        export_id = record_export(session, where, summary.pop("manifest"), summary["manifest_sha256"], since)
    log.info("export %s: %d samples, %d bytes into %s", fmt, summary["samples"], summary["bytes"], where)
    return {"format": fmt, "out_dir": target, "export_id": export_id, **summary}


def _export_into(engine: Engine, store: ArtifactStore, fmt: str, out_dir: Path, *, since: dt.datetime | None,
                 policy: FilterPolicy | None, options: ExportOptions | None,
                 quality: QualityPolicy | None) -> dict[str, Any]:
    """Write one format's files, manifest and card into a local folder."""
    write = _writer(fmt)
    policy = policy or FilterPolicy.from_env()
    quality = quality or QualityPolicy.from_env()
    options = options or ExportOptions()
    stats = CardStats()
    selection = Selection(out_dir, release_rules(fmt, options, policy, quality))
    started = time.perf_counter()
    try:
        with session_scope(engine) as session:
            units = units_for(fmt, options)
            samples = iter_samples(session, policy, since, ordinals=fmt == "s1mmalign", units=units)
            result = write(stats.tap(selection.apply(samples)), out_dir, store, options)
    except BaseException:
        selection.abort()
        raise
    dropped = selection.close()
    extra = {"embed_images": options.embed_images} if fmt == "parquet" else {}
    extra["units"] = units_for(fmt, options)
    extra["selection"] = selection.summary()
    extra["quality"] = quality.as_dict()
    extra["licences"] = dict(licence_summary(policy, options), mix=dict(stats.licences.most_common()))
    files = result.files + ([dropped] if dropped else [])
    manifest = build_manifest(fmt, since, result.samples, result.shards, files, extra)
    sha = write_manifest(out_dir, manifest)
    written = time.perf_counter()
    write_card(out_dir, fmt, stats, manifest, policy)  # the manifest carries selection and quality
    return {"samples": result.samples, "dropped": sum(selection.dropped.values()), "shards": len(result.shards),
            "bytes": manifest["bytes"], "manifest_sha256": sha, "manifest": manifest,
            "seconds": {"data": round(written - started, 4), "card": round(time.perf_counter() - written, 4)}}


def run_export(engine: Engine, store: ArtifactStore, fmt: str, out_dir: str | os.PathLike, *,
               since: dt.datetime | None = None, incremental: bool = False, policy: FilterPolicy | None = None,
               options: ExportOptions | None = None, quality: QualityPolicy | None = None) -> list[dict[str, Any]]:
    """Export ``fmt`` (or ``all``); ``incremental`` takes ``since`` from the last export of each format."""
    formats = FORMATS if fmt == "all" else (fmt,)
    out = []
    for name in formats:
        start = since if since is not None or not incremental else last_export_time(engine, name)
        target = location.join(out_dir, name) if fmt == "all" else os.fspath(out_dir)
        out.append(export_one(engine, store, name, target, since=start, policy=policy, options=options,
                              quality=quality))
    return out
