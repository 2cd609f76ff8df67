"""The quality report from a store with known metric values: numbers, files, CLI."""

from __future__ import annotations

import argparse
import json
import statistics

import pytest

from figalign.cli.metrics import add_commands
from figalign.report import write_report
from figalign.store.db import session_scope
from figalign.store.models import Metric
from figalign.store.upsert import upsert
from tests.metrics.store_builder import add_figure, add_paper, make_store

# figure n -> (source, discipline, original cos, recaption cos, original pppl, recaption pppl)
DATA = {1: ("arxiv", "cs", 0.20, 0.26, 400.0, 40.0), 2: ("arxiv", "physics", 0.24, 0.27, 100.0, 30.0),
        3: ("pmc", "biology", 0.10, 0.25, 1000.0, 20.0), 4: ("pmc", "biology", 0.30, 0.28, 50.0, 25.0)}
ORIG = {n: "x" * (100 * n) for n in DATA}
RECAP = {n: "y" * (500 + 50 * n) for n in DATA}


@pytest.fixture
def store(tmp_path):
    s = make_store(tmp_path)
    for n, (source, disc, oc, rc, op, rp) in DATA.items():
        paper = add_paper(s, n, source, disc)
        fid = add_figure(s, tmp_path, paper, n, original=ORIG[n], recaption=RECAP[n])
        with session_scope(s.engine) as session:
            for kind, cos, pppl in (("original", oc, op), ("recaption", rc, rp)):
                cid = s.captions[f"{n}:{kind}"]
                base = dict(figure_id=fid, caption_id=cid, caption_kind=kind)
                upsert(session, Metric, dict(base, metric="pppl", model="bert", value=pppl, details={}),
                       key=("caption_id", "metric", "model"))
                upsert(session, Metric, dict(base, metric="clip_cosine", model="clip:t", value=cos,
                                             details={"clipscore": 2.5 * cos, "text_strategy": "truncate"}),
                       key=("caption_id", "metric", "model"))
    return s


def _rel(a, b):
    return (b - a) / abs(a)


def test_report_numbers_and_files(store, tmp_path):
    out = tmp_path / "rep"
    report = write_report(store.engine, out)
    overall = report["groups"]["all"]["all"]
    clip = overall["metrics"]["clip_cosine|clip:t"]
    o = [v[2] for v in DATA.values()]
    r = [v[3] for v in DATA.values()]
    assert clip["original"]["mean"] == pytest.approx(statistics.mean(o))
    assert clip["recaption"]["median"] == pytest.approx(statistics.median(r))
    assert clip["recaption"]["std"] == pytest.approx(statistics.stdev(r))
    assert clip["mean_change"] == pytest.approx(_rel(statistics.mean(o), statistics.mean(r)))
    assert clip["variance_change"] == pytest.approx(_rel(statistics.variance(o), statistics.variance(r)))
    assert clip["paired_figures"] == 4
    score = overall["metrics"]["clip_cosine:clipscore|clip:t"]
    assert score["mean_change"] == pytest.approx(clip["mean_change"])
    log10 = overall["metrics"]["pppl:log10|bert"]
    assert log10["recaption"]["mean"] < log10["original"]["mean"]
    lengths = overall["length_chars"]
    assert lengths["original"]["mean"] == pytest.approx(statistics.mean(len(t) for t in ORIG.values()))
    assert lengths["recaption"]["std"] == pytest.approx(statistics.stdev(len(t) for t in RECAP.values()))
    assert overall["counts"] == {"figures": 4, "captions": {"original": 4, "recaption": 4}, "metric_rows": 16}
    pmc = report["groups"]["source"]["pmc"]["metrics"]["clip_cosine|clip:t"]
    assert pmc["original"]["n"] == 2 and pmc["mean_change"] == pytest.approx(_rel(0.20, 0.265))
    assert set(report["groups"]["discipline"]) == {"cs", "physics", "biology"}
    assert report["groups"]["discipline"]["biology"]["counts"]["figures"] == 2
    assert report["paper_reference"]["clip_mean_change"] == pytest.approx(0.1821)
    assert json.loads((out / "report.json").read_text())["groups"]["all"]["all"]["metrics"].keys() == \
        overall["metrics"].keys()
    md = (out / "report.md").read_text()
    assert "+18.21%" in md and "-27.77%" in md and "267 ± 261" in md and "## By source" in md
    assert f"{clip['mean_change'] * 100:+.2f}%" in md
    for name in ("ecdf_log10_pppl.png", "clip_hist.png", "length_hist.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"]({name})" in md


def test_empty_store_still_writes_a_report(tmp_path):
    s = make_store(tmp_path)
    report = write_report(s.engine, tmp_path / "empty")
    assert report["groups"]["all"]["all"]["counts"]["figures"] == 0
    assert report["groups"]["all"]["all"]["length_chars"]["mean_change"] is None
    assert (tmp_path / "empty" / "clip_hist.png").stat().st_size > 1000


def test_cli_commands_registered_and_report_runs(store, tmp_path, monkeypatch, capsys):
    from figalign.store.db import _engine_for

    monkeypatch.setenv("FIGALIGN_DATABASE_URL", store.url)
    _engine_for.cache_clear()
    ap = argparse.ArgumentParser()
    add_commands(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(["score", "--metric", "pppl", "--limit", "3"])
    assert (args.metric, args.limit, args.device) == ("pppl", 3, "auto")
    args = ap.parse_args(["report", "--out", str(tmp_path / "cli")])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["files"][0] == "report.json"
    assert (tmp_path / "cli" / "report.md").exists()
    with pytest.raises(SystemExit):
        ap.parse_args(["score", "--metric", "bleu"])


def test_report_says_how_it_was_measured_and_compares_with_the_paper(store, tmp_path):
    """Headline (sentence-mean) CLIP changes beside the paper's published ones; the measurement
    section names model, weights, text strategy, image fit and PPPL windowing."""
    with session_scope(store.engine) as session:
        for n, (_, _, oc, rc, _, _) in DATA.items():
            for kind, cos in (("original", oc + 0.01), ("recaption", rc + 0.02 * n)):
                cid = store.captions[f"{n}:{kind}"]
                upsert(session, Metric, dict(figure_id=_figure_of(session, cid), caption_id=cid, caption_kind=kind,
                                             metric="clip_cosine_sentmean", model="ViT-L-14:openai+pad-square",
                                             value=cos, details={"clipscore": 2.5 * cos}),
                       key=("caption_id", "metric", "model"))
        cid = store.captions["1:recaption"]
        upsert(session, Metric, dict(figure_id=_figure_of(session, cid), caption_id=cid, caption_kind="recaption",
                                     metric="flag:ungrounded-number", model="grounding-v1", value=2.0,
                                     details={"tokens": ["94.3%", "12 nm"]}), key=("caption_id", "metric", "model"))
    report = write_report(store.engine, tmp_path / "rep")
    head = report["headline"]
    o = [v[2] + 0.01 for v in DATA.values()]
    r = [v[3] + 0.02 * n for n, v in DATA.items()]
    assert head["clip_series"] == "clip_cosine_sentmean|ViT-L-14:openai+pad-square"
    assert head["clip_mean_change"] == pytest.approx(_rel(statistics.mean(o), statistics.mean(r)))
    assert head["clip_variance_change"] == pytest.approx(_rel(statistics.variance(o), statistics.variance(r)))
    overall = report["groups"]["all"]["all"]
    assert overall["flags"] == {"ungrounded-number": 1} and not any("flag:" in k for k in overall["metrics"])
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| quantity | figalign (this store) | S1-MMAlign paper (published) |" in md
    assert f"| CLIP score, relative change of the mean | {head['clip_mean_change'] * 100:+.2f}% | +18.21% |" in md
    assert "| caption length, recaption (chars, mean ± std) |" in md and "| 759 ± 251 |" in md
    section = md.split("## How it was measured")[1].split("## ")[0]
    for needle in ("`ViT-L-14:openai`", "pad-square", "centre-crop", "`clip_cosine_sentmean`", "Headline",
                   "75 BPE tokens", "PPPL windowing", "stride L//2", "`bert`"):
        assert needle in section, needle


def _figure_of(session, caption_id: int) -> int:
    from figalign.store.models import Caption

    return session.get(Caption, caption_id).figure_id
