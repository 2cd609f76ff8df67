"""Hooks: Airflow connections override the FIGALIGN_* environment inside Airflow.

Operators of a shared deployment keep service addresses and secrets in Airflow connections
(`figalign_grobid`, `figalign_vllm`, `figalign_store`, `figalign_storage`); tasks call ``figalign_settings()``
and get the same frozen ``Settings`` the CLI builds from the environment, with those fields
replaced. A connection that does not exist leaves the environment's value in place.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from figalign.config import Settings, StorageOptions, load_settings

log = logging.getLogger(__name__)


def _connection(conn_id: str):
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:  # the connection is optional: the environment stands
        log.debug("connection %s not defined; using the FIGALIGN_* environment", conn_id)
        return None


def _http_url(conn, default_path: str = "") -> str:
    scheme = conn.schema if conn.schema in ("http", "https") else "http"
    port = f":{conn.port}" if conn.port else ""
    host = conn.host or ""
    if host.startswith(("http://", "https://")):
        return host.rstrip("/") + default_path
    return f"{scheme}://{host}{port}{default_path}"


def storage_options(conn) -> StorageOptions:
    """An ``aws``-type connection as the data dir's fsspec options.

    login/password are the access key id and secret; extra takes the AWS connection's own
    keys ``endpoint_url`` and ``region_name`` (``region`` is accepted too) and
    ``requester_pays`` (true for buckets whose owner bills the reader, such as arXiv's).
    Fields left empty fall back to the standard AWS variables, which s3fs reads itself.
    """
    extra = conn.extra_dejson or {}
    pays = extra.get("requester_pays", False)
    return StorageOptions(key=conn.login or "", secret=conn.password or "",
                          endpoint_url=extra.get("endpoint_url") or "",
                          region=extra.get("region_name") or extra.get("region") or "",
                          requester_pays=pays if isinstance(pays, bool) else str(pays).lower() in ("1", "true", "yes"))


def overrides_from_connections() -> dict[str, Any]:
    """Settings fields taken from the figalign_* Airflow connections that exist."""
    out: dict[str, Any] = {}
    if conn := _connection("figalign_grobid"):
        out["grobid_url"] = _http_url(conn)
    if conn := _connection("figalign_vllm"):
        extra = conn.extra_dejson or {}
        out["vllm_base_url"] = _http_url(conn, extra.get("path", "/v1"))
        if extra.get("model"):
            out["vllm_model"] = extra["model"]
        if conn.password:
            out["vllm_api_key"] = conn.password
    if conn := _connection("figalign_store"):
        out["database_url"] = conn.get_uri().replace("postgres://", "postgresql+psycopg2://", 1)
    if conn := _connection("figalign_storage"):
        out["storage"] = storage_options(conn)
    return out


def bulk_storage_options(conn_id: str = "figalign_bulk_aws") -> dict[str, Any]:
    """s3fs options for the requester-pays bulk buckets from an Airflow connection (login =
    access key id, password = secret; extra ``endpoint_url``, ``region_name``, ``token``).
    Without the connection: none, and the standard AWS chain (environment, profile, role) applies."""
    conn = _connection(conn_id)
    if conn is None:
        return {}
    extra = conn.extra_dejson or {}
    out: dict[str, Any] = {}
    if conn.login:
        out["key"] = conn.login
    if conn.password:
        out["secret"] = conn.password
    if extra.get("token"):
        out["token"] = extra["token"]
    client = {k: extra[k] for k in ("endpoint_url", "region_name") if extra.get(k)}
    if client:
        out["client_kwargs"] = client
    return out


def figalign_settings() -> Settings:
    """The effective settings of a task: environment, then Airflow connections."""
    return load_settings(**overrides_from_connections())


class FigalignHook(BaseHook):
    """A hook object for users who prefer ``FigalignHook().get_settings()`` in their own tasks."""

    conn_name_attr = "figalign_conn_id"
    default_conn_name = "figalign_vllm"
    conn_type = "http"
    hook_name = "figalign"

    def get_settings(self) -> Settings:
        return figalign_settings()

    def get_conn(self) -> Settings:
        return self.get_settings()
