"""WebDataset export: tar shards where each sample is ``<key>.<ext>`` (image) + ``<key>.json``.

Keys come from ``common.sample_key`` (no dots), so the ``webdataset`` package and
``datasets.load_dataset("webdataset", …)`` both split members into samples correctly.
Shards roll over by sample count or bytes; a sample never straddles two shards.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from figalign.export.common import Sample, json_bytes
from figalign.export.manifest import TarShards
from figalign.export.options import ExportOptions, WriteResult
from figalign.storage import ArtifactStore

JSON_OVERHEAD = 3 * 512  # two tar headers and padding, for the size check


def shard_pattern(opts: ExportOptions) -> str:
    return f"data/{opts.shard_prefix}-{{:06d}}.tar"


def write(samples: Iterable[Sample], out_dir: Path, store: ArtifactStore, opts: ExportOptions) -> WriteResult:
    shards = TarShards(out_dir, shard_pattern(opts), max_samples=opts.max_shard_samples,
                       max_bytes=opts.max_shard_bytes)
    count = 0
    try:
        for sample in samples:
            image = sample.read_image(store)
            member = f"{sample.key}.{sample.image_ext}"
            # the JSON names the shard it lands in, so the shard is chosen first
            shard = shards.start_sample(len(image) + 4096 + JSON_OVERHEAD)
            meta = dict(sample.meta, image_path=member, image_tar=shard)
            blob = json_bytes(meta)
            shards.add(member, image, sample.mtime)
            shards.add(f"{sample.key}.json", blob, sample.mtime)
            count += 1
    except BaseException:
        shards.abort()
        raise
    return WriteResult(count, shards.close(), [])
