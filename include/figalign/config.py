"""Configuration: frozen dataclasses built from the FIGALIGN_* environment contract.

Deployment and evaluation tooling rely on these variable names. Inside Airflow, hooks in
``plugins/figalign_airflow`` may override single fields from Airflow connections. Unset
values mean the embedded default or "stage skipped", never a crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from figalign.errors import ConfigError
from figalign.location import is_url

ENV_VARS = (
    "FIGALIGN_DATABASE_URL",
    "FIGALIGN_DATA_DIR",
    "FIGALIGN_ARXIV_OAI_URL",
    "FIGALIGN_ARXIV_BASE_URL",
    "FIGALIGN_PMC_BASE_URL",
    "FIGALIGN_GROBID_URL",
    "FIGALIGN_VLLM_BASE_URL",
    "FIGALIGN_VLLM_MODEL",
    "FIGALIGN_VLLM_API_KEY",
    "FIGALIGN_PPPL_MODEL",
    "FIGALIGN_CLIP_MODEL",
    "FIGALIGN_CLIP_PRETRAINED",
    "FIGALIGN_CLIP_IMAGE_FIT",
    "FIGALIGN_CONTACT_EMAIL",
)
SECRET_FIELDS = {"vllm_api_key"}
DEFAULT_DATA_DIR = "data"


@dataclass(frozen=True)
class StorageOptions:
    """fsspec ``storage_options`` for an object-store data dir (the ``figalign_storage``
    Airflow connection fills them; see ``plugins/figalign_airflow/hooks.py``).

    Empty by default: s3fs/botocore then read the standard AWS variables themselves
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_DEFAULT_REGION``, profiles, instance roles), so nothing is copied here. The secret
    never appears in ``repr`` or ``Settings.masked``.
    """

    key: str = ""
    secret: str = field(default="", repr=False)
    endpoint_url: str = ""
    region: str = ""
    requester_pays: bool = False

    def for_fsspec(self) -> dict[str, Any]:
        """The keyword arguments s3fs takes (``S3FileSystem(**options)``); only set ones."""
        out: dict[str, Any] = {}
        if self.key:
            out["key"] = self.key
        if self.secret:
            out["secret"] = self.secret
        if self.endpoint_url:
            out["endpoint_url"] = self.endpoint_url
        if self.region:
            out["client_kwargs"] = {"region_name": self.region}
        if self.requester_pays:
            out["requester_pays"] = True
        return out

    def masked(self) -> str:
        shown = {k: v for k, v in self.for_fsspec().items() if k != "secret"}
        return repr({**shown, **({"secret": "***"} if self.secret else {})}) if shown or self.secret else "{}"


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one process.

    ``database_url`` defaults to SQLite under the data dir, so a fresh checkout runs with
    no servers. Service URLs left empty switch their stage to "skipped" with that reason.
    ``data_dir`` is text, a folder or an fsspec URL (``s3://bucket/prefix``), and stays
    text: see ``figalign.location`` for why it is never a ``Path``.
    """

    data_dir: str = DEFAULT_DATA_DIR
    database_url: str = ""
    arxiv_oai_url: str = "https://oaipmh.arxiv.org/oai"
    arxiv_base_url: str = "https://arxiv.org"
    pmc_base_url: str = "https://pmc-oa-opendata.s3.amazonaws.com"
    grobid_url: str = ""
    vllm_base_url: str = ""
    vllm_model: str = ""
    vllm_api_key: str = ""
    pppl_model: str = "allenai/scibert_scivocab_uncased"
    clip_model: str = "ViT-L-14"
    clip_pretrained: str = "openai"
    clip_image_fit: str = "centre-crop"  # or pad-square: wide figures keep their sides (metrics.clipscore)
    # what the weights were trained with: auto (the tag says; a checkpoint file must say), quick-gelu
    # (OpenAI's weights) or gelu (LAION, DataComp); see metrics.clipscore._file_quick_gelu
    clip_activation: str = "auto"
    contact_email: str = ""
    storage: StorageOptions = StorageOptions()

    def __post_init__(self):  # callers may still hand in a Path for a local folder
        object.__setattr__(self, "data_dir", os.fspath(self.data_dir))

    @property
    def remote_data(self) -> bool:
        """True when the data dir is an object-store (fsspec) URL."""
        return is_url(self.data_dir)

    @property
    def storage_options(self) -> dict[str, Any]:
        """What fsspec is given for the data dir's URLs (nothing for a local folder)."""
        return self.storage.for_fsspec() if self.remote_data else {}

    @property
    def effective_database_url(self) -> str:
        """The store URL: FIGALIGN_DATABASE_URL, else SQLite in a local data dir.

        A SQLite file cannot live in an object store (and one per machine would not be a
        shared store), so a URL data dir requires FIGALIGN_DATABASE_URL.
        """
        if self.database_url:
            return self.database_url
        if self.remote_data:
            raise ConfigError(f"FIGALIGN_DATA_DIR is a URL ({self.data_dir}), so the store cannot default to "
                              "SQLite in it: set FIGALIGN_DATABASE_URL to a Postgres URL "
                              "(postgresql+psycopg2://user@host/db) shared by every worker")
        return f"sqlite:///{os.path.abspath(os.path.join(self.data_dir, 'figalign.db'))}"

    def masked(self) -> dict[str, str]:
        """Every field as text with secrets and URL passwords hidden, for printing."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = str(getattr(self, f.name))
            if f.name in SECRET_FIELDS and value:
                value = "***"
            if f.name == "storage":
                value = self.storage.masked()
            out[f.name] = _mask_url_password(value)
        out["effective_database_url"] = _mask_url_password(self.effective_database_url)
        return out


def _mask_url_password(value: str) -> str:
    """Replace the password in scheme://user:pass@host URLs with ***."""
    if "://" not in value or "@" not in value:
        return value
    scheme, rest = value.split("://", 1)
    creds, host = rest.split("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def load_settings(env: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Build Settings from the environment (or a given mapping) plus explicit overrides."""
    env = os.environ if env is None else env
    base = Settings()
    values = {}
    for f in fields(Settings):
        var = "FIGALIGN_" + f.name.upper()
        if f.name != "storage" and env.get(var):
            values[f.name] = env[var].strip()
    if env.get("FIGALIGN_STORAGE_REQUESTER_PAYS", "").strip().lower() in ("1", "true", "yes"):
        values["storage"] = StorageOptions(requester_pays=True)
    settings = replace(base, **values)
    if overrides:
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if settings.clip_image_fit not in ("centre-crop", "pad-square"):
        raise ConfigError(f"FIGALIGN_CLIP_IMAGE_FIT must be centre-crop or pad-square, got {settings.clip_image_fit!r}")
    if settings.clip_activation not in ("auto", "quick-gelu", "gelu"):
        raise ConfigError(f"FIGALIGN_CLIP_ACTIVATION must be auto, quick-gelu or gelu, got {settings.clip_activation!r}")
    url = settings.effective_database_url
    if not url.split(":", 1)[0].startswith(("sqlite", "postgresql")):
        raise ConfigError(f"FIGALIGN_DATABASE_URL must be sqlite:// or postgresql://, got {url.split(':', 1)[0]}")
    for name in ("grobid_url", "vllm_base_url", "arxiv_oai_url", "arxiv_base_url", "pmc_base_url"):
        value = getattr(settings, name)
        if value and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
