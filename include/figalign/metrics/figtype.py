"""Zero-shot figure type (plot, bar chart, photograph, micrograph, diagram, table …) with CLIP.

S1-MMAlign drops tables rendered as images; a figure captioned "Figure 3" may still be a
table, so the caption cannot tell. The configured CLIP model (the same one that scores
captions, so no second model is loaded) compares each figure with a few text prompts per
label from a versioned file (``prompts/figure_types_v1.json``): a label's embedding is the
normalised mean of its prompts' embeddings; the figure's label is the softmax argmax over
100 × cosine (CLIP's logit scale). The result is a metric row on the figure's original
caption: metric ``figtype:<label>``, model ``<clip model id>|<prompt version>``, value the
label's probability, ``details`` every label's probability and the prompt file's sha256.
Rows under the same model are replaced when the label changes. The export's quality
policy can drop a type (``--drop-figure-type table``).

How well the labels match a person's: ``bench/eval_figure_types.py`` on the labelled set
in ``tests/fixtures/figure_types/labels.json`` (docs/quality.md); the tiny test models only
check the plumbing.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

from figalign.errors import ConfigError

DEFAULT_PROMPTS = "figure_types_v1"
METRIC_PREFIX = "figtype:"
LOGIT_SCALE = 100.0


@dataclass(frozen=True)
class TypePrompts:
    version: str
    sha256: str
    labels: dict[str, list[str]]

    @classmethod
    def load(cls, version: str = DEFAULT_PROMPTS) -> TypePrompts:
        try:
            raw = resources.files("figalign.prompts").joinpath(f"{version}.json").read_bytes()
        except FileNotFoundError as exc:
            raise ConfigError(f"no figure-type prompt file {version!r} in figalign/prompts") from exc
        data = json.loads(raw)
        labels = {str(k): [str(p) for p in v] for k, v in data["labels"].items()}
        if not labels or any(not v for v in labels.values()):
            raise ConfigError(f"figure-type prompts {version!r}: every label needs at least one prompt")
        return cls(data.get("version", version), hashlib.sha256(raw).hexdigest()[:16], labels)


@dataclass(frozen=True)
class FigureType:
    label: str
    score: float
    scores: dict[str, float]


def softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


class FigureTyper:
    """Label figures with a loaded ``ClipScorer`` and a prompt set (label embeddings built once)."""

    def __init__(self, scorer, prompts: TypePrompts):
        import torch

        from figalign.metrics.clipscore import _normalise

        self.scorer, self.prompts = scorer, prompts
        self.names = list(prompts.labels)
        rows = [_normalise(scorer.encode_text_list(prompts.labels[n]).mean(dim=0, keepdim=True))[0]
                for n in self.names]
        self.label_emb = torch.stack(rows)

    @property
    def model_id(self) -> str:
        return f"{self.scorer.model_id}|{self.prompts.version}"

    def classify(self, images: list) -> list[FigureType]:
        """One label per image (PIL images or paths)."""
        emb = self.scorer.encode_images(images)
        out = []
        for row in (emb @ self.label_emb.T).tolist():
            probs = softmax([LOGIT_SCALE * c for c in row])
            best = max(range(len(probs)), key=probs.__getitem__)
            out.append(FigureType(self.names[best], probs[best],
                                  {n: round(p, 6) for n, p in zip(self.names, probs)}))
        return out

    def details(self, result: FigureType) -> dict[str, Any]:
        return {"label": result.label, "scores": result.scores, "prompts": self.prompts.version,
                "prompts_sha256": self.prompts.sha256, "image_fit": getattr(self.scorer, "image_fit", "centre-crop")}
