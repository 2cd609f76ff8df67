"""arXiv LaTeX source parser: e-print in, ``ParsedPaper`` with figures, images and contexts out.

The pipeline is: unpack safely (``latex_archive``), pick the main .tex, inline every
\\input/\\include, expand user macros, then read floats (``latex_tex``), number them the
way LaTeX would, convert their graphics to PNG, and turn body paragraphs into sentences
whose \\ref/\\cref/"Fig. 3" mentions become citation contexts. LaTeX sources carry no page
geometry, so ``page`` and ``bbox`` stay None.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from figalign.errors import BadInputError
from figalign.parsers import images
from figalign.parsers.contexts import add_context, find_mentions, split_sentences
from figalign.parsers.compose import Cell, compose
from figalign.parsers.latex_archive import unpack
from figalign.parsers.latex_layout import Placed, graphic_size, length_pt, rows
from figalign.parsers.latex_tex import (
    Graphic,
    RawFigure,
    decode_tex,
    expand_macros,
    extract_macros,
    find_envs,
    find_figures,
    float_spans,
    read_command_args,
    read_group,
    remove_false_blocks,
    skip_ws,
    strip_comments,
    to_text,
)
from figalign.parsers.options import ParseOptions
from figalign.parsers.text import base_number, clean_caption
from figalign.records import Figure, FigureImage, ParsedPaper, SubFigure, figure_id
from figalign.parsers.names import safe_name

NAME = "latex"
VERSION = "1.1.0"  # 1.1: \ContinuedFloat parts numbered as printed

log = logging.getLogger(__name__)

_MAX_INCLUDE_DEPTH = 20
_MAX_DOC_CHARS = 40_000_000
_MAX_TEX_FILE = 20_000_000
_TEX_SUFFIXES = (".tex", ".ltx", ".latex")
_BINARY_SUFFIXES = (".pdf", ".png", ".jpg", ".jpeg", ".gif", ".eps", ".ps", ".tif", ".tiff", ".zip", ".gz")
_INCLUDE = re.compile(
    r"\\(input|include|subfile|import|subimport|inputfrom|subinputfrom|includefrom|subincludefrom)(?![A-Za-z@])"
)
_DOC_BEGIN = re.compile(r"\\begin\s*\{document\}")
_DOC_END = re.compile(r"\\end\s*\{document\}")
_MAIN_NAMES = {"main", "ms", "paper", "article", "manuscript"}
# graphicx's default search order under pdfLaTeX (pdftex.def) and under LaTeX + dvips
# (dvips.def); any other known extension is tried after them, so a figure still gets an
# image when the paper was built with another engine than the one we guessed.
_PDFTEX_EXTS = (".pdf", ".png", ".jpg", ".mps", ".jpeg", ".jbig2", ".jb2", ".PDF", ".PNG", ".JPG", ".JPEG",
                ".JBIG2", ".JB2", ".eps")
_DVIPS_EXTS = (".eps", ".ps", ".eps.gz", ".ps.gz", ".eps.Z", ".EPS", ".PS")
_GRAPHIC_EXTS = _PDFTEX_EXTS + _DVIPS_EXTS + (".gif", ".tif", ".tiff", ".bmp", ".GIF", ".TIF", ".TIFF")
_DVIPS_HINT = re.compile(r"\\documentstyle|\\usepackage\s*(?:\[[^\]]*\])?\s*\{[^}]*\b(?:epsfig|psfig|epsf|pstricks|"
                         r"psfrag)\b|\\input\s*\{?epsf\b|\\usepackage\s*\[[^\]]*\bdvips\b")
_DAMAGED = re.compile(r"skipped damaged archive member '([^']+)'")
_SECTION = re.compile(r"\\(part|chapter|section|subsection|subsubsection|paragraph)(?![A-Za-z@])")
_MARK = re.compile("\ue000(\\d+)\ue001")
_MENTION_BEFORE = r"(?:(?:Supplementary\s+)?(?:Fig(?:ure)?s?\.?|FIG(?:URE)?S?\.?|Tab(?:le)?s?\.?)\s*)?"
_KIND_WORD = {"figure": "Figure", "table": "Table", "section": "Section", "equation": "Equation"}


# ------------------------------------------------------------------ entry point
def parse(path: Path, *, out_dir: Path, pdf: Path | None, paper_id: str, options: ParseOptions) -> ParsedPaper:
    """Parse one arXiv e-print (archive, directory, single .tex, or PDF-only submission)."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="figalign-latex-") as tmp:
        unpacked = unpack(path, Path(tmp), options)
        if unpacked.pdf is not None:
            return _parse_pdf_only(unpacked.pdf, out_dir=out_dir, paper_id=paper_id, options=options)
        job = _Job(unpacked.root, Path(out_dir), paper_id, options, list(unpacked.warnings))
        paper = job.run()
    if pdf is not None and options.write_images:
        from figalign.parsers.latex_pdf import use_pdf_crops

        use_pdf_crops(paper, Path(pdf), Path(out_dir) / safe_name(paper_id, "paper") / "pdf", options)
    return paper


def _parse_pdf_only(pdf_path: Path, *, out_dir: Path, paper_id: str, options: ParseOptions) -> ParsedPaper:
    """Hand a PDF-only submission to the PDF parser when one is installed."""
    if importlib.util.find_spec("figalign.parsers.pdf") is None:
        raise BadInputError("PDF-only submission: the e-print holds no LaTeX source and no PDF parser is available")
    module = importlib.import_module("figalign.parsers.pdf")
    return module.parse(pdf_path, out_dir=Path(out_dir), pdf=None, paper_id=paper_id, options=options)


# ------------------------------------------------------------------ source tree
def _inside(root: Path, path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def _list_files(root: Path) -> list[Path]:
    """Regular files under root, leaving out macOS metadata and anything that escapes root."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if "__MACOSX" in rel or p.name.startswith("._") or p.name == ".DS_Store":
            continue
        if p.is_file() and _inside(root, p):
            out.append(p)
    return out


@dataclass
class _Doc:
    """The resolved document: its full text (preamble + body) and where its body lies."""

    main: Path
    text: str
    body: str
    included: list[Path] = field(default_factory=list)


class _Sources:
    """Reads and inlines the .tex files of one e-print."""

    def __init__(self, root: Path, warnings: list[str]) -> None:
        self.root = root
        self.warnings = warnings
        self.files = _list_files(root)
        self.by_rel = {p.relative_to(root).as_posix(): p for p in self.files}
        self.by_rel_lower = {k.lower(): v for k, v in self.by_rel.items()}
        self._cache: dict[Path, str] = {}
        self.tex = [p for p in self.files if p.suffix.lower() in _TEX_SUFFIXES]

    def read(self, path: Path) -> str:
        """A file's text, decoded leniently, with comments stripped (cached)."""
        if path not in self._cache:
            data = path.read_bytes()[:_MAX_TEX_FILE]
            self._cache[path] = strip_comments(decode_tex(data))
        return self._cache[path]

    def lookup(self, name: str, dirs: list[Path]) -> Path | None:
        """An included file: as written or with .tex, relative to each candidate directory."""
        name = name.strip().strip('"')
        if not name or "\\" in name:
            return None
        for base in dirs:
            for cand in (name + ".tex", name) if not name.lower().endswith(".tex") else (name,):
                path = (base / cand)
                try:
                    rel = path.resolve().relative_to(self.root.resolve()).as_posix()
                except (ValueError, OSError):
                    continue
                hit = self.by_rel.get(rel) or self.by_rel_lower.get(rel.lower())
                if hit is not None and hit.suffix.lower() not in _BINARY_SUFFIXES:
                    return hit
        return None

    def resolve(self, path: Path, stack: tuple[Path, ...], main_dir: Path, doc: _Doc, size: list[int]) -> str:
        """The text of ``path`` with every \\input/\\include/\\subfile/\\import inlined (cycle-safe)."""
        text = self.read(path)
        if stack:
            text = _subfile_body(text)
        out: list[str] = []
        pos = 0
        for m in _INCLUDE.finditer(text):
            if m.start() < pos or (m.start() > 0 and text[m.start() - 1] == "\\"):
                continue
            target, end, dirs = self._include_target(text, m, path, main_dir)
            if end <= m.end():
                continue
            out.append(text[pos:m.start()])
            pos = end
            if target is None:
                continue
            if target in stack or target == path or len(stack) >= _MAX_INCLUDE_DEPTH:
                self.warnings.append(f"include cycle or depth limit at {target.name}; not inlined again")
                continue
            if size[0] > _MAX_DOC_CHARS:
                self.warnings.append("document too large; further includes skipped")
                continue
            doc.included.append(target)
            inner = self.resolve(target, stack + (path,), dirs[0] if m.group(1).endswith("import") else main_dir,
                                 doc, size)
            size[0] += len(inner)
            out.append("\n" + inner + "\n")
        out.append(text[pos:])
        return "".join(out)

    def _include_target(self, text: str, m: re.Match, path: Path, main_dir: Path) -> tuple[Path | None, int, list[Path]]:
        """Parse one include command; returns (file or None, index after the command, search dirs)."""
        cmd = m.group(1)
        j = m.end()
        if cmd.endswith("import") or cmd.endswith("from"):
            _, args, j = read_command_args(text, j, 2)
            base = (path.parent if cmd.startswith("sub") else main_dir) / args[0].strip()
            dirs = [base, main_dir / args[0].strip()]
            return self.lookup(args[1], dirs), j, dirs
        k = skip_ws(text, j)
        if k < len(text) and text[k] == "{":
            grp = read_group(text, k)
            name, j = grp if grp else ("", k)
        elif cmd == "input":
            wm = re.match(r"[ \t]*([A-Za-z0-9_./\-]+)", text[j:])
            if not wm:
                return None, j, []
            name, j = wm.group(1), j + wm.end()
        else:
            return None, j, []
        dirs = [main_dir, path.parent, self.root]
        return self.lookup(name, dirs), j, dirs


def _subfile_body(text: str) -> str:
    """An included file that is itself a document (subfiles): only its body counts."""
    b = _DOC_BEGIN.search(text)
    if not b:
        return text
    e = _DOC_END.search(text, b.end())
    return text[b.end(): e.start() if e else len(text)]


def _is_main_candidate(text: str) -> bool:
    return ("\\documentclass" in text or "\\documentstyle" in text) and _DOC_BEGIN.search(text) is not None


def _pick_main(src: _Sources) -> Path:
    """The main file: a \\documentclass + \\begin{document} file nobody includes, shallowest,
    then pulling in the most text (a cover letter or response loses to the paper), named
    main/ms/paper as a tie-break."""
    if not src.tex:
        raise BadInputError("no .tex file in the e-print")
    cands = [p for p in src.tex if _is_main_candidate(src.read(p))]
    if not cands:
        cands = [p for p in src.tex if _DOC_BEGIN.search(src.read(p))]
    if not cands:
        src.warnings.append("no file with \\documentclass and \\begin{document}; using the largest .tex")
        return max(src.tex, key=lambda p: len(src.read(p)))
    if len(cands) == 1:
        return cands[0]
    included: set[Path] = set()
    sizes: dict[Path, int] = {}
    for p in cands:
        doc = _Doc(p, "", "")
        sizes[p] = len(src.resolve(p, (), p.parent, doc, [0]))
        included.update(x for x in doc.included if x != p)
    min_depth = min(len(p.relative_to(src.root).parts) for p in cands)

    def key(p: Path) -> tuple:
        depth = len(p.relative_to(src.root).parts)
        return (p not in included, depth == min_depth, sizes[p] * (1.25 if p.stem.lower() in _MAIN_NAMES else 1.0))

    return max(cands, key=key)


def _load_document(src: _Sources) -> _Doc:
    """Resolve the main file into one text, strip dead blocks, expand user macros."""
    main = _pick_main(src)
    doc = _Doc(main, "", "")
    text = src.resolve(main, (), main.parent, doc, [0])
    text = remove_false_blocks(text)
    macros, text = extract_macros(text)
    text = expand_macros(text, macros)
    doc.text = text
    b = _DOC_BEGIN.search(text)
    e = _DOC_END.search(text, b.end()) if b else None
    doc.body = text[b.end(): e.start() if e else len(text)] if b else text
    return doc


# ------------------------------------------------------------------ labels and references
@dataclass
class _Target:
    """What a \\label names: a figure/table (with its Figure record), a section or an equation."""

    kind: str
    number: str
    figure: Figure | None = None


def _section_labels(body: str, spans: list[tuple[int, int]]) -> dict[str, _Target]:
    """Section and equation numbers for labels outside floats, counted as LaTeX would (roughly)."""
    masked = list(body)
    for a, b in spans:
        masked[a:b] = " " * (b - a)
    text = "".join(masked)
    counters = [0, 0, 0]
    appendix = False
    eq = 0
    last: _Target | None = None
    out: dict[str, _Target] = {}
    pat = re.compile(r"\\(section|subsection|subsubsection)(\*?)(?![A-Za-z@])|\\label\s*\{([^}]*)\}"
                     r"|\\begin\{(equation|align|eqnarray|gather|multline)\}|\\appendix(?![A-Za-z@])")
    for m in pat.finditer(text):
        if m.group(0).startswith("\\appendix"):
            appendix, counters = True, [0, 0, 0]
        elif m.group(1):
            if m.group(2):
                continue
            level = ("section", "subsection", "subsubsection").index(m.group(1))
            counters[level] += 1
            counters[level + 1:] = [0] * (2 - level)
            parts = [str(c) for c in counters[: level + 1]]
            if appendix:
                parts[0] = chr(ord("A") + (counters[0] - 1) % 26)
            last = _Target("section", ".".join(parts))
        elif m.group(4):
            eq += 1
            last = _Target("equation", str(eq))
        elif m.group(3) and last is not None:
            out.setdefault(m.group(3).strip(), last)
    return out


def _join_numbers(nums: list[str]) -> str:
    if len(nums) == 1:
        return nums[0]
    return ", ".join(nums[:-1]) + " and " + nums[-1]


class _RefResolver:
    """Turns \\ref-family commands into text; in body mode it also marks figure references."""

    def __init__(self, labels: dict[str, _Target], mark: bool) -> None:
        self.labels = labels
        self.mark = mark
        self.marks: list[tuple[Figure, str | None]] = []

    def _num(self, target: _Target | None, full: str | None) -> str:
        if target is None:
            return "?"
        if self.mark and target.figure is not None:
            self.marks.append((target.figure, full))
            return f"{target.number}\ue000{len(self.marks) - 1}\ue001"
        return target.number

    def __call__(self, cmd: str, keys: list[str]) -> str:
        targets = [self.labels.get(k) for k in keys]
        if cmd == "pageref" or cmd == "cpageref":
            return "?"
        if cmd in ("ref", "vref", "Vref", "subref"):
            return ", ".join(self._num(t, None) for t in targets)
        if cmd == "eqref":
            return "(" + ", ".join(t.number if t else "?" for t in targets) + ")"
        return self._named(targets)

    def _named(self, targets: list[_Target | None]) -> str:
        """\\cref-style text: "Figure 3", "Figures 1 and 2", "Table 1"."""
        kinds = {t.kind for t in targets if t is not None}
        if len(kinds) == 1 and all(t is not None for t in targets):
            word = _KIND_WORD.get(next(iter(kinds)), "")
            word = word + ("s" if len(targets) > 1 and word else "")
            plain = f"{word} {_join_numbers([t.number for t in targets])}".strip()
            nums = [self._num(t, plain) for t in targets]
            return f"{word} {_join_numbers(nums)}".strip()
        parts = []
        for t in targets:
            if t is None:
                parts.append("?")
                continue
            word = _KIND_WORD.get(t.kind, "")
            parts.append(f"{word} {self._num(t, f'{word} {t.number}'.strip())}".strip())
        return _join_numbers(parts)


# ------------------------------------------------------------------ the job
class _Job:
    """One paper's parse: holds the tree, options, output folder and collected warnings."""

    def __init__(self, root: Path, out_dir: Path, paper_id: str, options: ParseOptions, warnings: list[str]):
        self.root = root
        self.out_dir = out_dir / safe_name(paper_id, "paper")
        self.paper_id = paper_id
        self.options = options
        self.warnings = warnings
        self._image_cache: dict[tuple[Path, int], FigureImage | str] = {}

    def run(self) -> ParsedPaper:
        src = _Sources(self.root, self.warnings)
        doc = _load_document(src)
        self.main_dir = doc.main.parent
        self.index = _FileIndex(src.files, self.root)
        self.graphicspath = _graphicspath(doc.text)
        self.extensions = _graphics_extensions(doc.text)
        self._failures: dict[str, list[str]] = {}
        self._damaged = {Path(m.group(1)).name.split(".")[0].lower() for w in self.warnings
                         if (m := _DAMAGED.search(w))}
        raws = find_figures(doc.body)
        figures, labels = self._number(raws)
        labels = {**_section_labels(doc.body, float_spans(doc.body)), **labels}
        caption_refs = _RefResolver(labels, mark=False)
        for fig, raw in zip(figures, raws):
            self._fill(fig, raw, caption_refs)
        _attach_contexts(doc.body, figures, labels)
        _share_across_parts(figures)
        return ParsedPaper(
            paper_id=self.paper_id,
            title=_title(doc.text),
            abstract=_abstract(doc.text),
            parser=NAME,
            parser_version=VERSION,
            figures=figures,
            warnings=self.warnings,
        )

    def _number(self, raws: list[RawFigure]) -> tuple[list[Figure], dict[str, _Target]]:
        """Number floats in document order (figure and figure* share a counter; tables separate).

        A float with ``\\ContinuedFloat`` (caption/subfig packages) does not step the counter:
        it is the next part of the previous float of its kind (a figure spread over pages),
        with that float's number; its id gets ``-partN`` so every part stays its own record.
        """
        counters = {"figure": 0, "table": 0}
        parts = {"figure": 1, "table": 1}
        figures: list[Figure] = []
        labels: dict[str, _Target] = {}
        for ordinal, raw in enumerate(raws):
            number, key = None, None
            if raw.continued and counters[raw.kind]:
                parts[raw.kind] += 1
                number = str(counters[raw.kind])
                key = f"{number}-part{parts[raw.kind]}"
            elif raw.numbered and raw.caption is not None:
                counters[raw.kind] += 1
                parts[raw.kind] = 1
                number = str(counters[raw.kind])
            label = f"{_KIND_WORD[raw.kind]} {number}" if number else None
            fig = Figure(
                id=figure_id(self.paper_id, raw.kind, key or number, ordinal),
                label=label,
                kind=raw.kind,
                caption="",
                ordinal=ordinal,
                number=number,
                source_ref=raw.labels[0] if raw.labels else None,
            )
            figures.append(fig)
            for key in raw.labels:
                labels.setdefault(key, _Target(raw.kind, number or "?", fig))
            for k, panel in enumerate(raw.panels):
                letter = chr(ord("a") + k % 26)
                for key in panel.labels:
                    labels.setdefault(key, _Target(raw.kind, f"{number or '?'}{letter}", fig))
        return figures, labels

    def _fill(self, fig: Figure, raw: RawFigure, refs: _RefResolver) -> None:
        """Caption text, sub-figures and the image of one figure; problems become warnings.

        Every panel keeps its own image as a sub-figure; the figure's image shows all of
        them (composed by the source layout), and when there is none the figure says why.
        """
        fig.caption = clean_caption(to_text(raw.caption or "", refs))
        stem = fig.id.rsplit(":", 1)[-1].replace("#", "-u")  # fig3, fig1-part2, fig-u4: one file name each
        placed: list[tuple[Placed, FigureImage]] = []
        for k, panel in enumerate(raw.panels):
            letter = chr(ord("a") + k % 26)
            image = self._image(panel.graphics[0], f"{stem}-{letter}", fig) if panel.graphics else None
            fig.subfigures.append(SubFigure(label=f"({letter})", caption=clean_caption(to_text(panel.caption, refs)),
                                            image=image))
            if image is not None:
                placed.append((Placed(panel.pos, Cell(image.path, *_panel_size(panel))), image))
        fig.caption = _with_subcaptions(fig.caption, fig.subfigures)
        if fig.kind == "table":
            return
        if len(raw.graphics) > 1 or (raw.panels and raw.graphics):
            for k, g in enumerate(raw.graphics):
                image = self._image(g, f"{stem}-p{k + 1}", fig)
                if not raw.panels:
                    fig.subfigures.append(SubFigure(label=None, caption="", image=image))
                if image is not None:
                    placed.append((Placed(g.pos, Cell(image.path, *graphic_size(g.options))), image))
        elif raw.graphics:
            fig.image = self._image(raw.graphics[0], stem, fig)
        if len(placed) > 1:
            self._compose(fig, [p for p, _ in placed], raw.breaks, stem)
        elif placed:
            fig.image = placed[0][1]
        if fig.image is not None:
            fig.image_origin = fig.image_origin or "single-file"
        elif self.options.write_images:
            fig.no_image_reason = self._no_image_reason(fig, raw)
            if not raw.graphics and not any(p.graphics for p in raw.panels):
                self._warn(fig, f"no graphics file ({fig.no_image_reason}); image is None")

    def _compose(self, fig: Figure, placed: list[Placed], breaks: list[int], stem: str) -> None:
        """The figure's image: its panel images laid out in the source's rows and widths."""
        try:
            fig.image = compose(rows(placed, breaks), self.out_dir / f"{stem}.png", max_side=self.options.max_side)
            fig.image_origin = "composite"
        except BadInputError as exc:
            self._warn(fig, f"panels could not be composed: {exc}")
            fig.image = next((s.image for s in fig.subfigures if s.image is not None), None)

    def _no_image_reason(self, fig: Figure, raw: RawFigure) -> str:
        """A countable word for why a figure has no image."""
        failures = self._failures.get(fig.id, [])
        if failures:
            return "no-graphics-file-in-source" if all(f == "missing" for f in failures) else next(
                f for f in failures if f != "missing")
        if raw.drawn:
            return f"{raw.drawn}-without-pdf"
        return "no-graphics-in-source"

    def _warn(self, fig: Figure, message: str) -> None:
        text = f"{fig.label or fig.id}: {message}"
        self.warnings.append(text)
        if fig.error is None and "image is None" not in message:
            fig.error = message

    def _image(self, graphic: Graphic, stem: str, fig: Figure) -> FigureImage | None:
        """Convert one graphics file to PNG (cached per file and page); failures are warnings."""
        if not self.options.write_images:
            return None
        path = self.index.find(graphic.name, [self.main_dir] + [self.main_dir / g for g in self.graphicspath],
                               self.extensions)
        if path is None:
            self._warn(fig, f"graphics file not found: {graphic.name}")
            damaged = Path(graphic.name).name.split(".")[0].lower() in self._damaged
            self._failures.setdefault(fig.id, []).append("graphics-file-damaged-in-archive" if damaged else "missing")
            return None
        key = (path, graphic.page)
        if key not in self._image_cache:
            try:
                self._image_cache[key] = _convert(path, graphic.page, self.out_dir / f"{stem}.png", self.options)
            except BadInputError as exc:
                self._image_cache[key] = str(exc)
        result = self._image_cache[key]
        if isinstance(result, str):
            self._warn(fig, f"{path.name}: {result}")
            self._failures.setdefault(fig.id, []).append(
                "eps-needs-ghostscript" if "ghostscript" in result and "not found" in result else "graphics-file-unreadable")
            return None
        return result


def _share_across_parts(figures: list[Figure]) -> None:
    """The parts of a continued float (same kind and number) are one figure to a reader.

    Authors caption one part (often the last; the others carry ``\\caption[]{}``), and
    the text cites "Figure 1" once: each part without a caption of its own takes the
    longest caption of its chain, and every part gets every context of the chain, so no
    part is left as an uncaptioned image.
    """
    chains: dict[tuple[str, str], list[Figure]] = {}
    for fig in figures:
        if fig.number:
            chains.setdefault((fig.kind, fig.number), []).append(fig)
    for chain in chains.values():
        if len(chain) < 2:
            continue
        caption = max((f.caption for f in chain), key=len)
        contexts = [c for f in chain for c in f.contexts]
        for fig in chain:
            if not fig.caption:
                fig.caption = caption
            for c in contexts:
                add_context(fig, c.text, c.section, c.position, c.mention)
            fig.contexts.sort(key=lambda c: c.position)


def _with_subcaptions(caption: str, subfigures: list[SubFigure]) -> str:
    """The figure's caption followed by its panel captions, "(a) ...", as the rendered page shows
    them: the image holds every panel, so the text that describes it should too."""
    parts = [f"{s.label} {s.caption}" for s in subfigures if s.caption]
    return clean_caption(" ".join([caption] + parts)) if parts else caption


def _panel_size(panel) -> tuple[float | None, float | None]:
    """A panel's size in points: its environment's width, else its graphic's size options."""
    width = length_pt(panel.width)
    if width:
        return width, None
    return graphic_size(panel.graphics[0].options) if panel.graphics else (None, None)



# ------------------------------------------------------------------ graphics files
def _graphicspath(text: str) -> list[str]:
    """Directories from \\graphicspath{{dir/}{dir2/}} (all occurrences, in order)."""
    dirs: list[str] = []
    for m in re.finditer(r"\\graphicspath\s*", text):
        grp = read_group(text, m.end())
        if grp is None:
            continue
        inner = re.findall(r"\{([^{}]*)\}", grp[0]) or [grp[0]]
        dirs.extend(d.strip() for d in inner if d.strip())
    return dirs


def _graphics_extensions(text: str) -> tuple[str, ...]:
    """The extensions graphicx tries for a name without one, in its order for this paper:
    \\DeclareGraphicsExtensions when the paper sets it, else pdfLaTeX's or dvips' default."""
    declared: list[str] = []
    for m in re.finditer(r"\\DeclareGraphicsExtensions\s*", text):
        grp = read_group(text, m.end())
        if grp:
            declared = [e.strip() for e in grp[0].split(",") if e.strip().startswith(".")]
    engine = _DVIPS_EXTS if _DVIPS_HINT.search(text) else _PDFTEX_EXTS
    return tuple(dict.fromkeys([*declared, *engine, *_GRAPHIC_EXTS]))


class _FileIndex:
    """Finds a graphics file the way graphicx would, then by base name anywhere in the tree."""

    def __init__(self, files: list[Path], root: Path) -> None:
        self.root = root
        self.by_name: dict[str, list[Path]] = {}
        for p in files:
            self.by_name.setdefault(p.name.lower(), []).append(p)

    def _existing(self, path: Path) -> Path | None:
        if path.is_file() and _inside(self.root, path):
            return path
        return None

    def find(self, name: str, dirs: list[Path], extensions: tuple[str, ...] = _GRAPHIC_EXTS) -> Path | None:
        """The file a graphics name means: in each search directory (the main file's, then
        \\graphicspath), as written or with each extension in order; else by base name."""
        name = name.strip().strip('"').replace("\\", "/")
        if not name or name.startswith("/"):
            return None
        candidates = self._candidates(name, extensions)
        for base in dirs + [self.root]:
            for cand in candidates:
                hit = self._existing(base / cand)
                if hit:
                    return hit
        for cand in candidates:
            hits = self.by_name.get(Path(cand).name.lower())
            if hits:
                return min(hits, key=lambda p: len(p.parts))
        return None

    @staticmethod
    def _candidates(name: str, extensions: tuple[str, ...]) -> list[str]:
        """File names to try: epstopdf's converted PDF first for .eps, then as written, then + extensions."""
        suffix = Path(name).suffix.lower()
        out: list[str] = []
        if suffix in (".eps", ".ps"):
            stem = name[: -len(suffix)]
            out.append(f"{stem}-{suffix[1:]}-converted-to.pdf")
        if suffix not in {e.lower() for e in _GRAPHIC_EXTS}:
            out.extend(name + ext for ext in extensions)
        out.append(name)
        return out


def _sniff_image(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(b"%PDF") or b"%PDF" in head[:32]:
        return "pdf"
    if head.startswith(b"%!") or head.startswith(b"\xc5\xd0\xd3\xc6"):
        return "eps"
    return "raster"


def _convert(path: Path, page: int, out: Path, options: ParseOptions) -> FigureImage:
    """Any supported graphics file to a bounded PNG; raises BadInputError with the reason."""
    kind = _sniff_image(path)
    if kind == "pdf":
        return _render_pdf(path, page, out, options)
    if kind == "eps":
        return _render_eps(path, out, options)
    return images.convert_to_png(path.read_bytes(), out, max_side=options.max_side)


def _render_pdf(path: Path, page: int, out: Path, options: ParseOptions) -> FigureImage:
    """Render one page of a PDF graphic (its crop box) at options.dpi, capped at max_side."""
    import pymupdf

    try:
        with pymupdf.open(path) as doc:
            if doc.needs_pass:
                raise BadInputError("encrypted PDF graphic")
            if doc.page_count == 0:
                raise BadInputError("PDF graphic has no pages")
            pg = doc[min(page, doc.page_count - 1)]
            rect = pg.rect
            side = max(rect.width, rect.height)
            if side <= 0 or side > options.max_page_side_pt:
                raise BadInputError(f"PDF graphic page size out of range ({rect.width:.0f}x{rect.height:.0f} pt)")
            zoom = min(options.dpi / 72.0, options.max_side / side)
            pix = pg.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False)
            return images.pixmap_to_png(pix, out, max_side=options.max_side)
    except BadInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - PyMuPDF raises many unrelated classes for broken files
        raise BadInputError(f"unreadable PDF graphic: {type(exc).__name__}: {exc}") from exc


def _render_eps(path: Path, out: Path, options: ParseOptions) -> FigureImage:
    """EPS/PS through Ghostscript, sandboxed (``parsers.ghostscript``); needs `gs` on PATH."""
    from figalign.parsers.ghostscript import render_eps

    return render_eps(path, out, options)


# ------------------------------------------------------------------ title, abstract, contexts
def _title(text: str) -> str | None:
    m = re.search(r"\\title(?![A-Za-z@])", text)
    if not m:
        return None
    _, args, _ = read_command_args(text, m.end(), 1)
    title = clean_caption(to_text(args[0]))
    return title or None


def _abstract(text: str) -> str | None:
    envs = find_envs(text, {"abstract"})
    if envs:
        raw = text[envs[0].body_start:envs[0].body_end]
    else:
        m = re.search(r"\\abstract(?![A-Za-z@])", text)
        if not m:
            return None
        _, args, _ = read_command_args(text, m.end(), 1)
        raw = args[0]
    abstract = clean_caption(to_text(raw))
    return abstract or None


def _without_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each (sorted, disjoint) span replaced by a paragraph break, in one pass."""
    pieces, pos = [], 0
    for a, b in sorted(spans):
        if a < pos:
            continue
        pieces += [text[pos:a], "\n\n"]
        pos = b
    return "".join(pieces) + text[pos:]


def _paragraphs(body: str) -> list[tuple[str | None, str]]:
    """Body paragraphs (blank-line separated) with the title of the section they sit in."""
    body = _without_spans(body, float_spans(body))
    bib = re.search(r"\\begin\{thebibliography\}|\\bibliography\{|\\printbibliography", body)
    if bib:
        body = body[: bib.start()]
    out: list[tuple[str | None, str]] = []
    section: str | None = None
    pos = 0
    for m in _SECTION.finditer(body):
        if m.start() < pos:
            continue
        out.extend((section, p) for p in re.split(r"\n\s*\n", body[pos:m.start()]))
        _, args, end = read_command_args(body, m.end(), 1)
        section = clean_caption(to_text(args[0])) or section
        pos = end
    out.extend((section, p) for p in re.split(r"\n\s*\n", body[pos:]))
    return [(s, p) for s, p in out if p.strip()]


def _mention_for(sentence_before: str, fig: Figure, full: str | None) -> str:
    if full:
        return full
    m = re.search(_MENTION_BEFORE + r"[A-Z]?\d+[a-z]?$", sentence_before.rstrip())
    return m.group(0).strip() if m else (fig.label or "")


def _attach_contexts(body: str, figures: list[Figure], labels: dict[str, _Target]) -> None:
    """Sentences that \\ref a figure's label, or mention "Fig. 3" in words, become its contexts."""
    index: dict[tuple[str, str], Figure] = {}
    for f in figures:
        if f.number:
            index.setdefault((f.kind, f.number), f)  # a continued float's first part
    resolver = _RefResolver(labels, mark=True)
    position = 0
    for section, para in _paragraphs(body):
        text = to_text(para, resolver)
        for sent in split_sentences(text):
            clean = _MARK.sub("", sent)
            for m in _MARK.finditer(sent):
                fig, full = resolver.marks[int(m.group(1))]
                before = _MARK.sub("", sent[: m.start()])
                add_context(fig, clean, section, position, _mention_for(before, fig, full))
            for mention in find_mentions(clean):
                fig = index.get((mention.kind, base_number(mention.number)))
                if fig is not None:
                    add_context(fig, clean, section, position, mention.text)
            position += 1
