"""Export knobs and the result every format writer returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from figalign.export.manifest import ShardInfo

GIB = 1 << 30


@dataclass(frozen=True)
class ExportOptions:
    """Shard limits and switches shared by the formats.

    ``max_tar_bytes`` splits the S1-MMAlign image archives (the paper ships its images as
    multi-part tars); ``max_shard_*`` bound WebDataset shards and Parquet files.
    Parquet row groups end at ``parquet_row_group`` rows (default: 100 with embedded
    images, as ``datasets`` writes image tables, else 10,000) or ``parquet_row_group_bytes``
    of images: small groups stream well, and reusing one small buffer per group is much
    cheaper than touching fresh memory for a large one (page faults measured at ~40 % of
    the Parquet export's time with 64 MB groups, see docs/benchmarks.md).
    """

    max_shard_samples: int = 10_000
    max_shard_bytes: int = GIB
    max_tar_bytes: int = 2 * GIB
    parquet_row_group: int | None = None
    parquet_row_group_bytes: int = 16 << 20
    embed_images: bool = False
    shard_prefix: str = "train"

    @property
    def row_group_rows(self) -> int:
        if self.parquet_row_group is not None:
            return self.parquet_row_group
        return 100 if self.embed_images else 10_000


@dataclass
class WriteResult:
    samples: int
    shards: list[ShardInfo]
    files: list[ShardInfo] = field(default_factory=list)
