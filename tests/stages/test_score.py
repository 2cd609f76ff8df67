"""The score stage on a real SQLite store with tiny models loaded through the real loaders."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from figalign.config import Settings
from figalign.metrics.clipscore import ClipScorer
from figalign.metrics.pppl import PseudoPerplexity
from figalign.stages import score as score_mod
from figalign.stages.base import run_batch
from figalign.stages.score import ScoreOptions, ScoreStage, drain_score, run_score_batch
from figalign.store.db import session_scope
from figalign.store.models import Metric, StageRun
from tests.metrics.store_builder import add_figure, add_paper, make_store
from tests.metrics.tiny_models import tiny_model_settings

LONG = " ".join(f"Panel {c} shows the mean error of the cell growth rate over time in condition {c}."
                for c in "ABCDEF")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_model_settings(tmp_path_factory.mktemp("models"))


@pytest.fixture
def store(tmp_path):
    s = make_store(tmp_path)
    a = add_paper(s, 1, "arxiv", "cs")
    b = add_paper(s, 2, "pmc", "biology")
    add_figure(s, tmp_path, a, 1, recaption=LONG)
    add_figure(s, tmp_path, b, 2, color=(20, 20, 200), original="Mean error bar of the cells.",
               recaption="Rejected text.", recaption_status="rejected")
    add_figure(s, tmp_path, b, 3, original="Filtered figure.", filter_reason="too small")
    return s


def _settings(store, models, **over):
    return replace(Settings(), database_url=store.url, **{**models, **over})


def _metrics(engine):
    with session_scope(engine) as session:
        rows = session.execute(select(Metric.caption_id, Metric.metric, Metric.model, Metric.value, Metric.id,
                                      Metric.details, Metric.model_version)).all()
    return {(r[0], r[1]): r for r in rows}


def _runs(engine):
    with session_scope(engine) as session:
        return {r.entity_id: r for r in session.execute(select(StageRun).where(StageRun.stage == "score")).scalars()}


def test_scores_accepted_captions_once_with_the_right_values(store, models):
    settings = _settings(store, models)
    summary = drain_score(store.engine, settings, size=2, options=ScoreOptions(device="cpu"))
    wanted = [store.captions["1:original"], store.captions["1:recaption"], store.captions["2:original"]]
    assert summary.claimed == 3 and dict(summary.statuses) == {"done": 3}
    rows = _metrics(store.engine)
    assert sorted({c for c, _ in rows}) == sorted(wanted)
    assert len(rows) == 9 + 2  # + figure 1's two CLIP gains (figure 2's recaption was rejected)
    rec, orig = store.captions["1:recaption"], store.captions["1:original"]
    for metric in ("clip_cosine", "clip_cosine_sentmean"):
        gain = rows[(rec, f"{metric}_gain")]
        assert gain[3] == pytest.approx(rows[(rec, metric)][3] - rows[(orig, metric)][3])
        assert gain[5]["original_caption_id"] == orig
    pppl = PseudoPerplexity.load(models["pppl_model"], device="cpu")
    clip = ClipScorer.load(models["clip_model"], models["clip_pretrained"], device="cpu")
    texts = {store.captions["1:original"]: "The cells grow.", store.captions["1:recaption"]: LONG,
             store.captions["2:original"]: "Mean error bar of the cells."}
    for cid, text in texts.items():
        assert rows[(cid, "pppl")][3] == pytest.approx(pppl.score([text])[0].pppl, rel=1e-5)
        assert rows[(cid, "pppl")][6] == pppl.model_version
        assert rows[(cid, "clip_cosine")][6] == clip.model_version
    long_row = rows[(store.captions["1:recaption"], "clip_cosine_sentmean")]
    assert long_row[5]["text_strategy"] == "sentence-mean" and long_row[5]["n_chunks"] > 1
    assert rows[(store.captions["1:recaption"], "clip_cosine")][5]["fits_context"] is False
    assert long_row[5]["clipscore"] == pytest.approx(2.5 * max(long_row[3], 0))


def test_second_run_does_nothing(store, models):
    settings = _settings(store, models)
    drain_score(store.engine, settings, options=ScoreOptions(device="cpu"))
    before = _metrics(store.engine)
    again = drain_score(store.engine, settings, options=ScoreOptions(device="cpu"))
    assert again.enqueued == 0 and again.claimed == 0
    assert _metrics(store.engine) == before


def test_claimed_batch_is_one_model_pass_per_metric(store, models, monkeypatch):
    settings = _settings(store, models)
    options = ScoreOptions(device="cpu")
    calls = {"pppl": 0, "clip": 0}
    for family in calls:
        scorer = score_mod.get_scorer(family, settings, options)
        real = scorer.score

        def counted(*a, _real=real, _family=family, **k):
            calls[_family] += 1
            return _real(*a, **k)

        monkeypatch.setattr(scorer, "score", counted)
    summary = run_score_batch(store.engine, settings, 10, options=options)
    assert summary.claimed == 3
    assert calls == {"pppl": 1, "clip": 2}  # one pass for PPPL, one per CLIP text strategy


def test_unavailable_models_skip_every_item_then_score_later(store, models, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = _settings(store, models, pppl_model="allenai/scibert_scivocab_uncased", clip_model="ViT-L-14",
                        clip_pretrained="openai")
    summary = drain_score(store.engine, offline, options=ScoreOptions(device="cpu"))
    assert summary.claimed == 3 and dict(summary.statuses) == {"skipped": 3}
    assert _metrics(store.engine) == {}
    run = next(iter(_runs(store.engine).values()))
    assert "allenai/scibert_scivocab_uncased" in run.reason and "hf download" in run.reason
    assert "timm/vit_large_patch14_clip_224.openai" in run.reason
    later = drain_score(store.engine, _settings(store, models), options=ScoreOptions(device="cpu"))
    assert later.claimed == 3 and dict(later.statuses) == {"done": 3}
    assert len(_metrics(store.engine)) == 9 + 2  # + two CLIP gains


def test_metric_family_added_later_keeps_existing_rows(store, models):
    settings = _settings(store, models)
    drain_score(store.engine, settings, options=ScoreOptions(metrics=("pppl",), device="cpu"))
    first = _metrics(store.engine)
    assert {m for _, m in first} == {"pppl"} and len(first) == 3
    second = drain_score(store.engine, settings, options=ScoreOptions(device="cpu"))
    assert second.claimed == 3
    rows = _metrics(store.engine)
    assert len(rows) == 9 + 2 and all(rows[k] == v for k, v in first.items())


def test_bad_image_fails_that_item_only(tmp_path, models):
    s = make_store(tmp_path)
    p = add_paper(s, 1, "local", "cs")
    add_figure(s, tmp_path, p, 1)
    add_figure(s, tmp_path, p, 2, image_bytes=b"\x89PNG broken", original="Mean error of the cells.")
    summary = drain_score(s.engine, _settings(s, models), options=ScoreOptions(device="cpu"))
    assert dict(summary.statuses) == {"done": 1, "failed": 1}
    bad = _runs(s.engine)[str(s.captions["2:original"])]
    assert bad.status == "failed" and bad.error_class == "BadInputError"
    rows = _metrics(s.engine)
    assert (s.captions["2:original"], "pppl") in rows  # text metrics of the bad-image item are kept
    assert (s.captions["2:original"], "clip_cosine") not in rows


def test_generic_runner_gives_the_same_rows(store, models, tmp_path):
    settings = _settings(store, models)
    summary = run_batch(ScoreStage(settings, ScoreOptions(device="cpu")), store.engine, size=10)
    assert dict(summary.statuses) == {"done": 3}
    generic = {k: v[3] for k, v in _metrics(store.engine).items()}
    with session_scope(store.engine) as session:
        session.query(Metric).delete()
        session.query(StageRun).delete()
    drain_score(store.engine, settings, options=ScoreOptions(device="cpu"))
    batched = {k: v[3] for k, v in _metrics(store.engine).items()}
    assert generic.keys() == batched.keys()
    assert all(generic[k] == pytest.approx(batched[k], abs=1e-5) for k in generic)


def test_limit_bounds_the_work(store, models):
    summary = drain_score(store.engine, _settings(store, models), size=1, limit=2, options=ScoreOptions(device="cpu"))
    assert summary.claimed == 2 and len({c for c, _ in _metrics(store.engine)}) == 2
