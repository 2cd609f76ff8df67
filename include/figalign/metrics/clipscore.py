"""CLIP image–text score with open_clip: cosine of L2-normalised embeddings, and CLIPScore.

``cosine = <f(image)/|f(image)|, g(text)/|g(text)|>`` and CLIPScore = 2.5 · max(cosine, 0)
(Hessel et al., 2021, "CLIPScore: A Reference-free Evaluation Metric for Image Captioning").
S1-MMAlign reports the CLIP score rising by +18.21% in mean and its variance falling by
27.77% after recaptioning; both relative changes are the same for the cosine and for any
positive multiple of it, so the store keeps the cosine as the value and CLIPScore beside it.

Default model: ``ViT-L-14`` with the ``openai`` weights
-------------------------------------------------------
* The OpenAI CLIP weights are the common reference of published CLIP-score numbers
  (CLIPScore itself, most captioning and recaptioning evaluations), so our means and
  relative changes are comparable to the paper's and to the literature; LAION/DataComp
  or SigLIP models score on their own, different scales.
* Of the OpenAI models, ViT-L/14 is the strongest at fine-grained text–image matching,
  which scientific figures need (axis labels, panel letters, plot types); ViT-B/32 is
  ~4× cheaper but noticeably weaker, and is what the CPU benchmark uses.
* Its 224-pixel input and 77-token context are the same limits as every OpenAI CLIP, so
  the long-text strategy below applies to any of them.
Both model and weights are settings (``FIGALIGN_CLIP_MODEL``: a built-in name,
``hf-hub:org/repo``, ``local-dir:/path`` or a path to a model-config JSON;
``FIGALIGN_CLIP_PRETRAINED``: an open_clip tag or a local checkpoint file).

Texts longer than the 77-token context
--------------------------------------
Recaptions (~760 characters, ~150–200 BPE tokens) do not fit. Two strategies, and every
result records which one produced it:

* ``truncate``: what CLIP does by itself: the first 75 BPE tokens between start and end
  markers. Comparable to published numbers; ignores the rest of the text.
* ``sentence-mean``: split the text into sentences, pack consecutive sentences greedily into
  chunks that fit the context (a single over-long sentence is its own, truncated chunk),
  embed each chunk, L2-normalise, average, and L2-normalise the mean. Scores the whole text.

A text that fits the context gives the identical embedding under both strategies.
figalign's headline is ``sentence-mean`` (``clip_cosine_sentmean``): a recaption's
truncated score judges only its first few sentences, so a truncated comparison of
original vs recaption favours whichever text says most in 75 tokens. Both are stored.

Fitting images into 224 × 224 pixels
------------------------------------
The model's own transform resizes the short side to 224 and crops the centre
(``centre-crop``, what published CLIP scores use). A wide figure (the filters allow
aspect ratios up to 8:1) loses its sides. ``pad-square`` (FIGALIGN_CLIP_IMAGE_FIT) first
pads the image to a square on a white background — the page colour of almost every
figure — so all of it is seen, smaller. Scores under ``pad-square`` are stored under
their own model id (``ViT-L-14:openai+pad-square``), so both fits can sit side by side
and every number names the fit it was made with.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from figalign.errors import BadInputError
from figalign.metrics import ModelUnavailableError, file_fingerprint, hub_offline, resolve_device, resolve_dtype

log = logging.getLogger(__name__)

STRATEGIES = ("truncate", "sentence-mean")
IMAGE_FITS = ("centre-crop", "pad-square")
PAD_COLOUR = (255, 255, 255)
CLIPSCORE_WEIGHT = 2.5
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


def clipscore(cosine: float, weight: float = CLIPSCORE_WEIGHT) -> float:
    """CLIPScore (Hessel et al., 2021): ``w · max(cos, 0)`` with w = 2.5."""
    return weight * max(cosine, 0.0)


@dataclass(frozen=True)
class ClipResult:
    """One image–text pair's score and how its text was fitted into the context."""

    cosine: float
    clipscore: float
    strategy: str
    text_tokens: int
    fits_context: bool
    n_chunks: int


def split_sentences(text: str) -> list[str]:
    """Sentences on ., !, ? or ; followed by white space (captions rarely need more)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


class ClipScorer:
    """Batched CLIP scoring around a loaded open_clip model, its transform and tokenizer."""

    def __init__(self, model, preprocess, tokenizer, *, model_id: str = "", model_version: str | None = None,
                 device: str = "cpu", dtype: str = "float32", batch_size: int = 32, image_fit: str = "centre-crop"):
        if image_fit not in IMAGE_FITS:
            raise ValueError(f"unknown image fit {image_fit!r}; use one of {IMAGE_FITS}")
        self.image_fit = image_fit
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.model_version = model_version
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.context_length = int(getattr(model, "context_length", None) or getattr(tokenizer, "context_length", 77))

    @classmethod
    def load(cls, model_name: str, pretrained: str, *, device: str = "auto", dtype: str = "float32",
             **kwargs: Any) -> "ClipScorer":
        """Load model, transform and tokenizer (see ``load_open_clip``)."""
        device = resolve_device(device)
        model, preprocess, tokenizer, model_id, version = load_open_clip(
            model_name, pretrained, device=device, dtype=dtype, activation=kwargs.pop("activation", "auto"))
        fit = kwargs.get("image_fit", "centre-crop")
        return cls(model, preprocess, tokenizer, model_id=clip_model_id(model_name, pretrained, fit),
                   model_version=version, device=device, dtype=dtype, **kwargs)

    # -- tokens -------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` including start/end markers, before any truncation."""
        encode = getattr(self.tokenizer, "encode", None)
        if callable(encode) and hasattr(self.tokenizer, "sot_token_id"):
            return len(encode(text)) + 2
        inner = getattr(self.tokenizer, "tokenizer", None)
        if inner is not None:
            return len(inner(text)["input_ids"])
        raise ModelUnavailableError(f"cannot count tokens with tokenizer {type(self.tokenizer).__name__}")

    def chunks(self, text: str) -> list[str]:
        """Sentence chunks that each fit the context, for ``sentence-mean``."""
        out: list[str] = []
        current: list[str] = []
        for sentence in split_sentences(text) or [text]:
            candidate = " ".join(current + [sentence])
            if current and self.count_tokens(candidate) > self.context_length:
                out.append(" ".join(current))
                current = [sentence]
            else:
                current.append(sentence)
        if current:
            out.append(" ".join(current))
        return out

    # -- embeddings ---------------------------------------------------------------------
    def encode_images(self, images: list) -> Any:
        """L2-normalised image embeddings [n, d]; ``images`` are PIL images or file paths."""
        import torch

        tensors = [self.preprocess(fit_image(_open_image(im), self.image_fit)) for im in images]
        out = []
        with torch.inference_mode():
            for i in range(0, len(tensors), self.batch_size):
                batch = torch.stack(tensors[i:i + self.batch_size]).to(self.device, resolve_dtype(self.dtype))
                out.append(self.model.encode_image(batch).float())
        return _normalise(torch.cat(out)) if out else torch.empty(0)

    def encode_text_list(self, texts: list[str]) -> Any:
        """L2-normalised embeddings of texts as the tokenizer gives them (truncating)."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(texts[i:i + self.batch_size]).to(self.device)
                out.append(self.model.encode_text(tokens).float())
        return _normalise(torch.cat(out)) if out else torch.empty(0)

    def encode_texts(self, texts: list[str], strategy: str = "truncate") -> tuple[Any, list[dict]]:
        """Embeddings [n, d] under ``strategy`` plus per-text facts (tokens, chunks)."""
        import torch

        if strategy not in STRATEGIES:
            raise ValueError(f"unknown text strategy {strategy!r}; use one of {STRATEGIES}")
        counts = [self.count_tokens(t) for t in texts]
        fits = [n <= self.context_length for n in counts]
        pieces = [[t] if (strategy == "truncate" or ok) else self.chunks(t) for t, ok in zip(texts, fits)]
        flat = [p for group in pieces for p in group]
        emb = self.encode_text_list(flat)
        rows, start = [], 0
        for group in pieces:
            rows.append(_normalise(emb[start:start + len(group)].mean(dim=0, keepdim=True))[0])
            start += len(group)
        info = [{"text_tokens": n, "fits_context": ok, "n_chunks": len(g)} for n, ok, g in zip(counts, fits, pieces)]
        return (torch.stack(rows) if rows else torch.empty(0)), info

    def score(self, images: list, texts: list[str], strategy: str = "truncate") -> list[ClipResult]:
        """Score pairs (images[i], texts[i]); identical images are encoded once."""
        if len(images) != len(texts):
            raise ValueError("images and texts must pair up")
        keys = [str(im) if isinstance(im, (str, Path)) else id(im) for im in images]
        unique = list(dict.fromkeys(keys))
        first = {k: images[keys.index(k)] for k in unique}
        img = self.encode_images([first[k] for k in unique])
        txt, info = self.encode_texts(texts, strategy)
        where = {k: i for i, k in enumerate(unique)}
        out = []
        for i, key in enumerate(keys):
            cos = float((img[where[key]] * txt[i]).sum())
            out.append(ClipResult(cosine=cos, clipscore=clipscore(cos), strategy=strategy, **info[i]))
        return out


def fit_image(image, fit: str = "centre-crop"):
    """``pad-square``: the image centred on a white square canvas of its longer side, so the
    model's centre crop keeps all of it; ``centre-crop``: the image unchanged."""
    if fit == "centre-crop" or image.width == image.height:
        return image
    from PIL import Image

    side = max(image.width, image.height)
    canvas = Image.new("RGB", (side, side), PAD_COLOUR)
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas


def _normalise(x):
    import torch

    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-12)


def _open_image(image):
    """A PIL RGB image from a PIL image, a path or a binary file (an object-store image's
    bytes); unreadable files are bad input."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, Path)) or hasattr(image, "read"):
        try:
            with Image.open(image) as im:
                return im.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise BadInputError(f"cannot read image {image}: {exc}") from exc
    return image.convert("RGB")


# -- loading ------------------------------------------------------------------------------
def clip_model_id(model: str, pretrained: str, image_fit: str = "centre-crop") -> str:
    """``<model>:<weights>`` (``+pad-square`` for that fit) as stored in ``metrics.model``;
    known without loading anything, so the score stage can check idempotency before it
    loads a model. The default fit adds nothing: ids of earlier scores stay as they were."""
    name = Path(model).stem if model.endswith(".json") else model
    weights = Path(pretrained).name if ("/" in pretrained or Path(pretrained).suffix) else (pretrained or "local-dir")
    return f"{name}:{weights}" + ("" if image_fit == "centre-crop" else f"+{image_fit}")


ACTIVATIONS = ("auto", "quick-gelu", "gelu")


def load_open_clip(model_name: str, pretrained: str, *, device: str = "cpu", dtype: str = "float32",
                   activation: str = "auto"):
    """(model, preprocess, tokenizer, model_id, version) for a model name and weights.

    Refuses a model without weights (random weights give meaningless numbers). Under
    HF_HUB_OFFLINE a tag whose weights are not cached fails at once, naming the repository.
    A checkpoint file must say which activation it was trained with (``_file_quick_gelu``);
    OpenAI's own TorchScript archives (``ViT-L-14.pt``) load as they are published.
    """
    import open_clip

    if activation not in ACTIVATIONS:
        raise ModelUnavailableError(f"CLIP activation must be one of {ACTIVATIONS}, got {activation!r}")
    name = _register_config(model_name)
    schema_local = name.startswith("local-dir:")
    if not pretrained and not schema_local:
        raise ModelUnavailableError(
            f"no CLIP weights configured for {model_name!r}: set FIGALIGN_CLIP_PRETRAINED to an open_clip tag "
            f"or a checkpoint file (random weights would give meaningless scores)")
    checkpoint = _checkpoint_file(pretrained) if pretrained and not schema_local else None
    jit_weights = _torchscript_weights(checkpoint) if checkpoint else None
    quick_gelu = activation == "quick-gelu"
    if checkpoint is not None:
        quick_gelu = _file_quick_gelu(open_clip, name, checkpoint, activation, jit_weights is not None)
    elif pretrained and not schema_local:
        _check_tag(open_clip, name, pretrained)
        # open_clip only warns when a tag was trained with QuickGELU (all OpenAI weights)
        # and the architecture config says GELU; the model would silently be wrong.
        quick_gelu = quick_gelu or bool((open_clip.get_pretrained_cfg(name, pretrained) or {}).get("quick_gelu"))
    weights = None if schema_local or jit_weights is not None else pretrained
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=weights, device=device, force_quick_gelu=quick_gelu)
        if jit_weights is not None:  # its tensors the model has (not derived buffers such as attn_mask)
            expected = model.state_dict().keys()
            model.load_state_dict({k: v for k, v in jit_weights.items() if k in expected})
        tokenizer = open_clip.get_tokenizer(name)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise ModelUnavailableError(f"cannot load CLIP model {model_name!r} with weights {pretrained!r}: {exc}") from exc
    model.to(device=device, dtype=resolve_dtype(dtype)).eval()
    model_id = clip_model_id(model_name, pretrained)
    version = file_fingerprint([checkpoint]) if checkpoint else _tag_version(open_clip, name, pretrained)
    if checkpoint is not None and version:
        version = f"{version}+{'quick-gelu' if quick_gelu else 'gelu'}"
    return model, preprocess, tokenizer, model_id, version


def _file_quick_gelu(open_clip, name: str, checkpoint: Path, activation: str, torchscript: bool) -> bool:
    """Whether a checkpoint file's model needs QuickGELU, which its weights cannot tell.

    OpenAI's CLIP weights were trained with QuickGELU, LAION's and DataComp's with GELU, and
    open_clip builds whatever the architecture config says without a warning: the default
    ``ViT-L-14`` config with OpenAI weights from a file gives plausible but wrong scores. So
    the answer must come from somewhere explicit: the config (``quick_gelu``, as the
    ``-quickgelu`` names have), FIGALIGN_CLIP_ACTIVATION, or OpenAI's TorchScript format.
    """
    cfg = open_clip.get_model_config(name) or {}
    if "quick_gelu" in cfg:
        if activation != "auto" and bool(cfg["quick_gelu"]) != (activation == "quick-gelu"):
            raise ModelUnavailableError(f"CLIP config {name!r} sets quick_gelu={cfg['quick_gelu']} but "
                                        f"FIGALIGN_CLIP_ACTIVATION is {activation!r}")
        return bool(cfg["quick_gelu"])
    if activation != "auto":
        return activation == "quick-gelu"
    if torchscript:
        return True  # only OpenAI publishes CLIP as TorchScript archives
    raise ModelUnavailableError(
        f"CLIP checkpoint {checkpoint.name!r} with model {name!r}: say which activation the weights were trained "
        "with, FIGALIGN_CLIP_ACTIVATION=quick-gelu (OpenAI weights) or gelu (LAION, DataComp), or use a model name "
        "ending in -quickgelu; a wrong guess gives plausible but wrong scores")


def _torchscript_weights(checkpoint: Path) -> dict | None:
    """The state dict of a TorchScript archive (how OpenAI publishes CLIP), else None.

    open_clip reads checkpoint files with ``torch.load(weights_only=True)``, which refuses
    TorchScript; only the archive's tensors are taken, none of its code is run.
    """
    import zipfile

    if not zipfile.is_zipfile(checkpoint):
        return None
    with zipfile.ZipFile(checkpoint) as archive:
        if not any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in archive.namelist()):
            return None
    import torch

    try:
        archive = torch.jit.load(str(checkpoint), map_location="cpu")
    except RuntimeError as exc:
        raise ModelUnavailableError(f"cannot read TorchScript CLIP checkpoint {checkpoint.name!r}: {exc}") from exc
    return dict(archive.state_dict())


def _register_config(model_name: str) -> str:
    """A model-config JSON path is registered with open_clip and named by its file stem."""
    if not model_name.endswith(".json"):
        return model_name
    import open_clip

    path = Path(model_name).expanduser()
    if not path.is_file():
        raise ModelUnavailableError(f"CLIP model config {str(path)!r} does not exist")
    open_clip.add_model_config(path)
    return path.stem


def _checkpoint_file(pretrained: str) -> Path | None:
    """The checkpoint path when ``pretrained`` names a file; a missing path-like value fails."""
    path = Path(pretrained).expanduser()
    if path.is_file():
        return path
    if pretrained.startswith(("/", "./", "../", "~")) or path.suffix in (".pt", ".pth", ".bin", ".safetensors"):
        raise ModelUnavailableError(f"CLIP checkpoint file {str(path)!r} does not exist")
    return None


def _check_tag(open_clip, name: str, tag: str) -> None:
    """Fail early and clearly for an unknown tag, or for uncached weights when offline."""
    if name.startswith("hf-hub:"):
        return
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ModelUnavailableError(f"open_clip has no weights {tag!r} for {name!r}; known tags: {tags}")
    if not hub_offline():
        return
    hub = cfg.get("hf_hub", "")
    if not hub:
        raise ModelUnavailableError(
            f"HF_HUB_OFFLINE is set and CLIP weights {name}/{tag} come from {cfg.get('url', '?')}: download that "
            f"file on a connected machine and set FIGALIGN_CLIP_PRETRAINED to its path")
    repo, filename = os.path.split(hub)
    if not _cached(repo, filename or "open_clip_pytorch_model.bin"):
        raise ModelUnavailableError(
            f"HF_HUB_OFFLINE is set and CLIP weights {name}/{tag} are not in the HF cache: download them on a "
            f"connected machine (`hf download {repo}`), or set FIGALIGN_CLIP_PRETRAINED to a checkpoint file")


def _cached(repo: str, filename: str) -> bool:
    """Whether the hub cache holds ``filename`` (or its safetensors twin) of ``repo``."""
    from huggingface_hub import try_to_load_from_cache

    names = [filename]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
    if filename == "open_clip_pytorch_model.bin":
        names.insert(0, "open_clip_model.safetensors")
    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


def _tag_version(open_clip, name: str, tag: str) -> str | None:
    """``tag@source`` for a pretrained tag: which published weights produced the score."""
    if not tag:
        return None
    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    source = cfg.get("hf_hub") or Path(cfg.get("url", "")).name
    return f"{tag}@{source}"[:128] if source else tag[:128]
