"""Figure filters: which figures are unfit for the dataset, and why.

Each rule is a pure function of the figure's image bytes, caption, kind and paper, and
returns a short reason string (``image-under-5kb``, ``small-side<64px`` …) or ``None``.
The reason is what gets recorded on ``figures.filter_reason``, so a dropped figure always
says why, and a changed policy can be re-applied by re-running the filter stage.

Two kinds of rules exist:

* *content* rules (image, table, caption) say the figure is not a good sample at all;
* *policy* rules (licence allow-list, retraction) say the figure may not be *exported*
  under the current policy. They are recorded on the figure for transparency, but the
  export re-applies them from the paper at export time (a paper can be retracted after it
  was filtered, and an export may opt in to NC/ND licences), so they are never final.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from figalign.errors import ConfigError
from figalign.sources import licences

DEFAULT_LICENCES = licences.EXPORT_DEFAULT
"""Licences whose papers may be redistributed by default (the harvest's export default:
CC BY, CC BY-SA, CC0, public domain). NC, ND and arXiv's non-exclusive licence (which does
not grant redistribution) are opt-in only."""

LICENCE_REASON_PREFIX = "licence-not-exportable:"
RETRACTED_REASON = "retracted"
DUPLICATE_REASON_PREFIX = "duplicate-of:"
TABLE_CAPTION = re.compile(r"^\s*(table|tab\.)\s*[0-9ivxlcIVXLC]", re.IGNORECASE)


@dataclass(frozen=True)
class FilterPolicy:
    """Every threshold of the filter stage in one place; the defaults follow S1-MMAlign.

    ``licences`` is the processing allow-list (what is kept, recaptioned and scored, and
    the widest any export may ship); a release narrows it with ``parse_licences`` (an
    export's ``--licences``). NC, ND and arXiv's non-exclusive licence are opt-in only
    (``with_licences``), because processing and shipping them needs a deliberate decision.
    """

    min_file_bytes: int = 5 * 1024
    min_side: int = 64
    max_aspect: float = 8.0
    blank_max_std: float = 2.0
    blank_min_ink: float = 0.001
    blank_ink_delta: int = 24
    drop_tables: bool = True
    min_caption_chars: int = 10
    licences: frozenset[str] = field(default=DEFAULT_LICENCES)
    drop_retracted: bool = True
    phash_max_distance: int = 6

    def with_licences(self, extra: set[str] | frozenset[str] | list[str]) -> "FilterPolicy":
        """A copy whose allow-list also holds ``extra`` (the opt-in for NC/ND/arXiv)."""
        from dataclasses import replace

        extra = {normalise_licence_id(x) for x in extra}
        unknown = extra - licences.ALL
        if unknown:
            raise ConfigError(f"unknown licence ids {sorted(unknown)}; known: {sorted(licences.ALL)}")
        return replace(self, licences=frozenset(self.licences) | extra)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "FilterPolicy":
        """The default policy plus opt-in licences from FIGALIGN_PROCESS_LICENCES (comma list).

        This is the *processing* allow-list: the filter stage keeps these papers' figures,
        so they are recaptioned and scored once. Each export then cuts a release from them
        with its own licence filter (``figalign export --licences cc-by,cc0``), so one
        processed store yields commercial and non-commercial releases without a re-run.
        FIGALIGN_EXPORT_LICENCES, the variable's earlier name, is still read (the union).
        """
        env = os.environ if env is None else env
        extra = [x for var in ("FIGALIGN_PROCESS_LICENCES", "FIGALIGN_EXPORT_LICENCES")
                 for x in (env.get(var) or "").split(",") if x.strip()]
        return cls().with_licences(extra) if extra else cls()


def normalise_licence_id(value: str) -> str:
    return value.strip().lower()


def parse_licences(value: str | list[str] | None) -> frozenset[str] | None:
    """A release's licence filter from ``cc-by,cc0`` (or a list of such); None when empty."""
    if not value:
        return None
    items = [value] if isinstance(value, str) else list(value)
    ids = {normalise_licence_id(x) for item in items for x in item.split(",") if x.strip()}
    unknown = ids - licences.ALL
    if unknown:
        raise ConfigError(f"unknown licence ids {sorted(unknown)}; known: {sorted(licences.ALL)}")
    return frozenset(ids) or None


@dataclass(frozen=True)
class ImageFacts:
    """What the image rules need, computed once per image."""

    size_bytes: int
    width: int
    height: int
    pixel_std: float
    ink_fraction: float


def decode_image(data: bytes):
    """Decode image bytes fully (not just the header), so truncated files are caught."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
        img.load()
    return img


def image_facts(data: bytes, policy: FilterPolicy) -> ImageFacts | None:
    """Measure an image; ``None`` when it cannot be decoded."""
    import numpy as np
    from PIL import Image

    try:
        img = decode_image(data)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None
    gray = np.asarray(_flatten(img).convert("L"), dtype=np.int16)
    if gray.size == 0:
        return ImageFacts(len(data), img.width, img.height, 0.0, 0.0)
    background = int(np.median(gray))
    ink = float(np.count_nonzero(np.abs(gray - background) > policy.blank_ink_delta)) / gray.size
    return ImageFacts(len(data), img.width, img.height, float(gray.std()), ink)


def _flatten(img):
    """Composite transparency onto white: a transparent PNG is 'blank' by what it shows."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img


def image_reason(data: bytes | None, policy: FilterPolicy) -> tuple[str | None, ImageFacts | None]:
    """First image rule that fails (file size, decoding, size, aspect, blankness)."""
    if data is None:
        return "no-image", None
    if len(data) < policy.min_file_bytes:
        return f"image-under-{policy.min_file_bytes // 1024}kb", None
    facts = image_facts(data, policy)
    if facts is None:
        return "undecodable-image", None
    if min(facts.width, facts.height) < policy.min_side:
        return f"small-side<{policy.min_side}px", facts
    if max(facts.width, facts.height) / max(1, min(facts.width, facts.height)) > policy.max_aspect:
        return f"aspect-ratio>{policy.max_aspect:g}", facts
    if facts.pixel_std < policy.blank_max_std or facts.ink_fraction < policy.blank_min_ink:
        return "near-blank", facts
    return None, facts


def table_reason(kind: str | None, caption: str | None, policy: FilterPolicy) -> str | None:
    """Tables are not figures: by the parser's kind, or a caption starting with 'Table 1'."""
    if not policy.drop_tables:
        return None
    if kind == "table" or TABLE_CAPTION.match(caption or ""):
        return "table"
    return None


def caption_reason(caption: str | None, policy: FilterPolicy) -> str | None:
    text = " ".join((caption or "").split())
    if not text:
        return "caption-empty"
    if len(text) < policy.min_caption_chars:
        return "caption-too-short"
    return None


def content_reason(data: bytes | None, kind: str | None, caption: str | None,
                   policy: FilterPolicy) -> tuple[str | None, ImageFacts | None]:
    """The first content rule a figure fails, cheapest checks first; with image facts."""
    reason = table_reason(kind, caption, policy) or caption_reason(caption, policy)
    if reason:
        return reason, None
    return image_reason(data, policy)


def policy_reason(licence: str | None, retracted: bool, policy: FilterPolicy) -> str | None:
    """Why a paper's figures may not be exported under ``policy`` (retraction first)."""
    if policy.drop_retracted and retracted:
        return RETRACTED_REASON
    lic = normalise_licence_id(licence) if licence else "unknown"
    if lic not in policy.licences:
        return f"{LICENCE_REASON_PREFIX}{lic}"
    return None


def is_policy_reason(reason: str | None) -> bool:
    """True for reasons the export re-decides (licence, retraction), not content ones."""
    return bool(reason) and (reason == RETRACTED_REASON or reason.startswith(LICENCE_REASON_PREFIX))


def summary(facts: ImageFacts | None) -> dict[str, Any]:
    """Small audit facts for the stage-run output."""
    if facts is None:
        return {}
    return {"w": facts.width, "h": facts.height, "std": round(facts.pixel_std, 2),
            "ink": round(facts.ink_fraction, 4)}
