"""Export round trips: write every format, load it back with `datasets` and `webdataset`,
and compare every field and every image byte with what the store holds."""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import io
import json
import atexit
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

_HF = tempfile.mkdtemp(prefix="figalign-hf-")
atexit.register(shutil.rmtree, _HF, True)  # set before `datasets` is imported, so not a fixture
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=_HF,
                  HF_DATASETS_CACHE=os.path.join(_HF, "datasets"))

import pytest  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from figalign.export import run_export  # noqa: E402
from figalign.export.common import FIELDS, features_for, iter_samples, sample_key  # noqa: E402
from figalign.export.options import ExportOptions  # noqa: E402
from figalign.filters import FilterPolicy  # noqa: E402
from figalign.store.db import session_scope  # noqa: E402
from figalign.store.models import Export  # noqa: E402
from tests.figure_store import FigureStore, synthetic_figure  # noqa: E402

SMALL = ExportOptions(max_shard_samples=3, max_tar_bytes=30_000, embed_images=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A store with kept samples across two sources plus figures that must not be exported."""
    tmp = tmp_path_factory.mktemp("export")
    fs = FigureStore(tmp)
    arx = fs.paper("2401.00001", source="arxiv", version="2", doi=None, categories=["cs.CV", "cs.LG"],
                   discipline="computer science")
    pmc = fs.paper("PMC1", doi="10.1371/journal.pone.0000010", title="A résumé — ünïcode title")
    nc = fs.paper("PMC2", licence="cc-by-nc", licence_url="https://creativecommons.org/licenses/by-nc/4.0/")
    gone = fs.paper("PMC3", retracted=True)
    expected: dict[int, dict] = {}
    for i in range(8):
        paper = arx if i % 2 else pmc
        recaps = []
        if i >= 3:
            recaps = [dict(model="qwen-vl", prompt_hash="old", text=f"Old recaption {i}"),
                      dict(model="qwen-vl", prompt_hash="new", text=f"Detailed recaption {i}: axes, curves.")]
        if i == 7:
            recaps.append(dict(model="qwen-vl", prompt_hash="newest", text="rejected text", status="rejected"))
        metrics = [dict(metric="pppl", model="scibert", value=10.0 + i)] if i >= 2 else []
        if i >= 3:
            metrics.append(dict(metric="pppl", model="scibert", value=5.5 + i, caption_kind="recaption"))
        fid = fs.figure(paper, synthetic_figure(100 + i), caption=f"Figure {i}. Spike rates über time.",
                        contexts=[f"As Fig. {i} shows, rates rise.", "It falls later."][: i % 3], recaptions=recaps,
                        metrics=metrics)
        expected[fid] = {"recaption": recaps[1]["text"] if recaps else None,
                         "prompt": "new" if recaps else None, "contexts": i % 3, "metrics": len(metrics)}
        time.sleep(0.002)  # the latest recaption is the one created last
    excluded = [
        fs.figure(pmc, synthetic_figure(1), filter_reason="near-blank"),
        fs.figure(pmc, synthetic_figure(2), filter_reason="duplicate-of:x", duplicate_of_id=min(expected)),
        fs.figure(nc, synthetic_figure(3), filter_reason="licence-not-exportable:cc-by-nc"),
        fs.figure(gone, synthetic_figure(4)),
        fs.figure(pmc, None, caption="Figure 9. No image here."),
        fs.figure(pmc, synthetic_figure(5), caption=None),
    ]
    out = tmp / "out"
    results = run_export(fs.engine, fs.store, "all", out, options=SMALL)
    with session_scope(fs.engine) as s:
        samples = {x.meta["figure_id"]: x for x in iter_samples(s, FilterPolicy())}
    yield {"fs": fs, "out": out, "results": results, "expected": expected, "excluded": excluded, "samples": samples}
    fs.engine.dispose()


def _images(built) -> dict[int, bytes]:
    return {fid: s.read_image(built["fs"].store) for fid, s in built["samples"].items()}


def _check_meta(built, got: dict, *, image_path: str | None = None, image_tar: str | None = None):
    """Every field equals the store's record (image location fields are per format)."""
    fid = got["figure_id"]
    want = dict(built["samples"][fid].meta)
    got = dict(got)
    for name in ("image_path", "image_tar"):
        want.pop(name)
        got.pop(name, None)
    assert {k: got[k] for k in want} == want
    exp = built["expected"][fid]
    assert got["recaption"] == exp["recaption"]
    assert got["recaption_prompt_hash"] == exp["prompt"]
    assert len(got["contexts"]) == exp["contexts"] and len(got["metrics"]) == exp["metrics"]


def test_selection_excludes_filtered_duplicates_policy_and_captionless(built):
    assert set(built["samples"]) == set(built["expected"])
    assert not set(built["samples"]) & set(built["excluded"])
    assert [r["samples"] for r in built["results"]] == [5, 8, 8]  # S1-MMAlign: recaptioned only
    meta = next(s.meta for s in built["samples"].values() if s.source == "arxiv")
    assert meta["arxiv_id"] == "2401.00001v2" and meta["doi"] is None
    assert meta["source_url"] == "https://arxiv.org/abs/2401.00001v2"
    assert list(meta) == list(FIELDS)


def test_opt_in_licence_exports_nc(built):
    fs = built["fs"]
    with session_scope(fs.engine) as s:
        nc = list(iter_samples(s, FilterPolicy().with_licences(["cc-by-nc"])))
    assert len(nc) == len(built["samples"]) + 1


def test_webdataset_package_round_trip(built):
    import webdataset as wds

    urls = sorted(glob.glob(str(built["out"] / "webdataset" / "data" / "*.tar")))
    assert len(urls) == 3  # 8 samples, 3 per shard
    images = _images(built)
    seen = set()
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        meta = json.loads(sample["json"])
        assert sample["__key__"] == meta["key"] == sample_key(meta["figure_id"], meta["figure_key"])
        assert sample["png"] == images[meta["figure_id"]]
        assert hashlib.sha256(sample["png"]).hexdigest() == meta["image_sha256"]
        _check_meta(built, meta)
        seen.add(meta["figure_id"])
    assert seen == set(built["expected"])


def test_webdataset_datasets_round_trip(built):
    import datasets

    out = built["out"] / "webdataset"
    urls = sorted(glob.glob(str(out / "data" / "*.tar")))
    features = datasets.Features.from_dict(json.loads((out / "features.json").read_text()))
    assert features == features_for("webdataset")
    cache = Path(_HF) / "wds"
    for ds in (datasets.load_dataset("webdataset", data_files={"train": urls}, split="train", features=features,
                                     cache_dir=str(cache)),
               datasets.load_dataset(str(out), split="train", cache_dir=str(cache))):  # features from the card
        ds = ds.cast_column("png", datasets.Image(decode=False))
        images = _images(built)
        assert len(ds) == len(built["expected"])
        for row in ds:
            _check_meta(built, row["json"])
            assert row["png"]["bytes"] == images[row["json"]["figure_id"]]


def test_parquet_datasets_round_trip(built):
    import datasets
    import pyarrow.parquet as pq

    files = sorted(glob.glob(str(built["out"] / "parquet" / "data" / "*.parquet")))
    assert len(files) == 3
    ds = datasets.load_dataset("parquet", data_files={"train": files}, split="train", cache_dir=str(Path(_HF) / "pq"))
    assert isinstance(ds.features["image"], datasets.Image)
    ds = ds.cast_column("image", datasets.Image(decode=False))
    images = _images(built)
    for row in ds:
        _check_meta(built, {k: v for k, v in row.items() if k != "image"})
        assert row["image"]["bytes"] == images[row["figure_id"]]
    plain = pq.read_table(files[0]).to_pylist()[0]  # pandas/pyarrow users see plain bytes
    assert plain["image"]["bytes"] == images[plain["figure_id"]]


def test_s1mmalign_layout_read_by_published_layout_code(built, tmp_path):
    """A reader written for the published dataset (tests/export/s1_reader.py) loads the release."""
    from tests.export import s1_reader

    out = built["out"] / "s1mmalign"
    assert sorted(str(p.relative_to(out)) for p in out.glob("*/jsonl/*")) == [
        "arxiv/jsonl/24_recaption.jsonl", "pmc/jsonl/pmc_recaption.jsonl"]
    pieces = sorted(p.name for p in (out / "arxiv").glob("images*"))
    assert pieces[0] == "images_2024.tar.gz.partaa" and len(pieces) > 1  # cut past max_tar_bytes
    for p in (out / "arxiv").glob("images*"):
        assert p.stat().st_size <= SMALL.max_tar_bytes
    release = tmp_path / "release"
    shutil.copytree(out, release)
    loaded = s1_reader.load(str(release))
    recaptioned = {fid for fid, e in built["expected"].items() if e["recaption"]}
    assert len(loaded) == len(recaptioned) == 5  # only recaptioned samples
    images = _images(built)
    by_path = {}
    for source_dir, rec, image_file in s1_reader.records(str(release)):
        assert list(rec)[:7] == ["doi", "arxiv_id", "title", "image_path", "caption", "recaption", "categories"]
        assert Path(image_file).read_bytes() == images[rec["figure_id"]]
        assert isinstance(rec["categories"], str) and rec["recaption"]
        want = dict(built["samples"][rec["figure_id"]].meta)
        if source_dir.endswith("arxiv"):
            assert re.fullmatch(r"images/2401/2401\.00001/fig\d{3}\.png", rec["image_path"])
            assert rec["categories"] == "cs.CV cs.LG" and rec["image_tar"] == "images_2024.tar.gz"
        else:
            assert re.fullmatch(r"images/PMC1/fig\d{3}\.png", rec["image_path"])
            assert rec["categories"] == "q-bio.NC"
        for name in ("image_path", "image_tar", "categories"):
            want.pop(name)
        assert {k: rec[k] for k in want} == want
        by_path[rec["image_path"]] = rec
    assert len(by_path) == 5  # image paths are unique
    import datasets

    features = datasets.Features.from_dict(json.loads((out / "features.json").read_text()))
    files = sorted(glob.glob(str(out / "*" / "jsonl" / "*_recaption.jsonl")))
    ds = datasets.load_dataset("json", data_files={"train": files}, split="train", features=features,
                               cache_dir=str(Path(_HF) / "js"))
    assert sorted(ds["image_path"]) == sorted(by_path)
    for row in ds:
        assert row == {k: by_path[row["image_path"]][k] for k in row}


def test_s1mmalign_archives_are_standard_gzip_tars(built):
    out = built["out"] / "s1mmalign" / "arxiv"
    pieces = sorted(out.glob("images_2024.tar.gz.part*"))
    joined = b"".join(p.read_bytes() for p in pieces)
    subprocess.run(["gzip", "-t"], input=joined, check=True)
    with tarfile.open(fileobj=io.BytesIO(joined), mode="r:gz") as tar:
        names = tar.getnames()
    assert len(names) == 3 and all(n.startswith("images/2401/2401.00001/fig") for n in names)


def test_s1mmalign_include_unrecaptioned(built, tmp_path):
    fs = built["fs"]
    (res,) = run_export(fs.engine, fs.store, "s1mmalign", tmp_path / "all",
                        options=ExportOptions(include_unrecaptioned=True))
    assert res["samples"] == 8 and res["dropped"] == 0 and not (tmp_path / "all" / "dropped.jsonl").exists()
    (res,) = run_export(fs.engine, fs.store, "s1mmalign", tmp_path / "rec")
    assert res["samples"] == 5 and res["dropped"] == 3
    manifest = json.loads((tmp_path / "rec" / "manifest.json").read_text())
    assert manifest["selection"]["dropped"] == {"no-recaption": 3}
    lines = [json.loads(x) for x in (tmp_path / "rec" / "dropped.jsonl").read_text().splitlines()]
    assert sorted(x["figure_id"] for x in lines) == sorted(f for f, e in built["expected"].items()
                                                           if not e["recaption"])
    assert {x["reason"] for x in lines} == {"no-recaption"}


def test_parquet_and_webdataset_folders_load_images_and_text_with_load_dataset(built):
    """``datasets.load_dataset(path)`` on the folder itself: the card's configs do the rest."""
    import datasets

    images = _images(built)
    for fmt, image_col, meta in (("parquet", "image", lambda r: r), ("webdataset", "png", lambda r: r["json"])):
        ds = datasets.load_dataset(str(built["out"] / fmt), split="train", cache_dir=str(Path(_HF) / f"dir-{fmt}"))
        assert isinstance(ds.features[image_col], datasets.Image)
        ds = ds.cast_column(image_col, datasets.Image(decode=False))
        assert len(ds) == 8
        for row in ds:
            assert row[image_col]["bytes"] == images[meta(row)["figure_id"]]
            assert meta(row)["caption"].startswith("Figure")


def test_manifests_checksums_and_export_rows(built):
    fs = built["fs"]
    for result in built["results"]:
        out = Path(result["out_dir"])
        manifest = json.loads((out / "manifest.json").read_text())
        assert hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest() == result["manifest_sha256"]
        for entry in manifest["shards"] + manifest["files"]:
            data = (out / entry["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        assert sum(s["samples"] for s in manifest["shards"]) == manifest["samples"]
        assert not list(out.rglob("*.part"))
    with session_scope(fs.engine) as s:
        rows = s.execute(select(Export).where(Export.out_dir.startswith(str(built["out"].resolve())))).scalars().all()
    assert sorted(r.format for r in rows) == ["parquet", "s1mmalign", "webdataset"]
    assert sorted(r.samples for r in rows) == [5, 8, 8] and all(r.bytes > 0 for r in rows)


def test_reexport_is_identical_and_idempotent(built, tmp_path):
    fs = built["fs"]
    again = run_export(fs.engine, fs.store, "all", built["out"], options=SMALL)
    assert [r["manifest_sha256"] for r in again] == [r["manifest_sha256"] for r in built["results"]]
    with session_scope(fs.engine) as s:
        assert s.execute(select(func.count()).select_from(Export)
                         .where(Export.out_dir.startswith(str(built["out"].resolve())))).scalar() == 3


def test_card_counts_and_provenance(built):
    card = (built["out"] / "webdataset" / "README.md").read_text(encoding="utf-8")
    assert "| arxiv | 4 |" in card and "| pmc | 4 |" in card
    assert "| computer science | 4 |" in card and "| cc-by | 8 |" in card
    assert "`qwen-vl`, prompt `new`: 5" in card and "test 1.0: 8" in card
    assert "| pppl | scibert | original | 6 |" in card and "CC BY" in card
    assert "cc-by-nc" not in card.split("## Licences")[1]


def test_incremental_since(built, tmp_path):
    fs = built["fs"]
    since = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    time.sleep(0.01)
    fid = fs.figure(fs.paper("PMC7"), synthetic_figure(200), caption="Figure 1. A brand new figure.")
    res = run_export(fs.engine, fs.store, "webdataset", tmp_path / "inc", since=since)
    assert res[0]["samples"] == 1
    manifest = json.loads((tmp_path / "inc" / "manifest.json").read_text())
    assert manifest["since"] == since.isoformat()
    import webdataset as wds

    (sample,) = list(wds.WebDataset(str(tmp_path / "inc" / "data" / "train-000000.tar"), shardshuffle=False,
                                    empty_check=False))
    assert json.loads(sample["json"])["figure_id"] == fid
    res = run_export(fs.engine, fs.store, "parquet", tmp_path / "inc2", incremental=True)
    assert res[0]["samples"] == 1  # since the last parquet export, only the new figure


def test_cli_export_and_filter(built, tmp_path, monkeypatch, capsys):
    from figalign.cli import main

    fs = built["fs"]
    monkeypatch.setenv("FIGALIGN_DATABASE_URL", fs.url)
    monkeypatch.setenv("FIGALIGN_DATA_DIR", str(fs.data_dir))
    assert main(["filter", "--limit", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["processed"] == 3
    assert main(["export", "--out", str(tmp_path / "cli"), "--format", "parquet", "--since", "2000-01-01"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result[0]["format"] == "parquet" and result[0]["samples"] >= 1
    assert (tmp_path / "cli" / "README.md").exists() and (tmp_path / "cli" / "manifest.json").exists()
    assert main(["export", "--out", str(tmp_path / "bad"), "--since", "yesterday"]) == 2


@pytest.mark.parametrize("name,size,mtime", [("0000000001-p2_fig1.png", 12897, 1_700_000_000),
                                             ("images/pmc/0000000001-x.json", 0, 0), ("a" * 100, 5, 3)])
def test_fast_tar_header_equals_tarfile(name, size, mtime):
    from figalign.export.manifest import tar_header

    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    assert tar_header(name, size, mtime) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    assert tar_header("ü" * 5 + ".png", 1, 0)[:512] != b""  # non-ASCII falls back to PAX
