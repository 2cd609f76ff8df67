"""Build the chat request that asks a vision-language model to recaption one figure.

The prompt text lives in a versioned file (``figalign/prompts/recaption_v1.md``); its
sha256 is the prompt hash stored with every caption, so editing the file is a new prompt
version. Everything else that changes the model's answer (sampling parameters, the
context budget, the image pixel budget and format) goes into the parameter hash.

Citation contexts are deduplicated and ranked "most informative first", where
*informative* means, in this order of precedence:

1. the sentence names this figure explicitly ("Fig. 2", "Figure 2b"), not just a nearby
   figure or a section — such sentences say what the figure is for;
2. it carries more distinct content words (alphabetic words of three or more letters
   that are not stop words and not already in the original caption) — new vocabulary
   is what the model cannot get from the caption alone;
3. it comes earlier in the paper (the first mention usually introduces the figure).

They are then kept greedily in that order while they fit a token budget.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
import string
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from PIL import Image, UnidentifiedImageError

from figalign.errors import BadInputError

DEFAULT_PROMPT_VERSION = "v1"
CHARS_PER_TOKEN = 4  # the usual rule of thumb for English BPE; no tokenizer needed client-side
NO_CONTEXTS = "(none found)"
_SECTION = re.compile(r"^=== (system|user) ===$", re.M)
_WORD = re.compile(r"[A-Za-z][A-Za-z\-]{2,}")
_STOP = frozenset(
    "the and for with that this from are was were has have had been into its their our which these those "
    "than then also such can may not but all any each both more most other some only same very shown show "
    "shows figure fig figs table panel panels see here there where when what while using used use".split()
)


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded prompt version: system text, user template and the file's sha256."""

    version: str
    system: str
    user: string.Template
    sha256: str


@lru_cache(maxsize=8)
def load_template(version: str = DEFAULT_PROMPT_VERSION) -> PromptTemplate:
    """Read ``recaption_<version>.md`` from the package; hash the exact file bytes."""
    name = f"recaption_{version}.md"
    try:
        data = resources.files("figalign.prompts").joinpath(name).read_bytes()
    except FileNotFoundError as exc:
        raise BadInputError(f"no prompt template {name}") from exc
    text = data.decode("utf-8")
    parts = _SECTION.split(text)
    sections = dict(zip(parts[1::2], (p.strip() for p in parts[2::2])))
    if set(sections) != {"system", "user"}:
        raise BadInputError(f"{name} must have one '=== system ===' and one '=== user ===' section")
    return PromptTemplate(version, sections["system"], string.Template(sections["user"]),
                          hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class PromptOptions:
    """Knobs that change the request (and therefore are part of the parameter hash).

    ``max_pixels`` is the image's pixel budget (width × height after downscaling);
    ``image_format`` is ``png``, ``jpeg`` or ``auto`` (keep the source's PNG/JPEG bytes
    when they already fit, else PNG for images with few colours — line art, plots — and
    JPEG for photographs).
    """

    prompt_version: str = DEFAULT_PROMPT_VERSION
    target_words: int = 120
    context_token_budget: int = 600
    abstract_token_budget: int = 400
    max_pixels: int = 1024 * 1024
    image_format: str = "auto"
    jpeg_quality: int = 90
    max_tokens: int = 512
    temperature: float = 0.2
    top_p: float = 0.9
    seed: int | None = 0

    def sampling(self) -> dict[str, Any]:
        """The sampling parameters sent with the request."""
        out: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def params(self) -> dict[str, Any]:
        """Everything but the prompt text and model that shapes the answer (stored with it)."""
        values = asdict(self)
        values.pop("prompt_version")
        return values

    def params_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ContextIn:
    """One citation context as stored: its sentence, the mention string, its position."""

    text: str
    position: int = 0
    mention: str | None = None


@dataclass(frozen=True)
class RecaptionInput:
    """Everything the prompt needs about one figure, read from the store."""

    figure_id: int
    title: str
    abstract: str
    label: str
    caption: str
    image: bytes
    contexts: list[ContextIn] = field(default_factory=list)


def approx_tokens(text: str) -> int:
    """Token estimate without a tokenizer (budgets are soft; the server has the last word)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def trim_to_tokens(text: str, budget: int) -> str:
    """Cut ``text`` at a word boundary so it fits ``budget`` tokens, marking the cut."""
    limit = budget * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def dedupe_contexts(contexts: list[ContextIn]) -> list[ContextIn]:
    """Drop empty contexts, exact repeats (ignoring case/punctuation) and ones contained in another."""
    keyed = [(c, _normalise(c.text)) for c in sorted(contexts, key=lambda c: c.position)]
    keyed = [(c, n) for c, n in keyed if n]
    kept: list[tuple[ContextIn, str]] = []
    for ctx, norm in sorted(keyed, key=lambda cn: -len(cn[1])):  # longest first, so containment is one pass
        if any(norm in other for _, other in kept):
            continue
        kept.append((ctx, norm))
    return sorted((c for c, _ in kept), key=lambda c: c.position)


def _figure_number(label: str) -> str | None:
    match = re.search(r"(\d+|[IVX]+)\s*$", label.strip().rstrip(".:")) if label else None
    return match.group(1) if match else None


def mentions_figure(ctx: ContextIn, label: str) -> bool:
    """Whether the sentence names this figure explicitly (its stored mention or "Fig. N")."""
    if ctx.mention and ctx.mention.lower() in ctx.text.lower():
        return True
    number = _figure_number(label)
    if not number:
        return False
    pattern = rf"\b(?:fig(?:ure)?s?\.?|tables?|tab\.)\s*(?:\d+[a-z]?\s*(?:,|and|&|-|–)\s*)*{re.escape(number)}(?![0-9])"
    return re.search(pattern, ctx.text, re.I) is not None


def content_words(text: str, exclude: frozenset[str] = frozenset()) -> set[str]:
    """Distinct non-stop-words of three or more letters, minus ``exclude``."""
    words = {w.lower() for w in _WORD.findall(text)}
    return words - _STOP - exclude


def rank_contexts(contexts: list[ContextIn], label: str, caption: str) -> list[ContextIn]:
    """Deduplicate and order most informative first (see the module docstring)."""
    known = frozenset(content_words(caption))
    unique = dedupe_contexts(contexts)
    return sorted(unique, key=lambda c: (not mentions_figure(c, label), -len(content_words(c.text, known)), c.position))


def select_contexts(contexts: list[ContextIn], label: str, caption: str, budget: int) -> list[str]:
    """Ranked contexts that fit ``budget`` tokens; the best one is trimmed rather than lost."""
    chosen: list[str] = []
    left = budget
    for ctx in rank_contexts(contexts, label, caption):
        text = " ".join(ctx.text.split())
        cost = approx_tokens(text) + 1  # +1 for the bullet and newline
        if cost <= left:
            chosen.append(text)
            left -= cost
        elif not chosen and left > 8:
            chosen.append(trim_to_tokens(text, left - 1))
            left = 0
    return chosen


def render_user_text(inp: RecaptionInput, template: PromptTemplate, options: PromptOptions,
                     *, shrink: float = 1.0) -> str:
    """Fill the user template; ``shrink`` < 1 scales the abstract and context budgets down."""
    contexts = select_contexts(inp.contexts, inp.label, inp.caption, int(options.context_token_budget * shrink))
    return template.user.substitute(
        title=" ".join(inp.title.split()) or "(unknown)",
        abstract=trim_to_tokens(" ".join(inp.abstract.split()), int(options.abstract_token_budget * shrink)) or "(none)",
        label=inp.label or "(none)",
        caption=" ".join(inp.caption.split()) or "(none)",
        contexts="\n".join(f"- {c}" for c in contexts) or NO_CONTEXTS,
        target_words=options.target_words,
    )


def _choose_format(image: Image.Image, wanted: str) -> str:
    """PNG for few-colour images (plots, line art: lossless and small), JPEG for photographs."""
    if wanted in ("png", "jpeg"):
        return wanted
    return "png" if image.getcolors(maxcolors=4096) is not None else "jpeg"


def encode_image(data: bytes, max_pixels: int, image_format: str = "auto", jpeg_quality: int = 90) -> tuple[str, bytes]:
    """Downscale to at most ``max_pixels`` keeping the aspect ratio; return (media type, bytes).

    Source PNG/JPEG bytes that already fit the budget are sent as they are when the format
    allows it: re-encoding would only cost CPU and, for JPEG, quality.
    """
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only: format and size
        source = (image.format or "").lower()
        fits = image.width * image.height <= max_pixels
        if fits and source in ("png", "jpeg") and image_format in ("auto", source):
            return f"image/{source}", data  # no decode: a corrupt body is the server's 400, per figure
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise BadInputError(f"figure image cannot be decoded: {exc}") from exc
    image = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P", "PA") else "RGB")
    if not fits:
        scale = math.sqrt(max_pixels / (image.width * image.height))
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    fmt = _choose_format(image, image_format)
    return f"image/{fmt}", _save(image, fmt, jpeg_quality)


def _save(image: Image.Image, fmt: str, jpeg_quality: int) -> bytes:
    out = io.BytesIO()
    if fmt == "jpeg":
        if image.mode in ("RGBA", "LA", "P"):
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, "white")  # figures are drawn on white paper
            background.paste(rgba, mask=rgba.getchannel("A"))
            image = background
        image.convert("RGB").save(out, "JPEG", quality=jpeg_quality, optimize=False)
    else:
        image.save(out, "PNG", compress_level=3)  # level 3: ~as small as 6 for line art, several times faster
    return out.getvalue()


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def image_data_url(inp: RecaptionInput, options: PromptOptions) -> str:
    media_type, data = encode_image(inp.image, options.max_pixels, options.image_format, options.jpeg_quality)
    return data_url(media_type, data)


def build_request(inp: RecaptionInput, model: str, options: PromptOptions, *, image_url: str | None = None,
                  shrink: float = 1.0, template: PromptTemplate | None = None) -> dict[str, Any]:
    """The exact chat-completions body: system instructions, then the image and the text.

    ``image_url`` lets a caller reuse an already encoded image (the shorter-context retry
    changes only the text).
    """
    template = template or load_template(options.prompt_version)
    url = image_url if image_url is not None else image_data_url(inp, options)
    user_content = [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": render_user_text(inp, template, options, shrink=shrink)},
    ]
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": template.system},
            {"role": "user", "content": user_content},
        ],
        **options.sampling(),
    }


def request_image_url(request: dict[str, Any]) -> str:
    """The image data URL inside a built request (for reuse by a shorter retry)."""
    for part in request["messages"][-1]["content"]:
        if part.get("type") == "image_url":
            return part["image_url"]["url"]
    raise BadInputError("request carries no image")


def request_prompt_text(request: dict[str, Any]) -> str:
    """All text the model was given, for the "repeats the prompt" check."""
    texts = []
    for message in request["messages"]:
        content = message["content"]
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.extend(p["text"] for p in content if p.get("type") == "text")
    return "\n".join(texts)


def shorten_for_print(request: dict[str, Any], keep: int = 48) -> dict[str, Any]:
    """A copy of ``request`` with base64 image data cut, for printing only."""
    printable = json.loads(json.dumps(request))
    for message in printable["messages"]:
        if isinstance(message["content"], list):
            for part in message["content"]:
                if part.get("type") == "image_url":
                    url = part["image_url"]["url"]
                    if len(url) > keep:
                        part["image_url"]["url"] = f"{url[:keep]}…[{len(url) - keep} more characters]"
    return printable
