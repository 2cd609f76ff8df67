"""Duplicate figures across the whole store: exact pixels and near-identical images.

*Exact*: ``pixel_sha256`` (sha256 of decoded RGB pixels) is equal for the same image in
any encoding. *Near*: the 64-bit perceptual hash (``imagehash.phash``) of a re-encoded,
resized or lightly recompressed copy lies within a few bits of the original's, while
different scientific figures measured on the shared corpus lie 24+ bits apart.

Comparing a hash against millions one by one is too slow, so near-duplicates are found
with multi-index hashing (Norouzi et al.): the hash is split into ``BANDS`` 16-bit bands,
each band indexed in a dict. By pigeonhole, two hashes within Hamming distance ``d``
agree within ``d // BANDS`` bits on at least one band, so a query probes every band value
within that radius (1 + 16 lookups per band for d ≤ 7) and only checks the few hashes
found there. ``DedupIndex`` does this in process, for offline clustering (``cluster``).

The filter stage looks up the store itself (``figalign.store.duplicates``): each figure row
carries its hash as a signed 64-bit integer and cut into ``STORE_BANDS`` bands (22, 21, 21
bits), each band indexed. Three bands rather than four, because at ten million figures a
16-bit band value is shared by ~150 figures and a 21-bit one by ~5: a probe reads a few
candidates instead of hundreds (numbers in docs/benchmarks.md). ``store_probes`` says which
band values to look up: when ``d`` errors spread over three bands, some band holds at most
``d // 3`` of them, and (Norouzi et al.'s refinement) only the first ``d % 3 + 1`` bands need
that radius; the others need one less.

The first seen (lowest figure id) is kept; a duplicate links to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import combinations

BANDS = 4
BAND_BITS = 64 // BANDS
BAND_MASK = (1 << BAND_BITS) - 1


def phash_int(value: str | None) -> int | None:
    """The 16-hex-digit pHash as an int; ``None`` for missing or malformed hashes."""
    if not value or len(value) != 16:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def bands(value: int) -> list[int]:
    return [(value >> (i * BAND_BITS)) & BAND_MASK for i in range(BANDS)]


def _flip_masks(radius: int, width: int = BAND_BITS) -> list[int]:
    """Every ``width``-bit mask with at most ``radius`` bits set (0 included)."""
    masks = [0]
    for r in range(1, radius + 1):
        for bits in combinations(range(width), r):
            masks.append(sum(1 << b for b in bits))
    return masks


# The store's bands: (shift, width), high bits first; widths sum to 64.
STORE_BANDS = ((42, 22), (21, 21), (0, 21))


def signed64(value: int) -> int:
    """An unsigned 64-bit value as the signed integer a BIGINT column holds (same bits)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def store_bands(value: int) -> list[int]:
    """The store's band values of an unsigned (or signed) 64-bit hash."""
    value &= (1 << 64) - 1
    return [(value >> shift) & ((1 << width) - 1) for shift, width in STORE_BANDS]


def phash_columns(phash: str | None) -> dict[str, int | None]:
    """The figure columns derived from ``phash`` (``phash_bits``, ``phash_b0..2``): write them
    with it, so the store's near-duplicate index sees the figure."""
    value = phash_int(phash)
    if value is None:
        return {"phash_bits": None, **{f"phash_b{i}": None for i in range(len(STORE_BANDS))}}
    return {"phash_bits": signed64(value), **{f"phash_b{i}": b for i, b in enumerate(store_bands(value))}}


def band_radii(max_distance: int) -> list[int]:
    """Per store band, the radius to probe (-1: skip the band) so that any hash within
    ``max_distance`` shares a probed value: if every band ``i`` held more than its radius,
    the errors would add up to more than ``max_distance``."""
    m = len(STORE_BANDS)
    r, extra = divmod(max_distance, m)
    return [r if i <= extra else r - 1 for i in range(m)]


def store_probes(max_distance: int) -> list[list[int]]:
    """Per store band, the XOR masks to probe a hash's band value with."""
    return [_flip_masks(radius, width) if radius >= 0 else []
            for radius, (_shift, width) in zip(band_radii(max_distance), STORE_BANDS)]


@dataclass(frozen=True)
class Match:
    """A figure an image duplicates, and how: ``exact`` or ``near`` with its distance."""

    figure_id: int
    how: str
    distance: int


class DedupIndex:
    """Exact (pixel sha) and near (pHash multi-index) lookup of kept figures by id."""

    def __init__(self, max_distance: int = 6):
        self.max_distance = max_distance
        self._masks = _flip_masks(max_distance // BANDS)
        self._bands: list[dict[int, set[int]]] = [defaultdict(set) for _ in range(BANDS)]
        self._by_sha: dict[str, set[int]] = defaultdict(set)
        self._entries: dict[int, tuple[int | None, str | None]] = {}
        self.max_id = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, figure_id: int) -> bool:
        return figure_id in self._entries

    def add(self, figure_id: int, phash: str | None, pixel_sha: str | None) -> None:
        """Index a figure (re-adding replaces its previous hashes)."""
        self.remove(figure_id)
        value = phash_int(phash)
        self._entries[figure_id] = (value, pixel_sha)
        self.max_id = max(self.max_id, figure_id)
        if pixel_sha:
            self._by_sha[pixel_sha].add(figure_id)
        if value is not None:
            for i, band in enumerate(bands(value)):
                self._bands[i][band].add(figure_id)

    def remove(self, figure_id: int) -> None:
        entry = self._entries.pop(figure_id, None)
        if entry is None:
            return
        value, pixel_sha = entry
        if pixel_sha:
            self._discard(self._by_sha, pixel_sha, figure_id)
        if value is not None:
            for i, band in enumerate(bands(value)):
                self._discard(self._bands[i], band, figure_id)

    @staticmethod
    def _discard(table: dict, key, figure_id: int) -> None:
        ids = table.get(key)
        if ids is not None:
            ids.discard(figure_id)
            if not ids:
                del table[key]

    def near_candidates(self, value: int) -> set[int]:
        """Ids sharing a band within the probe radius: a superset of the true matches."""
        found: set[int] = set()
        for i, band in enumerate(bands(value)):
            table = self._bands[i]
            for mask in self._masks:
                ids = table.get(band ^ mask)
                if ids:
                    found |= ids
        return found

    def matches(self, phash: str | None, pixel_sha: str | None, *, below_id: int | None = None) -> list[Match]:
        """Indexed figures this image duplicates, lowest id first (exact before near)."""
        out: dict[int, Match] = {}
        for fid in self._by_sha.get(pixel_sha or "", ()):
            out[fid] = Match(fid, "exact", 0)
        value = phash_int(phash)
        if value is not None:
            for fid in self.near_candidates(value):
                other = self._entries[fid][0]
                if fid in out or other is None:
                    continue
                distance = hamming(value, other)
                if distance <= self.max_distance:
                    out[fid] = Match(fid, "near", distance)
        found = [m for m in out.values() if below_id is None or m.figure_id < below_id]
        return sorted(found, key=lambda m: m.figure_id)

    def extend(self, rows: Iterable[tuple[int, str | None, str | None]]) -> int:
        n = 0
        for figure_id, phash, pixel_sha in rows:
            self.add(figure_id, phash, pixel_sha)
            n += 1
        return n


def cluster(rows: Iterable[tuple[int, str | None, str | None]],
            max_distance: int = 6) -> Iterator[tuple[int, Match | None]]:
    """Offline dedup of (id, phash, pixel_sha) rows: yield (id, match or None), first seen kept.

    Rows are processed in id order; a duplicate never becomes a canonical, so every link
    points at a kept figure. Used by tests and benchmarks; the stage does the same per item.
    """
    index = DedupIndex(max_distance)
    for figure_id, phash, pixel_sha in sorted(rows, key=lambda r: r[0]):
        found = index.matches(phash, pixel_sha, below_id=figure_id)
        if found:
            yield figure_id, found[0]
        else:
            index.add(figure_id, phash, pixel_sha)
            yield figure_id, None


def image_hashes(data: bytes) -> tuple[str, str]:
    """(pHash, pixel sha256) of image bytes, computed as the parse stage does, for figures
    whose parser left them empty."""
    import hashlib
    import io

    import imagehash
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}".encode())
    digest.update(rgb.tobytes())
    return str(imagehash.phash(rgb)), digest.hexdigest()
