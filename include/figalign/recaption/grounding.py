"""Flags on accepted recaptions: numbers, units and names the inputs do not contain, odd lengths.

The typical recaption hallucination is a specific the model had no source for: "accuracy
rises to 94.3 %", "scale bar 50 µm", "compared with ResNet-50". ``grounding_flags`` finds
such tokens by checking each against all text the model was given (title, abstract,
original caption, citation contexts, the prompt itself): a number whose value (or its
percentage/fraction form) appears nowhere, a unit after a number that appears nowhere, a
name-like token (acronym, mixed case, capitalised word inside a sentence) that appears
nowhere. The image is an input too and may show what the text does not (axis ticks,
legend entries), so these are *flags* with the offending tokens, not rejections: the
export's quality policy decides (``--drop-flag ungrounded-number``). Small integers
(≤ 10: panel and curve counts read off the image) and figure/panel references are not
checked. Measured on a hand-written set with known hallucinations (docs/recaption.md).

Length: the paper's recaptions are 759 ± 251 characters; answers outside
``[min_chars, max_chars]`` are flagged ``too-short`` / ``too-long``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from figalign.errors import ConfigError

VERSION = "grounding-v1"
UNITS = frozenset(
    "nm µm μm um mm cm m km pm Å ms µs μs ns ps s min h hr hrs Hz kHz MHz GHz THz mV V kV µV μV mA µA μA A "
    "K °C °F ° eV meV keV MeV GeV TeV kDa Da bp kb kbp Mb Mbp mg g kg µg μg ng pg ml mL µl µL μL L "
    "M mM µM μM nM pM Pa kPa MPa GPa W mW kW MW J kJ mJ dB dBm px rpm T mT µT N kN mol mmol µmol %".split())
_UNIT_ALT = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
_NUMBER = re.compile(r"(?<![\w.])([-−–]?\d+(?:[.,]\d+)*(?:[eE][-−]?\d+)?)(?:\s?(" + _UNIT_ALT + r")(?![\w]))?")
_REFERENCE = re.compile(r"(?:fig(?:ure)?s?\.?|panels?|tables?|eqs?\.?|equations?|sections?|refs?\.?)\s*$", re.I)
_ACRONYM = re.compile(r"\b(?=[A-Za-z0-9-]*[A-Z][A-Za-z0-9-]*[A-Z0-9])[A-Z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*\b")
_MIXED = re.compile(r"\b[a-z]+[A-Z][A-Za-z0-9]*\b|\b[A-Z][a-z]+[A-Z][A-Za-z0-9]*\b")
_GENE = re.compile(r"\b[a-z]{2,}[0-9]+[a-z0-9]*\b")  # emm1, pqsA-like names with digits
_CAPITAL = re.compile(r"(?<![.!?:]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
_WORD = re.compile(r"[\w°%µμÅ]+(?:[-'][\w]+)*")
COMMON_CAPITALISED = frozenset(
    "The This That These Those Its It In On At For From With Without Each Both All Any Figure Fig Panel Panels "
    "Table Left Right Top Bottom Middle Upper Lower Inset Insets Overall However Here Together Note Also".split())


@dataclass(frozen=True)
class GroundingOptions:
    """Length bounds of an acceptable recaption, in characters (FIGALIGN_RECAPTION_MIN/MAX_CHARS)."""

    min_chars: int = 150
    max_chars: int = 2500

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GroundingOptions:
        env = os.environ if env is None else env
        values = {}
        for name in ("min_chars", "max_chars"):
            raw = (env.get(f"FIGALIGN_RECAPTION_{name.upper()}") or "").strip()
            if raw:
                if not raw.isdigit():
                    raise ConfigError(f"FIGALIGN_RECAPTION_{name.upper()} must be a whole number, got {raw!r}")
                values[name] = int(raw)
        opts = cls(**values)
        if opts.min_chars > opts.max_chars:
            raise ConfigError(f"recaption length bounds reversed: {opts.min_chars} > {opts.max_chars}")
        return opts


def _value(token: str) -> float | None:
    text = token.replace("−", "-").replace("–", "-")
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", text):
        text = text.replace(",", "")  # 1,000 (thousands) …
    else:
        text = text.replace(",", ".")  # … or 0,5 (decimal comma)
    try:
        return float(text)
    except ValueError:
        return None


def _known_values(source: str) -> set[float]:
    values = set()
    for match in _NUMBER.finditer(source):
        value = _value(match.group(1))
        if value is not None:
            values.update({round(value, 9), round(abs(value), 9)})
    return values


def _grounded_value(value: float, unit: str | None, known: set[float]) -> bool:
    """The value or its magnitude appears in the inputs; a percentage also as a fraction
    (45 % for 0.45) and a bare fraction also as a percentage (0.45 for 45 %)."""
    forms = [value, abs(value)]
    if unit == "%":
        forms.append(value / 100)
    elif unit is None and abs(value) < 1:
        forms.append(value * 100)
    return any(round(v, 9) in known for v in forms)


def ungrounded_numbers(answer: str, source: str) -> tuple[list[str], list[str]]:
    """(numbers, units) in ``answer`` that ``source`` lacks, as they are written in the answer."""
    known = _known_values(source)
    source_words = {w.lower() for w in _WORD.findall(source)} | {u for u in UNITS if u in source}
    numbers, units = [], []
    for match in _NUMBER.finditer(answer):
        raw, unit = match.group(1), match.group(2)
        value = _value(raw)
        if value is None or _REFERENCE.search(answer[max(0, match.start() - 12):match.start()]):
            continue
        if not _grounded_value(value, unit, known) and not (value.is_integer() and abs(value) <= 10 and not unit):
            numbers.append(match.group(0).strip())
        elif unit and unit != "%" and unit.lower() not in source_words and unit not in source_words:
            units.append(match.group(0).strip())
    return numbers, units


def ungrounded_entities(answer: str, source: str) -> list[str]:
    """Name-like tokens of ``answer`` (acronyms, mixed case, capitalised words inside a sentence)
    that do not occur in ``source`` (case-insensitive, a trailing plural ``s`` ignored)."""
    words = {w.lower() for w in _WORD.findall(source)}
    low = source.lower()
    out: list[str] = []
    candidates = [m.group(0) for pattern in (_ACRONYM, _MIXED, _GENE, _CAPITAL) for m in pattern.finditer(answer)]
    for token in candidates:
        key = token.lower()
        if token in COMMON_CAPITALISED or token in UNITS or key in words or key.rstrip("s") in words:
            continue
        if "-" in token and key in low:
            continue
        if not any(c.isalpha() for c in token) or token in out:
            continue
        out.append(token)
    whole = [t for t in out if "-" in t]  # "Kruskal-Wallis" found whole: not its halves again
    return [t for t in out if not any(t != w and t in w.split("-") for w in whole)]


def grounding_flags(answer: str, source: str, options: GroundingOptions | None = None) -> dict[str, list[str]]:
    """Flag name → offending tokens (length flags carry the length); empty when nothing is flagged."""
    options = options or GroundingOptions()
    flags: dict[str, list[str]] = {}
    numbers, units = ungrounded_numbers(answer, source)
    if numbers:
        flags["ungrounded-number"] = numbers
    if units:
        flags["ungrounded-unit"] = units
    entities = ungrounded_entities(answer, source)
    if entities:
        flags["ungrounded-entity"] = entities
    if len(answer) < options.min_chars:
        flags["too-short"] = [str(len(answer))]
    elif len(answer) > options.max_chars:
        flags["too-long"] = [str(len(answer))]
    return flags


_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


def strip_think(text: str) -> tuple[str, bool]:
    """Remove Qwen3 "Thinking" blocks: every ``<think>…</think>``, and an unclosed ``<think>``
    with all after it (a reasoning trace cut off before its answer). Returns (answer, stripped?)."""
    out = _THINK.sub("", text)
    lower = out.lower()
    if "</think>" in lower:  # a template that opens the block itself: only the closing tag is sent
        out = out[lower.rindex("</think>") + len("</think>"):]
    lower = out.lower()
    if "<think>" in lower:
        out = out[:lower.index("<think>")]
    return out.strip(), out != text
