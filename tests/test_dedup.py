"""Deduplication: the multi-index agrees with brute force, finds re-encoded and resized
copies of real figures, and keeps different figures apart."""

from __future__ import annotations

import itertools
import random

import pytest

from figalign.dedup import DedupIndex, cluster, hamming, image_hashes
from tests.figure_store import corpus_file, reencode_jpeg_png, resized, synthetic_figure

CORPUS = [("jats", "plos_pone.0000010", f"pone.0000010.g00{i}.png") for i in (1, 2, 3)] + [
    ("pdf", f"futoma2017improved-Figure{i}-1.png") for i in range(1, 6)]


def _flip(value: int, bits: int, rnd: random.Random) -> int:
    for b in rnd.sample(range(64), bits):
        value ^= 1 << b
    return value


@pytest.mark.parametrize("threshold", [3, 6, 10])
def test_multi_index_equals_brute_force(threshold):
    rnd = random.Random(threshold)
    stored = [rnd.getrandbits(64) for _ in range(3000)]
    index = DedupIndex(threshold)
    for i, v in enumerate(stored):
        index.add(i, f"{v:016x}", None)
    queries = [_flip(rnd.choice(stored), rnd.randrange(0, threshold + 3), rnd) for _ in range(300)]
    for q in queries:
        expected = sorted(i for i, v in enumerate(stored) if hamming(q, v) <= threshold)
        got = [m.figure_id for m in index.matches(f"{q:016x}", None)]
        assert got == expected


def test_index_remove_and_below_id():
    index = DedupIndex(6)
    index.add(5, "00000000000000ff", "sha-a")
    index.add(9, "00000000000000fe", None)
    assert [m.figure_id for m in index.matches("00000000000000ff", None)] == [5, 9]
    assert [m.figure_id for m in index.matches("00000000000000ff", None, below_id=9)] == [5]
    assert index.matches(None, "sha-a")[0].how == "exact"
    index.remove(5)
    assert [m.figure_id for m in index.matches("00000000000000ff", "sha-a")] == [9]
    assert 5 not in index and len(index) == 1


def _copies(data: bytes) -> dict[str, bytes]:
    return {"jpeg-q80": reencode_jpeg_png(data, 80), "jpeg-q60": reencode_jpeg_png(data, 60),
            "half": resized(data, 0.5), "0.75+jpeg": reencode_jpeg_png(resized(data, 0.75), 85)}


@pytest.mark.parametrize("parts", CORPUS, ids=lambda p: p[-1])
def test_reencoded_and_resized_corpus_copies_match(parts):
    data = corpus_file(*parts).read_bytes()
    phash, sha = image_hashes(data)
    index = DedupIndex()
    index.add(1, phash, sha)
    for name, copy in _copies(data).items():
        found = index.matches(*image_hashes(copy), below_id=2)
        assert [m.figure_id for m in found] == [1], name


def test_different_corpus_figures_are_not_merged():
    hashes = [image_hashes(corpus_file(*p).read_bytes()) for p in CORPUS]
    result = dict(cluster([(i, ph, sha) for i, (ph, sha) in enumerate(hashes, 1)]))
    assert all(match is None for match in result.values())
    closest = min(hamming(int(a[0], 16), int(b[0], 16)) for a, b in itertools.combinations(hashes, 2))
    assert closest > DedupIndex().max_distance * 2  # a wide margin, not a near miss


def test_same_pixels_other_encoding_is_exact():
    from PIL import Image
    import io

    data = synthetic_figure(3)
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buf, format="PNG", compress_level=1)
    assert buf.getvalue() != data
    rows = [(1, *image_hashes(data)), (2, *image_hashes(buf.getvalue())), (3, *image_hashes(synthetic_figure(4)))]
    result = dict(cluster(rows))
    assert result[1] is None and result[3] is None
    assert result[2].figure_id == 1 and result[2].how == "exact"


def test_first_seen_is_kept_whatever_the_input_order():
    data = synthetic_figure(5)
    rows = [(7, *image_hashes(resized(data, 0.5))), (3, *image_hashes(data)),
            (5, *image_hashes(reencode_jpeg_png(data)))]
    result = dict(cluster(rows))
    assert result[3] is None
    assert result[5].figure_id == 3 and result[7].figure_id == 3


def test_synthetic_figures_stay_apart():
    rows = [(i, *image_hashes(synthetic_figure(i))) for i in range(1, 30)]
    assert all(m is None for _, m in cluster(rows))
