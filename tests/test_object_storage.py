"""The data dir on a real S3 API (moto's standalone server): store, config, connection, explorer.

Every test talks to the server over HTTP through s3fs with the standard AWS variables
(``s3_env``), and lists what landed there with boto3, so a write that went to a local folder
named ``s3:`` instead cannot pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from figalign import location
from figalign.config import Settings, StorageOptions, load_settings
from figalign.errors import ConfigError
from figalign.storage import ArtifactStore
from tests.conftest import FIXTURES, ROOT

PONE = FIXTURES / "papers" / "pone.0000010"


def keys(s3_server, url: str) -> list[str]:
    """Every object key in the bucket of ``url`` (boto3, not fsspec: a second opinion)."""
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def no_local_s3_folder(*roots: Path) -> None:
    for root in roots:
        assert not (root / "s3:").exists(), f"a local folder named 's3:' appeared under {root}"


def test_artifacts_are_objects_on_the_server(s3_env, s3_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = ArtifactStore(f"{s3_env}/prefix")
    pdf = PONE / "pone.0000010.pdf"
    obj = store.put_file(pdf)
    sha = hashlib.sha256(pdf.read_bytes()).hexdigest()
    assert obj.uri == f"{s3_env}/prefix/objects/{sha[:2]}/{sha[2:4]}/{sha}.pdf"
    assert keys(s3_server, s3_env) == [f"prefix/objects/{sha[:2]}/{sha[2:4]}/{sha}.pdf"]
    assert store.read_bytes(obj.uri) == pdf.read_bytes()
    # the same bytes again: stored once, the same URI
    assert store.put_bytes(pdf.read_bytes(), media_type="application/pdf", ext=".pdf").uri == obj.uri
    assert len(keys(s3_server, s3_env)) == 1
    no_local_s3_folder(tmp_path, Path.cwd())


def test_a_failed_upload_leaves_no_object_under_the_final_name(s3_env, s3_server, monkeypatch):
    """pipe_file is one PUT: an error before it completes leaves nothing at the hash name."""
    import s3fs

    store = ArtifactStore(s3_env)

    def broken(self, path, data, **kw):
        raise ConnectionError("network went away")

    monkeypatch.setattr(s3fs.S3FileSystem, "pipe_file", broken)
    with pytest.raises(ConnectionError):
        store.put_bytes(b"x" * 1000, ext=".bin")
    assert keys(s3_server, s3_env) == []


def test_storage_options_reach_s3fs_and_only_the_data_dirs_protocol(s3_env, s3_server, monkeypatch, tmp_path):
    """Credentials from a connection (StorageOptions), not the environment, work on their own;
    a local path read through the same store never receives them."""
    env = s3_server.env()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var)
    from tests.servers.s3_server import clear_fsspec_cache

    clear_fsspec_cache()
    opts = StorageOptions(key="AKIDCONNECTION", secret="conn-secret-4711",  # moto accepts any key pair
                          endpoint_url=env["AWS_ENDPOINT_URL"], region="us-east-1")
    settings = Settings(data_dir=f"{s3_env}/p", database_url="postgresql+psycopg2://u@h/db", storage=opts)
    store = ArtifactStore.from_settings(settings)
    obj = store.put_bytes(b"through the connection", ext=".txt")
    assert keys(s3_server, s3_env) == [obj.uri.removeprefix(s3_env + "/")]
    local = tmp_path / "a.txt"
    local.write_bytes(b"local")
    assert store.read_bytes(str(local)) == b"local"
    assert store.options_for(str(local)) == {}
    # the secret is in neither repr nor the masked settings
    assert "conn-secret-4711" not in repr(opts) and "conn-secret-4711" not in json.dumps(settings.masked())
    assert "AKIDCONNECTION" in settings.masked()["storage"]
    assert opts.for_fsspec()["client_kwargs"] == {"region_name": "us-east-1"}


def test_a_url_data_dir_stays_text_and_needs_a_shared_store():
    s = load_settings({"FIGALIGN_DATA_DIR": "s3://bucket/prefix", "FIGALIGN_DATABASE_URL": "postgresql://u@h/d"})
    assert s.data_dir == "s3://bucket/prefix" and isinstance(s.data_dir, str) and s.remote_data
    assert location.join(s.data_dir, "exports", "v1") == "s3://bucket/prefix/exports/v1"
    with pytest.raises(ConfigError, match="FIGALIGN_DATABASE_URL"):
        load_settings({"FIGALIGN_DATA_DIR": "s3://bucket/prefix"})
    assert load_settings({"FIGALIGN_STORAGE_REQUESTER_PAYS": "1", "FIGALIGN_DATA_DIR": "s3://b",
                          "FIGALIGN_DATABASE_URL": "postgresql://u@h/d"}).storage_options == {"requester_pays": True}
    # a local folder: the old behaviour, as text
    local = load_settings({"FIGALIGN_DATA_DIR": "data"})
    assert local.data_dir == "data" and local.storage_options == {}
    assert local.effective_database_url == f"sqlite:///{Path('data').resolve() / 'figalign.db'}"


def test_figalign_storage_connection_maps_to_storage_options(monkeypatch):
    sys.path.insert(0, str(ROOT / "plugins"))
    from figalign_airflow.hooks import overrides_from_connections

    for name in ("GROBID", "VLLM", "STORE"):
        monkeypatch.delenv(f"AIRFLOW_CONN_FIGALIGN_{name}", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_FIGALIGN_STORAGE", json.dumps({
        "conn_type": "aws", "login": "AKIDEXAMPLE", "password": "wJalrXUtnFEMI",
        "extra": {"endpoint_url": "http://minio:9000", "region_name": "eu-west-1", "requester_pays": True}}))
    opts = overrides_from_connections()["storage"]
    assert opts.for_fsspec() == {"key": "AKIDEXAMPLE", "secret": "wJalrXUtnFEMI", "endpoint_url": "http://minio:9000",
                                 "client_kwargs": {"region_name": "eu-west-1"}, "requester_pays": True}
    assert "wJalrXUtnFEMI" not in repr(opts)


def test_ingest_from_an_s3_folder_records_the_urls(s3_env, s3_server, sqlite_engine, tmp_path, monkeypatch):
    from sqlalchemy import select

    from figalign.sources.local import ingest, mirrored
    from figalign.store.db import session_scope
    from figalign.store.models import Paper, PaperFile

    monkeypatch.chdir(tmp_path)
    client = s3_server.client()
    bucket = s3_env.removeprefix("s3://")
    for path in sorted((FIXTURES / "papers").rglob("*")):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"in/{path.relative_to(FIXTURES / 'papers').as_posix()}",
                              Body=path.read_bytes())
    store = ArtifactStore(f"{s3_env}/data")
    with mirrored(f"{s3_env}/in") as folder, session_scope(sqlite_engine) as s:
        ids = ingest(s, store, folder, licence="CC BY", origin=f"{s3_env}/in")
    assert not folder.exists()  # the local copy is gone
    assert len(ids) == 3
    with session_scope(sqlite_engine) as s:
        folders = {p.source_urls["folder"] for p in s.scalars(select(Paper))}
        origins = set(s.scalars(select(PaperFile.origin_url)))
    assert folders == {f"{s3_env}/in"}
    assert f"{s3_env}/in/pone.0000010/pone.0000010.xml" in origins
    assert all(o.startswith(f"{s3_env}/in/") for o in origins)
    assert any(k.startswith("data/objects/") for k in keys(s3_server, s3_env))
    with pytest.raises(ConfigError, match="does not exist"):
        with mirrored(f"{s3_env}/nothing-here"):
            pass
    no_local_s3_folder(tmp_path)


def test_explorer_serves_images_from_s3(s3_env, s3_server, sqlite_engine, sqlite_url, tmp_path):
    from fastapi.testclient import TestClient

    from figalign.explore.app import create_app
    from tests.explore.seed import seed

    pytest.importorskip("pymupdf")
    seeded = seed(sqlite_engine, f"{s3_env}/data")
    fid, sha = next(iter(seeded.image_shas.items()))
    app = create_app(Settings(database_url=sqlite_url, data_dir=f"{s3_env}/data"))
    with TestClient(app) as client:
        resp = client.get(f"/image/{sha}")
        assert resp.status_code == 200
        assert hashlib.sha256(resp.content).hexdigest() == sha
        # a store whose recorded URIs point elsewhere still finds the object under this data dir
        from sqlalchemy import update

        from figalign.store.db import session_scope
        from figalign.store.models import Artifact

        with session_scope(sqlite_engine) as s:
            s.execute(update(Artifact).where(Artifact.sha256 == sha)
                      .values(storage_uri=f"s3://elsewhere/objects/{sha[:2]}/{sha[2:4]}/{sha}.png"))
        resp = client.get(f"/image/{sha}")
        assert resp.status_code == 200 and hashlib.sha256(resp.content).hexdigest() == sha
    app.state.engine.dispose()
    assert os.path.isdir(tmp_path) and not (tmp_path / "s3:").exists()


def test_locations_are_text_for_urls_and_paths_for_folders(tmp_path):
    assert location.is_url("s3://b/p") and location.is_url("memory://x") and not location.is_url("data")
    assert not location.is_url("file:///tmp/x") and location.local_path("file:///tmp/x") == Path("/tmp/x")
    assert location.join("s3://b/p/", "/objects/", "ab") == "s3://b/p/objects/ab"
    assert location.join(tmp_path, "objects", "ab") == str(tmp_path / "objects" / "ab")
    with pytest.raises(ValueError):
        location.local_path("s3://b/p")


def test_any_fsspec_url_works_not_only_s3():
    """memory:// is another fsspec filesystem (one that needs directories made for it)."""
    import fsspec

    store = ArtifactStore("memory://figalign-any")
    obj = store.put_bytes(b"bytes in memory", ext=".txt")
    assert obj.uri.startswith("memory://figalign-any/objects/") and store.read_bytes(obj.uri) == b"bytes in memory"
    assert fsspec.filesystem("memory").exists(obj.uri.removeprefix("memory://"))


def test_requester_pays_requests_reach_the_server(s3_env, s3_server):
    """With requester_pays the requests carry x-amz-request-payer (s3fs RequestPayer) and work."""
    settings = Settings(data_dir=f"{s3_env}/rp", database_url="postgresql+psycopg2://u@h/db",
                        storage=StorageOptions(requester_pays=True))
    store = ArtifactStore.from_settings(settings)
    assert store.storage_options == {"requester_pays": True}
    obj = store.put_bytes(b"billed to the reader", ext=".txt")
    fs, _ = location.filesystem(obj.uri, store.storage_options)
    assert fs.req_kw == {"RequestPayer": "requester"}
    assert store.read_bytes(obj.uri) == b"billed to the reader"
    assert keys(s3_server, s3_env) == [obj.uri.removeprefix(s3_env + "/")]
