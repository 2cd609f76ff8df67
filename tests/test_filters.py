"""Filters on real corpus figures and on images made to fail exactly one rule."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from figalign.errors import ConfigError
from figalign.filters import (
    FilterPolicy,
    caption_reason,
    content_reason,
    image_reason,
    is_policy_reason,
    policy_reason,
    table_reason,
)
from tests.figure_store import corpus_file, png_bytes, synthetic_figure

POLICY = FilterPolicy()
CORPUS_FIGURES = [("jats", "plos_pone.0000010", f"pone.0000010.g00{i}.png") for i in (1, 2, 3)] + [
    ("pdf", f"futoma2017improved-Figure{i}-1.png") for i in range(1, 6)]


def noise(w: int, h: int, lo: int = 0, hi: int = 256, seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(lo, hi, size=(h, w, 3), dtype=np.uint8)
    return png_bytes(Image.fromarray(arr))


@pytest.mark.parametrize("parts", CORPUS_FIGURES, ids=lambda p: p[-1])
def test_real_corpus_figures_pass(parts):
    data = corpus_file(*parts).read_bytes()
    reason, facts = image_reason(data, POLICY)
    assert reason is None, (parts, facts)
    assert facts.ink_fraction > POLICY.blank_min_ink


def test_real_figure_truncated_is_undecodable():
    data = corpus_file("pdf", "futoma2017improved-Figure1-1.png").read_bytes()
    assert image_reason(data[: len(data) // 2], POLICY)[0] == "undecodable-image"


def test_real_figure_under_5kb_when_shrunk():
    img = Image.open(io.BytesIO(corpus_file("jats", "plos_pone.0000010", "pone.0000010.g001.png").read_bytes()))
    small = png_bytes(img.resize((60, 34)))
    assert len(small) < 5 * 1024
    assert image_reason(small, POLICY)[0] == "image-under-5kb"


def test_each_image_rule_gives_its_reason():
    assert image_reason(None, POLICY)[0] == "no-image"
    assert image_reason(b"x" * 100, POLICY)[0] == "image-under-5kb"
    assert image_reason(b"\x89PNG\r\n\x1a\n" + b"\0" * 6000, POLICY)[0] == "undecodable-image"
    assert image_reason(noise(300, 40), POLICY)[0] == "small-side<64px"
    assert image_reason(noise(1200, 100), POLICY)[0] == "aspect-ratio>8"
    assert image_reason(noise(600, 400, 254, 256), POLICY)[0] == "near-blank"
    assert image_reason(synthetic_figure(1), POLICY)[0] is None


def test_thin_line_plot_is_not_blank():
    """A sparse line plot is mostly white but is a figure."""
    from PIL import ImageDraw

    img = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(img)
    draw.line([(50, 550), (750, 550)], fill="black")
    draw.line([(50, 50), (50, 550)], fill="black")
    draw.line([(50 + i * 7, 300 + int(200 * np.sin(i / 10))) for i in range(100)], fill="blue")
    rng = np.random.default_rng(0)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-1, 2, size=(600, 800, 3))
    data = png_bytes(Image.fromarray(arr.clip(0, 255).astype(np.uint8)))
    assert image_reason(data, POLICY)[0] is None


def test_thresholds_are_configurable():
    data = noise(300, 40)
    assert image_reason(data, FilterPolicy(min_side=32))[0] is None
    assert image_reason(noise(1200, 100), FilterPolicy(max_aspect=20))[0] is None
    tiny = FilterPolicy(min_file_bytes=10 * 1024)
    assert image_reason(noise(40, 40), tiny)[0] == "image-under-10kb"


def test_tables_and_captions():
    assert table_reason("table", "Results of the survey.", POLICY) == "table"
    assert table_reason("figure", "Table 2. Demographics.", POLICY) == "table"
    assert table_reason("figure", "Tab. IV: parameters", POLICY) == "table"
    assert table_reason("figure", "Tableau of the results over time", POLICY) is None
    assert table_reason("table", "x", FilterPolicy(drop_tables=False)) is None
    assert caption_reason("   ", POLICY) == "caption-empty"
    assert caption_reason(None, POLICY) == "caption-empty"
    assert caption_reason("Fig. 1", POLICY) == "caption-too-short"
    assert caption_reason("Figure 1. Firing rate over time.", POLICY) is None
    assert content_reason(synthetic_figure(2), "figure", "Fig 1", POLICY)[0] == "caption-too-short"


def test_licence_allow_list_is_opt_in():
    assert policy_reason("cc-by", False, POLICY) is None
    assert policy_reason("cc0", False, POLICY) is None
    assert policy_reason("cc-by-nc", False, POLICY) == "licence-not-exportable:cc-by-nc"
    assert policy_reason("arxiv-nonexclusive", False, POLICY) == "licence-not-exportable:arxiv-nonexclusive"
    assert policy_reason(None, False, POLICY) == "licence-not-exportable:unknown"
    assert policy_reason("cc-by", True, POLICY) == "retracted"
    nc = POLICY.with_licences(["cc-by-nc"])
    assert policy_reason("cc-by-nc", False, nc) is None
    assert policy_reason("cc-by-nd", False, nc) == "licence-not-exportable:cc-by-nd"
    assert is_policy_reason("retracted") and is_policy_reason("licence-not-exportable:cc-by-nd")
    assert not is_policy_reason("near-blank") and not is_policy_reason(None)
    with pytest.raises(ConfigError):
        POLICY.with_licences(["cc-by-banana"])


def test_policy_from_env():
    policy = FilterPolicy.from_env({"FIGALIGN_EXPORT_LICENCES": "cc-by-nc, arxiv-nonexclusive"})
    assert {"cc-by-nc", "arxiv-nonexclusive", "cc-by"} <= policy.licences
    assert FilterPolicy.from_env({}) == FilterPolicy()
