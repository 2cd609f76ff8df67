"""Configuration: frozen dataclasses built from the FIGALIGN_* environment contract.

Deployment and evaluation tooling rely on these variable names. Inside Airflow, hooks in
``plugins/figalign_airflow`` may override single fields from Airflow connections. Unset
values mean the embedded default or "stage skipped", never a crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Mapping

from figalign.errors import ConfigError

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
class Settings:
    """The effective configuration of one process.

    ``database_url`` defaults to SQLite under the data dir, so a fresh checkout runs with
    no servers. Service URLs left empty switch their stage to "skipped" with that reason.
    """

    data_dir: Path = Path(DEFAULT_DATA_DIR)
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
    contact_email: str = ""

    @property
    def effective_database_url(self) -> str:
        """The store URL: FIGALIGN_DATABASE_URL, else SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'figalign.db').resolve()}"

    def masked(self) -> dict[str, str]:
        """Every field as text with secrets and URL passwords hidden, for printing."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = str(getattr(self, f.name))
            if f.name in SECRET_FIELDS and value:
                value = "***"
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
        if env.get(var):
            values[f.name] = Path(env[var]) if f.name == "data_dir" else env[var].strip()
    settings = replace(base, **values)
    if overrides:
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if settings.clip_image_fit not in ("centre-crop", "pad-square"):
        raise ConfigError(f"FIGALIGN_CLIP_IMAGE_FIT must be centre-crop or pad-square, got {settings.clip_image_fit!r}")
    url = settings.effective_database_url
    if not url.split(":", 1)[0].startswith(("sqlite", "postgresql")):
        raise ConfigError(f"FIGALIGN_DATABASE_URL must be sqlite:// or postgresql://, got {url.split(':', 1)[0]}")
    for name in ("grobid_url", "vllm_base_url", "arxiv_oai_url", "arxiv_base_url", "pmc_base_url"):
        value = getattr(settings, name)
        if value and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
