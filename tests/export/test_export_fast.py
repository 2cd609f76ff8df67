"""The export's fast paths equal what they replace: hand-built ``datasets`` features
(no ``import datasets`` when exporting), inline-hashed shards, the one-pack tar header."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from figalign.export.common import features_dict, features_for, features_yaml, json_bytes
from figalign.export.manifest import HashingWriter, TarShards, tar_header

CASES = [("webdataset", False, "png"), ("webdataset", False, "jpg"), ("parquet", False, "png"),
         ("parquet", True, "png"), ("s1mmalign", False, "png")]


@pytest.mark.parametrize("fmt,embed,ext", CASES)
def test_card_features_are_datasets_features(fmt, embed, ext):
    datasets = pytest.importorskip("datasets")
    features = features_for(fmt, embed_images=embed, image_ext=ext)
    built = features_dict(fmt, embed_images=embed, image_ext=ext)
    assert isinstance(features, datasets.Features) and datasets.Features.from_dict(built) == features
    assert [f["name"] for f in features_yaml(built)["features"]] == list(features)
    kinds = {name: type(feature).__name__ for name, feature in features.items()}
    if fmt == "webdataset":
        assert kinds[ext] == "Image" and isinstance(features["json"], dict)
    if fmt == "parquet":
        assert ("image" in kinds) == embed


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
    assert codecs["caption"] == "ZSTD" and codecs["contexts.list.element.text"] == "ZSTD"
    assert "image.bytes" not in column_codecs(schema(False))


def test_parquet_file_uses_the_intended_codec_and_encoding_for_every_column(tmp_path):
    """Every leaf column as written: zstd + dictionary, except the image bytes (plain, uncompressed).
    (Nested columns such as contexts' text are matched by their full Parquet path.)"""
    import pyarrow.parquet as pq

    from figalign.export import run_export
    from figalign.export.options import ExportOptions

    fs = _parquet_store(tmp_path, 3)
    run_export(fs.engine, fs.store, "parquet", tmp_path / "o", options=ExportOptions(embed_images=True))
    group = pq.ParquetFile(tmp_path / "o" / "data" / "train-000000.parquet").metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert "contexts.list.element.text" in columns and "categories.list.element" in columns
    for path, col in columns.items():
        if path == "image.bytes":
            assert col.compression == "UNCOMPRESSED" and "RLE_DICTIONARY" not in col.encodings
        else:
            assert col.compression == "ZSTD" and "RLE_DICTIONARY" in col.encodings, path


def test_tail_hasher_follows_a_file_written_by_another_writer(tmp_path):
    """The helper thread hashes a file while a separate (native-like) writer appends to it,
    in uneven pieces with pauses, and ends with the digest of every byte."""
    import threading
    import time

    from figalign.export.manifest import TailHasher

    path = tmp_path / "grow.bin"
    pieces = [os.urandom(n) for n in (1, 4096, TailHasher.CHUNK + 7, 0, 333_333, TailHasher.CHUNK * 2, 5)]
    fh = open(path, "wb", buffering=0)
    hasher = TailHasher(path)
    for i, piece in enumerate(pieces):
        fh.write(piece)
        if i % 2:
            hasher.poke()
        time.sleep(0.01)  # let the thread catch up and wait again
    fh.close()
    sha, size = hasher.finish()
    data = b"".join(pieces)
    assert size == len(data) and sha == hashlib.sha256(data).hexdigest()
    assert not any(t.name.startswith("sha256:") for t in threading.enumerate())


def test_hashing_writer_abort_stops_its_thread(tmp_path):
    import threading

    w = HashingWriter(tmp_path / "a.bin")
    w.write(os.urandom(HashingWriter.POKE + 1))
    w.abort()
    assert not any(t.name == "sha256:a.bin.part" for t in threading.enumerate())
    assert list(tmp_path.iterdir()) == []


def _parquet_store(tmp_path, n):
    from tests.figure_store import FigureStore, synthetic_figure

    fs = FigureStore(tmp_path / "store")
    paper = fs.paper("PMC1")
    for i in range(n):
        fs.figure(paper, synthetic_figure(i, (120, 90)), caption=f"Figure {i}. Spike rates over time.")
    return fs


def test_parquet_row_groups_follow_the_embedding(tmp_path):
    """100-row groups with embedded images (as ``datasets`` writes image tables), one group of
    metadata otherwise; a byte limit ends a group early."""
    import pyarrow.parquet as pq

    from figalign.export import run_export
    from figalign.export.options import ExportOptions

    fs = _parquet_store(tmp_path, 230)
    cases = {"embed": (ExportOptions(embed_images=True), [100, 100, 30]),
             "meta": (ExportOptions(embed_images=False), [230]),
             "bytes": (ExportOptions(embed_images=True, parquet_row_group_bytes=1), [1] * 230)}
    for name, (opts, groups) in cases.items():
        (summary,) = run_export(fs.engine, fs.store, "parquet", tmp_path / name, options=opts)
        meta = pq.ParquetFile(tmp_path / name / "data" / "train-000000.parquet").metadata
        assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == groups, name
        assert summary["samples"] == 230
        assert not list((tmp_path / name).rglob("*.part"))


def test_parquet_failure_leaves_no_file(tmp_path, monkeypatch):
    """A read error mid-export removes the unfinished file (no truncated Parquet under a final name)."""
    from figalign.export import run_export
    from figalign.export.common import Sample
    from figalign.export.options import ExportOptions

    fs = _parquet_store(tmp_path, 150)
    real = Sample.read_image_into
    calls = []

    def flaky(self, store, view):
        calls.append(1)
        if len(calls) == 120:
            raise OSError("disk went away")
        return real(self, store, view)

    monkeypatch.setattr(Sample, "read_image_into", flaky)
    with pytest.raises(OSError, match="disk went away"):
        run_export(fs.engine, fs.store, "parquet", tmp_path / "out", options=ExportOptions(embed_images=True))
    assert not list((tmp_path / "out").rglob("*.parquet*"))


def test_s1mmalign_record_order_and_paths():
    from figalign.export.common import FIELDS, Sample
    from figalign.export.s1mmalign import PAPER_FIELDS, record

    meta = dict({k: f"v-{k}" for k in FIELDS}, categories=["cs.CV", "eess.IV"])
    rec = record(Sample("k", "pmc", "/x", "png", None, meta), "images/PMC1/fig001.png", "images.tar.gz")
    assert list(rec)[:len(PAPER_FIELDS)] == list(PAPER_FIELDS)
    assert sorted(rec) == sorted(FIELDS)
    assert rec["image_path"] == "images/PMC1/fig001.png" and rec["image_tar"] == "images.tar.gz"
    assert rec["categories"] == "cs.CV eess.IV"  # the published type: one string
    assert meta["image_path"] == "v-image_path"  # the sample's own record is not changed
    assert record(Sample("k", "pmc", "/x", "png", None, dict(meta, categories=[], discipline="physics")),
                  "p", "t")["categories"] == "physics"


def _embedded_images(path):
    import pyarrow.parquet as pq

    return {r["figure_id"]: r["image"]["bytes"] for r in pq.read_table(path, columns=["figure_id", "image"]).to_pylist()}


def test_parquet_images_read_into_the_buffer_equal_the_stored_bytes(tmp_path):
    """Embedded bytes equal the stored files, through the file fast path and through a store
    that only offers ``read_bytes`` (a remote one); groups of uneven sizes reuse the buffer."""
    from figalign.export import run_export
    from figalign.export.options import ExportOptions
    from figalign.storage import ArtifactStore
    from tests.figure_store import FigureStore, synthetic_figure

    fs = FigureStore(tmp_path / "store")
    paper = fs.paper("PMC1")
    sizes = [(120, 90), (640, 480), (150, 120), (900, 700), (200, 150)] * 9
    blobs = [synthetic_figure(i, size) for i, size in enumerate(sizes)]
    for i, blob in enumerate(blobs):
        fs.figure(paper, blob, caption=f"Figure {i}. Spike rates over time.")

    class RemoteLike(ArtifactStore):
        def read_bytes(self, uri):
            return super().read_bytes(uri)

    opts = ExportOptions(embed_images=True, parquet_row_group=7)
    run_export(fs.engine, fs.store, "parquet", tmp_path / "file", options=opts)
    run_export(fs.engine, RemoteLike(fs.store.root), "parquet", tmp_path / "remote", options=opts)
    for name in ("file", "remote"):
        got = _embedded_images(tmp_path / name / "data" / "train-000000.parquet")
        assert sorted(got.values(), key=len) == sorted(blobs, key=len), name


def test_parquet_refuses_an_image_changed_after_it_was_stored(tmp_path):
    from figalign.export import run_export
    from figalign.export.options import ExportOptions

    fs = _parquet_store(tmp_path, 5)
    victim = _image_uris(fs)[2]
    with open(victim, "ab") as fh:
        fh.write(b"appended later")
    with pytest.raises(OSError, match="the store recorded"):
        run_export(fs.engine, fs.store, "parquet", tmp_path / "out", options=ExportOptions(embed_images=True))
    assert not list((tmp_path / "out").rglob("*.parquet*"))


def _image_uris(fs) -> list[str]:
    from sqlalchemy import select

    from figalign.store.db import session_scope
    from figalign.store.models import Artifact, FigureRow

    with session_scope(fs.engine) as s:
        return s.execute(select(Artifact.storage_uri).join(FigureRow, FigureRow.image_artifact_id == Artifact.id)
                         .order_by(FigureRow.id)).scalars().all()


def test_json_bytes_means_what_json_dumps_wrote():
    """Compact msgspec JSON parses to the same record (escapes, non-ASCII, floats); a record
    with a non-finite metric value is written by ``json.dumps``, as before (``Infinity``)."""
    rec = {"key": "k", "caption": 'é "q" \\ \u2028\n\x01 ∑', "figure_id": 3, "version": None, "categories": ["a"],
           "contexts": [], "metrics": [{"metric": "pppl", "value": 12.5}, {"metric": "clip", "value": 1e-7},
                                       {"metric": "big", "value": 1e16}]}
    line = json_bytes(rec)
    assert json.loads(line) == rec and b"\n" not in line and "∑".encode() in line
    assert json.loads(json_bytes({"key": "k"})) == {"key": "k"}  # a record without metrics
    odd = dict(rec, metrics=[{"metric": "pppl", "value": float("inf")}, {"metric": "x", "value": float("nan")}])
    assert json_bytes(odd) == json.dumps(odd, ensure_ascii=False, separators=(",", ":")).encode()
    assert b"Infinity" in json_bytes(odd) and b"NaN" in json_bytes(odd)
