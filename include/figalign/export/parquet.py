"""Parquet export: the metadata table, with the image bytes embedded on request.

Embedded images use the Hugging Face image layout (a ``{bytes, path}`` struct) and the
schema carries ``datasets`` feature metadata, so ``load_dataset("parquet", …)`` yields an
``Image`` column while pandas/pyarrow users see plain bytes. Files roll over by bytes or
sample count; row groups stay small enough to stream.
"""

from __future__ import annotations

import json
import logging
import os
from array import array
from collections.abc import Iterable
from pathlib import Path

from figalign.export.common import Sample, features_dict, pa_schema
from figalign.export.manifest import ShardInfo, TailHasher
from figalign.export.options import ExportOptions, WriteResult
from figalign.storage import ArtifactStore

log = logging.getLogger(__name__)


def schema(embed: bool):
    """Arrow schema plus ``huggingface`` features metadata when ``datasets`` is installed."""
    base = pa_schema(with_image=embed)
    features = features_dict("parquet", embed_images=embed)  # datasets.Features, as a dict
    if features is None:
        return base
    meta = {"info": {"features": features}}
    return base.with_metadata({b"huggingface": json.dumps(meta).encode()})


def column_codecs(arrow_schema) -> dict[str, str]:
    """zstd for metadata columns; embedded image bytes stored as they are.

    PNG/JPEG bytes are already compressed: running zstd over them costs a third of the
    Parquet export's time and saves nothing. Keys are Parquet leaf paths: nested columns
    (``contexts.list.element.text``) are only matched by their full path.
    """
    return {path: "NONE" if path == IMAGE_BYTES else "ZSTD" for path in leaf_paths(arrow_schema)}


def dictionary_columns(arrow_schema) -> list[str]:
    """Every column but the embedded image bytes uses dictionary encoding.

    Image bytes never repeat inside a row group (duplicates are removed before export), so
    trying a dictionary on them only hashes the first megabyte of each group before falling
    back to plain: 20 % of the Parquet writer's time measured, for nothing.
    """
    return [path for path in leaf_paths(arrow_schema) if path != IMAGE_BYTES]


IMAGE_BYTES = "image.bytes"


def leaf_paths(arrow_schema) -> list[str]:
    """The Parquet leaf column paths of an Arrow schema (pyarrow's 3-level list layout)."""
    import pyarrow as pa

    def walk(prefix: str, typ) -> list[str]:
        if pa.types.is_struct(typ):
            return [p for child in typ for p in walk(f"{prefix}.{child.name}", child.type)]
        if pa.types.is_list(typ) or pa.types.is_large_list(typ):
            return walk(f"{prefix}.list.element", typ.value_type)
        return [prefix]

    return [p for field in arrow_schema for p in walk(field.name, field.type)]


class _Files:
    """Numbered Parquet files, each closed and checksummed when full."""

    def __init__(self, out_dir: Path, opts: ExportOptions):
        self.out_dir, self.opts = out_dir, opts
        self.schema = schema(opts.embed_images)
        self.meta_schema = self.schema.remove(self.schema.get_field_index("image")) if opts.embed_images else None
        self.done: list[ShardInfo] = []
        self._writer = None
        self._hasher: TailHasher | None = None
        self._rows = self._bytes = 0

    def _rel(self) -> str:
        return f"data/{self.opts.shard_prefix}-{len(self.done):06d}.parquet"

    def _part(self) -> Path:
        """Where the open file is written: renamed to ``_rel()`` once complete, so a crash
        never leaves a truncated file under a finished file's name."""
        return self.out_dir / (self._rel() + ".part")

    def room(self) -> int:
        """Rows the current file may still take before it is full."""
        return max(1, self.opts.max_shard_samples - self._rows)

    def write(self, rows: list[dict], size: int, images=None) -> None:
        """Write one row group: the metadata ``rows`` plus, when embedding, the ``images`` column."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            path = self._part()
            path.parent.mkdir(parents=True, exist_ok=True)
            # a path sink: pyarrow writes it natively, without the GIL, and a TailHasher hashes
            # it from the page cache meanwhile (a Python hashing sink measured 1.4x slower)
            self._writer = pq.ParquetWriter(path, self.schema, compression=column_codecs(self.schema),
                                            use_dictionary=dictionary_columns(self.schema))
            self._hasher = TailHasher(path)
        if images is None:
            table = pa.Table.from_pylist(rows, schema=self.schema)
        else:
            table = pa.Table.from_pylist(rows, schema=self.meta_schema).append_column(self.schema.field("image"), images)
        self._writer.write_table(table)
        self._hasher.poke()
        self._rows += len(rows)
        self._bytes += size
        if self._rows >= self.opts.max_shard_samples or self._bytes >= self.opts.max_shard_bytes:
            self.close()

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        sha, size = self._hasher.finish()
        os.replace(self._part(), self.out_dir / self._rel())
        self.done.append(ShardInfo(self._rel(), sha, self._rows, size))
        self._writer, self._hasher, self._rows, self._bytes = None, None, 0, 0

    def abort(self) -> None:
        """Stop after an error: close and remove the unfinished file."""
        if self._writer is None:
            return
        path = self._part()
        try:
            self._writer.close()
        except OSError as exc:
            log.warning("closing %s after an error: %s", path, exc)
        self._hasher.abort()
        path.unlink(missing_ok=True)
        self._writer = self._hasher = None


_MAX_BINARY = 2**31 - 1  # int32 offsets of Arrow's binary type


class ImageColumn:
    """The ``image`` column of one row group, read straight into one reused buffer.

    Each file is ``readinto`` its slot of a bytearray that Arrow wraps without copying
    (``from_buffers``); the buffer is reused for the next row group once ``write_table``
    has returned (the Parquet writer has encoded the pages by then). Building the column
    from Python ``bytes`` instead (``from_pylist``) copied every image once more and touched
    fresh memory for each group: together ~20 % of the Parquet export's time
    (``bench/bench_export.py``, the Parquet rows; docs/benchmarks.md).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._samples: list[Sample] = []
        self._paths: list[str] = []
        self.bytes = 0

    def add(self, sample: Sample, path: str) -> None:
        self._samples.append(sample)
        self._paths.append(path)
        self.bytes += sample.meta["image_bytes"]

    def build(self, store: ArtifactStore):
        """Read this group's images; return the struct array and reset for the next group."""
        import pyarrow as pa

        need = self.bytes + 1  # one spare byte: a file longer than recorded is noticed, not cut
        if len(self._buf) < need:
            self._buf = bytearray(max(need, 2 * len(self._buf)))
        if need > _MAX_BINARY:
            raise ValueError(f"a Parquet row group of {need} image bytes; lower parquet_row_group_bytes")
        view, offsets, pos = memoryview(self._buf), array("i", [0]), 0
        for sample in self._samples:
            expected = sample.meta["image_bytes"]
            n = sample.read_image_into(store, view[pos:pos + expected + 1])
            if n != expected:
                view.release()
                raise OSError(f"image of figure {sample.meta['figure_id']} at {sample.image_uri} has {n} bytes, "
                              f"the store recorded {expected}: the artifact changed after it was stored")
            pos += n
            offsets.append(pos)
        view.release()
        data = pa.py_buffer(self._buf)
        blobs = pa.Array.from_buffers(pa.binary(), len(self._samples), [None, pa.py_buffer(offsets), data])
        column = pa.StructArray.from_arrays([blobs, pa.array(self._paths, pa.string())], names=["bytes", "path"])
        self._samples, self._paths, self.bytes = [], [], 0
        return column


def write(samples: Iterable[Sample], out_dir: Path, store: ArtifactStore, opts: ExportOptions) -> WriteResult:
    files = _Files(out_dir, opts)
    images = ImageColumn() if opts.embed_images else None
    batch: list[dict] = []
    count = 0
    try:
        for sample in samples:
            row = dict(sample.meta, image_path=f"{sample.key}.{sample.image_ext}")
            if images is not None:
                images.add(sample, row["image_path"])
            batch.append(row)
            count += 1
            if len(batch) >= min(opts.row_group_rows, files.room()) or (
                    images is not None and images.bytes >= opts.parquet_row_group_bytes):
                _flush(files, batch, images, store)
                batch = []
        if batch:
            _flush(files, batch, images, store)
        files.close()
    except BaseException:
        files.abort()
        raise
    return WriteResult(count, files.done, [])


def _flush(files: _Files, batch: list[dict], images: ImageColumn | None, store: ArtifactStore) -> None:
    if images is None:
        files.write(batch, 0)
        return
    size = images.bytes
    files.write(batch, size, images.build(store))
