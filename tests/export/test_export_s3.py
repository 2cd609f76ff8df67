"""Export writers with the images and the output on S3 (moto's server): the same bytes as a
local export of the same store, every listed file on the server, the manifest written last,
and nothing published when an export fails."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from figalign.export import FORMATS, run_export
from figalign.export.options import ExportOptions
from figalign.storage import ArtifactStore
from tests.figure_store import FigureStore, synthetic_figure
from tests.test_object_storage import keys, no_local_s3_folder

OPTS = ExportOptions(max_shard_samples=2, include_unrecaptioned=True)


@pytest.fixture
def s3_store(s3_env, tmp_path, monkeypatch):
    """Six kept figures whose images are objects under ``<bucket>/data``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FIGALIGN_EXPORT_STAGING_DIR", str(tmp_path / "staging"))
    (tmp_path / "staging").mkdir()
    fs = FigureStore(tmp_path)
    fs.store = ArtifactStore(f"{s3_env}/data")
    paper = fs.paper("PMC9")
    for i in range(6):
        fs.figure(paper, synthetic_figure(i), caption=f"Figure {i}. Counts per group {i}.",
                  recaptions=[dict(model="qwen-vl", prompt_hash="p", text=f"A bar chart of group {i}.")])
    return fs


def test_every_format_on_s3_equals_the_local_export(s3_store, s3_env, s3_server, tmp_path):
    fs = s3_store
    remote = run_export(fs.engine, fs.store, "all", f"{s3_env}/exports/v1", options=OPTS)
    local = run_export(fs.engine, fs.store, "all", tmp_path / "local", options=OPTS)
    on_server = keys(s3_server, s3_env)
    client = s3_server.client()
    bucket = s3_env.removeprefix("s3://")
    assert [r["format"] for r in remote] == list(FORMATS)
    for r, ref in zip(remote, local):
        prefix = f"exports/v1/{r['format']}"
        assert r["out_dir"] == f"{s3_env}/{prefix}" and r["samples"] == ref["samples"] == 6
        assert r["manifest_sha256"] == ref["manifest_sha256"]  # byte-identical shards and side files
        local_files = sorted(p.relative_to(ref["out_dir"]).as_posix() for p in Path(ref["out_dir"]).rglob("*")
                             if p.is_file())
        assert sorted(k.removeprefix(prefix + "/") for k in on_server if k.startswith(prefix + "/")) == local_files
        manifest = json.loads(client.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read())
        for entry in manifest["shards"] + manifest["files"]:
            body = client.get_object(Bucket=bucket, Key=f"{prefix}/{entry['path']}")["Body"].read()
            assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    assert not list((tmp_path / "staging").iterdir())
    no_local_s3_folder(tmp_path, Path.cwd())


def test_a_failed_export_publishes_nothing(s3_store, s3_env, s3_server, tmp_path, monkeypatch):
    """An image gone missing mid-export: the export fails, no object appears under exports/."""
    fs = s3_store
    victim = next(k for k in keys(s3_server, s3_env) if k.startswith("data/objects/"))
    s3_server.client().delete_object(Bucket=s3_env.removeprefix("s3://"), Key=victim)
    from tests.servers.s3_server import clear_fsspec_cache

    clear_fsspec_cache()  # s3fs caches listings: make it look again
    with pytest.raises(FileNotFoundError):
        run_export(fs.engine, fs.store, "webdataset", f"{s3_env}/exports/broken", options=OPTS)
    assert not [k for k in keys(s3_server, s3_env) if k.startswith("exports/")]
    assert not list((tmp_path / "staging").iterdir())
