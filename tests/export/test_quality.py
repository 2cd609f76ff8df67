"""The quality policy: each rule on hand-made samples, then applied by a real export."""

from __future__ import annotations

import json

import pytest

from figalign.errors import ConfigError
from figalign.export import run_export
from figalign.export.common import Sample
from figalign.export.quality import QualityPolicy, original_reason, quality_rules, recaption_reason
from tests.figure_store import FigureStore, synthetic_figure

CLIP = "clip_cosine_sentmean"


def _sample(scores: dict, recaption: str | None = "A recaption.") -> Sample:
    meta = {"figure_id": 1, "recaption": recaption, "recaption_model": "m", "recaption_prompt_hash": "h",
            "recaption_params_hash": "p", "metrics": [{"metric": k[0], "model": k[1], "caption_kind": k[2],
                                                      "value": v} for k, v in scores.items()]}
    return Sample("k", "pmc", "/x", "png", None, meta, 1, scores)


def _scores(orig=0.25, recap=0.30, pppl_o=20.0, pppl_r=8.0, model="ViT-L-14:openai"):
    out = {}
    if orig is not None:
        out[(CLIP, model, "original")] = orig
    if recap is not None:
        out[(CLIP, model, "recaption")] = recap
    out[("pppl", "scibert", "original")] = pppl_o
    out[("pppl", "scibert", "recaption")] = pppl_r
    return out


def test_defaults_keep_everything():
    policy = QualityPolicy()
    assert not policy.active and quality_rules(policy) == []
    assert QualityPolicy.from_env({}) == policy
    assert recaption_reason(_sample(_scores()), policy) is None and original_reason(_sample(_scores()), policy) is None


@pytest.mark.parametrize("policy,scores,why", [
    (QualityPolicy(min_clip_recaption=0.31), _scores(), "clip<0.31"),
    (QualityPolicy(min_clip_recaption=0.30), _scores(), None),
    (QualityPolicy(min_clip_recaption=0.1), _scores(recap=None), "clip-unscored"),
    (QualityPolicy(min_clip_gain=0.0), _scores(orig=0.31, recap=0.30), "clip-gain<0"),
    (QualityPolicy(min_clip_gain=0.05), _scores(orig=0.25, recap=0.30), None),
    (QualityPolicy(min_clip_gain=0.0), _scores(orig=None), "clip-gain-unscored"),
    (QualityPolicy(pppl_max=7.5), _scores(), "pppl>7.5"),
    (QualityPolicy(pppl_min=9), _scores(), "pppl<9"),
    (QualityPolicy(drop_flags=frozenset({"ungrounded-number"})),
     {**_scores(), ("flag:ungrounded-number", "validate-v2", "recaption"): 2.0}, "flag:ungrounded-number"),
    (QualityPolicy(drop_flags=frozenset({"ungrounded-entity"})),
     {**_scores(), ("flag:ungrounded-number", "validate-v2", "recaption"): 2.0}, None),
])
def test_recaption_rules(policy, scores, why):
    assert recaption_reason(_sample(scores), policy) == why


@pytest.mark.parametrize("policy,scores,why", [
    (QualityPolicy(min_clip_original=0.26), _scores(), "clip-original<0.26"),
    (QualityPolicy(min_clip_original=0.25), _scores(), None),
    (QualityPolicy(min_clip_original=0.2), _scores(orig=None), "clip-original-unscored"),
    (QualityPolicy(pppl_max=15), _scores(pppl_r=1), "original-pppl>15"),
])
def test_original_rules(policy, scores, why):
    assert original_reason(_sample(scores), policy) == why


def test_clip_model_and_metric_choice():
    scores = {**_scores(orig=0.2, recap=0.4, model="A"), (CLIP, "B", "original"): 0.5, (CLIP, "B", "recaption"): 0.1,
              ("clip_cosine", "A", "recaption"): 0.05}
    assert recaption_reason(_sample(scores), QualityPolicy(min_clip_gain=0.0)) is None  # model A: first by name
    assert recaption_reason(_sample(scores), QualityPolicy(min_clip_gain=0.0, clip_model="B")) == "clip-gain<0"
    assert recaption_reason(_sample(scores), QualityPolicy(min_clip_recaption=0.1, clip_metric="clip_cosine")) == \
        "clip<0.1"


def test_from_env_and_validation():
    policy = QualityPolicy.from_env({"FIGALIGN_QUALITY_MIN_CLIP_GAIN": "0", "FIGALIGN_QUALITY_PPPL_MAX": "80",
                                     "FIGALIGN_QUALITY_DROP_FLAGS": "ungrounded-number, too-long"})
    assert policy.min_clip_gain == 0.0 and policy.pppl_max == 80.0 and policy.active
    assert policy.drop_flags == {"ungrounded-number", "too-long"}
    with pytest.raises(ConfigError):
        QualityPolicy.from_env({"FIGALIGN_QUALITY_MIN_CLIP_GAIN": "high"})
    with pytest.raises(ConfigError):
        QualityPolicy(pppl_min=10, pppl_max=5)
    with pytest.raises(ConfigError):
        QualityPolicy(clip_metric="clipscore")


def test_rule_removes_recaption_with_its_metrics():
    (_, rule) = quality_rules(QualityPolicy(min_clip_gain=0.1))
    reason, after, change = rule(_sample(_scores()))
    assert reason is None and change == "recaption-removed:clip-gain<0.1"
    assert after.meta["recaption"] is None and after.meta["recaption_model"] is None
    assert all(m["caption_kind"] == "original" for m in after.meta["metrics"]) and after.meta["metrics"]
    assert after.notes == ("recaption-removed:clip-gain<0.1",)


@pytest.fixture
def scored(tmp_path):
    """Five recaptioned figures with CLIP (original, recaption) and PPPL scores."""
    fs = FigureStore(tmp_path)
    paper = fs.paper("PMC20")
    cases = {"good": (0.24, 0.31, 30), "worse": (0.30, 0.26, 25), "bad-original": (0.12, 0.29, 28),
             "odd-pppl": (0.25, 0.33, 400), "unscored": (None, None, 22)}
    ids = {}
    for i, (name, (orig, recap, pppl)) in enumerate(cases.items()):
        metrics = [dict(metric="pppl", model="scibert", value=pppl),
                   dict(metric="pppl", model="scibert", value=pppl / 2, caption_kind="recaption")]
        if orig is not None:
            metrics += [dict(metric=CLIP, model="ViT-L-14:openai", value=orig),
                        dict(metric=CLIP, model="ViT-L-14:openai", value=recap, caption_kind="recaption")]
        ids[name] = fs.figure(paper, synthetic_figure(400 + i), caption=f"Figure {i}. Cell counts per well.",
                              recaptions=[dict(model="m", prompt_hash="h", text=f"Bar chart of cell counts {i}.")],
                              metrics=metrics)
    yield fs, ids
    fs.engine.dispose()


def test_export_applies_the_policy_with_reasons(scored, tmp_path):
    fs, ids = scored
    policy = QualityPolicy(min_clip_original=0.2, min_clip_gain=0.0, pppl_max=300)
    (res,) = run_export(fs.engine, fs.store, "webdataset", tmp_path / "w", quality=policy)
    dropped = {json.loads(x)["figure_id"]: json.loads(x)["reason"]
               for x in (tmp_path / "w" / "dropped.jsonl").read_text().splitlines()}
    assert dropped == {ids["bad-original"]: "clip-original<0.2", ids["odd-pppl"]: "original-pppl>300",
                       ids["unscored"]: "clip-original-unscored"}
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["selection"] == {"dropped": {"clip-original-unscored": 1, "clip-original<0.2": 1,
                                                 "original-pppl>300": 1},
                                     "changed": {"recaption-removed:clip-gain<0": 1}}
    assert manifest["quality"]["min_clip_gain"] == 0.0 and res["samples"] == 2
    (res,) = run_export(fs.engine, fs.store, "webdataset", tmp_path / "w2", quality=QualityPolicy(pppl_max=100))
    assert res["samples"] == 4  # odd-pppl's original (400) drops it; its recaption alone (200) would not
    import webdataset as wds

    urls = sorted(str(p) for p in (tmp_path / "w" / "data").glob("*.tar"))
    got = {json.loads(s["json"])["figure_id"]: json.loads(s["json"]) for s in
           wds.WebDataset(urls, shardshuffle=False, empty_check=False)}
    assert set(got) == {ids["good"], ids["worse"]}
    assert got[ids["worse"]]["recaption"] is None and got[ids["good"]]["recaption"].startswith("Bar chart")
    card = (tmp_path / "w" / "README.md").read_text(encoding="utf-8")
    assert "remove a recaption whose CLIP gain (recaption − original) is below: 0" in card
    assert "| recaption-removed:clip-gain<0 | 1 |" in card and "| clip-original<0.2 | 1 |" in card

    (res,) = run_export(fs.engine, fs.store, "s1mmalign", tmp_path / "s1", quality=QualityPolicy(min_clip_gain=0.0))
    dropped = {json.loads(x)["figure_id"]: json.loads(x)["reason"]
               for x in (tmp_path / "s1" / "dropped.jsonl").read_text().splitlines()}
    assert dropped == {ids["worse"]: "recaption-removed:clip-gain<0", ids["unscored"]: "recaption-removed:clip-gain-unscored"}
    assert res["samples"] == 3


def test_export_defaults_change_nothing(scored, tmp_path):
    fs, _ = scored
    (res,) = run_export(fs.engine, fs.store, "webdataset", tmp_path / "w", quality=QualityPolicy())
    assert res["samples"] == 5 and res["dropped"] == 0
    card = (tmp_path / "w" / "README.md").read_text(encoding="utf-8")
    assert "the defaults, which keep every pair" in card


def test_cli_quality_flags(scored, tmp_path, monkeypatch, capsys):
    from figalign.cli import main

    fs, _ = scored
    monkeypatch.setenv("FIGALIGN_DATABASE_URL", fs.url)
    monkeypatch.setenv("FIGALIGN_DATA_DIR", str(fs.data_dir))
    monkeypatch.setenv("FIGALIGN_QUALITY_PPPL_MAX", "300")
    assert main(["export", "--out", str(tmp_path / "c"), "--format", "webdataset", "--min-clip-original", "0.2"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["samples"] == 2 and result["dropped"] == 3


def test_card_says_how_it_was_measured_beside_the_papers_numbers(scored, tmp_path):
    fs, _ = scored
    run_export(fs.engine, fs.store, "parquet", tmp_path / "p", quality=QualityPolicy())
    card = (tmp_path / "p" / "README.md").read_text(encoding="utf-8")
    section = card.split("### How the metrics were measured")[1].split("## Selection")[0]
    for needle in ("`ViT-L-14:openai`", "centre-crop", "`clip_cosine_sentmean`", "Headline CLIP series",
                   "PPPL windowing", "`scibert`", "| quantity | figalign (this release) | S1-MMAlign paper (published) |",
                   "| +18.21% |", "| -27.77% |", "| 267 ± 261 |", "| 759 ± 251 |"):
        assert needle in section, needle
    # four scored figures: originals 0.24, 0.30, 0.12, 0.25 → recaptions 0.31, 0.26, 0.29, 0.33
    import statistics

    o, r = [0.24, 0.30, 0.12, 0.25], [0.31, 0.26, 0.29, 0.33]
    change = (statistics.mean(r) - statistics.mean(o)) / statistics.mean(o)
    assert f"| CLIP score, relative change of the mean | {change * 100:+.2f}% | +18.21% |" in section
