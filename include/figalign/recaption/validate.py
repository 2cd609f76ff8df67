"""Decide whether a model's answer is a usable caption.

A rejected answer is still stored (as a ``rejected`` caption with its reason and the raw
text) so that prompt changes can be judged against what went wrong; only accepted
answers are used downstream. The checks are cheap text rules, run in this order, and
the first that fires names the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from figalign.recaption.grounding import GroundingOptions, grounding_flags, strip_think

MIN_LETTER_SHARE = 0.6  # scientific prose with numbers and units stays well above this
ECHO_SHINGLE = 6  # words per shingle when looking for copied prompt text
MAX_ECHO_SHARE = 0.6
REFUSAL_WINDOW = 240  # refusals announce themselves at the start

_REFUSAL = re.compile(
    r"\b(?:I(?:'m| am) (?:sorry|unable|not able)|I (?:cannot|can't|can not|won't) (?:help|assist|provide|see|view|"
    r"describe|determine|access|process|fulfil|comply)|as an (?:AI|artificial intelligence)(?: language)? model|"
    r"(?:no|cannot see (?:the|an|any)) image (?:was|is|has been) (?:provided|attached|shown)|"
    r"I (?:don't|do not) (?:see|have) (?:an?|the|any) image)",
    re.I,
)
_TEMPLATE_MARKERS = ("Sentences citing this figure", "Original caption:", "Instructions:", "=== user ===")


@dataclass(frozen=True)
class Verdict:
    """Accepted with cleaned text, or rejected with a short reason.

    ``flags`` (accepted answers only) name what the grounding and length checks found, with
    the offending tokens (``grounding.grounding_flags``); ``thought`` says a ``<think>``
    block was removed from the answer (the raw answer is stored beside it, ``raw_text``).
    """

    accepted: bool
    text: str
    reason: str | None = None
    flags: dict[str, list[str]] = field(default_factory=dict)
    thought: bool = False


def letter_share(text: str) -> float:
    """Letters among non-space characters."""
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def _shingles(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def echo_share(answer: str, prompt: str, n: int = ECHO_SHINGLE) -> float:
    """Share of the answer's n-word shingles that occur verbatim in the prompt."""
    mine = _shingles(answer, n)
    if not mine:
        return 0.0
    return len(mine & _shingles(prompt, n)) / len(mine)


def is_refusal(text: str) -> bool:
    return _REFUSAL.search(text[:REFUSAL_WINDOW]) is not None


def validate(text: str | None, finish_reason: str | None, prompt: str,
             grounding: GroundingOptions | None = None) -> Verdict:
    """Check one answer; ``prompt`` is all text the model was given (also what grounds it).

    A Qwen3 "Thinking" answer's ``<think>…</think>`` block is removed first, so the
    caption is the answer after it; an answer that was all thinking is rejected.
    """
    clean, thought = strip_think((text or "").strip())
    if not clean:
        return Verdict(False, clean, "only a <think> block, no answer" if thought else "empty answer",
                       thought=thought)
    if finish_reason == "length":
        return Verdict(False, clean, "cut off (finish_reason=length)")
    if is_refusal(clean):
        return Verdict(False, clean, "refusal-like answer")
    if any(marker in clean for marker in _TEMPLATE_MARKERS) or echo_share(clean, prompt) >= MAX_ECHO_SHARE:
        return Verdict(False, clean, "repeats the prompt")
    share = letter_share(clean)
    if share < MIN_LETTER_SHARE:
        return Verdict(False, clean, f"not mostly letters ({share:.0%} letters)")
    return Verdict(True, clean, flags=grounding_flags(clean, prompt, grounding), thought=thought)
