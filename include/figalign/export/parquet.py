"""Parquet export: the metadata table, with the image bytes embedded on request.

Embedded images use the Hugging Face image layout (a ``{bytes, path}`` struct) and the
schema carries ``datasets`` feature metadata, so ``load_dataset("parquet", …)`` yields an
``Image`` column while pandas/pyarrow users see plain bytes. Files roll over by bytes or
sample count; row groups stay small enough to stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from figalign.export.common import Sample, features_dict, pa_schema
from figalign.export.manifest import ShardInfo, file_info
from figalign.export.options import ExportOptions, WriteResult
from figalign.storage import ArtifactStore


def schema(embed: bool):
    """Arrow schema plus ``huggingface`` features metadata when ``datasets`` is installed."""
    base = pa_schema(with_image=embed)
    features = features_dict("parquet", embed_images=embed)  # no `import datasets` on the data path
    if features is None:
        return base
    meta = {"info": {"features": features}}
    return base.with_metadata({b"huggingface": json.dumps(meta).encode()})


def column_codecs(arrow_schema) -> dict[str, str]:
    """zstd for metadata columns; embedded image bytes stored as they are.

    PNG/JPEG bytes are already compressed: running zstd over them costs a third of the
    Parquet export's time and saves nothing.
    """
    codecs: dict[str, str] = {}
    for field in arrow_schema:
        if field.name == "image":
            codecs.update({f"image.{child.name}": ("NONE" if child.name == "bytes" else "ZSTD")
                           for child in field.type})
        else:
            codecs[field.name] = "ZSTD"
    return codecs


class _Files:
    """Numbered Parquet files, each closed and checksummed when full."""

    def __init__(self, out_dir: Path, opts: ExportOptions):
        self.out_dir, self.opts = out_dir, opts
        self.schema = schema(opts.embed_images)
        self.done: list[ShardInfo] = []
        self._writer = None
        self._rows = self._bytes = 0

    def _rel(self) -> str:
        return f"data/{self.opts.shard_prefix}-{len(self.done):06d}.parquet"

    def room(self) -> int:
        """Rows the current file may still take before it is full."""
        return max(1, self.opts.max_shard_samples - self._rows)

    def write(self, rows: list[dict], size: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            (self.out_dir / "data").mkdir(parents=True, exist_ok=True)
            # a path sink: pyarrow writes it natively, without the GIL; hashing the finished file
            # from the page cache (file_info) measured faster than a Python hashing sink
            self._writer = pq.ParquetWriter(self.out_dir / self._rel(), self.schema,
                                            compression=column_codecs(self.schema))
        self._writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))
        self._rows += len(rows)
        self._bytes += size
        if self._rows >= self.opts.max_shard_samples or self._bytes >= self.opts.max_shard_bytes:
            self.close()

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self.done.append(file_info(self.out_dir, self._rel(), self._rows))
        self._writer, self._rows, self._bytes = None, 0, 0


def write(samples: Iterable[Sample], out_dir: Path, store: ArtifactStore, opts: ExportOptions) -> WriteResult:
    files = _Files(out_dir, opts)
    batch: list[dict] = []
    size = count = 0
    for sample in samples:
        row = dict(sample.meta, image_path=f"{sample.key}.{sample.image_ext}")
        if opts.embed_images:
            image = sample.read_image(store)
            row["image"] = {"bytes": image, "path": row["image_path"]}
            size += len(image)
        batch.append(row)
        count += 1
        if len(batch) >= min(opts.parquet_row_group, files.room()) or size >= 64 << 20:
            files.write(batch, size)
            batch, size = [], 0
    if batch:
        files.write(batch, size)
    files.close()
    return WriteResult(count, files.done, [])
