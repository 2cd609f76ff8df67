"""How each stored number was measured, in words: for the report, the dataset card and the explorer.

A bare "CLIP score" hides three choices that move it: the model and weights, how a text
longer than CLIP's 77-token context is read, and how a non-square figure is fitted into
CLIP's square input. PPPL hides its model and its windowing of long texts. The metric
rows already record all of it (metric name = text strategy, model id = model:weights
[+image fit], details); this module turns a set of (metric, model) series into the
sentences every place that shows a number prints beside it.
"""

from __future__ import annotations

from collections.abc import Iterable

HEADLINE_CLIP = "clip_cosine_sentmean"
CLIP_STRATEGY = {"clip_cosine": "truncate", "clip_cosine_sentmean": "sentence-mean"}
IMAGE_FIT_TEXT = {
    "centre-crop": "centre-crop (the model's own transform: short side resized to the input size, centre square "
                   "cropped; a wide figure loses its sides)",
    "pad-square": "pad-square (padded to a white square first, then resized: the whole figure is seen, smaller)",
}
TEXT_STRATEGY_TEXT = {
    "truncate": "`clip_cosine`: the text truncated to CLIP's context (75 BPE tokens between start/end markers), "
                "as CLIP reads it itself and as published CLIP scores are computed",
    "sentence-mean": "`clip_cosine_sentmean`: sentences packed greedily into chunks that fit the context, each "
                     "embedded, the L2-normalised embeddings averaged and normalised again (the whole text is read)",
}
HEADLINE_TEXT = ("Headline CLIP series: `clip_cosine_sentmean` — recaptions (~760 characters, 150–200 tokens) "
                 "overflow the 77-token context, so a truncated score judges only their first sentences.")


def split_clip_model(model: str) -> tuple[str, str]:
    """(``model:weights``, image fit) of a stored CLIP model id (``ViT-L-14:openai+pad-square``)."""
    base, plus, fit = model.partition("+")
    return base, fit if plus else "centre-crop"


def describe(series: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Sentences per topic (``clip``, ``pppl``) for the (metric, model) series present."""
    series = sorted(set(series))
    clip = [(m, model) for m, model in series if m in CLIP_STRATEGY]
    pppl = sorted({model for m, model in series if m == "pppl"})
    out: dict[str, list[str]] = {}
    if clip:
        models = sorted({split_clip_model(model)[0] for _, model in clip})
        fits = sorted({split_clip_model(model)[1] for _, model in clip})
        strategies = sorted({CLIP_STRATEGY[m] for m, _ in clip})
        out["clip"] = [
            "CLIP: cosine of the L2-normalised open_clip image and text embeddings (CLIPScore = 2.5·max(cos, 0) "
            "is kept beside it); model:weights " + ", ".join(f"`{m}`" for m in models) + ".",
            "Long texts: " + "; ".join(TEXT_STRATEGY_TEXT[s] for s in strategies) + ".",
            HEADLINE_TEXT,
            "Image fit: " + "; ".join(IMAGE_FIT_TEXT[f] for f in fits) + ".",
        ]
    if pppl:
        from figalign.metrics.pppl import METHOD, WINDOW_RULE

        out["pppl"] = [
            f"PPPL: masked-LM pseudo-perplexity ({METHOD}: each wordpiece masked in turn, "
            f"exp of the mean negative log-probability; lower reads more like the model's training text), "
            "model " + ", ".join(f"`{m}`" for m in pppl) + ".",
            f"PPPL windowing of texts longer than the model's context: {WINDOW_RULE}.",
        ]
    return out


def describe_lines(series: Iterable[tuple[str, str]]) -> list[str]:
    """Markdown bullet lines of ``describe``; empty when no metric series is present."""
    return [f"- {line}" for lines in describe(series).values() for line in lines]


def tooltip(metric: str, model: str) -> str:
    """One short line for a metric series, for a tooltip (the explorer)."""
    if metric in CLIP_STRATEGY:
        base, fit = split_clip_model(model)
        head = " (headline)" if metric == HEADLINE_CLIP else ""
        return (f"CLIP cosine, {base}, text: {CLIP_STRATEGY[metric]}{head}, image: {fit}")
    if metric.endswith("_gain") and metric.removesuffix("_gain") in CLIP_STRATEGY:
        return "best recaption's CLIP minus the original's; " + tooltip(metric.removesuffix("_gain"), model)
    if metric == "pppl":
        return f"masked-LM pseudo-perplexity (lower is better), {model}, windows: L=maxpos-2, stride L/2"
    if metric.startswith("figtype:"):
        return (f"zero-shot figure type '{metric[8:]}' from CLIP ({model}); value: the label's softmax "
                "probability over the prompt file's labels")
    if metric.startswith("flag:"):
        return f"recaption validation flag {metric[5:]} ({model}); value: offending tokens"
    return f"{metric} ({model})"
