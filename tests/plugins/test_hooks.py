"""Airflow connections override the FIGALIGN_* environment inside tasks."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "plugins"))


@pytest.fixture
def connections(monkeypatch):
    """Connections given the way Airflow reads them from the environment (AIRFLOW_CONN_*)."""
    monkeypatch.setenv("AIRFLOW_CONN_FIGALIGN_GROBID", json.dumps({"conn_type": "http", "host": "grobid", "port": 8070}))
    monkeypatch.setenv("AIRFLOW_CONN_FIGALIGN_VLLM", json.dumps({
        "conn_type": "http", "host": "vllm", "port": 8000, "schema": "http", "password": "sk-test",
        "extra": {"model": "Qwen/Qwen3-VL-8B-Instruct", "path": "/v1"}}))
    monkeypatch.delenv("AIRFLOW_CONN_FIGALIGN_STORE", raising=False)


def test_connections_override_the_environment(connections, monkeypatch):
    from figalign_airflow.hooks import figalign_settings

    monkeypatch.setenv("FIGALIGN_VLLM_MODEL", "env-model")
    s = figalign_settings()
    assert s.grobid_url == "http://grobid:8070"
    assert (s.vllm_base_url, s.vllm_model, s.vllm_api_key) == ("http://vllm:8000/v1", "Qwen/Qwen3-VL-8B-Instruct",
                                                               "sk-test")


def test_missing_connections_leave_the_environment_in_place(monkeypatch):
    from figalign_airflow.hooks import figalign_settings, overrides_from_connections

    for name in ("GROBID", "VLLM", "STORE"):
        monkeypatch.delenv(f"AIRFLOW_CONN_FIGALIGN_{name}", raising=False)
    monkeypatch.setenv("FIGALIGN_GROBID_URL", "http://127.0.0.1:8070")
    assert overrides_from_connections() == {}
    assert figalign_settings().grobid_url == "http://127.0.0.1:8070"


def test_bulk_credentials_come_from_the_connection(monkeypatch):
    from figalign_airflow.hooks import bulk_storage_options

    monkeypatch.delenv("AIRFLOW_CONN_FIGALIGN_BULK_AWS", raising=False)
    assert bulk_storage_options() == {}  # no connection: the standard AWS chain applies
    monkeypatch.setenv("AIRFLOW_CONN_FIGALIGN_BULK_AWS", json.dumps({
        "conn_type": "aws", "login": "AKIDEXAMPLE", "password": "s3cret",
        "extra": {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:9000"}}))
    options = bulk_storage_options()
    assert options == {"key": "AKIDEXAMPLE", "secret": "s3cret",
                       "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1"}}
    from figalign.sources.bulk_s3 import BulkLocation

    location = BulkLocation.from_env("biorxiv", {}, options)
    assert location.url == "s3://biorxiv-src-monthly"
    assert location.storage_options == {"requester_pays": True, **options}
