"""PDF crop helper on a real PDF (ACL 2020 SPECTER paper, CC BY 4.0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from figalign.errors import BadInputError
from figalign.parsers import crops

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tei"
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PDF = FIXTURES / "2020.acl-main.207.pdf"


@pytest.fixture()
def doc():
    import pymupdf

    with pymupdf.open(PDF) as d:
        yield d


def test_crop_size_follows_dpi(doc, tmp_path):
    img = crops.crop_region(doc, 0, [72, 72, 272, 172], tmp_path / "a.png", dpi=144, max_side=4096)
    assert (img.width, img.height) == (400, 200)
    assert Path(img.path).read_bytes()[:4] == b"\x89PNG"


def test_crop_capped_at_max_side(doc, tmp_path):
    page = doc[0].rect
    img = crops.crop_region(doc, 0, [0, 0, page.width, page.height], tmp_path / "b.png", dpi=300, max_side=500)
    assert max(img.width, img.height) == 500


def test_box_partly_off_page_is_clipped(doc, tmp_path):
    page = doc[0].rect
    img = crops.crop_region(doc, 0, [page.width - 72, 0, page.width + 500, 72], tmp_path / "c.png", dpi=72, max_side=4096)
    assert abs(img.width - 72) <= 1 and img.height == 72  # not 572 wide: clipped at the page edge


def test_page_beyond_pdf_is_bad_input(doc, tmp_path):
    with pytest.raises(BadInputError, match="outside the PDF"):
        crops.crop_region(doc, doc.page_count, [0, 0, 100, 100], tmp_path / "d.png", dpi=72, max_side=100)


@pytest.mark.parametrize("box", [[10, 10, 10, 50], [5000, 5000, 6000, 6000], [0, 0, float("nan"), 10], [50, 50, 10, 10], [1, 2, 3]])
def test_degenerate_boxes_are_bad_input(doc, tmp_path, box):
    with pytest.raises(BadInputError):
        crops.crop_region(doc, 0, box, tmp_path / "e.png", dpi=72, max_side=100)
    assert not (tmp_path / "e.png").exists()


def test_union_boxes_and_per_page():
    assert crops.union_boxes([[10, 20, 30, 40], [5, 25, 50, 35]]) == [5, 20, 50, 40]
    assert crops.boxes_by_page([(0, [1, 1, 2, 2]), (1, [0, 0, 5, 5]), (0, [3, 0, 4, 1])]) == {0: [1, 0, 4, 2], 1: [0, 0, 5, 5]}
    with pytest.raises(BadInputError):
        crops.union_boxes([])


@pytest.mark.skipif(not (SHARED / "corpus" / "grobid_tei" / "0046d83a.pdf").is_file(),
                    reason="shared corpus PDF ../shared/corpus/grobid_tei/0046d83a.pdf not present")
def test_graphic_above_caption_found_on_real_page():
    import pymupdf

    with pymupdf.open(SHARED / "corpus" / "grobid_tei" / "0046d83a.pdf") as d:
        # GROBID's box for "Fig. 2 M-waves ..." covers only the two caption lines on page 5
        caption = [62.70, 289.74, 62.70 + 469.58, 300.01 + 7.06]
        region = crops.graphic_near(d[4], caption)
        assert region is not None
        assert region[3] <= caption[1] + 0.01  # ends where the caption starts
        assert region[3] - region[1] > 150  # the plot itself (image block 95..283 pt)
        assert region[1] < 100
        # nothing graphic sits right below the caption on that page
        assert crops.graphic_near(d[4], caption, below=True) is None
