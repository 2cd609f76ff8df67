"""Split gzipped tars (``archives``) and the S1-MMAlign placement rules, on hand-made cases."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile

import pytest

from figalign.errors import ConfigError
from figalign.export.archives import SplitWriter, TarGz, part_suffix
from figalign.export.common import Sample
from figalign.export.options import ExportOptions
from figalign.export.s1mmalign import arxiv_yymm, full_year, placement


def _members(n: int) -> list[tuple[str, bytes]]:
    return [(f"images/2401/2401.0000{i}/fig{i:03d}.png", os.urandom(3000 + 700 * i)) for i in range(n)]


@pytest.mark.parametrize("level", [0, 1, 6])
def test_split_targz_joins_to_a_tar_that_tarfile_and_tar_read(tmp_path, level):
    members = _members(6)
    tar = TarGz(tmp_path, "arxiv/images_2024.tar.gz", max_part_bytes=5000, level=level)
    for name, data in members:
        tar.add(name, data, 1_700_000_000)
        tar.samples += 1
    parts = tar.close()
    assert [p.path.rsplit(".", 1)[1] for p in parts] == [part_suffix(i) for i in range(len(parts))]
    assert len(parts) > 3 and all(p.bytes == 5000 for p in parts[:-1]) and 0 < parts[-1].bytes <= 5000
    assert [p.samples for p in parts] == [6] + [0] * (len(parts) - 1)
    joined = b"".join((tmp_path / p.path).read_bytes() for p in parts)
    with tarfile.open(fileobj=io.BytesIO(joined), mode="r:gz") as tf:
        assert [(m.name, tf.extractfile(m).read(), m.mtime) for m in tf.getmembers()] == [
            (n, d, 1_700_000_000) for n, d in members]
    assert len(gzip.decompress(joined)) % tarfile.RECORDSIZE == 0
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "-xzf", "-", "-C", str(out)], input=joined, check=True)
    assert (out / members[-1][0]).read_bytes() == members[-1][1]


def test_one_piece_keeps_the_plain_name(tmp_path):
    tar = TarGz(tmp_path, "pmc/images.tar.gz", max_part_bytes=1 << 20)
    tar.add("images/PMC1/fig001.png", b"png bytes")
    (part,) = tar.close()
    assert part.path == "pmc/images.tar.gz" and sorted(os.listdir(tmp_path / "pmc")) == ["images.tar.gz"]
    with tarfile.open(tmp_path / part.path) as tf:
        assert tf.extractfile("images/PMC1/fig001.png").read() == b"png bytes"


def test_split_writer_cuts_at_exact_offsets_and_abort_removes_pieces(tmp_path):
    w = SplitWriter(tmp_path, "a.bin", 4)
    w.write(b"0123456789")
    w.write(b"ab")
    parts = w.close()
    assert [(r, n) for r, _, n in parts] == [("a.bin.partaa", 4), ("a.bin.partab", 4), ("a.bin.partac", 4)]
    assert b"".join((tmp_path / r).read_bytes() for r, _, _ in parts) == b"0123456789ab"
    w = SplitWriter(tmp_path, "b.bin", 4)
    w.write(b"0123456789")
    w.abort()
    assert not list(tmp_path.glob("b.bin*"))
    with pytest.raises(ValueError):
        part_suffix(676)
    assert part_suffix(27) == "partbb"


def test_export_options_reject_bad_archive_settings():
    with pytest.raises(ConfigError):
        ExportOptions(gzip_level=10)
    with pytest.raises(ConfigError):
        ExportOptions(max_tar_bytes=0)


@pytest.mark.parametrize("ident,yymm", [("2401.00001", "2401"), ("0704.0001", "0704"), ("hep-th/9901001", "9901"),
                                        ("math.GT/0309136", "0309"), ("PMC123", None), (None, None)])
def test_arxiv_yymm(ident, yymm):
    assert arxiv_yymm(ident) == yymm


def test_full_year_and_placement():
    assert (full_year("91"), full_year("99"), full_year("07"), full_year("24")) == ("1991", "1999", "2007", "2024")
    meta = {"external_id": "hep-th/9901001", "figure_key": "k", "version": "1"}
    place = placement(Sample("k", "arxiv", "/x", "png", None, meta, ordinal=12))
    assert (place.folder, place.jsonl, place.archive, place.image_path) == (
        "arxiv", "jsonl/99_recaption.jsonl", "images_1999.tar.gz", "images/9901/hep-th9901001/fig012.png")
    place = placement(Sample("k", "local", "/x", "jpg", None, {"external_id": "my paper/ü", "figure_key": "k"},
                             ordinal=3))
    assert (place.folder, place.jsonl, place.archive, place.image_path) == (
        "local", "jsonl/local_recaption.jsonl", "images.tar.gz", "images/my_paper__/fig003.jpg")


def test_stored_deflate_blocks_at_their_limits(tmp_path):
    """Level 0 writes stored blocks itself: members over one block (65,535 bytes), many small
    pieces gathered past a block, and an empty archive all decompress exactly."""
    members = [("big.bin", os.urandom(200_000))] + [(f"s{i}.bin", os.urandom(i * 37)) for i in range(120)]
    for name, items in (("full", members), ("empty", [])):
        tar = TarGz(tmp_path, f"{name}.tar.gz", max_part_bytes=1 << 30, level=0)
        for member, data in items:
            tar.add(member, data)
        (part,) = tar.close()
        raw = (tmp_path / part.path).read_bytes()
        subprocess.run(["gzip", "-t"], input=raw, check=True)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tf:
            assert [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()] == items


def test_a_smaller_re_export_leaves_no_stale_pieces(tmp_path):
    """Pieces of an earlier, larger archive of the same name would be joined by ``cat …part*``."""
    big = TarGz(tmp_path, "images.tar.gz", max_part_bytes=12_000)
    big.add("images/a/fig001.png", os.urandom(40_000))
    assert len(big.close()) > 2
    small = TarGz(tmp_path, "images.tar.gz", max_part_bytes=12_000)
    small.add("images/a/fig001.png", b"tiny")
    (part,) = small.close()
    assert sorted(os.listdir(tmp_path)) == ["images.tar.gz"] and part.path == "images.tar.gz"
    again = TarGz(tmp_path, "images.tar.gz", max_part_bytes=12_000)
    again.add("images/a/fig001.png", os.urandom(14_000))
    names = [p.path for p in again.close()]
    assert sorted(os.listdir(tmp_path)) == sorted(names) and "images.tar.gz" not in names
