"""The quality policy: which scored pairs a release keeps, applied at export time.

figalign measures every caption (SciBERT pseudo-perplexity, CLIP cosine); this policy
acts on those numbers without touching the store, so one processed store can be cut
into releases of different strictness and a changed threshold needs no re-run. It is a
frozen dataclass read from FIGALIGN_QUALITY_* variables; every default keeps everything.

A recaption that fails a rule is *removed* from its sample (the original pair may still
be good): validation flags named in ``drop_flags``, CLIP below ``min_clip_recaption``,
CLIP gain (recaption minus original, same model and strategy) below ``min_clip_gain``,
PPPL outside ``[pppl_min, pppl_max]``. An original caption that fails (CLIP below
``min_clip_original``, PPPL out of bounds) drops the whole sample. A threshold that is set
fails a caption with no score for it (``…-unscored``): an unmeasured pair is not known to
pass. Every removal and drop carries its reason (``selection``: ``dropped.jsonl``, the
manifest's and card's counts).

CLIP scores are read from ``clip_metric`` — by default ``clip_cosine_sentmean``, the mean
over sentence chunks, figalign's headline because recaptions (~760 characters, 150–200
tokens) overflow CLIP's 77-token context, so a truncated score judges only their first
sentences (docs/quality.md, "How it was measured").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from figalign.errors import ConfigError
from figalign.export.common import Sample
from figalign.export.selection import Outcome, Rule
from figalign.metrics.describe import HEADLINE_CLIP

CLIP_METRICS = ("clip_cosine", "clip_cosine_sentmean")
PPPL = "pppl"
FLAG_PREFIX = "flag:"
FIGTYPE_PREFIX = "figtype:"
"""Recaption validation flags are metric rows ``flag:<name>`` on the recaption (value: how many
offending tokens, ``details``: the tokens) — see ``figalign.recaption.validate``."""

GAIN_TOLERANCE = 1e-9
"""A difference of two stored floats: 0.30 − 0.25 is 0.04999… in binary, and a gain equal to
the threshold must pass ("keep the recaption only if its gain ≥ x")."""
_FLOATS = ("min_clip_original", "min_clip_recaption", "min_clip_gain", "pppl_min", "pppl_max")


@dataclass(frozen=True)
class QualityPolicy:
    """Thresholds applied at export; ``None`` (the default) means "no rule"."""

    clip_metric: str = HEADLINE_CLIP
    clip_model: str = ""  # empty: whichever CLIP model scored the sample (the first by name if several)
    min_clip_original: float | None = None
    min_clip_recaption: float | None = None
    min_clip_gain: float | None = None
    pppl_min: float | None = None
    pppl_max: float | None = None
    drop_flags: frozenset[str] = field(default_factory=frozenset)
    drop_figure_types: frozenset[str] = field(default_factory=frozenset)  # e.g. {"table"}: tables as images
    min_figure_type_score: float = 0.0  # the label's probability needed to act on it

    def __post_init__(self) -> None:
        if self.clip_metric not in CLIP_METRICS:
            raise ConfigError(f"quality clip_metric must be one of {CLIP_METRICS}, got {self.clip_metric!r}")
        if self.pppl_min is not None and self.pppl_max is not None and self.pppl_min > self.pppl_max:
            raise ConfigError(f"quality PPPL bounds are reversed: {self.pppl_min} > {self.pppl_max}")

    @property
    def active(self) -> bool:
        return (any(getattr(self, name) is not None for name in _FLOATS) or bool(self.drop_flags)
                or bool(self.drop_figure_types))

    def as_dict(self) -> dict:
        out = asdict(self)
        out["drop_flags"] = sorted(self.drop_flags)
        out["drop_figure_types"] = sorted(self.drop_figure_types)
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QualityPolicy:
        """FIGALIGN_QUALITY_<FIELD> for each field (``DROP_FLAGS``: a comma list)."""
        env = os.environ if env is None else env
        values: dict = {}
        for name in ("clip_metric", "clip_model"):
            if env.get(f"FIGALIGN_QUALITY_{name.upper()}"):
                values[name] = env[f"FIGALIGN_QUALITY_{name.upper()}"].strip()
        for name in _FLOATS:
            raw = (env.get(f"FIGALIGN_QUALITY_{name.upper()}") or "").strip()
            if raw:
                try:
                    values[name] = float(raw)
                except ValueError as exc:
                    raise ConfigError(f"FIGALIGN_QUALITY_{name.upper()} must be a number, got {raw!r}") from exc
        for name in ("drop_flags", "drop_figure_types"):
            raw = env.get(f"FIGALIGN_QUALITY_{name.upper()}") or ""
            values[name] = frozenset(f.strip() for f in raw.split(",") if f.strip())
        raw = (env.get("FIGALIGN_QUALITY_MIN_FIGURE_TYPE_SCORE") or "").strip()
        if raw:
            try:
                values["min_figure_type_score"] = float(raw)
            except ValueError as exc:
                raise ConfigError(f"FIGALIGN_QUALITY_MIN_FIGURE_TYPE_SCORE must be a number, got {raw!r}") from exc
        return cls(**values)

    def merged(self, **overrides) -> QualityPolicy:
        """This policy with the given (not None) fields replaced: the CLI's flags over the env."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _score(sample: Sample, metric: str, model: str, kind: str) -> float | None:
    if model:
        return sample.scores.get((metric, model, kind))
    found = sorted((m, v) for (name, m, k), v in sample.scores.items() if name == metric and k == kind)
    return found[0][1] if found else None


def _clip_pair(sample: Sample, policy: QualityPolicy) -> tuple[float | None, float | None]:
    """Original and recaption CLIP scores from one model (so their difference is a gain)."""
    model = policy.clip_model
    if not model:
        models = sorted(m for (name, m, k) in sample.scores if name == policy.clip_metric)
        model = models[0] if models else ""
    if not model:
        return None, None
    return (sample.scores.get((policy.clip_metric, model, "original")),
            sample.scores.get((policy.clip_metric, model, "recaption")))


def _pppl_reason(value: float | None, policy: QualityPolicy) -> str | None:
    if policy.pppl_min is None and policy.pppl_max is None:
        return None
    if value is None:
        return "pppl-unscored"
    if policy.pppl_min is not None and value < policy.pppl_min:
        return f"pppl<{policy.pppl_min:g}"
    if policy.pppl_max is not None and value > policy.pppl_max:
        return f"pppl>{policy.pppl_max:g}"
    return None


def recaption_reason(sample: Sample, policy: QualityPolicy) -> str | None:
    """Why the sample's recaption should be removed, or None to keep it."""
    flagged = sorted(name.removeprefix(FLAG_PREFIX) for (name, _, kind) in sample.scores
                     if kind == "recaption" and name.startswith(FLAG_PREFIX)
                     and name.removeprefix(FLAG_PREFIX) in policy.drop_flags)
    if flagged:
        return f"flag:{flagged[0]}"
    original, recaption = _clip_pair(sample, policy)
    if policy.min_clip_recaption is not None:
        if recaption is None:
            return "clip-unscored"
        if recaption < policy.min_clip_recaption:
            return f"clip<{policy.min_clip_recaption:g}"
    if policy.min_clip_gain is not None:
        if recaption is None or original is None:
            return "clip-gain-unscored"
        if recaption - original < policy.min_clip_gain - GAIN_TOLERANCE:
            return f"clip-gain<{policy.min_clip_gain:g}"
    return _pppl_reason(_score(sample, PPPL, "", "recaption"), policy)


def figure_type_reason(sample: Sample, policy: QualityPolicy) -> str | None:
    """``figure-type:table`` when the figure's zero-shot label (``figtype:<label>`` on its
    original caption, ``metrics.figtype``) is one to drop with at least the required score."""
    if not policy.drop_figure_types:
        return None
    labels = sorted((name.removeprefix(FIGTYPE_PREFIX), value) for (name, _, kind), value in sample.scores.items()
                    if kind == "original" and name.startswith(FIGTYPE_PREFIX))
    for label, value in labels:
        if label in policy.drop_figure_types and value >= policy.min_figure_type_score:
            return f"figure-type:{label}"
    return None


def original_reason(sample: Sample, policy: QualityPolicy) -> str | None:
    """Why the whole sample should be dropped (its figure type, its original caption), or None."""
    kind = figure_type_reason(sample, policy)
    if kind:
        return kind
    if policy.min_clip_original is not None:
        original, _ = _clip_pair(sample, policy)
        if original is None:
            return "clip-original-unscored"
        if original < policy.min_clip_original:
            return f"clip-original<{policy.min_clip_original:g}"
    reason = _pppl_reason(_score(sample, PPPL, "", "original"), policy)
    return f"original-{reason}" if reason else None


def quality_rules(policy: QualityPolicy) -> list[Rule]:
    """The selection rules of ``policy`` (none when it keeps everything)."""
    if not policy.active:
        return []

    def original(sample: Sample) -> Outcome:
        return original_reason(sample, policy), sample, None

    def recaption(sample: Sample) -> Outcome:
        if not sample.meta["recaption"]:
            return None, sample, None
        why = recaption_reason(sample, policy)
        if why is None:
            return None, sample, None
        return None, without_recaption(sample, why), f"recaption-removed:{why}"

    return [original, recaption]


def without_recaption(sample: Sample, why: str) -> Sample:
    """The sample with its recaption, the recaption's provenance and its metric rows removed."""
    meta = dict(sample.meta, recaption=None, recaption_model=None, recaption_prompt_hash=None,
                recaption_params_hash=None,
                metrics=[m for m in sample.meta["metrics"] if m["caption_kind"] != "recaption"])
    scores = {k: v for k, v in sample.scores.items() if k[2] != "recaption"}
    return replace(sample, meta=meta, scores=scores, notes=sample.notes + (f"recaption-removed:{why}",))
