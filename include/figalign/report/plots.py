"""Report plots (PNG, matplotlib Agg): the paper's figures for our data, at a glance.

* ``ecdf_log10_pppl.png``: ECDF of log10 pseudo-perplexity, original vs recaption
  (S1-MMAlign Fig. 5: the recaption curve sits to the left, i.e. lower perplexity).
* ``clip_hist.png``: CLIP cosine histograms, one panel per CLIP series (Fig. 6).
* ``length_hist.png``: caption length in characters.
Each panel shows n, mean and std in its legend and dashed lines at the means (medians on
the ECDF), so the direction and size of the change is visible without reading the tables.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

KIND_STYLE = {"original": {"color": "#1f77b4", "label": "original"},
              "recaption": {"color": "#d62728", "label": "recaption"}}


def _pyplot():
    """pyplot on the Agg backend, imported late (matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by_kind(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for r in records:
        out[r["kind"]].append(r["value"])
    return out


def _label(kind: str, values: list[float]) -> str:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    std = arr.std(ddof=1) if len(arr) > 1 else float("nan")
    return f"{kind} (n={len(arr)}, mean {arr.mean():.3g} ± {std:.3g})"


def _series(metrics: list[dict[str, Any]], name: str) -> dict[str, list[dict[str, Any]]]:
    """Records of metric ``name`` grouped by model."""
    out: dict[str, list] = defaultdict(list)
    for r in metrics:
        if r["metric"] == name:
            out[r["model"]].append(r)
    return out


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_ecdf_log10_pppl(metrics: list[dict[str, Any]], path: Path) -> Path:
    """ECDF of log10 PPPL per kind; one panel per PPPL model."""
    import numpy as np

    plt = _pyplot()
    series = _series(metrics, "pppl:log10") or {"": []}
    fig, axes = plt.subplots(1, len(series), figsize=(6 * len(series), 4.2), squeeze=False)
    for ax, (model, records) in zip(axes[0], series.items()):
        data = _by_kind(records)
        if not any(data.values()):
            _empty(ax, "no PPPL scores")
        for kind, style in KIND_STYLE.items():
            vals = np.sort(np.asarray(data.get(kind, []), dtype=float))
            if len(vals):
                xs = np.concatenate([vals[:1], vals])
                ys = np.concatenate([[0.0], np.arange(1, len(vals) + 1) / len(vals)])
                ax.step(xs, ys, where="post", color=style["color"], label=_label(kind, vals), linewidth=2)
                ax.axvline(np.median(vals), color=style["color"], linestyle="--", linewidth=1)
        ax.set(xlabel="log10 pseudo-perplexity (lower is better)", ylabel="fraction of captions ≤ x",
               title=f"ECDF of log10 PPPL (dashed: medians)\n{model}", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        if any(data.values()):
            ax.legend(loc="lower right", fontsize=8)
    return _save(fig, plt, path)


def plot_clip_hist(metrics: list[dict[str, Any]], path: Path) -> Path:
    """Histograms of CLIP cosine per kind; one panel per (CLIP series, model)."""
    panels = [(name, model, records) for name in ("clip_cosine", "clip_cosine_sentmean")
              for model, records in _series(metrics, name).items()]
    return _hist_panels(panels or [("clip_cosine", "", [])], path, "CLIP cosine (image, caption)", "no CLIP scores")


def plot_length_hist(lengths: list[dict[str, Any]], path: Path) -> Path:
    """Histogram of caption length in characters per kind."""
    return _hist_panels([("caption length", "", lengths)], path, "caption length (characters)", "no captions")


def _hist_panels(panels: list, path: Path, xlabel: str, empty: str) -> Path:
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (name, model, records) in zip(axes[0], panels):
        data = _by_kind(records)
        values = [v for vals in data.values() for v in vals]
        if not values:
            _empty(ax, empty)
        else:
            bins = np.histogram_bin_edges(np.asarray(values, dtype=float), bins=min(40, max(5, len(values) // 3)))
            for kind, style in KIND_STYLE.items():
                vals = data.get(kind, [])
                if vals:
                    # stepfilled: one polygon per series instead of one rectangle per bin
                    ax.hist(vals, bins=bins, alpha=0.55, color=style["color"], label=_label(kind, vals),
                            histtype="stepfilled")
                    ax.axvline(float(np.mean(vals)), color=style["color"], linestyle="--", linewidth=1.5)
            ax.legend(fontsize=8)
        ax.set(xlabel=xlabel, ylabel="captions", title=f"{name} (dashed: means)\n{model}".strip())
        ax.grid(alpha=0.3)
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    """Fixed margins (room for the two-line titles and the axis labels): ``tight_layout``
    measures every text artist and cost more than drawing the figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width = fig.get_figwidth()
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.2 / width, bottom=0.13, top=0.84, wspace=0.9 / 6)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(metrics: list[dict[str, Any]], lengths: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """All report PNGs under ``out_dir``; returns their paths."""
    return [plot_ecdf_log10_pppl(metrics, out_dir / "ecdf_log10_pppl.png"),
            plot_clip_hist(metrics, out_dir / "clip_hist.png"),
            plot_length_hist(lengths, out_dir / "length_hist.png")]
