"""Prompt building: template hash, context ranking and budget, image downscaling, request shape."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import replace
from importlib import resources

import pytest
from PIL import Image

from figalign.errors import BadInputError
from figalign.recaption.prompt import (
    ContextIn,
    PromptOptions,
    RecaptionInput,
    approx_tokens,
    build_request,
    dedupe_contexts,
    encode_image,
    load_template,
    mentions_figure,
    rank_contexts,
    render_user_text,
    request_image_url,
    select_contexts,
    shorten_for_print,
)
from tests.recaption.store_helpers import plot_png


def _png(width: int, height: int, mode: str = "RGB", colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), colour if mode == "RGB" else colour + (128,)).save(out, "PNG")
    return out.getvalue()


def _input(**kw) -> RecaptionInput:
    values = dict(figure_id=1, title="Reporter activation", abstract="We show activation.", label="Figure 2",
                  caption="Fluorescence over time.", image=plot_png(),
                  contexts=[ContextIn("As Figure 2 shows, treated cells brighten.", 0)])
    values.update(kw)
    return RecaptionInput(**values)


def test_template_hash_is_sha256_of_the_shipped_file():
    data = resources.files("figalign.prompts").joinpath("recaption_v1.md").read_bytes()
    template = load_template("v1")
    assert template.sha256 == hashlib.sha256(data).hexdigest()
    assert "domain expert" in template.system
    assert {"$title", "$abstract", "$caption", "$label", "$contexts", "$target_words"} <= set(
        w.rstrip(".,:") for w in template.user.template.split())


def test_unknown_prompt_version_is_bad_input():
    with pytest.raises(BadInputError):
        load_template("v999")


def test_params_hash_changes_with_sampling_and_budget_but_not_prompt_version():
    base = PromptOptions()
    assert replace(base, temperature=0.7).params_hash() != base.params_hash()
    assert replace(base, max_pixels=512 * 512).params_hash() != base.params_hash()
    assert replace(base, prompt_version="v2").params_hash() == base.params_hash()
    assert "prompt_version" not in base.params()


def test_dedupe_drops_repeats_and_contained_sentences_keeping_reading_order():
    contexts = [
        ContextIn("Cells brighten (Fig. 2).", 3),
        ContextIn("As Fig. 2 shows, treated cells brighten during the first hour.", 1),
        ContextIn("cells brighten (fig 2)", 5),
        ContextIn("   ", 6),
        ContextIn("Controls stay flat.", 0),
        ContextIn("As Fig. 2 shows, treated cells brighten", 2),
    ]
    kept = dedupe_contexts(contexts)
    assert [c.position for c in kept] == [0, 1, 3]


@pytest.mark.parametrize("text,expected", [
    ("As Figure 2 shows", True),
    ("see Fig. 2b", True),
    ("Figs. 1 and 2 compare", True),
    ("as in Fig. 12", False),
    ("Table 2 lists", True),
    ("the second figure", False),
])
def test_explicit_mention(text, expected):
    assert mentions_figure(ContextIn(text), "Figure 2") is expected


def test_ranking_puts_explicit_mentions_then_new_content_words_first():
    caption = "Fluorescence of treated cells over time."
    contexts = [
        ContextIn("Reporter intensity saturates after ninety minutes, indicating receptor depletion kinetics.", 0),
        ContextIn("Figure 2 shows cells.", 1),
        ContextIn("In Figure 2, reporter intensity doubles relative to untreated controls.", 2),
        ContextIn("Fluorescence of treated cells.", 3),
    ]
    ranked = [c.position for c in rank_contexts(contexts, "Figure 2", caption)]
    assert ranked[:2] == [2, 1]  # both name the figure; 2 brings more words the caption lacks
    assert ranked[2:] == [0, 3]  # 3 repeats the caption's words


def test_selection_respects_the_token_budget_and_trims_only_the_best():
    contexts = [ContextIn(f"Figure 2 sentence {i} " + "word " * 40, i) for i in range(10)]
    chosen = select_contexts(contexts, "Figure 2", "", budget=130)
    assert 1 <= len(chosen) < 10
    assert sum(approx_tokens(c) + 1 for c in chosen) <= 130
    huge = [ContextIn("Figure 2 " + "gigantic " * 400, 0)]
    trimmed = select_contexts(huge, "Figure 2", "", budget=50)
    assert len(trimmed) == 1 and trimmed[0].endswith("…") and approx_tokens(trimmed[0]) <= 50


def test_user_text_has_every_input_and_shrinks_on_request():
    inp = _input(abstract="word " * 2000, contexts=[ContextIn(f"Figure 2 detail {i} " + "x" * 300, i) for i in range(8)])
    template = load_template()
    full = render_user_text(inp, template, PromptOptions())
    short = render_user_text(inp, template, PromptOptions(), shrink=0.25)
    for part in ("Reporter activation", "Figure 2", "Fluorescence over time.", "Figure 2 detail 0", "about 120 words"):
        assert part in full
    assert len(short) < len(full) / 2
    assert approx_tokens(full) < PromptOptions().abstract_token_budget + PromptOptions().context_token_budget + 400


def test_missing_contexts_are_said_not_invented():
    text = render_user_text(_input(contexts=[]), load_template(), PromptOptions())
    assert "(none found)" in text


def test_large_image_is_downscaled_within_budget_keeping_aspect_ratio():
    media, data = encode_image(_png(3000, 1000), max_pixels=300_000, image_format="png")
    image = Image.open(io.BytesIO(data))
    assert media == "image/png" and image.format == "PNG"
    assert image.width * image.height <= 300_000
    assert abs(image.width / image.height - 3.0) < 0.01
    assert image.width > 900  # downscaled to the budget, not far below it


def test_small_png_is_sent_unchanged_and_jpeg_is_flattened_on_white():
    source = _png(200, 100)
    assert encode_image(source, max_pixels=1_000_000) == ("image/png", source)
    media, data = encode_image(_png(200, 100, mode="RGBA", colour=(0, 0, 0)), 1_000_000, image_format="jpeg")
    image = Image.open(io.BytesIO(data))
    assert media == "image/jpeg" and image.format == "JPEG" and image.mode == "RGB"
    r, g, b = image.getpixel((10, 10))
    assert 110 < r < 145  # half-transparent black over white, not over black


def test_auto_format_picks_jpeg_for_photographs():
    import random
    rng = random.Random(1)
    photo = Image.new("RGB", (400, 300))
    photo.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(400 * 300)])
    out = io.BytesIO()
    photo.save(out, "TIFF")
    media, _ = encode_image(out.getvalue(), max_pixels=1_000_000)
    assert media == "image/jpeg"


def test_undecodable_image_is_bad_input():
    with pytest.raises(BadInputError):
        encode_image(b"not an image at all", 1_000_000)


def test_request_shape_and_printable_copy():
    inp = _input()
    request = build_request(inp, "m", PromptOptions(max_tokens=300))
    assert request["model"] == "m" and request["max_tokens"] == 300 and request["seed"] == 0
    system, user = request["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    image_part, text_part = user["content"]
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == inp.image
    assert "As Figure 2 shows" in text_part["text"]
    printable = shorten_for_print(request)
    assert len(printable["messages"][1]["content"][0]["image_url"]["url"]) < 120
    assert request_image_url(request) == url  # the original is untouched
