"""Tiny, randomly initialised scoring models built from configs in a temp dir.

Real weights cannot be downloaded here; these exercise the real loading code (a local
directory for the masked LM, a model-config JSON plus checkpoint file for open_clip).
"""

from __future__ import annotations

import json
from pathlib import Path

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cell", "##s", "grow", "fig", ".", ",", "a", "of",
         "show", "##ing", "plot", "mean", "error", "bar", "in", "and", "with", "time"]


def make_bert_dir(path: Path, *, seed: int = 0, max_positions: int = 64, layers: int = 2) -> Path:
    """A BertForMaskedLM (hidden 32) and its own vocab, saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    # transformers 5: BertTokenizer takes vocab=; vocab_file= is silently ignored.
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions)
    model = BertForMaskedLM(config).eval()
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return path


def make_constant_bert_dir(path: Path, log_probs: list[float]) -> Path:
    """A masked LM whose output is the same distribution at every position: P = exp(log_probs).

    The decoder weight is zeroed and untied, so logits equal its bias whatever the context:
    PPPL is then computable by hand.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, tie_word_embeddings=False)
    model = BertForMaskedLM(config).eval()
    with torch.no_grad():
        model.cls.predictions.decoder.weight.zero_()
        model.cls.predictions.decoder.bias.copy_(torch.tensor(log_probs))
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return path


TINY_CLIP = {"embed_dim": 16, "quick_gelu": False,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def make_clip_files(path: Path, *, name: str = "FigalignTinyCLIP", seed: int = 0) -> tuple[Path, Path]:
    """(model-config JSON, checkpoint file) of a tiny open_clip model with random weights."""
    import open_clip
    import torch

    path.mkdir(parents=True, exist_ok=True)
    config = path / f"{name}.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    model = open_clip.create_model(name)
    checkpoint = path / f"{name}-seed{seed}.pt"
    torch.save(model.state_dict(), checkpoint)
    return config, checkpoint


def make_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Path:
    """A real PNG with a coloured rectangle on white."""
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(image).rectangle([size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4], fill=color)
    image.save(path, format="PNG")
    return path


def tiny_model_settings(path: Path) -> dict[str, str]:
    """Settings fields (``pppl_model``, ``clip_model``, ``clip_pretrained``) pointing at a tiny
    BERT and a tiny CLIP built under ``path``, for tests that run the score stage."""
    config, checkpoint = make_clip_files(path / "clip")
    return {"pppl_model": str(make_bert_dir(path / "bert")), "clip_model": str(config),
            "clip_pretrained": str(checkpoint)}
