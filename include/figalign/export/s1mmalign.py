"""S1-MMAlign layout: ``jsonl/<source>.jsonl`` records and ``images/<source>-NNNNNN.tar`` archives.

One JSON line per figure with the paper's fields (``doi`` or ``arxiv_id``, ``title``,
``image_path``, ``caption``, ``recaption``, ``categories``) followed by ours (discipline,
licence, source URL, contexts, metrics, figure id, recaption model and prompt hash).
Images go into tar archives per source, split when one would pass ``max_tar_bytes``.
``image_path`` is the member name inside ``image_tar``; extracting every archive in the
export folder puts each image exactly at ``image_path``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from figalign.export.common import FIELDS, Sample
from figalign.export.manifest import HashingWriter, ShardInfo, TarShards
from figalign.export.options import ExportOptions, WriteResult
from figalign.storage import ArtifactStore

PAPER_FIELDS = ("doi", "arxiv_id", "title", "image_path", "caption", "recaption", "categories")
ORDER = PAPER_FIELDS + tuple(k for k in FIELDS if k not in PAPER_FIELDS)


def _safe(name: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in name) or "unknown"


def record(sample: Sample, image_path: str, image_tar: str) -> dict:
    """The JSONL record: the paper's fields first, then ours in the shared order."""
    meta = sample.meta
    out = {k: meta[k] for k in ORDER}
    out["image_path"], out["image_tar"] = image_path, image_tar  # keys exist: their places are kept
    return out


class _Source:
    """The open JSONL file and image archives of one source."""

    def __init__(self, out_dir: Path, source: str, opts: ExportOptions):
        self.name = _safe(source)
        self.jsonl_rel = f"jsonl/{self.name}.jsonl"
        (out_dir / "jsonl").mkdir(parents=True, exist_ok=True)
        self.jsonl = HashingWriter(out_dir / self.jsonl_rel)
        self.tars = TarShards(out_dir, f"images/{self.name}-{{:06d}}.tar", max_bytes=opts.max_tar_bytes)
        self.samples = 0

    def close(self) -> tuple[ShardInfo, list[ShardInfo]]:
        sha, size = self.jsonl.close()
        return ShardInfo(self.jsonl_rel, sha, self.samples, size), self.tars.close()

    def abort(self) -> None:
        self.jsonl.abort()
        self.tars.abort()


def write(samples: Iterable[Sample], out_dir: Path, store: ArtifactStore, opts: ExportOptions) -> WriteResult:
    sources: dict[str, _Source] = {}
    count = 0
    try:
        for sample in samples:
            src = sources.get(sample.source) or sources.setdefault(sample.source, _Source(out_dir, sample.source, opts))
            image = sample.read_image(store)
            member = f"images/{src.name}/{sample.key}.{sample.image_ext}"
            tar = src.tars.start_sample(len(image) + 1024)
            src.tars.add(member, image, sample.mtime)
            src.jsonl.write((json.dumps(record(sample, member, tar), ensure_ascii=False) + "\n").encode())
            src.samples += 1
            count += 1
    except BaseException:
        for src in sources.values():
            src.abort()
        raise
    files, shards = [], []
    for name in sorted(sources):
        jsonl, tars = sources[name].close()
        files.append(jsonl)
        shards.extend(tars)
    return WriteResult(count, shards, files)
