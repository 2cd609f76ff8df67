"""End to end with ``FIGALIGN_DATA_DIR=s3://bucket/prefix``: ingest → parse → filter → export.

The data dir is a bucket on moto's standalone S3 server (a real S3 API over HTTP, reached
through s3fs with the standard AWS variables), the store is Postgres. The papers are the
committed ``tests/fixtures/papers``, ingested from the local folder or from an ``s3://``
copy of it. The same papers go through the same stages with a local data dir and a second
Postgres database; the exports must agree to the byte (equal manifests, whose sha256 lists
cover every shard and file) and the S3 export must read back from the server intact.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from figalign import location
from figalign.config import load_settings
from figalign.export import FORMATS, run_export
from figalign.export.options import ExportOptions
from figalign.pipeline import ingest_local, run_stage
from figalign.storage import ArtifactStore
from figalign.store.db import get_engine, session_scope
from figalign.store.migrate import upgrade
from figalign.store.models import Artifact, Export, FigureRow
from tests.conftest import FIXTURES, throwaway_database
from tests.test_object_storage import keys, no_local_s3_folder

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
PAPERS = FIXTURES / "papers"


@pytest.fixture
def second_pg_url(pg_url):
    """Another fresh database beside ``pg_url`` (for the local-data-dir reference run)."""
    with throwaway_database() as url:
        yield url


def run_pipeline(settings, folder: str) -> list[dict]:
    """ingest → parse → filter → export (all formats, unrecaptioned pairs let into S1-MMAlign)."""
    upgrade(settings.effective_database_url)
    assert ingest_local(folder, licence="CC BY", settings=settings)["papers"] == 3
    for stage in ("parse", "filter"):
        for i in range(50):
            if not run_stage(stage, size=10, settings=settings, discover=i == 0).get("claimed"):
                break
    return run_export(get_engine(settings), ArtifactStore.from_settings(settings), "all",
                      location.join(settings.data_dir, "exports", "v1"),
                      options=ExportOptions(include_unrecaptioned=True))


def upload_folder(s3_server, bucket: str, folder: Path, prefix: str) -> None:
    client = s3_server.client()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder).as_posix()}",
                              Body=path.read_bytes())


def tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def content(path: str, data: bytes, origin: tuple[str, str] = ("", "")):
    """What a file holds, whatever the run: tar members (their mtime is the figure row's
    creation time, which differs between two stores), Parquet rows, or the text; with the
    papers' recorded origin (``source_url``: the folder they were ingested from) rewritten
    ``origin[0]`` → ``origin[1]``, the one thing that should differ."""
    old, new = origin
    if path.endswith((".tar", ".tar.gz")):
        return {name: body.replace(old.encode(), new.encode()) if old else body
                for name, body in tar_members(data).items()}
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows = repr(pq.read_table(io.BytesIO(data)).to_pylist())
        return rows.replace(old, new) if old else rows
    text = data.decode("utf-8")
    return text.replace(old, new) if old else text


def without_checksums(manifest: dict) -> dict:
    """The manifest less what depends on every byte (hashes, sizes)."""
    return {**manifest, "bytes": None,
            **{k: [{**e, "sha256": None, "bytes": None} for e in manifest[k]] for k in ("shards", "files")}}


@pytest.mark.parametrize("source", ["local-folder", "s3-folder"])
def test_pipeline_on_s3_matches_a_local_data_dir(source, s3_env, s3_server, pg_url, second_pg_url, tmp_path,
                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setenv("FIGALIGN_EXPORT_STAGING_DIR", str(staging))
    bucket = s3_env.removeprefix("s3://")
    folder, origin = str(PAPERS), ("", "")
    if source == "s3-folder":
        upload_folder(s3_server, bucket, PAPERS, "incoming/papers")
        folder = f"{s3_env}/incoming/papers"
        origin = (folder, str(PAPERS.resolve()))
    remote = load_settings({"FIGALIGN_DATA_DIR": f"{s3_env}/prefix", "FIGALIGN_DATABASE_URL": pg_url})
    local = load_settings({"FIGALIGN_DATA_DIR": str(tmp_path / "local-data"), "FIGALIGN_DATABASE_URL": second_pg_url})

    remote_results = run_pipeline(remote, folder)
    local_results = run_pipeline(local, str(PAPERS))

    # -- artifacts and crops are objects on the server, named by their hash
    on_server = set(keys(s3_server, s3_env))
    with session_scope(get_engine(remote)) as s:
        uris = list(s.scalars(select(Artifact.storage_uri)))
        crops = list(s.scalars(select(Artifact.storage_uri)
                               .join(FigureRow, FigureRow.image_artifact_id == Artifact.id)))
        export_dirs = set(s.scalars(select(Export.out_dir)))
    assert len(crops) >= 3 and all(u.endswith(".png") for u in crops)
    assert uris and all(u.startswith(f"{s3_env}/prefix/objects/") for u in uris)
    assert {u.removeprefix(s3_env + "/") for u in uris} <= on_server
    assert export_dirs == {f"{s3_env}/prefix/exports/v1/{fmt}" for fmt in FORMATS}

    # -- each export is on the server, complete, and equal to the local data dir's
    client = s3_server.client()
    for remote_r, local_r in zip(remote_results, local_results):
        fmt = remote_r["format"]
        prefix = f"prefix/exports/v1/{fmt}"
        manifest_bytes = client.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read()
        manifest = json.loads(manifest_bytes)
        assert hashlib.sha256(manifest_bytes).hexdigest() == remote_r["manifest_sha256"]
        local_manifest = json.loads((Path(local_r["out_dir"]) / "manifest.json").read_text())
        assert manifest["samples"] == local_r["samples"] > 0, fmt
        for entry in manifest["shards"] + manifest["files"]:
            body = client.get_object(Bucket=bucket, Key=f"{prefix}/{entry['path']}")["Body"].read()
            assert hashlib.sha256(body).hexdigest() == entry["sha256"], (fmt, entry["path"])
            mine = (Path(local_r["out_dir"]) / entry["path"]).read_bytes()
            assert content(entry["path"], body, origin) == content(entry["path"], mine), (fmt, entry["path"])
        assert without_checksums(manifest) == without_checksums(local_manifest), fmt  # same samples and files
        assert f"{prefix}/README.md" in on_server
        if fmt == "webdataset":
            assert any(name.endswith(".png") for name in content(".tar", body))

    # -- nothing went to a local folder named after the URL, and no staging folder is left
    no_local_s3_folder(tmp_path, Path.cwd(), Path(tempfile.gettempdir()), Path(__file__).parents[1])
    assert not list(staging.iterdir())
