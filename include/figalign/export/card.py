"""The dataset card (``README.md``) of an export: what is in it, how it was made, its terms.

Counts are gathered while samples stream to the writers (``CardStats.tap``), so the card
describes exactly the exported samples, not the store. Metric plots come from the report
module (``figalign.report``) when it is importable; otherwise the card carries its own
summary table only.
"""

from __future__ import annotations

import json
import logging
import math
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from figalign.export.common import Sample, features_dict, features_yaml
from figalign.filters import FilterPolicy

log = logging.getLogger(__name__)

STAGES = ("harvest (arXiv OAI-PMH, PMC open-access, local folders)", "fetch (content-addressed files)",
          "parse (JATS / LaTeX / GROBID TEI + PDF crops / PDF)", "filter + dedup (reasons recorded per figure)",
          "recaption (vision-language model over an OpenAI-compatible API)",
          "score (SciBERT pseudo-perplexity, CLIP)", "export (this folder)")

LICENCE_TERMS = {
    "cc-by": ("CC BY", "https://creativecommons.org/licenses/by/4.0/",
              "reuse for any purpose, with attribution to the authors and a link to the licence"),
    "cc-by-sa": ("CC BY-SA", "https://creativecommons.org/licenses/by-sa/4.0/",
                 "attribution; derivatives must be shared under the same licence"),
    "cc0": ("CC0", "https://creativecommons.org/publicdomain/zero/1.0/", "no rights reserved"),
    "public-domain": ("Public domain", None, "no known copyright restrictions"),
    "cc-by-nc": ("CC BY-NC", "https://creativecommons.org/licenses/by-nc/4.0/",
                 "attribution; non-commercial use only (opt-in export)"),
    "cc-by-nc-sa": ("CC BY-NC-SA", "https://creativecommons.org/licenses/by-nc-sa/4.0/",
                    "attribution; non-commercial; share alike (opt-in export)"),
    "cc-by-nd": ("CC BY-ND", "https://creativecommons.org/licenses/by-nd/4.0/",
                 "attribution; no derivatives — recaptions may not be permitted (opt-in export)"),
    "cc-by-nc-nd": ("CC BY-NC-ND", "https://creativecommons.org/licenses/by-nc-nd/4.0/",
                    "attribution; non-commercial; no derivatives (opt-in export)"),
    "arxiv-nonexclusive": ("arXiv non-exclusive distribution", "http://arxiv.org/licenses/nonexclusive-distrib/1.0/",
                           "grants arXiv, not you, the right to distribute; redistribution needs the "
                           "authors' permission (opt-in export)"),
}
CONFIG_FILES = {"webdataset": "data/*.tar", "parquet": "data/*.parquet", "s1mmalign": "*/jsonl/*_recaption.jsonl"}


@dataclass
class CardStats:
    """Counters over exported samples; metric values kept compactly per series."""

    samples: int = 0
    sources: Counter = field(default_factory=Counter)
    disciplines: Counter = field(default_factory=Counter)
    licences: Counter = field(default_factory=Counter)
    licence_urls: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    parsers: Counter = field(default_factory=Counter)
    recaptions: Counter = field(default_factory=Counter)
    metrics: dict[tuple[str, str, str], array] = field(default_factory=lambda: defaultdict(lambda: array("d")))
    metric_figures: dict[tuple[str, str, str], array] = field(default_factory=lambda: defaultdict(lambda: array("q")))
    lengths: dict[str, array] = field(default_factory=lambda: defaultdict(lambda: array("d")))

    def add(self, sample: Sample) -> None:
        m = sample.meta
        self.samples += 1
        self.sources[m["source"] or "(unknown)"] += 1
        self.disciplines[m["discipline"] or "(unknown)"] += 1
        self.licences[m["licence"] or "(unknown)"] += 1
        if m["licence_url"] and len(self.licence_urls[m["licence"]]) < 3:
            self.licence_urls[m["licence"]].add(m["licence_url"])
        self.parsers[f"{m['parser']} {m['parser_version']}"] += 1
        self.lengths["original"].append(len(m["caption"] or ""))
        if m["recaption"]:
            self.recaptions[(m["recaption_model"], m["recaption_prompt_hash"])] += 1
            self.lengths["recaption"].append(len(m["recaption"]))
        for rec in m["metrics"]:
            series = (rec["metric"], rec["model"], rec["caption_kind"])
            self.metrics[series].append(rec["value"])
            self.metric_figures[series].append(m["figure_id"])

    def tap(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        """Pass samples through, counting each."""
        for sample in samples:
            self.add(sample)
            yield sample


def _stats(values: Iterable[float]) -> dict[str, Any]:
    vals = sorted(v for v in values if math.isfinite(v))
    n = len(vals)
    if not n:
        return {"n": 0, "mean": None, "median": None, "std": None}
    mean = sum(vals) / n
    median = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "median": median, "std": std}


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _table(title: str, counter: Counter, total: int) -> list[str]:
    lines = [f"### {title}", "", f"| {title.split()[-1]} | samples | share |", "|---|---:|---:|"]
    for name, n in counter.most_common():
        lines.append(f"| {name} | {n} | {n / max(1, total):.1%} |")
    return lines + [""]


def _metric_lines(stats: CardStats) -> list[str]:
    if not stats.metrics:
        return ["No metrics were computed for the exported samples.", ""]
    lines = ["| metric | model | caption | n | mean | median | std |", "|---|---|---|---:|---:|---:|---:|"]
    for (metric, model, kind), values in sorted(stats.metrics.items()):
        s = _stats(values)
        cells = " | ".join(_f(s[k]) for k in ("mean", "median", "std"))
        lines.append(f"| {metric} | {model} | {kind} | {s['n']} | {cells} |")
    return lines + [""]


def _measured_lines(stats: CardStats) -> list[str]:
    """How the card's numbers were measured, and the paper's comparison for these samples."""
    from figalign.metrics.describe import HEADLINE_CLIP, describe_lines
    from figalign.report.tables import PAPER_REFERENCE, headline_lines, relative_change
    from figalign.report.tables import stats as summary

    series = {(m, model) for (m, model, _kind) in stats.metrics if not m.startswith("flag:")}
    lines = ["### How the metrics were measured", ""] + (describe_lines(series) or ["- no metric rows"]) + [""]
    clip_models = sorted(model for (m, model) in series if m == HEADLINE_CLIP)
    head = {"clip_series": f"{HEADLINE_CLIP}|{clip_models[0]}" if clip_models else None,
            "clip_mean_change": None, "clip_variance_change": None, "paper": PAPER_REFERENCE,
            "length_chars": {k: summary(list(stats.lengths.get(k, ()))) for k in ("original", "recaption")}}
    if clip_models:
        o, r = (summary(list(stats.metrics.get((HEADLINE_CLIP, clip_models[0], k), ())))
                for k in ("original", "recaption"))
        head["clip_mean_change"] = relative_change(o["mean"], r["mean"])
        head["clip_variance_change"] = relative_change(o["var"], r["var"])
    return lines + ["#" + line if line.startswith("## ") else line for line in headline_lines(head, "this release")]


def _plots(stats: CardStats, out_dir: Path) -> list[str]:
    """Report plots of the exported samples, when ``figalign.report`` (and matplotlib) exist."""
    try:
        from figalign.report.plots import write_plots
    except ModuleNotFoundError as exc:
        log.info("card: no report plots (%s)", exc)
        return []
    metrics = [{"metric": m, "model": model, "kind": kind, "value": v, "figure_id": f}
               for (m, model, kind), values in stats.metrics.items()
               for v, f in zip(values, stats.metric_figures[(m, model, kind)])]
    lengths = [{"kind": kind, "value": v, "figure_id": 0} for kind, values in stats.lengths.items() for v in values]
    try:
        paths = write_plots(metrics, lengths, out_dir / "plots")
    except (ImportError, ValueError, KeyError, OSError) as exc:
        log.warning("card: report plots failed: %s", exc)
        return []
    return [f"![{p.stem}](plots/{p.name})" for p in paths]


def _provenance(stats: CardStats, policy: FilterPolicy) -> list[str]:
    lines = ["## How the data was made", "", "Stages, each recording one outcome per item in the provenance store:", ""]
    lines += [f"{i}. {s}" for i, s in enumerate(STAGES, 1)] + ["", "Parsers (name version: samples):", ""]
    lines += [f"- {p}: {n}" for p, n in stats.parsers.most_common()] + [""]
    if stats.recaptions:
        lines += ["Recaptions (model, prompt hash: samples); each sample's JSON names its own:", ""]
        lines += [f"- `{m}`, prompt `{h}`: {n}" for (m, h), n in stats.recaptions.most_common()] + [""]
    else:
        lines += ["No sample carries a recaption yet (`recaption` is null).", ""]
    lines += [
        "Filters (each exclusion is recorded on the figure in the store): image file under "
        f"{policy.min_file_bytes // 1024} KB, undecodable, smallest side under {policy.min_side} px, aspect ratio "
        f"over {policy.max_aspect:g}, near-blank, tables, caption shorter than {policy.min_caption_chars} "
        "characters, licence outside the export allow-list, retracted paper.",
        "Deduplication: identical decoded pixels (sha256) or perceptual hashes within "
        f"{policy.phash_max_distance} bits; the first figure seen is kept.", ""]
    return lines


HF_LICENCE_IDS = {"cc-by": "cc-by-4.0", "cc-by-sa": "cc-by-sa-4.0", "cc0": "cc0-1.0", "cc-by-nc": "cc-by-nc-4.0",
                  "cc-by-nc-sa": "cc-by-nc-sa-4.0", "cc-by-nd": "cc-by-nd-4.0", "cc-by-nc-nd": "cc-by-nc-nd-4.0"}
"""Hugging Face licence identifiers; a release of several licences is ``other`` with its mix named."""


def licence_mix(stats: CardStats) -> str:
    """``cc-by 60.0 %, cc0 40.0 %``: the shares of this release's samples by licence."""
    total = max(1, stats.samples)
    return ", ".join(f"{lic} {n} ({n / total:.1%})" for lic, n in stats.licences.most_common()) or "no samples"


QUALITY_TEXT = {
    "min_clip_original": "drop a sample whose original caption's CLIP cosine is below",
    "min_clip_recaption": "remove a recaption whose CLIP cosine is below",
    "min_clip_gain": "remove a recaption whose CLIP gain (recaption − original) is below",
    "pppl_min": "PPPL lower bound (original: drop the sample; recaption: remove it)",
    "pppl_max": "PPPL upper bound (original: drop the sample; recaption: remove it)",
}


UNITS_TEXT = {
    "figures": "Units: whole figures (`unit` = figure); a multi-panel figure's image shows every panel "
               "(`image_origin`: pdf-crop, composite or single-file).",
    "panels": "Units: panels (`unit` = panel): each panel's own image with its sub-caption; `parent_key` names "
              "the whole figure. Panels without an image or sub-caption are left out.",
    "both": "Units: each whole figure (`unit` = figure) followed by its panels (`unit` = panel, `parent_key` = "
            "the figure's key): count pairs by `unit` before training.",
}


def _quality_lines(manifest: dict[str, Any]) -> list[str]:
    """The quality policy this release was cut with, and what it (and the release's other
    rules) left out or changed, by reason; each dropped sample is listed in dropped.jsonl."""
    q = manifest.get("quality") or {}
    sel = manifest.get("selection") or {}
    lines = ["## Selection and quality policy", ""]
    units = manifest.get("units", "figures")
    lines += [UNITS_TEXT.get(units, f"Units: {units}."), ""]
    rules = [f"- {text}: {q[name]:g}" for name, text in QUALITY_TEXT.items() if q.get(name) is not None]
    if q.get("drop_flags"):
        rules.append(f"- remove a recaption flagged by validation as: {', '.join(q['drop_flags'])}")
    if q.get("drop_figure_types"):
        rules.append(f"- drop figures whose zero-shot CLIP type is: {', '.join(q['drop_figure_types'])} "
                     f"(label probability ≥ {q.get('min_figure_type_score', 0):g})")
    if rules:
        lines += [f"Quality policy (CLIP series `{q['clip_metric']}`"
                  f"{', model ' + q['clip_model'] if q.get('clip_model') else ''}; an unscored caption fails a "
                  "threshold that is set):", ""] + rules + [""]
    else:
        lines += ["Quality policy: the defaults, which keep every pair (no score thresholds).", ""]
    for title, counts in (("Samples left out", sel.get("dropped")), ("Samples changed", sel.get("changed"))):
        if counts:
            lines += [f"{title}, by reason:", "", "| reason | samples |", "|---|---:|"]
            lines += [f"| {reason} | {n} |" for reason, n in counts.items()] + [""]
    if not sel.get("dropped") and not sel.get("changed"):
        lines += ["No sample was left out or changed by the release's rules.", ""]
    return lines


def _licence_lines(stats: CardStats, manifest: dict[str, Any] | None = None) -> list[str]:
    info = (manifest or {}).get("licences") or {}
    cut = (f"cut with `--licences {','.join(info['release'])}`" if info.get("release")
           else "every licence the store processed")
    processed = ", ".join(info.get("processed") or ()) or "–"
    lines = ["## Licences", "",
             f"**Licence mix of this release:** {licence_mix(stats)}. The release is {cut}, from a store "
             f"processed (filtered, recaptioned, scored) under: {processed}.", "",
             "Every sample carries its paper's `licence`, `licence_url` and `source_url`; attribute the authors "
             "of the paper a figure comes from when you use it.", "",
             "| licence | samples | terms | licence text |", "|---|---:|---|---|"]
    for lic, n in stats.licences.most_common():
        name, url, terms = LICENCE_TERMS.get(lic, (lic, None, "see the paper's licence"))
        urls = sorted(stats.licence_urls.get(lic, ())) or ([url] if url else [])
        lines.append(f"| {name} | {n} | {terms} | {' '.join(urls) or '–'} |")
    return lines + [""]


def _front_matter(fmt: str, stats: CardStats, features) -> list[str]:
    """Hugging Face card metadata: licence, file layout and (when known) the features."""
    import yaml

    lics = list(stats.licences)
    single = HF_LICENCE_IDS.get(lics[0]) if len(lics) == 1 else None
    meta: dict[str, Any] = {
        "license": single or "other",
        "task_categories": ["image-to-text"],
        "tags": ["scientific-figures", "figalign"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": CONFIG_FILES[fmt]}]}],
    }
    if not single:
        meta["license_name"] = "mixed" if len(lics) > 1 else (lics[0] if lics else "none")
        meta["license_details"] = f"per sample (field `licence`): {licence_mix(stats)}"
    if features is not None:  # a features_dict, turned into the card's YAML by datasets
        meta["dataset_info"] = dict(features_yaml(features), config_name="default")
    return ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]


def _loading(fmt: str, embed: bool = True) -> list[str]:
    snippets = {
        "webdataset": ['import datasets, glob, json',
                       'features = datasets.Features.from_dict(json.load(open("features.json")))',
                       'urls = sorted(glob.glob("data/*.tar"))',
                       'ds = datasets.load_dataset("webdataset", data_files={"train": urls},',
                       '                           features=features)  # or load_dataset(".") in this folder',
                       '# or: webdataset.WebDataset(sorted(glob.glob("data/*.tar"))).decode("pil")'],
        "parquet": ['import datasets',
                    'ds = datasets.load_dataset(".")  # in this folder: the card names data/*.parquet',
                    '# or: datasets.load_dataset("parquet", data_files={"train": "data/*.parquet"})',
                    '# the "image" column holds each figure (an Image feature), beside its captions'
                    if embed else '# metadata only: this export was written without --embed-images'],
        "s1mmalign": ['import datasets, glob, json',
                      'features = datasets.Features.from_dict(json.load(open("features.json")))',
                      'files = sorted(glob.glob("*/jsonl/*_recaption.jsonl"))  # arxiv/jsonl/24_recaption.jsonl …',
                      'ds = datasets.load_dataset("json", data_files={"train": files}, features=features)',
                      '# images, per source folder (arxiv/, pmc/ …): extract its archives in that folder,',
                      '#   cd arxiv && for a in images_*.tar.gz; do tar -xzf "$a"; done',
                      '#   cat images_2024.tar.gz.part* | tar -xzf -     # an archive cut into pieces',
                      '# then <source>/<record["image_path"]> is the image (images/<YYMM>/<id>/figNNN.png)'],
    }
    return ["## Loading", "", "```python", *snippets[fmt], "```", ""]


def render(fmt: str, stats: CardStats, manifest: dict[str, Any], policy: FilterPolicy, plots: list[str],
           features=None) -> str:
    lines = _front_matter(fmt, stats, features) + [
        f"# figalign figure–caption dataset ({fmt})", "",
        "Figures of open-access scientific papers with their original captions, citation contexts, model "
        "recaptions and quality metrics, built by figalign in the S1-MMAlign manner.", "",
        f"- samples: {manifest['samples']}", f"- shards/files: {len(manifest['shards']) + len(manifest['files'])}",
        f"- bytes: {manifest['bytes']}",
        f"- incremental since: {manifest['since']}" if manifest["since"] else "- full export", "",
        "`manifest.json` lists every file with its sha256, sample count and size.", "", "## Contents", "",
    ]
    lines += _table("per source", stats.sources, stats.samples)
    lines += _table("per discipline", stats.disciplines, stats.samples)
    lines += _table("per licence", stats.licences, stats.samples)
    lines += ["## Metrics", ""] + _metric_lines(stats) + _measured_lines(stats) + plots + [""]
    lines += _quality_lines(manifest)
    lines += _provenance(stats, policy) + _licence_lines(stats, manifest) + _loading(fmt, bool(manifest.get("embed_images")))
    return "\n".join(lines)


def write_card(out_dir: Path, fmt: str, stats: CardStats, manifest: dict[str, Any], policy: FilterPolicy) -> Path:
    """Write ``README.md`` (and ``features.json`` when ``datasets`` is installed)."""
    out_dir = Path(out_dir)
    features = features_dict(fmt, embed_images=bool(manifest.get("embed_images")))
    if features is not None:
        (out_dir / "features.json").write_text(json.dumps(features, indent=1) + "\n", encoding="utf-8")
    plots = _plots(stats, out_dir) if stats.metrics else []
    path = out_dir / "README.md"
    path.write_text(render(fmt, stats, manifest, policy, plots, features), encoding="utf-8")
    return path
