"""The FIGALIGN_* configuration contract."""

from __future__ import annotations

import pytest

from figalign.cli import main
from figalign.config import ENV_VARS, Settings, load_settings
from figalign.errors import ConfigError


def test_defaults_need_no_environment(tmp_path):
    s = load_settings({"FIGALIGN_DATA_DIR": str(tmp_path)})
    assert s.effective_database_url == f"sqlite:///{tmp_path.resolve() / 'figalign.db'}"
    assert s.grobid_url == "" and s.vllm_base_url == ""  # unset -> stage skipped, not a crash


def test_every_contract_variable_maps_to_a_field():
    names = {f"FIGALIGN_{n.upper()}" for n in Settings.__dataclass_fields__}
    assert set(ENV_VARS) <= names


def test_environment_overrides_and_settings_are_frozen():
    s = load_settings({"FIGALIGN_VLLM_BASE_URL": "http://127.0.0.1:8000/v1", "FIGALIGN_VLLM_MODEL": "qwen"})
    assert (s.vllm_base_url, s.vllm_model) == ("http://127.0.0.1:8000/v1", "qwen")
    with pytest.raises(AttributeError):
        s.vllm_model = "other"


@pytest.mark.parametrize("env", [{"FIGALIGN_DATABASE_URL": "mysql://x"}, {"FIGALIGN_GROBID_URL": "grobid:8070"}])
def test_invalid_values_are_rejected_clearly(env):
    with pytest.raises(ConfigError):
        load_settings(env)


def test_config_command_masks_secrets(monkeypatch, capsys):
    monkeypatch.setenv("FIGALIGN_VLLM_API_KEY", "sk-very-secret")
    monkeypatch.setenv("FIGALIGN_DATABASE_URL", "postgresql://figalign:hunter2@db:5432/figalign")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "sk-very-secret" not in out and "hunter2" not in out
    assert "vllm_api_key" in out and "***" in out and "postgresql://figalign:***@db:5432/figalign" in out
