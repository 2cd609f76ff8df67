"""Caption quality metrics: masked-LM pseudo-perplexity and CLIP image–text score.

Both scorers import torch, transformers and open_clip inside functions only, so importing
this package (from a DAG file, from the CLI's ``config`` command) stays cheap.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from figalign.errors import ConfigError


class ModelUnavailableError(ConfigError):
    """A scoring model cannot be loaded (weights absent offline, unknown tag, bad path).

    A ``ConfigError`` because no item can be scored with it; the score stage records every
    item ``skipped`` with this message instead of failing them, and requeues them once the
    weights are there.
    """


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value now.

    Read from the environment at call time: huggingface_hub freezes its constant at import.
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def resolve_device(device: str | None = "auto") -> str:
    """``auto`` means CUDA when torch sees a GPU, else CPU; anything else is passed through."""
    if device and device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str):
    """Map a dtype name (float32, bfloat16, float16) to the torch dtype."""
    import torch

    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {sorted(names)}")
    return names[dtype]


def file_fingerprint(paths: list[Path], *, chunk: int = 1 << 20) -> str:
    """``sha256:<16 hex>`` over the bytes of ``paths`` (sorted): a version for local weights.

    Local directories and checkpoint files carry no hub revision, so the content hash is
    what makes two metric rows comparable (or not) later.
    """
    digest = hashlib.sha256()
    for path in sorted(paths):
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]
