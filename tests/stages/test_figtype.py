"""Zero-shot figure typing: prompts file, labels stored as metric rows, the export's table filter.

A tiny CLIP with random weights only exercises the plumbing (which label wins means nothing
here); accuracy with real weights is measured by bench/eval_figure_types.py (docs/quality.md).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from sqlalchemy import select

from figalign.config import Settings
from figalign.errors import ConfigError
from figalign.export import run_export
from figalign.export.quality import QualityPolicy
from figalign.metrics.figtype import FigureTyper, TypePrompts, softmax
from figalign.stages.figtype import label_figures
from figalign.store.db import session_scope
from figalign.store.models import Metric
from tests.figure_store import FigureStore, synthetic_figure
from tests.metrics.tiny_models import make_clip_files


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config, checkpoint = make_clip_files(tmp_path_factory.mktemp("clip"))
    return {"clip_model": str(config), "clip_pretrained": str(checkpoint)}


def test_prompt_file_is_versioned_and_covers_tables():
    prompts = TypePrompts.load()
    assert prompts.version == "figure_types_v1" and len(prompts.sha256) == 16
    assert "table" in prompts.labels and all(prompts.labels.values())
    with pytest.raises(ConfigError):
        TypePrompts.load("figure_types_v0")
    assert sum(softmax([1.0, 2.0, 3.0])) == pytest.approx(1.0)


def test_labels_are_stored_once_and_used_by_the_table_filter(tmp_path, tiny):
    fs = FigureStore(tmp_path)
    paper = fs.paper("PMC30")
    ids = [fs.figure(paper, synthetic_figure(500 + i), caption=f"Figure {i}. Survival of mice over weeks.",
                     recaptions=[dict(model="m", prompt_hash="h", text=f"Kaplan-Meier style curves {i}.")])
           for i in range(4)]
    settings = Settings(data_dir=fs.data_dir, database_url=fs.url, **tiny)
    first = label_figures(fs.engine, settings, batch=3)
    assert first.labelled == 4 and first.skipped is None and not first.failed
    assert sum(first.labels.values()) == 4
    again = label_figures(fs.engine, settings)
    assert again.labelled == 0  # idempotent: every figure has a label under this model + prompts
    with session_scope(fs.engine) as s:
        rows = s.execute(select(Metric).where(Metric.metric.startswith("figtype:"))).scalars().all()
    assert sorted(r.figure_id for r in rows) == ids and {r.caption_kind for r in rows} == {"original"}
    prompts = TypePrompts.load()
    for r in rows:
        assert r.model.endswith("|figure_types_v1") and r.model_version == prompts.sha256
        assert r.metric == "figtype:" + r.details["label"] and set(r.details["scores"]) == set(prompts.labels)
        assert r.value == pytest.approx(max(r.details["scores"].values()), abs=1e-5)
        assert sum(r.details["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    labels = {r.figure_id: r.details["label"] for r in rows}
    chosen = labels[ids[0]]
    (res,) = run_export(fs.engine, fs.store, "webdataset", tmp_path / "w",
                        quality=QualityPolicy(drop_figure_types=frozenset({chosen})))
    dropped = [json.loads(x) for x in (tmp_path / "w" / "dropped.jsonl").read_text().splitlines()]
    assert {d["figure_id"] for d in dropped} == {f for f, lab in labels.items() if lab == chosen}
    assert {d["reason"] for d in dropped} == {f"figure-type:{chosen}"}
    (res,) = run_export(fs.engine, fs.store, "webdataset", tmp_path / "w2",
                        quality=QualityPolicy(drop_figure_types=frozenset({chosen}), min_figure_type_score=1.01))
    assert res["dropped"] == 0  # no label is that certain
    fs.engine.dispose()


def test_typer_scores_the_same_image_the_same_and_without_weights_nothing_is_written(tmp_path, tiny):
    from PIL import Image

    from figalign.metrics.clipscore import ClipScorer

    scorer = ClipScorer.load(tiny["clip_model"], tiny["clip_pretrained"], device="cpu")
    typer = FigureTyper(scorer, TypePrompts.load())
    img = Image.new("RGB", (80, 60), "white")
    a, b = typer.classify([img, img.copy()])
    assert a == b and a.label in TypePrompts.load().labels
    fs = FigureStore(tmp_path)
    fs.figure(fs.paper("PMC31"), synthetic_figure(600))
    settings = replace(Settings(data_dir=fs.data_dir, database_url=fs.url), clip_pretrained="")
    summary = label_figures(fs.engine, settings)
    assert summary.labelled == 0 and "no CLIP weights" in summary.skipped
    fs.engine.dispose()


def test_labelled_corpus_set_is_reproducible_and_the_eval_runs(tmp_path, tiny):
    """Every labelled crop is re-made by the parser under its recorded name; the eval's plumbing
    runs end to end (the tiny model's accuracy means nothing and is not asserted)."""
    import importlib.util

    from figalign.metrics.clipscore import ClipScorer
    from tests.figure_store import CORPUS, ROOT

    if not CORPUS.is_dir():
        pytest.skip(f"needs the shared corpus at {CORPUS}")
    spec = importlib.util.spec_from_file_location("eval_figure_types", ROOT / "bench" / "eval_figure_types.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    items = json.loads(module.LABELS.read_text())["items"]
    assert len(items) >= 30 and {"table", "plot", "diagram"} <= {i["label"] for i in items}
    assert {i["label"] for i in items} <= set(TypePrompts.load().labels)
    pdfs = sorted({i["pdf"] for i in items if "pdf" in i})
    sample = [i for i in items if "image" in i or i.get("pdf") in pdfs[:2]]
    pairs = module.crops(CORPUS, sample, tmp_path)
    assert all(p.is_file() for p, _ in pairs), [str(p) for p, _ in pairs if not p.is_file()]
    typer = FigureTyper(ClipScorer.load(tiny["clip_model"], tiny["clip_pretrained"], device="cpu"), TypePrompts.load())
    result = module.evaluate(pairs, typer)
    assert result["n"] == len(sample) and result["missing_crops"] == 0 and 0 <= result["accuracy"] <= 1
