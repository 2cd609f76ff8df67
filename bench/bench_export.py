"""Export throughput against a plain tar of the same image bytes, measured in the same run.

Builds a throwaway store of N noise PNGs (incompressible, so sizes are realistic for
photographic panels) with captions, contexts, recaptions and metrics, then times:

* baseline: read each stored image and ``tarfile.addfile`` it into one plain tar;
* ``webdataset``, ``s1mmalign`` (gzipped, level 0, archives) and ``parquet`` (embedded
  images): the full ``run_export`` — store queries, JSON records, shards, checksums,
  manifest and card — each once with the default quality policy (keeps everything) and once
  ``+ quality policy``: every rule set (``POLICY``) at thresholds all samples pass.

MB/s counts image bytes only, for every row, so the ratio is the export's overhead.
"data" times the samples → shards → manifest path (what grows with the dataset); "with
card" adds the dataset card, its plots and the store's exports row, a fixed cost
(~0.25 s here once matplotlib is imported, plus importing ``datasets`` once per process:
the card's features are ``datasets.Features``).
Each timed run starts after ``os.sync`` (untimed); one warm-up round is not counted.
``--tmp /dev/shm`` takes the disk out (writes are memory copies), which makes the
baseline faster and the ratios a measure of the export's own CPU work.
Usage: ``python bench/bench_export.py [--n 1500] [--side 160] [--repeat 5] [--tmp DIR] [--md]``.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from figalign.export import run_export  # noqa: E402
from figalign.export.options import ExportOptions  # noqa: E402
from figalign.export.quality import QualityPolicy  # noqa: E402
from figalign.store.db import session_scope  # noqa: E402
from figalign.store.models import Artifact, FigureRow  # noqa: E402


def build(tmp: Path, n: int, side: int):
    """A store with ``n`` exportable figures (uses the tests' store helper)."""
    import numpy as np
    from PIL import Image

    from tests.figure_store import FigureStore

    fs = FigureStore(tmp)
    papers = [fs.paper(f"PMC{i}", source="pmc" if i % 2 else "arxiv") for i in range(max(1, n // 10))]
    rng = np.random.default_rng(0)
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)).save(buf, format="PNG",
                                                                                           compress_level=1)
        fs.figure(papers[i % len(papers)], buf.getvalue(), caption=f"Figure {i}. Noise of panel {i}.",
                  contexts=[f"Fig. {i} shows noise."], recaptions=[dict(model="m", prompt_hash="h", text=f"R {i}")],
                  metrics=[dict(metric="pppl", model="scibert", value=10.0 + i % 7),
                           dict(metric="pppl", model="scibert", value=8.0 + i % 5, caption_kind="recaption"),
                           dict(metric="clip_cosine_sentmean", model="ViT-L-14:openai", value=0.22 + (i % 9) / 100),
                           dict(metric="clip_cosine_sentmean", model="ViT-L-14:openai", value=0.32 + (i % 7) / 100,
                                caption_kind="recaption")])
    return fs


POLICY = QualityPolicy(min_clip_original=0.2, min_clip_recaption=0.3, min_clip_gain=0.0, pppl_min=1.0,
                       pppl_max=1000.0, drop_flags=frozenset({"ungrounded-number"}))
"""Every rule set, at thresholds every bench sample passes: the rules are evaluated for every
sample and the same bytes are written, so the ratio measures the policy's cost."""


def baseline(fs, out: Path) -> int:
    """Plain tar of the same image bytes, read from the same store."""
    with session_scope(fs.engine) as s:
        uris = s.execute(select(Artifact.storage_uri).join(FigureRow, FigureRow.image_artifact_id == Artifact.id)
                         .order_by(FigureRow.id)).scalars().all()
    total = 0
    with tarfile.open(out, "w") as tar:
        for i, uri in enumerate(uris):
            data = fs.store.read_bytes(uri)
            info = tarfile.TarInfo(f"{i:010d}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            total += len(data)
    return total


def timed(fn) -> tuple[float, float]:
    """(seconds for the data: shards + manifest, seconds in all: + card and plots).

    ``os.sync`` first, untimed: every run starts with no dirty pages, so the kernel's
    writeback throttling of earlier runs' output does not land on whichever run is next.
    """
    os.sync()
    start = time.perf_counter()
    result = fn()
    total = time.perf_counter() - start
    data = result[0]["seconds"]["data"] if isinstance(result, list) else total
    return data, total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--side", type=int, default=160)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--md", action="store_true", help="print a markdown table")
    ap.add_argument("--tmp", default=None, help="folder for the store and the exports (e.g. /dev/shm: no disk "
                                                "writeback noise); default: the system temp folder")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="figalign-bench-export-", dir=args.tmp))
    try:
        fs = build(tmp, args.n, args.side)
        image_bytes = baseline(fs, tmp / "warm.tar")  # warms the page cache for every run
        runs = {"plain tar (baseline)": lambda: baseline(fs, tmp / "plain.tar")}
        for fmt in ("webdataset", "s1mmalign", "parquet"):
            runs[fmt] = (lambda f=fmt: run_export(fs.engine, fs.store, f, tmp / f, quality=QualityPolicy(),
                                                  options=ExportOptions(embed_images=True)))
            runs[f"{fmt} + quality policy"] = (
                lambda f=fmt: run_export(fs.engine, fs.store, f, tmp / f"{f}-q", quality=POLICY,
                                         options=ExportOptions(embed_images=True)))
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
        for name, fn in runs.items():  # warm-up round, not counted: imports (pyarrow, matplotlib)
            timed(fn)  # and this VM's first touch of fresh memory
        for _ in range(args.repeat):  # interleaved, so drift hits every row alike
            for name, fn in runs.items():
                times[name].append(timed(fn))
        fs.engine.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mb = image_bytes / 1e6
    base = mb / statistics.median(t[0] for t in times["plain tar (baseline)"])
    rows = []
    for name, t in times.items():
        data, total = (mb / statistics.median(x[i] for x in t) for i in (0, 1))
        rows.append((name, data, data / base, total, total / base))
    if args.md:
        print(f"{args.n} images of {args.side}x{args.side} px, {mb:.1f} MB of image bytes, median of "
              f"{args.repeat} interleaved runs after a warm-up round, in {tmp.parent}\n")
        print("| writer | data MB/s | ratio | with card MB/s | ratio |\n|---|---:|---:|---:|---:|")
        for name, data, r1, total, r2 in rows:
            print(f"| {name} | {data:.0f} | {r1:.2f} | {total:.0f} | {r2:.2f} |")
    else:
        for name, data, r1, total, r2 in rows:
            print(f"{name:22s} data {data:7.1f} MB/s ({r1:.2f})  with card {total:7.1f} MB/s ({r2:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
