"""TeX text processing for the LaTeX parser: comments, groups, macros, plain text.

arXiv sources are hand-written TeX, not a regular language, so everything here is a small
bounded scanner that degrades gracefully: an unbalanced brace or an odd macro yields slightly
noisier text, never an exception, because one bad caption must not sink the paper.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

# A reference resolver gets (command name, list of label keys) and returns replacement text.
RefResolver = Callable[[str, list[str]], str]

_MAX_EXPANSIONS = 50_000
_MAX_DEPTH = 12


def decode_tex(data: bytes) -> str:
    """Decode TeX bytes: UTF-8 when valid, else latin-1 (which never fails)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _comment_start(line: str) -> int:
    """Index of the first unescaped % in a line, or -1 (a % after an even run of \\ starts a comment)."""
    i = line.find("%")
    while i != -1:
        j = i - 1
        slashes = 0
        while j >= 0 and line[j] == "\\":
            slashes += 1
            j -= 1
        if slashes % 2 == 0:
            return i
        i = line.find("%", i + 1)
    return -1


def strip_comments(text: str) -> str:
    """Remove TeX comments; a line that is only a comment disappears so it cannot split a paragraph."""
    out: list[str] = []
    for line in text.splitlines():
        cut = _comment_start(line)
        if cut == -1:
            out.append(line)
        elif line[:cut].strip():
            out.append(line[:cut])
        # a whole-line comment is dropped entirely, as TeX also eats its newline
    return "\n".join(out)


def remove_false_blocks(text: str) -> str:
    """Drop \\iffalse...\\fi and comment environments: authors park dead figures there."""
    text = re.sub(r"\\begin\{comment\}.*?\\end\{comment\}", " ", text, flags=re.S)
    return re.sub(r"\\iffalse\b.*?\\fi\b", " ", text, flags=re.S)


def skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def read_group(text: str, i: int, open_ch: str = "{", close_ch: str = "}") -> tuple[str, int] | None:
    """The balanced group starting exactly at i (``{...}`` by default) and the index after it.

    Escaped braces (``\\{``) do not count. An unclosed group runs to the end of the text.
    """
    if i >= len(text) or text[i] != open_ch:
        return None
    depth = 0
    j = i
    while j < len(text):
        ch = text[j]
        if ch == "\\":
            j += 2
            continue
        if ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
        elif open_ch == "[" and ch == "{":
            inner = read_group(text, j)
            if inner is not None:
                j = inner[1]
                continue
        j += 1
    return text[i + 1 :], len(text)


def read_optional(text: str, i: int) -> tuple[str | None, int]:
    """An optional ``[...]`` argument at i (after spaces), or (None, i)."""
    j = skip_ws(text, i)
    if j < len(text) and text[j] == "[":
        grp = read_group(text, j, "[", "]")
        if grp is not None:
            return grp
    return None, i


def read_arg(text: str, i: int) -> tuple[str, int]:
    """A mandatory argument at i: a braced group, a control sequence, or a single character."""
    j = skip_ws(text, i)
    if j >= len(text):
        return "", j
    if text[j] == "{":
        grp = read_group(text, j)
        if grp is not None:
            return grp
    if text[j] == "\\":
        m = re.match(r"\\(?:[A-Za-z@]+|.)", text[j:])
        if m:
            return m.group(0), j + m.end()
    return text[j], j + 1


def read_optionals(text: str, j: int) -> tuple[list[str], int]:
    """Every ``[...]`` argument starting at ``j``, and the position after the last one."""
    opts: list[str] = []
    while True:
        opt, k = read_optional(text, j)
        if opt is None:
            return opts, j
        opts.append(opt)
        j = k


def read_command_args(text: str, i: int, n_mandatory: int) -> tuple[list[str | None], list[str], int]:
    """Optional arguments (any number, before the first mandatory one) and n mandatory ones."""
    j = i
    if j < len(text) and text[j] == "*":
        j += 1
    opts, j = read_optionals(text, j)
    args: list[str] = []
    for _ in range(n_mandatory):
        arg, j = read_arg(text, j)
        args.append(arg)
    return opts, args, j


# ------------------------------------------------------------------ user macros
@dataclass
class Macro:
    """A user macro from \\newcommand/\\def: its argument count, optional default and body."""

    name: str
    nargs: int
    body: str
    default: str | None = None


_DEF_RE = re.compile(
    r"\\(?:re)?newcommand\*?|\\providecommand\*?|\\DeclareRobustCommand\*?|\\(?:g|e|x)?def(?![A-Za-z])"
)
_UNSAFE_BODY = re.compile(r"\\(?:def|newcommand|renewcommand|providecommand|catcode|csname|let|if[A-Za-z]*|makeatletter)\b")


def _parse_newcommand(text: str, j: int) -> tuple[Macro | None, int]:
    """Parse the rest of a \\newcommand-style definition starting after the command word."""
    j = skip_ws(text, j)
    if j < len(text) and text[j] == "{":
        grp = read_group(text, j)
        if grp is None:
            return None, j
        name, j = grp[0].strip(), grp[1]
    else:
        m = re.match(r"\\[A-Za-z@]+", text[j:])
        if not m:
            return None, j
        name, j = m.group(0), j + m.end()
    nargs_s, j = read_optional(text, j)
    default, j = read_optional(text, j)
    body, j = read_arg(text, j)
    try:
        nargs = int(nargs_s.strip()) if nargs_s else 0
    except ValueError:
        return None, j
    if not name.startswith("\\"):
        return None, j
    return Macro(name[1:], max(0, min(nargs, 9)), body, default), j


def _parse_def(text: str, j: int) -> tuple[Macro | None, int]:
    """Parse the rest of a \\def: name, undelimited #1#2 parameters, body."""
    m = re.match(r"\s*\\([A-Za-z@]+)([^{]*)", text[j:])
    if not m:
        return None, j
    params = m.group(2)
    j += m.end()
    grp = read_group(text, j)
    if grp is None:
        return None, j
    body, j = grp
    if not re.fullmatch(r"(?:#\d)*", params.strip()):
        return None, j  # delimited parameters: too clever to expand safely
    return Macro(m.group(1), len(re.findall(r"#\d", params)), body), j


def extract_macros(text: str) -> tuple[dict[str, Macro], str]:
    """Collect user macro definitions and return them with the text the definitions removed."""
    macros: dict[str, Macro] = {}
    out: list[str] = []
    pos = 0
    for m in _DEF_RE.finditer(text):
        if m.start() < pos:
            continue
        word = m.group(0)
        if word.endswith("def"):
            macro, end = _parse_def(text, m.end())
        else:
            macro, end = _parse_newcommand(text, m.end())
        out.append(text[pos : m.start()])
        pos = max(end, m.end())
        if macro is None or _UNSAFE_BODY.search(macro.body) or len(macro.body) >= 2000:
            continue
        if word.startswith("\\providecommand") and macro.name in macros:
            continue
        macros[macro.name] = macro
    out.append(text[pos:])
    return macros, "".join(out)


class _Budget:
    def __init__(self) -> None:
        self.left = _MAX_EXPANSIONS


def expand_macros(text: str, macros: dict[str, Macro]) -> str:
    """Expand user macros (bounded), so \\figref{x} becomes Figure~\\ref{x} and helpers become markup."""
    if not macros:
        return text
    names = sorted(macros, key=len, reverse=True)
    pattern = re.compile(r"\\(" + "|".join(re.escape(n) for n in names) + r")(?![A-Za-z@])")
    return _expand(text, macros, pattern, 0, _Budget())


def _expand(text: str, macros: dict[str, Macro], pattern: re.Pattern, depth: int, budget: _Budget) -> str:
    if depth > _MAX_DEPTH or budget.left <= 0:
        return text
    out: list[str] = []
    pos = 0
    for m in pattern.finditer(text):
        if m.start() < pos:
            continue
        if m.start() > 0 and text[m.start() - 1] == "\\":
            continue
        macro = macros[m.group(1)]
        budget.left -= 1
        if budget.left <= 0:
            break
        j = m.end()
        args: list[str] = []
        if macro.default is not None:
            opt, j = read_optional(text, j)
            args.append(opt if opt is not None else macro.default)
        while len(args) < macro.nargs:
            arg, j = read_arg(text, j)
            args.append(arg)
        body = re.sub(r"#(\d)", lambda g: args[int(g.group(1)) - 1] if 0 < int(g.group(1)) <= len(args) else "", macro.body)
        out.append(text[pos : m.start()])
        out.append(_expand(body, macros, pattern, depth + 1, budget))
        pos = j
    out.append(text[pos:])
    return "".join(out)


# ------------------------------------------------------------------ environments
_BEGIN_END = re.compile(r"\\(begin|end)\s*\{([^}]*)\}")


@dataclass
class Env:
    """One environment occurrence: name and the spans of its whole text and its body."""

    name: str
    start: int
    body_start: int
    body_end: int
    end: int


def find_envs(text: str, names: set[str]) -> list[Env]:
    """Outermost environments whose name is in ``names``, matched with nesting, in order."""
    found: list[Env] = []
    stack: list[tuple[str, int, int]] = []
    for m in _BEGIN_END.finditer(text):
        kind, name = m.group(1), m.group(2).strip()
        if name not in names:
            continue
        if kind == "begin":
            stack.append((name, m.start(), m.end()))
            continue
        for k in range(len(stack) - 1, -1, -1):
            if stack[k][0] == name:
                sname, start, body_start = stack[k]
                del stack[k:]
                if not stack:
                    found.append(Env(sname, start, body_start, m.start(), m.end()))
                break
    return found


# ------------------------------------------------------------------ LaTeX -> plain text
GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ",
    "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ",
    "tau": "τ", "upsilon": "υ", "phi": "φ", "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
    "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ",
    "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
}
SYMBOLS = {
    **GREEK,
    "times": "×", "pm": "±", "mp": "∓", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠",
    "ne": "≠", "approx": "≈", "sim": "~", "simeq": "≃", "propto": "∝", "infty": "∞", "cdot": "·",
    "rightarrow": "→", "to": "→", "leftarrow": "←", "Rightarrow": "⇒", "leftrightarrow": "↔",
    "ldots": "...", "dots": "...", "cdots": "...", "textbullet": "•", "bullet": "•",
    "degree": "°", "circ": "°", "partial": "∂", "nabla": "∇", "sum": "Σ", "prod": "Π", "int": "∫",
    "in": "∈", "subset": "⊂", "cup": "∪", "cap": "∩", "ell": "ℓ", "hbar": "ħ", "prime": "′",
    "LaTeX": "LaTeX", "TeX": "TeX", "textendash": "–", "textemdash": "—", "S": "§", "P": "¶",
    "ss": "ß", "o": "ø", "O": "Ø", "aa": "å", "AA": "Å", "ae": "æ", "AE": "Æ", "oe": "œ",
    "OE": "Œ", "l": "ł", "L": "Ł", "i": "ı", "j": "ȷ", "textasciitilde": "~", "textbackslash": "\\",
    "copyright": "©", "textregistered": "®", "texttrademark": "™", "dag": "†", "ddag": "‡",
    "textless": "<", "textgreater": ">", "lt": "<", "gt": ">", "mid": "|", "vert": "|",
    "langle": "⟨", "rangle": "⟩", "star": "*", "ast": "*", "AA ": "Å", "micro": "µ",
}
SPACES = {
    "quad", "qquad", "hfill", "vfill", "newline", "linebreak", "par", "noindent", "centering",
    "raggedright", "raggedleft", "smallskip", "medskip", "bigskip", "break", "indent", "and",
    "item", "hline", "toprule", "midrule", "bottomrule", "cr", "enspace", "thinspace", "space",
    "protect", "clearpage", "newpage", "maketitle", "tabularnewline", "left", "right", "big",
    "Big", "bigg", "Bigg", "displaystyle", "textstyle", "nonumber", "notag",
}
# commands whose first n mandatory arguments are not text
DROP_ARGS = {
    "label": 1, "vspace": 1, "hspace": 1, "includegraphics": 1, "color": 1, "setlength": 2,
    "addtolength": 2, "rule": 2, "fontsize": 2, "cellcolor": 1, "rowcolor": 1, "columncolor": 1,
    "index": 1, "bibliographystyle": 1, "bibliography": 1, "pagestyle": 1, "thispagestyle": 1,
    "setcounter": 2, "addtocounter": 2, "definecolor": 3, "graphicspath": 1, "epsfig": 1,
    "psfig": 1, "epsfbox": 1, "epsffile": 1, "phantom": 1, "hphantom": 1, "vphantom": 1,
    "linespread": 1, "usepackage": 1, "documentclass": 1, "newlength": 1, "captionsetup": 1,
    "textcolor": 1, "href": 1, "colorbox": 1, "resizebox": 2, "scalebox": 1, "rotatebox": 1,
    "parbox": 1, "raisebox": 1, "multicolumn": 2, "multirow": 2, "fcolorbox": 2,
    "adjustbox": 1, "plotone": 1, "plottwo": 2, "input": 1, "include": 1, "hypersetup": 1,
    "vskip": 0, "hskip": 0, "specialrule": 3, "cmidrule": 1, "cline": 1, "arrayrulecolor": 1,
    "includesvg": 1, "pgfplotsset": 1, "tikzset": 1, "usetikzlibrary": 1,
    "newcolumntype": 2, "setbeamertemplate": 1, "footnotemark": 0, "bibitem": 1,
    "orcid": 1, "thanks": 1,
}
REFS = {"ref", "autoref", "Autoref", "cref", "Cref", "eqref", "pageref", "nameref", "vref",
        "Vref", "cpageref", "labelcref", "crefrange", "Crefrange", "fref", "Fref", "subref"}
_ENV_ARGS = {"tabular": 1, "tabular*": 2, "tabularx": 2, "tabulary": 2, "array": 1, "minipage": 1,
             "subfigure": 1, "subtable": 1, "wrapfigure": 2, "wraptable": 2, "longtable": 1,
             "multicols": 1, "adjustbox": 1, "tabu": 1, "threeparttable": 0, "overpic": 1}
_ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303",
            "=": "\u0304", ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b",
            "c": "\u0327", "k": "\u0328", "r": "\u030a", "d": "\u0323", "b": "\u0331"}
_ESCAPES = {"%": "%", "&": "&", "_": "_", "#": "#", "$": "$", "{": "{", "}": "}", " ": " ",
            ",": " ", ";": " ", ":": " ", "!": "", "\\": " ", "/": "", "-": "", "@": "", "|": "‖"}
_MATH_ENVS = ("equation", "equation*", "align", "align*", "eqnarray", "eqnarray*", "gather",
              "gather*", "multline", "multline*", "displaymath", "math", "flalign", "flalign*")


def _no_ref(name: str, keys: list[str]) -> str:
    return "?"


class _Converter:
    """A single left-to-right pass turning LaTeX markup into readable text."""

    def __init__(self, refs: RefResolver | None) -> None:
        self.refs = refs or _no_ref

    def convert(self, s: str, math: bool = False, depth: int = 0) -> str:
        out: list[str] = []
        i = 0
        n = len(s)
        while i < n:
            ch = s[i]
            if ch == "\\":
                text, i = self._command(s, i, math, depth)
                out.append(text)
            elif ch == "$" and not math:
                text, i = self._dollar_math(s, i, depth)
                out.append(text)
            elif ch == "{":
                i += 1
            elif ch == "}":
                i += 1
                if i < n and s[i] == "{":
                    out.append(" ")
            elif ch == "~":
                out.append(" ")
                i += 1
            elif ch == "-" and not math and s.startswith("---", i):
                out.append("—")
                i += 3
            elif ch == "-" and not math and s.startswith("--", i):
                out.append("–")
                i += 2
            elif s.startswith("``", i) or s.startswith("''", i):
                out.append('"')
                i += 2
            elif ch == "&" and not math:
                out.append(" ")
                i += 1
            else:
                out.append(ch)
                i += 1
        return "".join(out)

    def _dollar_math(self, s: str, i: int, depth: int) -> tuple[str, int]:
        delim = "$$" if s.startswith("$$", i) else "$"
        start = i + len(delim)
        j = start
        while True:
            j = s.find(delim, j)
            if j == -1:
                return self.convert(s[start:], True, depth + 1), len(s)
            if s[j - 1] != "\\":
                break
            j += 1
        return " " + self.convert(s[start:j], True, depth + 1).strip() + " " if delim == "$$" else self.convert(
            s[start:j], True, depth + 1
        ), j + len(delim)

    def _command(self, s: str, i: int, math: bool, depth: int) -> tuple[str, int]:
        if i + 1 >= len(s):
            return "", i + 1
        nxt = s[i + 1]
        if nxt in _ACCENTS and not (nxt.isalpha() and i + 2 < len(s) and s[i + 2].isalpha()):
            return self._accent(s, i)
        if nxt in "([" :
            close = "\\)" if nxt == "(" else "\\]"
            j = s.find(close, i + 2)
            end = len(s) if j == -1 else j
            return " " + self.convert(s[i + 2 : end], True, depth + 1) + " ", (len(s) if j == -1 else j + 2)
        if nxt in ")]":
            return " ", i + 2
        if not (nxt.isalpha() or nxt == "@"):
            return _ESCAPES.get(nxt, ""), i + 2
        m = re.match(r"[A-Za-z@]+", s[i + 1 :])
        name = m.group(0)
        j = i + 1 + m.end()
        return self._named(name, s, j, math, depth)

    def _accent(self, s: str, i: int) -> tuple[str, int]:
        mark = _ACCENTS[s[i + 1]]
        j = i + 2
        if s[i + 1].isalpha():
            j = skip_ws(s, j)
        if j < len(s) and s[j] == "{":
            grp = read_group(s, j)
            base, j = grp if grp else ("", j + 1)
        elif j < len(s):
            base, j = s[j], j + 1
        else:
            base = ""
        base = {"\\i": "i", "\\j": "j"}.get(base.strip(), base.strip())
        if len(base) != 1:
            return base, j
        return unicodedata.normalize("NFC", base + mark), j

    def _named(self, name: str, s: str, j: int, math: bool, depth: int) -> tuple[str, int]:
        if name in REFS:
            _, args, k = read_command_args(s, j, 1)
            keys = [x.strip() for x in args[0].split(",") if x.strip()]
            return self.refs(name, keys), k
        if name.startswith("cite") or name in {"citep", "citet", "nocite", "parencite", "textcite",
                                                 "autocite", "footcite", "citealp", "citealt"}:
            _, _, k = read_command_args(s, j, 1)
            return "", k
        if name == "verb" and j < len(s):
            close = s.find(s[j], j + 1)
            close = len(s) if close == -1 else close
            return s[j + 1 : close], close + 1
        if name in ("begin", "end"):
            return self._env_word(name, s, j, depth)
        if name == "footnote":
            _, args, k = read_command_args(s, j, 1)
            return " (" + self.convert(args[0], math, depth + 1).strip() + ") ", k
        if name in DROP_ARGS:
            _, _, k = read_command_args(s, j, DROP_ARGS[name])
            return " ", k
        if name in SYMBOLS:
            return SYMBOLS[name], j
        if name in SPACES:
            return " ", j
        if name in ("frac", "dfrac", "tfrac"):
            _, args, k = read_command_args(s, j, 2)
            return f"{self.convert(args[0], True, depth + 1)}/{self.convert(args[1], True, depth + 1)}", k
        # unknown macro: drop its name and options, keep the text of its braced arguments
        k = j
        if k < len(s) and s[k] == "*":
            k += 1
        while k < len(s) and s[k] == "[":
            grp = read_group(s, k, "[", "]")
            if grp is None:
                break
            k = grp[1]
        return "", k

    def _env_word(self, word: str, s: str, j: int, depth: int) -> tuple[str, int]:
        k = skip_ws(s, j)
        grp = read_group(s, k)
        if grp is None:
            return " ", j
        env, k = grp[0].strip(), grp[1]
        if word == "end":
            return " ", k
        if env in _MATH_ENVS:
            close = s.find("\\end{" + env + "}", k)
            end = len(s) if close == -1 else close
            text = self.convert(s[k:end], True, depth + 1)
            return " " + text + " ", (len(s) if close == -1 else close + len(env) + 6)
        opts_before = 0
        while True:
            opt, k2 = read_optional(s, k)
            if opt is None or opts_before > 3:
                break
            k = k2
            opts_before += 1
        for _ in range(_ENV_ARGS.get(env, 0)):
            _, k = read_arg(s, k)
        return " ", k


def to_text(tex: str, refs: RefResolver | None = None) -> str:
    """Readable text of a LaTeX fragment: markup dropped, math kept as source, refs resolved."""
    text = _Converter(refs).convert(tex or "")
    text = re.sub(r"[ \t\r\n]+", " ", text)
    text = re.sub(r"\s+([,.;:!?)])", r"\1", text)
    text = re.sub(r"\(\s+", "(", text)
    return text.strip()


# ------------------------------------------------------------------ figure floats
# Raw figures: captions as TeX and graphic names as written; numbering, references and image
# conversion happen in latex.py where the whole document is known.
FIGURE_ENVS = {"figure", "figure*", "wrapfigure", "wrapfigure*", "SCfigure", "SCfigure*",
               "sidewaysfigure", "sidewaysfigure*", "floatingfigure"}
TABLE_ENVS = {"table", "table*", "wraptable", "wraptable*", "sidewaystable", "sidewaystable*",
              "SCtable", "SCtable*"}
_SUB_ENVS = {"subfigure", "subfigure*", "subtable", "subtable*"}
_SUB_CMD = re.compile(r"\\(subfloat|subfigure|subtable|subcaptionbox|sidesubfloat)(?![A-Za-z@])")
_CAPTION = re.compile(r"\\(?:top|bottom)?caption(?![A-Za-z@])")  # \\topcaption: CMS, supertabular
_SUBCAPTION = re.compile(r"\\(?:sub)?caption(?![A-Za-z@])")
_LABEL = re.compile(r"\\label\s*\{([^}]*)\}")
_CONTINUED = re.compile(r"\\ContinuedFloat(?![A-Za-z@])")
_GRAPHIC = re.compile(r"\\(includegraphics|epsfig|psfig|epsfbox|epsffile|epsfile|plotone|plottwo|plotfiddle"
                      r"|includestandalone|special)(?![A-Za-z@])")
# commands whose one argument is key=value options naming the file
_KEYVAL_GRAPHICS = {"epsfig", "psfig", "epsfile"}
_FILE_KEY = re.compile(r"(?:file|figure)\s*=\s*([^,}\s]+)")
_PSFILE = re.compile(r"psfile\s*=\s*\"?([^\s\"}]+)")
# Drawn figures: no graphics file exists, only the typeset PDF shows them.
_DRAWN = (("tikz", re.compile(r"\\begin\s*\{(?:tikzpicture|axis|semilogyaxis|semilogxaxis|loglogaxis|polaraxis)\}"
                              r"|\\tikz(?![A-Za-z@])|\\input\s*\{[^}]*\.(?:pgf|tikz)\}")),
          ("picture", re.compile(r"\\begin\s*\{picture\}")),
          ("pstricks", re.compile(r"\\begin\s*\{pspicture\*?\}|\\psset(?![A-Za-z@])")),
          ("xy", re.compile(r"\\xymatrix(?![A-Za-z@])|\\begin\s*\{xy\}")))
# A line break in a float: panels after it start a new row.
_ROW_BREAK = re.compile(r"\\\\|\\newline(?![A-Za-z@])|\\linebreak(?![A-Za-z@])|\\par(?![A-Za-z@])|\n[ \t]*\n"
                        r"|\\(?:vspace|vskip|bigskip|medskip|smallskip)(?![A-Za-z@])")
_PAGE_OPT = re.compile(r"\bpage\s*=\s*(\d+)")


@dataclass
class Graphic:
    """One graphics inclusion: the file name as written, the PDF page it asks for (0-based)
    and its size options as written (``width=0.5\\linewidth``), which the layout reads."""

    name: str
    page: int = 0
    pos: int = 0
    options: str = ""


@dataclass
class RawPanel:
    """A sub-figure: its caption TeX (may be empty), labels and graphics."""

    caption: str
    labels: list[str]
    graphics: list[Graphic]
    pos: int = 0
    width: str | None = None


@dataclass
class RawFigure:
    """One numbered float (or an unnumbered one with graphics) as found in the source."""

    kind: str
    env: str
    caption: str | None
    numbered: bool
    labels: list[str] = field(default_factory=list)
    graphics: list[Graphic] = field(default_factory=list)
    panels: list[RawPanel] = field(default_factory=list)
    start: int = 0
    drawn: str | None = None
    breaks: list[int] = field(default_factory=list)
    continued: bool = False  # \ContinuedFloat: the previous float's number goes on


def find_graphics(text: str, offset: int = 0) -> list[Graphic]:
    """Every graphics file a chunk includes, by any of the macros LaTeX papers use.

    ``\\includegraphics[*]``, ``\\epsfig{file=}``, ``\\psfig{figure=}``, ``\\epsfbox``,
    ``\\epsffile``, ``\\epsfile{file=}``, AASTeX ``\\plotone``/``\\plottwo``/``\\plotfiddle``,
    ``\\includestandalone`` and plain-TeX ``\\special{psfile=}``.
    """
    out: list[Graphic] = []
    for m in _GRAPHIC.finditer(text):
        cmd = m.group(1)
        opts, args, _ = read_command_args(text, m.end(), 2 if cmd == "plottwo" else 1)
        options = ",".join(o or "" for o in opts)
        page = 0
        pm = _PAGE_OPT.search(options)
        if pm:
            page = max(0, int(pm.group(1)) - 1)
        for arg in args:
            name = _graphic_name(cmd, arg)
            if cmd in _KEYVAL_GRAPHICS:
                options = arg
            if name:
                out.append(Graphic(name, page, offset + m.start(), options))
    return out


def _graphic_name(cmd: str, arg: str) -> str | None:
    """The file name in one graphics argument ("{fig.v2}.pdf" -> "fig.v2.pdf")."""
    if cmd in _KEYVAL_GRAPHICS:
        km = _FILE_KEY.search(arg)
        arg = km.group(1) if km else ""
    elif cmd == "special":
        km = _PSFILE.search(arg)
        arg = km.group(1) if km else ""
    name = arg.replace("{", "").replace("}", "").strip().strip('"').strip()
    return name or None


def drawn_kind(tex: str) -> str | None:
    """What draws a figure that has no graphics file: "tikz", "picture", "pstricks", "xy"."""
    return next((kind for kind, pat in _DRAWN if pat.search(tex)), None)


def row_breaks(tex: str) -> list[int]:
    """Offsets of the line breaks in a float body (``\\\\``, blank lines, vertical space)."""
    return [m.start() for m in _ROW_BREAK.finditer(tex)]


def _opaque_mask(body: str, masked: str) -> str:
    """``masked`` with blanked-out spans filled by "x": blanks would read as blank lines."""
    return "".join("x" if m == " " and b != " " else m for b, m in zip(body, masked))


def _mask(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def _labels(text: str) -> list[str]:
    return [k.strip() for k in _LABEL.findall(text) if k.strip()]


def _panel_from_chunk(chunk: str, offset: int, width: str | None = None) -> RawPanel:
    """A sub-figure environment or minipage: its (sub)caption, labels, graphics and width."""
    caption = ""
    m = _SUBCAPTION.search(chunk)
    if m:
        _, args, _ = read_command_args(chunk, m.end(), 1)
        caption = args[0]
    return RawPanel(caption, _labels(chunk), find_graphics(chunk, offset), offset, width)


def _env_width(text: str, env: Env) -> str | None:
    """The width argument of ``\\begin{subfigure}[t]{0.45\\textwidth}`` / minipage."""
    _, j = read_optionals(text, env.body_start)
    grp = read_group(text, skip_ws(text, j))
    return (grp[0].strip() or None) if grp is not None else None


def _sub_commands(masked: str) -> tuple[list[RawPanel], str]:
    """\\subfloat[cap]{..}, \\subfigure[cap]{..}, \\subcaptionbox{cap}{..} panels, masked out."""
    panels: list[RawPanel] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SUB_CMD.finditer(masked):
        if m.start() < pos:
            continue
        j = m.end()
        if j < len(masked) and masked[j] == "*":
            j += 1
        caption, width = "", None
        if m.group(1) == "subcaptionbox":  # [list entry]{caption}[width][inner pos]{content}
            _, j = read_optional(masked, j)
            caption, j = read_arg(masked, j)
            width, j = read_optional(masked, j)
        opts, j = read_optionals(masked, j)
        if m.group(1) != "subcaptionbox":
            caption = opts[-1] if opts else ""
        _, j = read_arg(masked, j)
        chunk = masked[m.start():j]
        panels.append(RawPanel(caption, _labels(chunk), find_graphics(chunk, m.start()), m.start(), width))
        spans.append((m.start(), j))
        pos = j
    for start, end in spans:
        masked = _mask(masked, start, end)
    return panels, masked


def _panels(body: str) -> tuple[list[RawPanel], str]:
    """All sub-figure panels of a float and the float body with them blanked out."""
    masked = body
    panels: list[RawPanel] = []
    for env in find_envs(masked, _SUB_ENVS):
        panels.append(_panel_from_chunk(masked[env.body_start:env.body_end], env.body_start,
                                        _env_width(masked, env)))
        masked = _mask(masked, env.start, env.end)
    cmd_panels, masked = _sub_commands(masked)
    panels.extend(cmd_panels)
    for env in find_envs(masked, {"minipage"}):
        chunk = masked[env.body_start:env.body_end]
        if re.search(r"\\subcaption(?![A-Za-z@])", chunk) and not _CAPTION.search(chunk):
            panels.append(_panel_from_chunk(chunk, env.body_start, _env_width(masked, env)))
            masked = _mask(masked, env.start, env.end)
    panels.sort(key=lambda p: p.pos)
    return panels, masked


def _captions(masked: str) -> list[tuple[int, int, str, bool]]:
    """Top-level captions: (start, end, long caption TeX, numbered)."""
    caps = []
    for m in _CAPTION.finditer(masked):
        star = m.end() < len(masked) and masked[m.end()] == "*"
        _, args, end = read_command_args(masked, m.end(), 1)
        caps.append((m.start(), end, args[0], not star))
    return caps


def _nearest_caption(pos: int, caps: list[tuple[int, int, str, bool]]) -> int:
    return min(range(len(caps)), key=lambda k: min(abs(pos - caps[k][0]), abs(pos - caps[k][1])))


def _owner_by_segment(pos: int, caps: list[tuple[int, int, str, bool]]) -> int:
    """Graphics belong to the caption that follows them; trailing ones to the last caption."""
    for k, cap in enumerate(caps):
        if pos < cap[1]:
            return k
    return len(caps) - 1


def figures_in_env(text: str, env: Env) -> list[RawFigure]:
    """Split one float environment into the figures it numbers (one per top-level caption)."""
    kind = "table" if env.name in TABLE_ENVS else "figure"
    body = text[env.body_start:env.body_end]
    panels, masked = _panels(body)
    caps = _captions(masked)
    graphics = find_graphics(masked)
    drawn, breaks = drawn_kind(body), row_breaks(_opaque_mask(body, masked))
    if not caps:
        if not graphics and not panels:
            return []
        fig = RawFigure(kind, env.name, None, False, _labels(masked), graphics, panels, env.start, drawn, breaks,
                        continued=bool(_CONTINUED.search(masked)))
        return [fig]
    figs = [RawFigure(kind, env.name, cap[2], cap[3], [], [], [], env.start + cap[0], drawn, breaks)
            for cap in caps]
    for m in _LABEL.finditer(masked):
        figs[_nearest_caption(m.start(), caps)].labels.append(m.group(1).strip())
    for g in graphics:
        figs[_owner_by_segment(g.pos, caps)].graphics.append(g)
    for p in panels:
        figs[_owner_by_segment(p.pos, caps)].panels.append(p)
    figs[0].continued = bool(_CONTINUED.search(masked))
    return figs


def find_figures(body: str) -> list[RawFigure]:
    """Every figure and table float of a document body, in document order."""
    out: list[RawFigure] = []
    for env in find_envs(body, FIGURE_ENVS | TABLE_ENVS):
        out.extend(figures_in_env(body, env))
    return out


def float_spans(body: str) -> list[tuple[int, int]]:
    """Spans of all float environments, so body-text passes can skip captions."""
    return [(e.start, e.end) for e in find_envs(body, FIGURE_ENVS | TABLE_ENVS)]
