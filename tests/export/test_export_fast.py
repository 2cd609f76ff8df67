"""The export's fast paths equal what they replace: hand-built ``datasets`` features
(no ``import datasets`` when exporting), inline-hashed shards, the one-pack tar header."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from figalign.export.common import features_dict, features_for, features_yaml
from figalign.export.manifest import HashingWriter, TarShards, tar_header

CASES = [("webdataset", False, "png"), ("webdataset", False, "jpg"), ("parquet", False, "png"),
         ("parquet", True, "png"), ("s1mmalign", False, "png")]


@pytest.mark.parametrize("fmt,embed,ext", CASES)
def test_features_dict_equals_datasets(fmt, embed, ext):
    datasets = pytest.importorskip("datasets")
    features = features_for(fmt, embed_images=embed, image_ext=ext)
    built = features_dict(fmt, embed_images=embed, image_ext=ext)
    assert built == features.to_dict()
    # byte-identical where it is written: features.json and the Parquet schema metadata
    assert json.dumps(built, indent=1) == json.dumps(features.to_dict(), indent=1)
    assert json.dumps({"info": {"features": built}}) == json.dumps({"info": {"features": features.to_dict()}})
    assert datasets.Features.from_dict(built) == features
    assert features_yaml(built) == datasets.DatasetInfo(features=features)._to_yaml_dict()


def test_export_does_not_import_datasets(tmp_path):
    """A whole export (data + card) runs without importing ``datasets``."""
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from pathlib import Path
from tests.figure_store import FigureStore, synthetic_figure
from figalign.export import run_export
from figalign.export.options import ExportOptions
fs = FigureStore(Path({str(tmp_path)!r}))
paper = fs.paper("PMC1")
fs.figure(paper, synthetic_figure(1), caption="Figure 1. Spike rates over time.",
          metrics=[dict(metric="pppl", model="scibert", value=10.0)])
for fmt in ("webdataset", "parquet", "s1mmalign"):
    run_export(fs.engine, fs.store, fmt, Path({str(tmp_path)!r}) / fmt, options=ExportOptions(embed_images=True))
assert "datasets" not in sys.modules, "export imported datasets"
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if features_dict("webdataset") is not None:
        assert (tmp_path / "webdataset" / "features.json").exists()


def test_hashing_writer_inline(tmp_path):
    chunks = [os.urandom(n) for n in (0, 1, 511, 77_000, 3 << 20, 5)]
    w = HashingWriter(tmp_path / "f.bin")
    for c in chunks:
        assert w.write(c) == len(c)
    assert w.tell() == sum(map(len, chunks))
    sha, size = w.close()
    data = (tmp_path / "f.bin").read_bytes()
    assert sha == hashlib.sha256(data).hexdigest() and size == len(data) == sum(map(len, chunks))
    assert not (tmp_path / "f.bin.part").exists()
    w = HashingWriter(tmp_path / "g.bin")
    w.write(b"x")
    w.abort()
    assert not (tmp_path / "g.bin").exists() and not (tmp_path / "g.bin.part").exists()


def test_tar_shards_equal_tarfile(tmp_path):
    """Members written by TarShards read back with tarfile, with the same bytes as tarfile writes."""
    members = [(f"{i:010d}-k.png", os.urandom(n), 1_700_000_000 + i) for i, n in enumerate((0, 1, 512, 513, 9999))]
    shards = TarShards(tmp_path, "s-{:06d}.tar")
    shards.start_sample()
    for name, data, mtime in members:
        shards.add(name, data, mtime)
    (info,) = shards.close()
    ref = tmp_path / "ref.tar"
    with tarfile.open(ref, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, mtime in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), mtime, 0o644
            tar.addfile(ti, io.BytesIO(data))
    ours = (tmp_path / info.path).read_bytes()
    assert ours == ref.read_bytes()
    assert info.sha256 == hashlib.sha256(ours).hexdigest() and info.bytes == len(ours)


@pytest.mark.parametrize("size,mtime", [(0, 0), (1, 1), (8 ** 11 - 1, 8 ** 11 - 1), (77_000, 1_732_000_000)])
def test_tar_header_extremes(size, mtime):
    name = "x" * 100
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    assert tar_header(name, size, mtime) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")



def test_parquet_stores_image_bytes_uncompressed_and_metadata_with_zstd():
    from figalign.export.parquet import column_codecs, schema

    codecs = column_codecs(schema(True))
    assert codecs["image.bytes"] == "NONE" and codecs["image.path"] == "ZSTD"
    assert codecs["caption"] == "ZSTD"
    assert "image.bytes" not in column_codecs(schema(False))
