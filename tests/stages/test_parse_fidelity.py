"""Whole figures and missing-image reasons through the store: parse -> filter -> status."""

from __future__ import annotations

import argparse

from sqlalchemy import select

from figalign.config import load_settings
from figalign.sources.local import ingest
from figalign.stages.base import drain
from figalign.stages.filter import FilterStage
from figalign.stages.parse import ParseStage
from figalign.storage import ArtifactStore
from figalign.store.db import session_scope
from figalign.store.models import Artifact, FigureRow
from figalign.store.papers import image_origins, missing_image_reasons
from tests.parsers.test_latex import doc, make_tar, png_bytes

BODY = r"""
\begin{figure}
\begin{tikzpicture}\draw (0,0) -- (1,1);\end{tikzpicture}
\caption{A drawing with no file.}
\end{figure}
\begin{figure}
\subfloat[left]{\includegraphics[width=0.45\linewidth]{l}}
\subfloat[right]{\includegraphics[width=0.45\linewidth]{r}}
\caption{Two panels side by side.}
\end{figure}
"""


def test_panels_and_no_image_reasons_reach_the_store_and_status(engine, db_url, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    make_tar(folder / "toy.tar.gz", {"main.tex": doc(BODY), "l.png": png_bytes("red", (64, 48)),
                                     "r.png": png_bytes("blue", (64, 48))})
    env = {"FIGALIGN_DATA_DIR": str(tmp_path / "data"), "FIGALIGN_DATABASE_URL": db_url}
    settings = load_settings(env)
    with session_scope(engine) as s:
        ingest(s, ArtifactStore(settings.data_dir), folder)
    assert drain(ParseStage(settings), engine).statuses["done"] == 1
    drain(FilterStage(settings), engine)
    with session_scope(engine) as s:
        tikz, panels = s.scalars(select(FigureRow).order_by(FigureRow.ordinal)).all()
        assert tikz.image_artifact_id is None and tikz.filter_reason == "no-image:tikz-without-pdf"
        assert [p["caption"] for p in panels.subfigures] == ["left", "right"]
        for panel in panels.subfigures:
            art = s.get(Artifact, panel["image"]["artifact_id"])
            assert art.media_type == "image/png" and (panel["image"]["width"], panel["image"]["height"]) == (64, 48)
        assert panels.image_artifact_id not in {p["image"]["artifact_id"] for p in panels.subfigures}
        assert panels.width > 2 * panels.height  # the composite of both panels is the figure's image
        assert missing_image_reasons(s) == {"tikz-without-pdf": 1}
        assert (tikz.image_origin, panels.image_origin) == (None, "composite")
        assert image_origins(s) == {"composite": 1}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from figalign.cli.pipeline import _status

    assert _status(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    assert "no image   1 figures" in out and "1 × tikz-without-pdf" in out
    assert "images     1 figures" in out and "1 × composite" in out


def test_an_eprint_is_parsed_with_its_pdf_beside_it(tmp_path):
    from figalign.config import Settings
    from figalign.stages.parse import choose_input

    paths = {"eprint": tmp_path / "x.tar.gz", "pdf": tmp_path / "x.pdf"}
    assert choose_input(paths, Settings()) == ("auto", paths["eprint"], paths["pdf"])
    assert choose_input({"eprint": paths["eprint"]}, Settings()) == ("auto", paths["eprint"], None)
