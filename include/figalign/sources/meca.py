"""bioRxiv/medRxiv bulk packages: MECA zips of JATS XML, PDF and the original figure files.

bioRxiv and medRxiv publish every posted version in requester-pays buckets
(``s3://biorxiv-src-monthly``, ``s3://medrxiv-src-monthly``): ``Current_Content/<Month>_<Year>/``
(from late 2018; packages may sit one folder deeper, per daily batch) and
``Back_Content/Batch_NN/`` before that. Each ``<uuid>.meca`` is a ZIP (Manuscript Exchange
Common Approach) holding::

    manifest.xml              <manifest><item type="article"><instance media-type="application/xml"
                                   href="content/446694.xml"/></item>
                              <item type="pdf"><instance href="content/446694.pdf" …/></item>
                              <item type="figure"><instance href="content/446694v1_fig1.tif" …/></item> …
    content/<id>.xml          the JATS XML (bioRxiv's own markup of the paper)
    content/<id>.pdf          the PDF
    content/<id>…f1.tif/.jpg  the authors' figure files, named by the XML's graphic hrefs

This is the only place the original figure files are published, so a package's paper goes
down the JATS path with real images instead of crops from the PDF. Figure files are kept
under their base names, beside the XML, exactly as PMC packages are (the JATS parser
resolves an href against the files in the XML's folder: ``parsers.jats_images``).

A package is hostile input: members with unsafe names (``..``, absolute), links, devices,
encrypted or damaged members, members over the size cap, and compression ratios of zip
bombs are refused with a reason; a package whose members together exceed the total cap, or
that has no manifest or no JATS, fails as a whole with that reason.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from figalign.errors import BadInputError
from figalign.parsers.jats_images import IMAGE_EXTS
from figalign.parsers.latex_archive import _skip_reason, _zip_is_link  # the unpacker's member rules
from figalign.parsers.xmlsafe import local_name, parse_xml_bytes

MANIFEST = "manifest.xml"
MAX_MEMBERS = 5000
MAX_RATIO = 200  # uncompressed / compressed: far above any TIFF or PDF, typical of a zip bomb
RATIO_FLOOR = 1 << 20  # small members may compress as well as they like
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
_MONTH = re.compile(r"^([A-Za-z]+)_(\d{4})$")


@dataclass(frozen=True)
class ManifestItem:
    type: str
    media_type: str
    href: str


@dataclass(frozen=True)
class PackageFile:
    """One file taken from a package: its role, base name, path in the zip and bytes."""

    role: str  # jats | pdf | media
    name: str
    href: str
    data: bytes


@dataclass
class Package:
    jats: PackageFile
    pdf: PackageFile | None = None
    media: list[PackageFile] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (member, reason)


@dataclass(frozen=True)
class JatsMeta:
    doi: str
    version: str
    title: str | None
    licence: str | None
    licence_url: str | None


def month_folder(month: str) -> str:
    """``November_2026`` (or ``nov_2026``) → ``Current_Content/November_2026``."""
    match = _MONTH.match(month.strip())
    names = {m.lower(): m for m in MONTHS} | {m[:3].lower(): m for m in MONTHS}
    if not match or match.group(1).lower() not in names:
        raise ValueError(f"not a Month_Year folder name: {month!r} (e.g. November_2026)")
    return f"Current_Content/{names[match.group(1).lower()]}_{match.group(2)}"


def month_range(first: str, last: str) -> list[str]:
    """The ``Current_Content`` folders of ``first`` … ``last`` (Month_Year, inclusive)."""
    def index(month: str) -> int:
        name, year = month_folder(month).split("/", 1)[1].split("_")
        return int(year) * 12 + MONTHS.index(name)

    lo, hi = index(first), index(last)
    if hi < lo:
        raise ValueError(f"{last} is before {first}")
    return [f"Current_Content/{MONTHS[i % 12]}_{i // 12}" for i in range(lo, hi + 1)]


def parse_manifest(data: bytes) -> list[ManifestItem]:
    """Every ``<item>``'s ``<instance>``s (any namespace: MECA uses manuscriptexchange.org's)."""
    root = parse_xml_bytes(data, source=MANIFEST)
    if local_name(root) != "manifest":
        raise BadInputError(f"{MANIFEST}: root element is <{local_name(root)}>, not <manifest>")
    items = []
    for item in root.iter():
        if not isinstance(item.tag, str) or local_name(item) != "item":
            continue
        for inst in item.iter():
            if isinstance(inst.tag, str) and local_name(inst) == "instance" and inst.get("href"):
                items.append(ManifestItem((item.get("type") or "").lower(), (inst.get("media-type") or "").lower(),
                                          inst.get("href").replace("\\", "/")))
    return items


def _choose(items: list[ManifestItem]) -> tuple[ManifestItem | None, ManifestItem | None, list[ManifestItem]]:
    """(JATS, PDF, figure files) named by the manifest."""
    def ext(item: ManifestItem) -> str:
        return PurePosixPath(item.href).suffix.lower()

    xml = [i for i in items if ext(i) == ".xml" and PurePosixPath(i.href).name != MANIFEST]
    jats = next((i for i in xml if i.type == "article"), None) or next(iter(xml), None)
    pdfs = [i for i in items if ext(i) == ".pdf" or i.media_type == "application/pdf"]
    pdf = next((i for i in pdfs if i.type in ("pdf", "article", "manuscript")), None)
    media = [i for i in items if ext(i) in IMAGE_EXTS and "supplement" not in i.type]
    return jats, pdf, media


class _Reader:
    """Reads members of one zip within the per-member and per-package caps."""

    def __init__(self, zf: zipfile.ZipFile, max_member_bytes: int, max_total_bytes: int):
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise BadInputError(f"package has {len(infos)} members, over {MAX_MEMBERS} (zip bomb?)")
        self.zf = zf
        self.by_name = {i.filename: i for i in infos}
        self.max_member = max_member_bytes
        self.max_total = max_total_bytes
        self.total = 0

    def problem(self, href: str) -> str | None:
        reason = _skip_reason(href)
        if reason:
            return reason
        info = self.by_name.get(href)
        if info is None:
            return "listed in the manifest but not in the package"
        if _zip_is_link(info):
            return "link or device"
        if info.flag_bits & 0x1:
            return "encrypted"
        if info.file_size > self.max_member:
            return f"member of {info.file_size} bytes is over the cap of {self.max_member}"
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            return f"compression ratio over {MAX_RATIO}:1 (zip bomb?)"
        return None

    def read(self, href: str) -> bytes:
        """The member's bytes; ``BadInputError`` with the reason when it is refused."""
        problem = self.problem(href)
        if problem:
            raise BadInputError(problem)
        try:
            info = self.by_name[href]
            with self.zf.open(info) as src:  # yields at most the header's size (then checks the CRC)
                data = src.read(min(info.file_size, self.max_member) + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise BadInputError(f"damaged member: {exc}") from exc
        if len(data) > self.max_member:  # the header lied about the size
            raise BadInputError(f"member over the cap of {self.max_member} bytes")
        self.total += len(data)
        if self.total > self.max_total:
            raise _PackageTooLarge(f"package unpacks to more than {self.max_total} bytes (zip bomb?)")
        return data


class _PackageTooLarge(BadInputError):
    """The package as a whole is over its cap: the package fails, not one member."""


def read_package(zf: zipfile.ZipFile, *, max_member_bytes: int, max_total_bytes: int) -> Package:
    """The JATS, PDF and figure files a MECA package's manifest names, each within the caps."""
    reader = _Reader(zf, max_member_bytes, max_total_bytes)
    if MANIFEST not in reader.by_name:
        raise BadInputError("not a MECA package: no manifest.xml")
    jats_item, pdf_item, media_items = _choose(parse_manifest(reader.read(MANIFEST)))
    if jats_item is None:
        raise BadInputError("the manifest names no JATS XML (article item)")
    try:
        jats = PackageFile("jats", _base(jats_item.href), jats_item.href, reader.read(jats_item.href))
    except _PackageTooLarge:
        raise
    except BadInputError as exc:
        raise BadInputError(f"JATS {jats_item.href!r} refused: {exc}") from exc
    package = Package(jats)
    if not media_items:  # a manifest that lists no figures: the image files beside the JATS
        folder = PurePosixPath(jats.href).parent
        media_items = [ManifestItem("figure", "", name) for name in sorted(reader.by_name)
                       if PurePosixPath(name).parent == folder and PurePosixPath(name).suffix.lower() in IMAGE_EXTS]
    if pdf_item is not None:
        package.pdf = _take(reader, package, "pdf", pdf_item.href)
    seen = {jats.name} | ({package.pdf.name} if package.pdf else set())
    for item in media_items:
        name = _base(item.href)
        if name in seen:
            package.refused.append((item.href, "duplicate file name in the package"))
            continue
        if (taken := _take(reader, package, "media", item.href)) is not None:
            package.media.append(taken)
            seen.add(name)
    return package


def _take(reader: _Reader, package: Package, role: str, href: str) -> PackageFile | None:
    try:
        return PackageFile(role, _base(href), href, reader.read(href))
    except _PackageTooLarge:
        raise
    except BadInputError as exc:
        package.refused.append((href, str(exc)))
        return None


def _base(href: str) -> str:
    return PurePosixPath(href).name


def jats_meta(data: bytes) -> JatsMeta:
    """DOI, version, title and licence of a package's JATS (bioRxiv: ``<article-version>1.4``
    is version 4 of the paper). A JATS without a DOI cannot be keyed: ``BadInputError``."""
    from figalign.parsers import jats  # the JATS parser's own readers of DOI, title and licence

    root = parse_xml_bytes(data, source="MECA JATS")
    doi = jats._doi(root)
    if not doi:
        raise BadInputError("the JATS names no DOI (article-id pub-id-type=doi)")
    version = "1"
    for el in root.iter():
        if isinstance(el.tag, str) and local_name(el) == "article-version" and (el.text or "").strip():
            text = el.text.strip()
            version = text.split(".", 1)[1] if "." in text else text
            version = str(int(version)) if version.isdigit() else "1"
            break
    licence, url = jats._licence(root)
    return JatsMeta(doi.strip(), version, jats._title(root), licence, url)
