"""JATS figure images: the graphic files beside the XML, panels composed into whole figures.

A ``fig-group`` with its own caption is one figure whose panels are its child ``fig``s; a
``fig`` may also hold several ``graphic``s (one per panel). Each panel keeps its own image
as a sub-figure, and the figure's image is all of them composed (JATS gives no layout, so
a balanced grid at most three across, in document order). ``alternatives`` holding the same
picture in several formats count once. A figure without an image says why.
"""

from __future__ import annotations

import re
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers import images
from figalign.parsers.compose import Cell, compose, grid_rows
from figalign.parsers.options import ParseOptions
from figalign.parsers.xmlsafe import local_name
from figalign.records import Figure, FigureImage, ParsedPaper, SubFigure
from figalign.parsers.names import safe_name

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
IMAGE_EXTS = (".tif", ".tiff", ".gif", ".jpg", ".jpeg", ".png")
_GRAPHICS = ("graphic", "inline-graphic")


def resolve_graphic(directory: Path, href: str) -> Path | None:
    """Find the image file an href names, in the XML's own directory only.

    PMC hrefs omit the extension ("F1"), PLOS ones are DOIs ("info:doi/10.1371/journal.
    pone.0038869.g001") while the file is "pone.0038869.g001.tif". Only files listed in the
    directory can match, so an href like "../../etc/passwd" can never escape it.
    """
    base = re.split(r"[/:]", href.strip())[-1].lower()
    if not base:
        return None
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTS)}
    exact = [p for p in files if p.name.lower() == base]
    if exact:
        return exact[0]
    stem = base.rsplit(".", 1)[0] if Path(base).suffix.lower() in IMAGE_EXTS else base
    same = [p for p in files if p.stem.lower() == stem]
    if not same:
        same = [p for p in files if stem.endswith("." + p.stem.lower()) and "." in p.stem]
    return min(same, key=lambda p: rank[p.suffix.lower()]) if same else None


def graphic_hrefs(el, *, skip_figs: bool = False) -> list[str]:
    """The hrefs of a float's own graphics in document order: not those of its caption, one
    per ``alternatives``, and (``skip_figs``) not those inside child ``fig`` panels."""
    out: list[str] = []
    seen_alternatives: set[int] = set()
    stack = [iter(el)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        name = local_name(node)
        if name == "caption" or (skip_figs and name == "fig"):
            continue
        if name in _GRAPHICS:
            parent = node.getparent()
            key = id(parent) if local_name(parent) == "alternatives" else None
            href = node.get(XLINK_HREF) or node.get("href")
            if href and (key is None or key not in seen_alternatives):
                out.append(href)
                if key is not None:
                    seen_alternatives.add(key)
            continue
        stack.append(iter(node))
    return out



class _Imager:
    """Converts one article's graphics, remembering why a figure got none."""

    def __init__(self, paper: ParsedPaper, directory: Path, out_dir: Path, options: ParseOptions) -> None:
        self.paper, self.directory, self.out_dir, self.options = paper, directory, out_dir, options
        self.failures: list[str] = []

    def convert(self, fig: Figure, href: str, name: str) -> FigureImage | None:
        src = resolve_graphic(self.directory, href)
        if src is None:
            self.paper.warnings.append(f"{fig.label or fig.id}: image file for {href!r} not found beside the XML")
            self.failures.append("graphic-file-not-beside-xml")
            return None
        try:
            return images.convert_to_png(src.read_bytes(), self.out_dir / f"{name}.png",
                                         max_side=self.options.max_side)
        except (BadInputError, OSError) as exc:
            fig.error = f"image: {exc}"
            self.paper.warnings.append(f"{fig.label or fig.id}: image {src.name} not usable: {exc}")
            self.failures.append("graphic-file-unreadable")
            return None


def attach_images(paper: ParsedPaper, floats: list[tuple[Figure, object]], directory: Path, out_dir: Path,
                  options: ParseOptions) -> None:
    """Give each float its image (single file or composed panels), or a reason for none."""
    for fig, el in floats:
        imager = _Imager(paper, directory, out_dir, options)
        panels = _panel_images(fig, el, imager)
        _whole_image(fig, panels, imager, out_dir, options)


def _panel_images(fig: Figure, el, imager: _Imager) -> list[FigureImage]:
    """Images of a figure's panels in order; fills sub-figure images (adding sub-figures for
    a ``fig`` with several graphics)."""
    base = safe_name(fig.id)
    if local_name(el) == "fig-group":
        kids = [c for c in el if local_name(c) == "fig"]
        out = []
        for k, (sub, kid) in enumerate(zip(fig.subfigures, kids)):
            hrefs = graphic_hrefs(kid)
            sub.image = imager.convert(fig, hrefs[0], f"{base}-{k + 1}") if hrefs else None
            out.append(sub.image)
        loose = graphic_hrefs(el, skip_figs=True)
        out += [imager.convert(fig, h, f"{base}-g{k + 1}") for k, h in enumerate(loose)]
        return [img for img in out if img is not None]
    hrefs = graphic_hrefs(el)
    if len(hrefs) == 1:
        img = imager.convert(fig, hrefs[0], base)
        return [img] if img else []
    out = []
    for k, href in enumerate(hrefs):
        img = imager.convert(fig, href, f"{base}-{k + 1}")
        fig.subfigures.append(SubFigure(label=None, caption="", image=img))
        if img is not None:
            out.append(img)
    return out


def _whole_image(fig: Figure, panels: list[FigureImage], imager: _Imager, out_dir: Path,
                 options: ParseOptions) -> None:
    if len(panels) > 1:
        try:
            fig.image = compose(grid_rows([Cell(p.path) for p in panels]), out_dir / f"{safe_name(fig.id)}.png",
                                max_side=options.max_side)
            fig.image_origin = "composite"
            return
        except BadInputError as exc:
            imager.paper.warnings.append(f"{fig.label or fig.id}: panels could not be composed: {exc}")
    if panels:
        fig.image, fig.image_origin = panels[0], "single-file"
    elif fig.kind == "figure":
        fig.no_image_reason = imager.failures[0] if imager.failures else "no-graphic-in-xml"
        if not imager.failures:
            imager.paper.warnings.append(f"{fig.label or fig.id}: no graphic in the XML")
