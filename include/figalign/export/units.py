"""Whole figures, their panels, or both: what one exported sample is.

A multi-panel figure's own image shows every panel (a PDF crop or a composite of the
panel files: ``image_origin``), and the parsers keep each panel as a sub-record with its own
image, label and sub-caption (``figures.subfigures``). ``--units panels`` turns those into
ArxivCap-style per-panel pairs; ``both`` ships the whole figure followed by its panels.
A panel sample carries its parent's paper fields and citation contexts (the text cites the
figure, not the panel), its own sub-caption as ``caption``, no recaption and no metrics
(both describe the whole figure), and ``parent_key`` pointing at the figure's sample.
A panel without an image or without a sub-caption of its own is no pair: the release
drops it with reason ``panel-without-image`` / ``panel-without-subcaption`` (``selection``).
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import select
from sqlalchemy.orm import Session

from figalign.errors import ConfigError
from figalign.export.common import MEDIA_EXT, Sample, core_rows
from figalign.store.models import Artifact

UNITS = ("figures", "panels", "both")
NO_PANEL_IMAGE = "panel-without-image"
NO_SUBCAPTION = "panel-without-subcaption"


def check_units(units: str) -> str:
    if units not in UNITS:
        raise ConfigError(f"export units must be one of {', '.join(UNITS)}, got {units!r}")
    return units


def panel_samples(sample: Sample, subfigures: list[dict], uris: dict[int, tuple[str, str | None, int]]) -> list[Sample]:
    """The panels of one figure sample, in source order (``uris``: artifact id → uri, media type, size)."""
    out = []
    for i, sub in enumerate(subfigures or []):
        image = sub.get("image") or {}
        stored = uris.get(image.get("artifact_id"))
        letter = (sub.get("label") or "").strip("() ") or chr(97 + i % 26)
        key = f"{sample.key}_p{i + 1:02d}"
        meta = dict(sample.meta, key=key, unit="panel", parent_key=sample.key, panel_label=sub.get("label"),
                    caption=(sub.get("caption") or "").strip(), recaption=None, recaption_model=None,
                    recaption_prompt_hash=None, recaption_params_hash=None, metrics=[],
                    image_sha256=image.get("sha256"), image_bytes=stored[2] if stored else 0,
                    width=image.get("width"), height=image.get("height"), image_origin="panel-file",
                    label=f"{sample.meta.get('label') or ''}{'(' + letter + ')'}".strip())
        uri, media_type = (stored[0], stored[1]) if stored else ("", None)
        out.append(dataclasses.replace(sample, key=key, image_uri=uri, meta=meta, scores={},
                                       image_ext=MEDIA_EXT.get(media_type or "", "png")))
    return out


def artifact_uris(session: Session, subfigure_lists: list[list[dict]]) -> dict[int, tuple[str, str | None, int]]:
    ids = {(s.get("image") or {}).get("artifact_id") for subs in subfigure_lists for s in subs or []} - {None}
    if not ids:
        return {}
    rows = core_rows(session, select(Artifact.id, Artifact.storage_uri, Artifact.media_type, Artifact.size)
                     .where(Artifact.id.in_(ids)))
    return {r.id: (r.storage_uri, r.media_type, int(r.size)) for r in rows}


def require_panel_pair(sample: Sample):
    """A selection rule: a panel sample needs its own image and sub-caption."""
    if sample.meta.get("unit") != "panel":
        return None, sample, None
    if not sample.image_uri:  # the panel's image is not in the store
        return NO_PANEL_IMAGE, sample, None
    if not sample.meta["caption"]:
        return NO_SUBCAPTION, sample, None
    return None, sample, None
