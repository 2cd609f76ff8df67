"""Export knobs and the result every format writer returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from figalign.errors import ConfigError
from figalign.export.manifest import ShardInfo

GIB = 1 << 30


@dataclass(frozen=True)
class ExportOptions:
    """Shard limits and switches shared by the formats.

    ``max_tar_bytes`` is the piece size of the S1-MMAlign image archives (``.partaa`` …, as
    the paper ships them), ``gzip_level`` their compression (0: stored blocks, see
    ``archives``), ``include_unrecaptioned`` lets samples without a recaption into that
    format (the published dataset has none), ``licences`` cuts a release to those licences
    (``--licences cc-by,cc0``) from what was processed; ``max_shard_*`` bound WebDataset shards and
    Parquet files.
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
    embed_images: bool = True  # Parquet: a release loads images and text together; False: metadata only
    shard_prefix: str = "train"
    gzip_level: int = 0
    include_unrecaptioned: bool = False
    licences: frozenset[str] | None = None  # the release's licence filter; None: all the policy allows
    units: str = "figures"  # or panels / both (export.units); S1-MMAlign ships whole figures only

    def __post_init__(self) -> None:
        if not 0 <= self.gzip_level <= 9:
            raise ConfigError(f"gzip level must be 0-9, got {self.gzip_level}")
        from figalign.export.units import check_units

        check_units(self.units)
        if self.max_tar_bytes <= 0:
            raise ConfigError(f"the archive piece size must be positive, got {self.max_tar_bytes}")

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
