"""Cutting releases from one processed store: licence filters, and the reasons for what was left out."""

from __future__ import annotations

import json

import pytest
import yaml

from figalign.errors import ConfigError
from figalign.export import run_export
from figalign.export.options import ExportOptions
from figalign.filters import FilterPolicy, parse_licences
from tests.figure_store import FigureStore, synthetic_figure

NC = "https://creativecommons.org/licenses/by-nc/4.0/"
CC0 = "https://creativecommons.org/publicdomain/zero/1.0/"
PROCESSED = FilterPolicy().with_licences(["cc-by-nc"])  # processed once, NC included


@pytest.fixture
def store(tmp_path):
    fs = FigureStore(tmp_path)
    papers = {"cc-by": fs.paper("PMC10"), "cc0": fs.paper("PMC11", licence="cc0", licence_url=CC0),
              "cc-by-nc": fs.paper("PMC12", licence="cc-by-nc", licence_url=NC)}
    ids = {}
    for i, (lic, paper) in enumerate([("cc-by", papers["cc-by"]), ("cc-by", papers["cc-by"]),
                                      ("cc0", papers["cc0"]), ("cc-by-nc", papers["cc-by-nc"])]):
        fid = fs.figure(paper, synthetic_figure(300 + i), caption=f"Figure {i}. Growth of cultures over days.",
                        recaptions=[dict(model="m", prompt_hash="h", text=f"A plot of culture growth {i}.")])
        ids.setdefault(lic, []).append(fid)
    yield fs, ids
    fs.engine.dispose()


def _card(out):
    text = (out / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---")[1])
    return text, front


def test_two_releases_from_one_store(store, tmp_path):
    fs, ids = store
    commercial = ExportOptions(licences=parse_licences("cc-by, CC0"))
    (res,) = run_export(fs.engine, fs.store, "webdataset", tmp_path / "c", policy=PROCESSED, options=commercial)
    assert res["samples"] == 3 and res["dropped"] == 1
    dropped = [json.loads(x) for x in (tmp_path / "c" / "dropped.jsonl").read_text().splitlines()]
    assert dropped == [{"figure_id": ids["cc-by-nc"][0], "key": dropped[0]["key"],
                        "reason": "licence-not-in-release:cc-by-nc"}]
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["licences"] == {"processed": ["cc-by", "cc-by-nc", "cc-by-sa", "cc0", "public-domain"],
                                    "release": ["cc-by", "cc0"], "mix": {"cc-by": 2, "cc0": 1}}
    assert manifest["selection"]["dropped"] == {"licence-not-in-release:cc-by-nc": 1}
    text, front = _card(tmp_path / "c")
    assert "**Licence mix of this release:** cc-by 2 (66.7%), cc0 1 (33.3%)" in text
    assert "cut with `--licences cc-by,cc0`" in text
    assert front["license"] == "other" and front["license_name"] == "mixed" and "cc0 1" in front["license_details"]

    (res,) = run_export(fs.engine, fs.store, "s1mmalign", tmp_path / "nc", policy=PROCESSED,
                        options=ExportOptions(licences=frozenset({"cc-by-nc"})))
    assert res["samples"] == 1
    text, front = _card(tmp_path / "nc")
    assert front["license"] == "cc-by-nc-4.0" and "cc-by-nc 1 (100.0%)" in text
    rec = json.loads((tmp_path / "nc" / "pmc" / "jsonl" / "pmc_recaption.jsonl").read_text())
    assert rec["figure_id"] == ids["cc-by-nc"][0] and rec["licence"] == "cc-by-nc"


def test_release_licence_must_have_been_processed(store, tmp_path):
    fs, _ = store
    with pytest.raises(ConfigError, match="not in the processing allow-list"):
        run_export(fs.engine, fs.store, "webdataset", tmp_path / "x", policy=FilterPolicy(),
                   options=ExportOptions(licences=frozenset({"cc-by-nc"})))
    with pytest.raises(ConfigError, match="unknown licence"):
        parse_licences("cc-by,cc-banana")
    assert parse_licences("") is None and parse_licences(["cc-by", "cc0,cc-by-sa"]) == {"cc-by", "cc0", "cc-by-sa"}


def test_processing_allow_list_from_env():
    policy = FilterPolicy.from_env({"FIGALIGN_PROCESS_LICENCES": "cc-by-nc,cc-by-nc-sa"})
    assert {"cc-by-nc", "cc-by-nc-sa", "cc-by"} <= policy.licences
    legacy = FilterPolicy.from_env({"FIGALIGN_EXPORT_LICENCES": "cc-by-nd"})
    assert "cc-by-nd" in legacy.licences  # the earlier name still works


def test_cli_release_licences(store, tmp_path, monkeypatch, capsys):
    from figalign.cli import main

    fs, _ = store
    monkeypatch.setenv("FIGALIGN_DATABASE_URL", fs.url)
    monkeypatch.setenv("FIGALIGN_DATA_DIR", str(fs.data_dir))
    monkeypatch.setenv("FIGALIGN_PROCESS_LICENCES", "cc-by-nc")
    assert main(["export", "--out", str(tmp_path / "cli"), "--format", "parquet", "--licences", "cc0"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["samples"] == 1 and result["dropped"] == 3
