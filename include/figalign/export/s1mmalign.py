"""S1-MMAlign layout: what a reader of the published dataset expects, file for file.

Per source a folder (``arxiv/``, ``pmc/``, ``local/`` …) holding

* ``jsonl/<source>_recaption.jsonl`` — arXiv: one file per year, ``jsonl/YY_recaption.jsonl``;
* ``images.tar.gz`` — arXiv: ``images_YYYY.tar.gz`` per year — gzipped tars, cut into
  ``.partaa``, ``.partab`` … past ``max_tar_bytes`` (``archives``).

Extracting the archives inside the source folder (``cat images_2024.tar.gz.part* | tar
-xzf -``) puts every record's image at its ``image_path``: arXiv style
``images/<YYMM>/<id>/figNNN.png`` (other sources ``images/<id>/figNNN.png``), ``NNN`` the
figure's rank among its paper's figures in the store (stable across incremental exports).

Records: the paper's fields first (``doi``, ``arxiv_id``, ``title``, ``image_path``,
``caption``, ``recaption``, ``categories``), ``categories`` a space-separated string as
published (arXiv categories; other sources, which have none, their discipline), then
ours (discipline, licence, contexts, metrics, …; ``image_tar`` names the archive in the
source folder). Only recaptioned samples reach this writer unless the export asks for
``include_unrecaptioned`` (the selection in ``figalign.export.selection`` drops the rest
with a reason).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from figalign.export.archives import TarGz
from figalign.export.common import FIELDS, Sample, json_bytes
from figalign.export.manifest import HashingWriter, ShardInfo
from figalign.export.options import ExportOptions, WriteResult
from figalign.storage import ArtifactStore

PAPER_FIELDS = ("doi", "arxiv_id", "title", "image_path", "caption", "recaption", "categories")
ORDER = PAPER_FIELDS + tuple(k for k in FIELDS if k not in PAPER_FIELDS)
_NEW_ARXIV = re.compile(r"^(\d{2})(\d{2})\.\d{4,5}$")
_OLD_ARXIV = re.compile(r"^[a-z\-]+(?:\.[A-Z]{2})?/(\d{2})(\d{2})\d{3}$")


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _safe(name: str) -> str:
    """ASCII letters, digits, ``-``, ``_`` and ``.`` kept, every other character ``_``."""
    return _UNSAFE.sub("_", name).strip(".") or "unknown"


def arxiv_yymm(external_id: str | None) -> str | None:
    """``YYMM`` of an arXiv id (``2401.00001``, ``hep-th/9901001``); None for anything else."""
    match = _NEW_ARXIV.match(external_id or "") or _OLD_ARXIV.match(external_id or "")
    return match.group(1) + match.group(2) if match else None


def full_year(yy: str) -> str:
    """arXiv ids began in 1991: ``91``–``99`` are the 1990s, the rest this century."""
    return ("19" if int(yy) >= 91 else "20") + yy


@dataclass(frozen=True)
class Placement:
    """Where one sample goes: its source folder, JSONL file, archive and member name."""

    folder: str
    jsonl: str
    archive: str
    image_path: str


def placement(sample: Sample) -> Placement:
    meta = sample.meta
    name = f"fig{sample.ordinal:03d}.{sample.image_ext}"
    if sample.source == "arxiv":
        yymm = arxiv_yymm(meta["external_id"])
        ident = _safe((meta["external_id"] or "unknown").replace("/", ""))
        if yymm is None:
            return Placement("arxiv", "jsonl/unknown_recaption.jsonl", "images_unknown.tar.gz",
                             f"images/unknown/{ident}/{name}")
        return Placement("arxiv", f"jsonl/{yymm[:2]}_recaption.jsonl", f"images_{full_year(yymm[:2])}.tar.gz",
                         f"images/{yymm}/{ident}/{name}")
    folder = _safe(sample.source or "unknown")
    ident = _safe(meta["external_id"] or meta["figure_key"])[:120]
    return Placement(folder, f"jsonl/{folder}_recaption.jsonl", "images.tar.gz", f"images/{ident}/{name}")


def categories_text(meta: dict) -> str:
    """The published ``categories`` type: one string (``"cs.CV cs.LG"``); the discipline where
    the source gives no categories (PMC, local papers); empty when neither is known."""
    return " ".join(meta["categories"] or ()) or (meta["discipline"] or "")


def record(sample: Sample, image_path: str, image_tar: str) -> dict:
    """The JSONL record: the paper's fields first, then ours in the shared order."""
    meta = sample.meta
    out = {k: meta[k] for k in ORDER}
    out["image_path"], out["image_tar"] = image_path, image_tar  # keys exist: their places are kept
    out["categories"] = categories_text(meta)
    return out


class _Release:
    """The open JSONL files and archives of every source folder; closed in name order."""

    def __init__(self, out_dir: Path, opts: ExportOptions):
        self.out_dir, self.opts = out_dir, opts
        self.jsonl: dict[str, HashingWriter] = {}
        self.jsonl_samples: dict[str, int] = {}
        self.archives: dict[str, TarGz] = {}
        self.used: set[str] = set()

    def _jsonl(self, rel: str) -> HashingWriter:
        out = self.jsonl.get(rel)
        if out is None:
            (self.out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            out = self.jsonl[rel] = HashingWriter(self.out_dir / rel)
            self.jsonl_samples[rel] = 0
        return out

    def _archive(self, rel: str) -> TarGz:
        tar = self.archives.get(rel)
        if tar is None:
            tar = self.archives[rel] = TarGz(self.out_dir, rel, max_part_bytes=self.opts.max_tar_bytes,
                                             level=self.opts.gzip_level)
        return tar

    def member(self, place: Placement, sample: Sample) -> str:
        """``image_path``, made unique: two versions of one arXiv paper get the version added."""
        path = place.image_path
        if f"{place.folder}/{path}" in self.used:
            head, _, tail = path.rpartition("/")
            path = f"{head}{sample.meta['version'] or ''}_{sample.meta['figure_id']}/{tail}"
        self.used.add(f"{place.folder}/{path}")
        return path

    def add(self, sample: Sample, store: ArtifactStore) -> None:
        place = placement(sample)
        image = sample.read_image(store)
        path = self.member(place, sample)
        tar = self._archive(f"{place.folder}/{place.archive}")
        tar.add(path, image, sample.mtime)
        tar.samples += 1
        rel = f"{place.folder}/{place.jsonl}"
        self._jsonl(rel).write(json_bytes(record(sample, path, place.archive)) + b"\n")
        self.jsonl_samples[rel] += 1

    def close(self) -> tuple[list[ShardInfo], list[ShardInfo]]:
        files = []
        for rel in sorted(self.jsonl):
            sha, size = self.jsonl[rel].close()
            files.append(ShardInfo(rel, sha, self.jsonl_samples[rel], size))
        shards = [part for rel in sorted(self.archives) for part in self.archives[rel].close()]
        return shards, files

    def abort(self) -> None:
        for out in self.jsonl.values():
            out.abort()
        for tar in self.archives.values():
            tar.abort()


def write(samples: Iterable[Sample], out_dir: Path, store: ArtifactStore, opts: ExportOptions) -> WriteResult:
    release = _Release(out_dir, opts)
    count = 0
    try:
        for sample in samples:
            release.add(sample, store)
            count += 1
        shards, files = release.close()
    except BaseException:
        release.abort()
        raise
    return WriteResult(count, shards, files)
