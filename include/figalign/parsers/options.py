"""Options every parser accepts; built from config so runs are reproducible."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParseOptions:
    """Rendering and safety limits shared by all parsers.

    ``dpi`` is the crop resolution for PDF-derived images; ``max_side`` caps the longest
    side of any written image; ``max_pages`` bounds work on a single PDF; the archive limits
    bound what a LaTeX e-print may unpack to.
    """

    dpi: int = 150
    max_side: int = 2048
    max_pages: int = 200
    max_page_side_pt: float = 14400.0
    max_archive_members: int = 5000
    max_archive_bytes: int = 1_000_000_000
    write_images: bool = True
