"""Answer validation: each rejection reason fires on its case and not on good scientific prose."""

from __future__ import annotations

import pytest

from figalign.recaption.validate import echo_share, letter_share, validate

PROMPT = (
    "You are a domain expert in the field of the paper below. Rewrite the caption of the figure in the image, "
    "using the paper's title, abstract, the original caption and the sentences of the paper that cite the figure. "
    "Original caption: Fluorescence over time for treated and control cells."
)
GOOD = (
    "The line plot shows reporter fluorescence (a.u., y axis) over 0–60 min (x axis) for treated cells (solid) and "
    "controls (dashed). Treated cells rise about twofold while controls stay flat; the model cannot explain the lag "
    "without receptor turnover, which the authors test in Figure 3."
)


def test_good_answer_is_accepted_and_stripped():
    verdict = validate("  " + GOOD + "\n", "stop", PROMPT)
    assert verdict.accepted and verdict.reason is None and verdict.text == GOOD


@pytest.mark.parametrize("text,finish,reason", [
    ("", "stop", "empty answer"),
    ("   \n", "stop", "empty answer"),
    (GOOD, "length", "cut off (finish_reason=length)"),
    ("I'm sorry, but I can't help with describing this image.", "stop", "refusal-like answer"),
    ("As an AI language model, I cannot see images. " + GOOD, "stop", "refusal-like answer"),
    ("I don't see an image attached to your message.", "stop", "refusal-like answer"),
    (PROMPT, "stop", "repeats the prompt"),
    ("Original caption: Fluorescence over time. " + GOOD, "stop", "repeats the prompt"),
])
def test_rejections(text, finish, reason):
    verdict = validate(text, finish, PROMPT)
    assert not verdict.accepted and verdict.reason == reason


def test_numbers_and_symbols_soup_is_not_mostly_letters():
    verdict = validate("0.12 0.34 0.56 | 1.2e-3 ± 0.4 ; 12 34 56 78 90 %% ## ** 3.14 2.72", "stop", PROMPT)
    assert not verdict.accepted and verdict.reason.startswith("not mostly letters")


def test_raw_answer_text_is_kept_on_rejection():
    verdict = validate("  I'm sorry, I cannot describe this figure.  ", "stop", PROMPT)
    assert verdict.text == "I'm sorry, I cannot describe this figure."


def test_measures():
    assert letter_share("ab 12") == 0.5
    assert echo_share(PROMPT, PROMPT) == 1.0
    assert echo_share(GOOD, PROMPT) < 0.1
