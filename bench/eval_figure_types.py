"""Accuracy of zero-shot figure typing on the labelled corpus figures.

Labels: ``tests/fixtures/figure_types/labels.json`` (corpus crops labelled by eye). Crops of
corpus PDFs are re-made with figalign's own parser into a temporary folder (they are not
committed: DocBank PDFs may not be redistributed). Classifies each with the configured CLIP
model (FIGALIGN_CLIP_MODEL / FIGALIGN_CLIP_PRETRAINED / FIGALIGN_CLIP_IMAGE_FIT) and
prompts/figure_types_v1.json, and prints accuracy, table recall/precision (what the
table-as-image filter needs) and the confusions. Without CLIP weights it says so and exits 2.
Usage: ``python bench/eval_figure_types.py [--corpus ../shared/corpus] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
LABELS = ROOT / "tests" / "fixtures" / "figure_types" / "labels.json"


def crops(corpus: Path, items: list[dict], work: Path) -> list[tuple[Path, str]]:
    """(image file, label) per item; PDF crops made by ``figalign``'s PDF parser."""
    from figalign.parsers.options import ParseOptions
    from figalign.parsers.registry import parse_path

    made: dict[str, Path] = {}
    out = []
    for item in items:
        if "image" in item:
            out.append((corpus / item["image"], item["label"]))
            continue
        pdf = item["pdf"]
        if pdf not in made:
            made[pdf] = work / Path(pdf).stem
            parse_path(corpus / pdf, kind="auto", out_dir=made[pdf], pdf=None, options=ParseOptions())
        out.append((made[pdf] / item["crop"], item["label"]))
    return out


def evaluate(pairs: list[tuple[Path, str]], typer) -> dict:
    """Accuracy, per-label counts, table precision/recall and confusions of ``typer`` on ``pairs``."""
    present = [(p, lab) for p, lab in pairs if p.is_file()]
    results = typer.classify([str(p) for p, _ in present])
    got = [r.label for r in results]
    gold = [lab for _, lab in present]
    right = sum(g == p for g, p in zip(gold, got))
    tp = sum(g == p == "table" for g, p in zip(gold, got))
    return {"n": len(present), "missing_crops": len(pairs) - len(present), "accuracy": right / max(1, len(present)),
            "table_precision": tp / max(1, got.count("table")), "table_recall": tp / max(1, gold.count("table")),
            "labels": dict(Counter(gold)), "confusions": dict(Counter(f"{g} -> {p}" for g, p in zip(gold, got) if g != p)),
            "model": typer.model_id, "prompts_sha256": typer.prompts.sha256}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus"))
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    from figalign.config import load_settings
    from figalign.metrics import ModelUnavailableError
    from figalign.metrics.clipscore import ClipScorer
    from figalign.metrics.figtype import FigureTyper, TypePrompts

    settings = load_settings()
    try:
        scorer = ClipScorer.load(settings.clip_model, settings.clip_pretrained, image_fit=settings.clip_image_fit,
                                 activation=settings.clip_activation)
    except ModelUnavailableError as exc:
        print(f"no CLIP weights, nothing measured: {exc}", file=sys.stderr)
        return 2
    items = json.loads(LABELS.read_text())["items"]
    with tempfile.TemporaryDirectory(prefix="figalign-figtypes-") as tmp:
        result = evaluate(crops(Path(args.corpus), items, Path(tmp)), FigureTyper(scorer, TypePrompts.load()))
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
