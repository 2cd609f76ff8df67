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
    """

    max_shard_samples: int = 10_000
    max_shard_bytes: int = GIB
    max_tar_bytes: int = 2 * GIB
    parquet_row_group: int = 1_000
    embed_images: bool = False
    shard_prefix: str = "train"


@dataclass
class WriteResult:
    samples: int
    shards: list[ShardInfo]
    files: list[ShardInfo] = field(default_factory=list)
