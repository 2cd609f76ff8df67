"""No parser is super-linear in its input: generated 1, 2 and 4 MB inputs of bad shapes.

Each shape is what real-world or hostile files push to the extreme: deep section nesting
without titles and many cross-references (JATS), many figures and references (TEI), many
figures, references and nested groups (LaTeX). CPU time (not wall time: the machine may be
busy) must grow about linearly: 4× the input within 7× the time (quadratic would be 16×).
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest

from figalign.parsers.options import ParseOptions
from figalign.parsers.registry import parse_path

pytestmark = pytest.mark.slow
MB = 1 << 20


def jats(size: int) -> bytes:
    head = (b'<?xml version="1.0"?><article xmlns:xlink="http://www.w3.org/1999/xlink"><front><article-meta>'
            b"<title-group><article-title>Deep</article-title></title-group></article-meta></front><body>")
    parts, n = [head], 0
    while sum(map(len, parts)) < size:
        depth = 40
        paras = b"".join(b'<p>As <xref ref-type="fig" rid="f%d">Figure %d</xref> shows, the rate rises. '
                         b"More text follows here.</p>" % (n, n + 1) for _ in range(5))
        parts.append(b"<sec>" * depth + paras + b"</sec>" * depth)
        parts.append(b'<fig id="f%d"><label>Figure %d</label><caption><p>Rates over time.</p></caption>'
                     b'<graphic xlink:href="f%d.png"/></fig>' % (n, n + 1, n))
        n += 1
    return b"".join(parts) + b"</body></article>"


def tei(size: int) -> bytes:
    head = (b'<?xml version="1.0"?><TEI xmlns="http://www.tei-c.org/ns/1.0"><teiHeader><fileDesc><titleStmt>'
            b"<title>Many</title></titleStmt></fileDesc></teiHeader><text><body>")
    parts, n = [head], 0
    while sum(map(len, parts)) < size:
        parts.append(b'<div><head>Section</head><p>See <ref type="figure" target="#fig_%d">Figure %d</ref> and '
                     b'<ref type="figure" target="#fig_0">Figure 1</ref>. Text text text.</p></div>' % (n, n + 1))
        parts.append(b'<figure xml:id="fig_%d"><head>Figure %d</head><label>%d</label>'
                     b"<figDesc>Rates over time.</figDesc></figure>" % (n, n + 1, n + 1))
        n += 1
    return b"".join(parts) + b"</body></text></TEI>"


def latex(size: int) -> bytes:
    body, n = [], 0
    while sum(map(len, body)) < size:
        body.append(f"As Figure~\\ref{{fig:{n}}} shows {{\\em the {{rate {{rises}}}}}} over time. "
                    f"See also Fig.~\\ref{{fig:0}}.\n\n\\begin{{figure}}\\centering"
                    f"\\includegraphics[width=0.5\\linewidth]{{f{n}.png}}"
                    f"\\caption{{Rates {{\\bf over}} time.\\label{{fig:{n}}}}}\\end{{figure}}\n")
        n += 1
    text = "\\documentclass{article}\\begin{document}\n" + "".join(body) + "\\end{document}\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = text.encode()
        info = tarfile.TarInfo("main.tex")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


SHAPES = {"jats": (jats, ".xml"), "tei": (tei, ".tei.xml"), "latex": (latex, ".tar.gz")}


def cpu_seconds(kind: str, data: bytes, tmp: Path) -> float:
    path = tmp / f"in{SHAPES[kind][1]}"
    path.write_bytes(data)
    started = time.process_time()
    paper = parse_path(path, kind=kind, out_dir=tmp / "out", options=ParseOptions(write_images=False))
    assert paper.figures, kind
    return time.process_time() - started


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_parse_time_grows_linearly(kind, tmp_path):
    make = SHAPES[kind][0]
    cpu_seconds(kind, make(MB // 8), tmp_path)  # warm-up: imports, caches
    inputs = {mb: make(mb * MB) for mb in (1, 2, 4)}
    times = {mb: min(cpu_seconds(kind, data, tmp_path) for _ in range(3)) for mb, data in inputs.items()}
    assert times[4] <= 7 * max(times[1], 0.05), f"{kind}: {times}"
    assert times[2] <= 4 * max(times[1], 0.05), f"{kind}: {times}"
