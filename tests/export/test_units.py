"""Whole figures, panels, or both: per-panel pairs from the panels the parser kept.

A LaTeX paper with two sub-captioned panels and one panel without a sub-caption goes
through parse -> filter in a real store; the exports are read back with the formats' own
readers (tarfile for WebDataset, pyarrow for Parquet).
"""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from PIL import Image

from figalign.config import load_settings
from figalign.errors import ConfigError
from figalign.export import run_export
from figalign.export.options import ExportOptions
from figalign.sources.local import ingest
from figalign.stages.base import drain
from figalign.stages.filter import FilterStage
from figalign.stages.parse import ParseStage
from figalign.storage import ArtifactStore
from figalign.store.db import session_scope
from tests.parsers.test_latex import doc, make_tar

BODY = r"""
\begin{figure}
\subfloat[Red left panel]{\includegraphics[width=0.45\linewidth]{l}}
\subfloat[Blue right panel]{\includegraphics[width=0.45\linewidth]{r}}
\caption{Two panels side by side.}
\end{figure}
\begin{figure}
\subfloat[]{\includegraphics[width=0.45\linewidth]{g}}
\subfloat[Yellow panel]{\includegraphics[width=0.45\linewidth]{y}}
\caption{One panel without a sub-caption.}
\end{figure}
"""
COLOURS = {"l": "red", "r": "blue", "g": "green", "y": "yellow"}


def panel_png(colour: str, seed: int) -> bytes:
    """A panel the filters keep (not blank, over the minimum file size): a plain colour with a
    band of noise along one side, a different side per panel so no two look alike."""
    import random

    rng = random.Random(seed)
    im = Image.new("RGB", (200, 160), colour)
    box = [(0, 0, 200, 30), (0, 0, 30, 160), (0, 130, 200, 160), (170, 0, 200, 160)][seed % 4]
    for x in range(box[0], box[2]):
        for y in range(box[1], box[3]):
            im.putpixel((x, y), tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def store_with_panels(engine, db_url, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make_tar(folder / "toy.tar.gz", {"main.tex": doc(BODY),
                                     **{f"{k}.png": panel_png(c, i) for i, (k, c) in enumerate(COLOURS.items())}})
    settings = load_settings({"FIGALIGN_DATA_DIR": str(tmp_path / "data"), "FIGALIGN_DATABASE_URL": db_url})
    store = ArtifactStore(settings.data_dir)
    with session_scope(engine) as s:
        ingest(s, store, folder, licence="CC BY")
    assert drain(ParseStage(settings), engine).statuses["done"] == 1
    drain(FilterStage(settings), engine)
    return engine, store


def _colour(data: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB").getpixel((im.width // 2, im.height // 2))


def _webdataset(out) -> list[tuple[dict, bytes]]:
    samples = {}
    for shard in sorted(out.rglob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return [(json.loads(v["json"]), v["png"]) for _, v in sorted(samples.items())]


def test_both_ships_each_figure_then_its_captioned_panels(store_with_panels, tmp_path):
    engine, store = store_with_panels
    (result,) = run_export(engine, store, "webdataset", tmp_path / "wds", options=ExportOptions(units="both"))
    got = _webdataset(tmp_path / "wds")
    units = [(m["unit"], m["caption"]) for m, _ in got]
    assert units == [("figure", "Two panels side by side. (a) Red left panel (b) Blue right panel"),
                     ("panel", "Red left panel"), ("panel", "Blue right panel"),
                     ("figure", "One panel without a sub-caption. (b) Yellow panel"),
                     ("panel", "Yellow panel")]
    whole, left, right = got[0], got[1], got[2]
    assert whole[0]["image_origin"] == "composite" and whole[0]["parent_key"] is None
    assert (left[0]["parent_key"], right[0]["parent_key"]) == (whole[0]["key"], whole[0]["key"])
    assert (_colour(left[1]), _colour(right[1])) == ((255, 0, 0), (0, 0, 255))  # the panels' own pixels
    assert left[0]["recaption"] is None and left[0]["metrics"] == [] and left[0]["width"] == 200
    manifest = json.loads((tmp_path / "wds" / "manifest.json").read_text())
    assert manifest["units"] == "both" and result["samples"] == 5
    assert manifest["selection"]["dropped"] == {"panel-without-subcaption": 1}
    card = (tmp_path / "wds" / "README.md").read_text()
    assert "Units: each whole figure" in card and "| panel-without-subcaption | 1 |" in card


def test_panels_only_in_parquet_and_s1mmalign_keeps_whole_figures(store_with_panels, tmp_path):
    import pyarrow.parquet as pq

    engine, store = store_with_panels
    run_export(engine, store, "parquet", tmp_path / "pq", options=ExportOptions(units="panels"))
    table = pq.read_table(sorted((tmp_path / "pq").rglob("*.parquet"))[0])
    rows = table.to_pylist()
    assert [(r["unit"], r["caption"], r["panel_label"]) for r in rows] == [
        ("panel", "Red left panel", "(a)"), ("panel", "Blue right panel", "(b)"), ("panel", "Yellow panel", "(b)")]
    assert _colour(rows[2]["image"]["bytes"]) == (255, 255, 0)
    opts = ExportOptions(units="panels", include_unrecaptioned=True)
    (s1,) = run_export(engine, store, "s1mmalign", tmp_path / "s1", options=opts)
    assert s1["samples"] == 2  # the published layout holds whole figures


def test_unknown_units_are_refused():
    with pytest.raises(ConfigError, match="units"):
        ExportOptions(units="subfigures")
