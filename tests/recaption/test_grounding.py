"""Recaption grounding and length flags, think-block stripping, and the flags stored as metric rows.

The grounding check is measured on a hand-written set (tests/fixtures/recaption/grounding_set.json):
real captions of CC BY PLOS papers from the corpus as the model's text input, answers written
with known hallucinations. The precision/recall printed here are the ones in docs/recaption.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from figalign.errors import ConfigError
from figalign.recaption.grounding import (GroundingOptions, grounding_flags, strip_think, ungrounded_entities,
                                          ungrounded_numbers)
from figalign.recaption.validate import validate

SET = Path(__file__).resolve().parents[1] / "fixtures" / "recaption" / "grounding_set.json"
TOKEN_FLAGS = ("ungrounded-number", "ungrounded-unit", "ungrounded-entity")


def _norm(token: str) -> str:
    return token.lower().replace(" ", "")


def score_set(split: str) -> tuple[float, float, int]:
    """Token-level (precision, recall, number of labelled hallucinations) on one split."""
    items = [it for it in json.loads(SET.read_text(encoding="utf-8"))["items"] if it["split"] == split]
    tp = fp = fn = 0
    for it in items:
        flags = grounding_flags(it["answer"], it["source"])
        pred = {_norm(t) for name in TOKEN_FLAGS for t in flags.get(name, [])}
        gold = {_norm(t) for t in it["hallucinated"]}
        tp, fp, fn = tp + len(pred & gold), fp + len(pred - gold), fn + len(gold - pred)
    return tp / max(1, tp + fp), tp / max(1, tp + fn), tp + fn


@pytest.mark.parametrize("split,min_precision,min_recall", [("dev", 0.95, 0.95), ("held-out", 0.9, 0.9)])
def test_grounding_precision_recall_on_the_hand_written_set(split, min_precision, min_recall, capsys):
    precision, recall, n = score_set(split)
    with capsys.disabled():
        print(f"\ngrounding {split}: precision {precision:.3f}, recall {recall:.3f} over {n} hallucinated tokens")
    assert n >= 25 and precision >= min_precision and recall >= min_recall


def test_faithful_answers_are_not_flagged_and_hallucinated_ones_are():
    items = json.loads(SET.read_text(encoding="utf-8"))["items"]
    faithful = [it for it in items if not it["hallucinated"]]
    flagged = [it for it in faithful if any(grounding_flags(it["answer"], it["source"]).get(n) for n in TOKEN_FLAGS)]
    assert len(faithful) >= 20 and not flagged
    bad = [it for it in items if it["hallucinated"]]
    assert all(any(grounding_flags(it["answer"], it["source"]).get(n) for n in TOKEN_FLAGS) for it in bad)


SOURCE = "Original caption: Cells were imaged at 40 nm resolution; 45% of them divided (n = 212, p < 0.05)."


@pytest.mark.parametrize("answer,numbers,units", [
    ("About 45% of 212 cells divide (p < 0.05) at 40 nm resolution.", [], []),
    ("Nearly half (0.45) of the cells divide.", [], []),  # a fraction of a stated percentage
    ("The 3 panels and 10 curves show division.", [], []),  # small counts are read off the image
    ("About 62% of cells divide.", ["62%"], []),
    ("Cells were imaged at 40 µm resolution.", [], ["40 µm"]),
    ("Scale bar, 25 µm; 1,500 cells were counted.", ["25 µm", "1,500"], []),
    ("As Figure 12 shows, cells divide.", [], []),  # references are not claims
])
def test_numbers_and_units(answer, numbers, units):
    assert ungrounded_numbers(answer, SOURCE) == (numbers, units)


def test_entities():
    source = "Paper title: Dynamics of Conflicts in Wikipedia. Original caption: Revert maps of Benjamin Franklin."
    answer = "Revert maps of the Wikipedia article on Benjamin Franklin, compared with ResNet-50 and GPT-4 by Smith."
    assert ungrounded_entities(answer, source) == ["ResNet-50", "GPT-4", "Smith"]
    assert ungrounded_entities("The Figure shows It clearly. Maps of Franklin.", source) == []


def test_length_flags_and_options():
    source = "Original caption: A short caption."
    assert grounding_flags("A short caption.", source, GroundingOptions(min_chars=20))["too-short"] == ["16"]
    assert grounding_flags("x " * 100, source, GroundingOptions(max_chars=180))["too-long"] == ["200"]
    assert GroundingOptions.from_env({"FIGALIGN_RECAPTION_MIN_CHARS": "300"}).min_chars == 300
    with pytest.raises(ConfigError):
        GroundingOptions.from_env({"FIGALIGN_RECAPTION_MAX_CHARS": "lots"})
    with pytest.raises(ConfigError):
        GroundingOptions.from_env({"FIGALIGN_RECAPTION_MIN_CHARS": "900", "FIGALIGN_RECAPTION_MAX_CHARS": "100"})


@pytest.mark.parametrize("raw,answer,stripped", [
    ("<think>The user wants a caption.\nLet me look.</think>\n\nThe plot shows growth.", "The plot shows growth.", True),
    ("Okay, reasoning first.</think>The plot shows growth.", "The plot shows growth.", True),  # opened by the template
    ("The plot shows growth.<think>more thoughts that were cut", "The plot shows growth.", True),
    ("<THINK>a</THINK>A <think>b</think>plot.", "A plot.", True),
    ("The plot shows growth.", "The plot shows growth.", False),
])
def test_strip_think(raw, answer, stripped):
    assert strip_think(raw) == (answer, stripped)


def test_validate_strips_think_and_flags():
    prompt = "Original caption: Growth of cultures over 12 days in rich medium, measured as OD600."
    answer = ("A line plot of OD600 over 12 days shows cultures in rich medium growing steadily and reaching a "
              "plateau, which indicates that nutrients become limiting late in the experiment.")
    verdict = validate(f"<think>Let me describe the plot.</think>{answer}", "stop", prompt)
    assert verdict.accepted and verdict.text == answer and verdict.thought and verdict.flags == {}
    verdict = validate(answer.replace("12 days", "17 days"), "stop", prompt)
    assert verdict.accepted and verdict.flags == {"ungrounded-number": ["17"]}
    verdict = validate("<think>I think this is a plot of growth", "stop", prompt)
    assert not verdict.accepted and verdict.reason == "only a <think> block, no answer"
