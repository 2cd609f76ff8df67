"""Report tables: original vs recaption, overall, per source and per discipline.

Reproduces the comparisons S1-MMAlign shows for its recaptioning: SciBERT pseudo-
perplexity (lower is better), CLIP score (paper: mean +18.21%, variance −27.77%) and
caption length (paper: 267 ± 261 → 759 ± 251 characters). Statistics are unpaired (all
scored captions of each kind, as the paper plots distributions); the number of figures
with both kinds scored is given as ``paired``. Standard deviations use ddof=1.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from figalign.metrics.describe import HEADLINE_CLIP, describe
from figalign.store.models import Caption, FigureRow, Metric, Paper

KINDS = ("original", "recaption")
PAPER_REFERENCE = {
    "source": "S1-MMAlign (recaptioned vs original captions)",
    "clip_mean_change": 0.1821,
    "clip_variance_change": -0.2777,
    "length_chars": {"original": {"mean": 267, "std": 261}, "recaption": {"mean": 759, "std": 251}},
}
UNKNOWN = "(unknown)"


def stats(values: list[float]) -> dict[str, float | int | None]:
    """n, mean, median, std (ddof=1), variance; ``None`` where undefined."""
    vals = sorted(v for v in values if v is not None and math.isfinite(v))
    n = len(vals)
    if n == 0:
        return {"n": 0, "mean": None, "median": None, "std": None, "var": None}
    mean = sum(vals) / n
    mid = n // 2
    median = vals[mid] if n % 2 else (vals[mid - 1] + vals[mid]) / 2
    var = sum((v - mean) ** 2 for v in vals) / (n - 1) if n > 1 else None
    return {"n": n, "mean": mean, "median": median, "std": math.sqrt(var) if var is not None else None, "var": var}


def relative_change(before: float | None, after: float | None) -> float | None:
    """(after − before) / |before|; ``None`` when either is missing or before is 0."""
    if before is None or after is None or before == 0:
        return None
    return (after - before) / abs(before)


def metric_series(session: Session) -> list[dict[str, Any]]:
    """One record per metric row, with its paper's source and discipline.

    CLIP rows also yield a derived ``<metric>:clipscore`` record (2.5·max(cos, 0)) and PPPL
    rows a ``pppl:log10`` record, so every series is summarised the same way.
    """
    query = (select(Metric.metric, Metric.model, Metric.value, Metric.details, Metric.caption_kind,
                    Metric.figure_id, Paper.source, Paper.discipline)
             .join(FigureRow, FigureRow.id == Metric.figure_id).join(Paper, Paper.id == FigureRow.paper_id))
    out = []
    for metric, model, value, details, kind, figure_id, source, discipline in session.execute(query):
        base = {"model": model, "kind": kind, "figure_id": figure_id, "source": source or UNKNOWN,
                "discipline": discipline or UNKNOWN}
        out.append(dict(base, metric=metric, value=value))
        if metric.startswith("clip_") and isinstance(details, dict) and "clipscore" in details:
            out.append(dict(base, metric=f"{metric}:clipscore", value=details["clipscore"]))
        if metric == "pppl" and value and value > 0:
            out.append(dict(base, metric="pppl:log10", value=math.log10(value)))
    return out


def caption_lengths(session: Session) -> list[dict[str, Any]]:
    """Character length of each accepted caption of a kept figure, with source/discipline."""
    query = (select(Caption.kind, Caption.text, Caption.figure_id, Paper.source, Paper.discipline)
             .join(FigureRow, FigureRow.id == Caption.figure_id).join(Paper, Paper.id == FigureRow.paper_id)
             .where(Caption.status == "accepted", Caption.kind.in_(KINDS), Caption.text.is_not(None),
                    FigureRow.filter_reason.is_(None)))
    return [{"kind": k, "value": float(len(t)), "figure_id": f, "source": s or UNKNOWN, "discipline": d or UNKNOWN}
            for k, t, f, s, d in session.execute(query)]


def compare(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Stats per kind, paired-figure count and relative changes of mean and variance."""
    by_kind = {k: [r["value"] for r in records if r["kind"] == k] for k in KINDS}
    figs = {k: {r["figure_id"] for r in records if r["kind"] == k} for k in KINDS}
    out: dict[str, Any] = {k: stats(v) for k, v in by_kind.items()}
    out["paired_figures"] = len(figs["original"] & figs["recaption"])
    out["mean_change"] = relative_change(out["original"]["mean"], out["recaption"]["mean"])
    out["variance_change"] = relative_change(out["original"]["var"], out["recaption"]["var"])
    return out


def summarise(metrics: list[dict[str, Any]], lengths: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, caption lengths and every metric series of one group (validation flags are
    counted apart: they exist only on recaptions, so there is nothing to compare)."""
    series: dict[str, list] = defaultdict(list)
    flags: dict[str, set[int]] = defaultdict(set)
    types: dict[str, set[int]] = defaultdict(set)
    for r in metrics:
        if r["metric"].startswith("flag:"):
            flags[r["metric"][5:]].add(r["figure_id"])
            continue
        if r["metric"].startswith("figtype:"):  # a label per figure, not a caption score
            types[r["metric"][8:]].add(r["figure_id"])
            continue
        series[f"{r['metric']}|{r['model']}"].append(r)
    return {
        "counts": {"figures": len({r["figure_id"] for r in lengths}),
                   "captions": {k: sum(1 for r in lengths if r["kind"] == k) for k in KINDS},
                   "metric_rows": len([r for r in metrics if ":" not in r["metric"]])},
        "length_chars": compare(lengths),
        "metrics": {key: compare(rows) for key, rows in sorted(series.items())},
        "flags": {name: len(figs) for name, figs in sorted(flags.items())},
        "figure_types": {name: len(figs) for name, figs in sorted(types.items())},
    }


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """figalign's numbers for the paper's comparison: the headline CLIP series (sentence-mean;
    the first CLIP model by name if several) and caption length, beside the paper's."""
    keys = sorted(k for k in summary["metrics"] if k.split("|")[0] == HEADLINE_CLIP)
    clip = summary["metrics"][keys[0]] if keys else None
    length = summary["length_chars"]
    return {"clip_series": keys[0] if keys else None,
            "clip_mean_change": clip["mean_change"] if clip else None,
            "clip_variance_change": clip["variance_change"] if clip else None,
            "length_chars": {k: {"mean": length[k]["mean"], "std": length[k]["std"]} for k in KINDS},
            "paper": PAPER_REFERENCE}


def build_report(session: Session) -> dict[str, Any]:
    """The whole report as one JSON-able dict: overall, per source, per discipline."""
    metrics, lengths = metric_series(session), caption_lengths(session)
    overall = summarise(metrics, lengths)
    report: dict[str, Any] = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "paper_reference": PAPER_REFERENCE,
        "measurement": describe({(r["metric"], r["model"]) for r in metrics}),
        "headline": headline(overall),
        "groups": {"all": {"all": overall}},
    }
    for field in ("source", "discipline"):
        names = sorted({r[field] for r in lengths} | {r[field] for r in metrics})
        report["groups"][field] = {
            n: summarise([r for r in metrics if r[field] == n], [r for r in lengths if r[field] == n]) for n in names}
    return report


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x * 100:+.2f}%" if pct else f"{x:.4g}"


def _pm(d: dict) -> str:
    return f"{_fmt(d['mean'])} ± {_fmt(d['std'])}"


def headline_lines(h: dict[str, Any], ours: str = "this store") -> list[str]:
    """The paper's comparison with figalign's numbers beside the paper's (labelled as such)."""
    ref, length = h["paper"], h["length_chars"]
    series = f"`{h['clip_series'].replace('|', '` (`')}`)" if h["clip_series"] else "no CLIP scores yet"
    return ["## figalign vs the S1-MMAlign paper", "",
            f"Recaption vs original. figalign's CLIP column uses the headline series {series}; "
            "the paper's column is the paper's own published figures, not re-measured here.", "",
            f"| quantity | figalign ({ours}) | S1-MMAlign paper (published) |", "|---|---:|---:|",
            f"| CLIP score, relative change of the mean | {_fmt(h['clip_mean_change'], True)} | "
            f"{ref['clip_mean_change'] * 100:+.2f}% |",
            f"| CLIP score, relative change of the variance | {_fmt(h['clip_variance_change'], True)} | "
            f"{ref['clip_variance_change'] * 100:+.2f}% |",
            f"| caption length, original (chars, mean ± std) | {_pm(length['original'])} | "
            f"{ref['length_chars']['original']['mean']} ± {ref['length_chars']['original']['std']} |",
            f"| caption length, recaption (chars, mean ± std) | {_pm(length['recaption'])} | "
            f"{ref['length_chars']['recaption']['mean']} ± {ref['length_chars']['recaption']['std']} |", ""]


def measurement_lines(m: dict[str, list[str]]) -> list[str]:
    lines = [f"- {line}" for topic in m.values() for line in topic]
    return ["## How it was measured", ""] + (lines or ["No metric has been computed yet."]) + [""]


def _ms(s: dict) -> str:
    return f"{_fmt(s['mean'])} ± {_fmt(s['std'])} (med {_fmt(s['median'])}, n={s['n']})"


def to_markdown(report: dict[str, Any], images: list[str] | None = None) -> str:
    """Readable tables: one section per grouping, one row per group and series."""
    ref = report["paper_reference"]
    lines = ["# figalign quality report", "",
             f"Generated {report['generated_at']}. Paper reference ({ref['source']}): CLIP score mean "
             f"{ref['clip_mean_change'] * 100:+.2f}%, variance {ref['clip_variance_change'] * 100:+.2f}%; caption "
             f"length {ref['length_chars']['original']['mean']} ± {ref['length_chars']['original']['std']} → "
             f"{ref['length_chars']['recaption']['mean']} ± {ref['length_chars']['recaption']['std']} characters.",
             "", "Values are mean ± std (median, n); std with ddof=1; changes are recaption vs original, "
             "relative to the original.", ""]
    lines += headline_lines(report["headline"]) + measurement_lines(report["measurement"])
    for field, groups in report["groups"].items():
        lines += [f"## By {field}" if field != "all" else "## All captions", "",
                  "| group | series | original | recaption | Δ mean | Δ variance | paired figures |",
                  "|---|---|---|---|---|---|---|"]
        for name, g in groups.items():
            rows = [("length (chars)", g["length_chars"])] + list(g["metrics"].items())
            for series, c in rows:
                metric, _, model = series.partition("|")
                label = f"{metric} ({model})" if model else metric
                lines.append(f"| {name} | {label} | {_ms(c['original'])} | {_ms(c['recaption'])} | "
                             f"{_fmt(c['mean_change'], True)} | {_fmt(c['variance_change'], True)} | "
                             f"{c['paired_figures']} |")
        lines.append("")
    for image in images or []:
        lines += [f"![{image}]({image})", ""]
    return "\n".join(lines)
