"""Seed a store (SQLite or Postgres) from the corpus for the explorer tests.

Two real papers go in through ``upsert`` and the ``ArtifactStore``, as harvest and parse
leave them:

* PLoS ONE pone.0000010 (CC BY): parsed by figalign's JATS parser (real captions, real
  citation contexts, real figure PNGs), its publisher PDF as the ``pdf`` file, and page
  boxes of its three figures as PyMuPDF reports the embedded images;
* arXiv 1708.05894 (futoma2017improved): pdffigures2's real crops and captions with their
  real page regions, and the PDF. No licence recorded (the corpus did not check it).

Recaptions, metric values and stage runs are invented test values, chosen so that orders
and filters have a known right answer (see ``EXPECT``).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from figalign.storage import ArtifactStore, record_artifact
from figalign.store.db import session_scope
from figalign.metrics.gains import update_gains
from figalign.store.models import Caption, CitationContextRow, FigureRow, Metric, Paper, PaperFile, StageRun
from figalign.store.upsert import upsert

ROOT = Path(__file__).resolve().parents[2]
PONE = ROOT / "tests" / "fixtures" / "papers" / "pone.0000010"
FUTOMA = ROOT.parent / "shared" / "corpus" / "pdf"
CAPTION_KEY = ("figure_id", "kind", "model", "prompt_hash", "params_hash")
PROMPT_A = "a" * 16 + "promptv1"
PROMPT_B = "b" * 16 + "promptv2"
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
CLIP = "ViT-L-14/openai"
SCIBERT = "allenai/scibert_scivocab_uncased"
# pone figure number -> (0-based page, bbox in PDF points), from page.get_image_info().
PONE_BOXES = {"1": (1, [58.0, 527.0, 357.0, 695.0]), "2": (2, [58.0, 61.0, 477.0, 289.0]),
              "3": (2, [58.0, 521.0, 357.0, 677.0])}
# Invented scores per pone figure: clip original, clip recaption A, clip recaption B, pppl orig, pppl rec A.
PONE_SCORES = {"1": (0.21, 0.30, 0.25, 40.0, 12.0), "2": (0.26, 0.27, 0.31, 55.0, 9.0),
               "3": (0.24, 0.20, 0.22, 30.0, 15.0)}


@dataclass
class Seeded:
    """Ids the tests look up, and what the right answers are."""

    data_dir: Path
    pone_paper: int = 0
    futoma_paper: int = 0
    pone_figures: dict[str, int] = field(default_factory=dict)  # number -> id
    futoma_figures: dict[str, int] = field(default_factory=dict)
    image_shas: dict[int, str] = field(default_factory=dict)
    pdf_sha: str = ""


def seed(engine, data_dir: Path) -> Seeded:
    """Fill a migrated store on ``engine`` with the two papers; bytes under ``data_dir``."""
    store = ArtifactStore(data_dir)
    out = Seeded(data_dir=data_dir)
    with session_scope(engine) as s:
        _seed_pone(s, store, out)
        _seed_futoma(s, store, out)
        _seed_stage_runs(s, out)
    return out


def _artifact(s, store: ArtifactStore, path: Path, media_type: str) -> tuple[int, str]:
    obj = store.put_file(path, media_type=media_type)
    return record_artifact(s, obj), obj.sha256


def _seed_pone(s, store: ArtifactStore, out: Seeded) -> None:
    from figalign.parsers.registry import parse_path

    parsed = parse_path(PONE / "pone.0000010.xml", kind="jats", out_dir=Path(tempfile.mkdtemp(prefix="pone-")))
    pid = upsert(s, Paper, dict(source="pmc", external_id="PMC1762312", version="", doi=parsed.doi,
                                title=parsed.title, discipline="biology", licence="cc-by",
                                licence_url="https://creativecommons.org/licenses/by/4.0/",
                                source_urls={"article": "https://doi.org/10.1371/journal.pone.0000010",
                                             "bad": "javascript:alert(1)"},
                                parser=parsed.parser, parser_version=parsed.parser_version, categories=[],
                                authors=[]), ("source", "external_id", "version"))
    out.pone_paper = pid
    pdf_id, out.pdf_sha = _artifact(s, store, PONE / "pone.0000010.pdf", "application/pdf")
    upsert(s, PaperFile, dict(paper_id=pid, role="pdf", name="pone.0000010.pdf", artifact_id=pdf_id),
           ("paper_id", "role", "name"))
    for fig in parsed.figures:
        art_id, sha = _artifact(s, store, Path(fig.image.path), "image/png")
        page, bbox = PONE_BOXES[fig.number]
        fid = upsert(s, FigureRow, dict(figure_key=fig.id, paper_id=pid, label=fig.label, number=fig.number,
                                        kind=fig.kind, ordinal=fig.ordinal, page=page, bbox=bbox,
                                        image_artifact_id=art_id, width=fig.image.width, height=fig.image.height,
                                        parser=parsed.parser, parser_version=parsed.parser_version),
                     ("figure_key",))
        out.pone_figures[fig.number] = fid
        out.image_shas[fid] = sha
        for ctx in fig.contexts:
            upsert(s, CitationContextRow, dict(figure_id=fid, position=ctx.position, text=ctx.text,
                                               section=ctx.section, mention=ctx.mention), ("figure_id", "position"))
        _captions_and_metrics(s, fid, fig.caption, fig.number)


def _captions_and_metrics(s, fid: int, original: str, number: str) -> None:
    clip_o, clip_a, clip_b, pppl_o, pppl_a = PONE_SCORES[number]
    orig = upsert(s, Caption, dict(figure_id=fid, kind="original", model="", prompt_hash="", params_hash="",
                                   text=original, status="accepted"), CAPTION_KEY)
    rec_a = upsert(s, Caption, dict(figure_id=fid, kind="recaption", model=MODEL, prompt_hash=PROMPT_A,
                                    params_hash="p1", text=f"Bar chart for figure {number}: recaption under prompt v1.",
                                    status="accepted"), CAPTION_KEY)
    rec_b = upsert(s, Caption, dict(figure_id=fid, kind="recaption", model=MODEL, prompt_hash=PROMPT_B,
                                    params_hash="p1", text=f"Figure {number} shows counts per group (prompt v2).",
                                    status="accepted"), CAPTION_KEY)
    for cap, kind, metric, model, value in ((orig, "original", "clip_cosine", CLIP, clip_o),
                                            (rec_a, "recaption", "clip_cosine", CLIP, clip_a),
                                            (rec_b, "recaption", "clip_cosine", CLIP, clip_b),
                                            (orig, "original", "pppl", SCIBERT, pppl_o),
                                            (rec_a, "recaption", "pppl", SCIBERT, pppl_a)):
        upsert(s, Metric, dict(figure_id=fid, caption_id=cap, caption_kind=kind, metric=metric, model=model,
                               value=value, details={}), ("caption_id", "metric", "model"))
    update_gains(s, [fid])  # as the score stage does after writing a figure's scores


def _seed_futoma(s, store: ArtifactStore, out: Seeded) -> None:
    meta = json.loads((FUTOMA / "futoma2017improved.pdffigures2_output.json").read_text())
    pid = upsert(s, Paper, dict(source="arxiv", external_id="1708.05894", version="v1", title="An Improved "
                                "Multi-Output Gaussian Process RNN with Real-Time Validation for Early Sepsis Detection",
                                discipline="cs", licence=None, source_urls={"abs": "https://arxiv.org/abs/1708.05894"},
                                parser="pdffigures2", parser_version="0.1", categories=["stat.ML"], authors=[]),
                 ("source", "external_id", "version"))
    out.futoma_paper = pid
    pdf_id, _ = _artifact(s, store, FUTOMA / "futoma2017improved.pdf", "application/pdf")
    upsert(s, PaperFile, dict(paper_id=pid, role="pdf", name="futoma2017improved.pdf", artifact_id=pdf_id),
           ("paper_id", "role", "name"))
    for i, item in enumerate(sorted(meta, key=lambda m: int(m["name"]))):
        png = FUTOMA / Path(item["renderURL"]).name
        art_id, sha = _artifact(s, store, png, "image/png")
        rb = item["regionBoundary"]
        fid = upsert(s, FigureRow, dict(figure_key=f"arxiv:1708.05894:fig{item['name']}", paper_id=pid,
                                        label=f"Figure {item['name']}", number=item["name"], kind="figure",
                                        ordinal=i, page=item["page"], bbox=[rb["x1"], rb["y1"], rb["x2"], rb["y2"]],
                                        image_artifact_id=art_id, parser="pdffigures2", parser_version="0.1",
                                        filter_reason="duplicate" if item["name"] == "5" else None),
                     ("figure_key",))
        out.futoma_figures[item["name"]] = fid
        out.image_shas[fid] = sha
        upsert(s, Caption, dict(figure_id=fid, kind="original", model="", prompt_hash="", params_hash="",
                                text=item["caption"], status="accepted"), CAPTION_KEY)


def _run(s, stage: str, entity_type: str, entity_id: int, status: str, **extra) -> None:
    values = dict(stage=stage, entity_type=entity_type, entity_id=str(entity_id), status=status, attempts=1,
                  dag_id=f"figalign_{stage}", run_id="manual__2026-11-27T10:00:00+00:00", task_id=f"{stage}_batch",
                  try_number=1, output={}, **extra)
    upsert(s, StageRun, values, ("stage", "entity_type", "entity_id"))


def _seed_stage_runs(s, out: Seeded) -> None:
    """parse done for both papers; filter/recaption per figure with known failures."""
    _run(s, "parse", "paper", out.pone_paper, "done")
    _run(s, "parse", "paper", out.futoma_paper, "done")
    for fid in out.pone_figures.values():
        _run(s, "filter", "figure", fid, "done")
    for name, fid in out.futoma_figures.items():
        if name in ("2", "3"):
            _run(s, "filter", "figure", fid, "failed", error_class="BadInputError", error_message="image is blank")
        elif name == "4":
            _run(s, "filter", "figure", fid, "failed", error_class="PermanentError", error_message="unreadable")
        else:
            _run(s, "filter", "figure", fid, "done")
    _run(s, "recaption", "figure", out.pone_figures["1"], "done")
    _run(s, "recaption", "figure", out.pone_figures["2"], "skipped", reason="recaption exists")
