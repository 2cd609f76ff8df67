"""Masked-LM pseudo-perplexity (Salazar et al., 2020, "Masked Language Model Scoring").

For a caption of wordpieces w_1..w_N (special tokens excluded), each w_i is masked in turn
and scored by the masked LM given all other tokens:

    PPPL = exp(-(1/N) * sum_i log P(w_i | w_-i))

S1-MMAlign uses SciBERT PPPL to show recaptions read more like scientific prose; lower is
better. Every masked copy is an independent sequence, so the copies of one caption and of
several captions go through the model together, in batches bounded by rows and tokens.

Long texts (the window rule)
----------------------------
The model sees at most ``L = min(max_position_embeddings, tokenizer.model_max_length) - 2``
wordpieces at once (510 for BERT: 512 minus [CLS] and [SEP]). A text of N <= L wordpieces
is one window. A longer text is cut into windows of exactly L wordpieces starting at
0, S, 2S, ... with stride ``S = L // 2``, plus a last window aligned to the end
(start N - L). Each token is scored exactly once, in the window where its context on the
*shorter* side is largest, i.e. the window maximising ``min(i - start, start + L - 1 - i)``
(ties go to the earlier window). With S = L/2 this leaves every token at least L/4 = 127
wordpieces of context on both sides, except where the text itself ends.

The LM head runs only at the masked position of each row (not at all 512 positions),
which keeps memory at batch × vocab instead of batch × length × vocab.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from figalign.metrics import ModelUnavailableError, file_fingerprint, hub_offline, resolve_device, resolve_dtype

log = logging.getLogger(__name__)

METHOD = "salazar2020-pppl"
WINDOW_RULE = "L=maxpos-2, stride L//2, last window end-aligned, token scored where min(left,right) context is largest"


@dataclass(frozen=True)
class PPPLResult:
    """One text's score: ``pppl`` and its natural log, over ``n_tokens`` wordpieces."""

    pppl: float
    log_pppl: float
    n_tokens: int
    n_windows: int


def plan_windows(n_tokens: int, window: int) -> list[tuple[int, list[int]]]:
    """Windows as (start, token indices scored in it); see the module docstring for the rule.

    Every index in ``range(n_tokens)`` appears in exactly one window's list.
    """
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    if n_tokens <= window:
        return [(0, list(range(n_tokens)))] if n_tokens else []
    stride = max(1, window // 2)
    starts = list(range(0, n_tokens - window, stride)) + [n_tokens - window]
    scored: dict[int, list[int]] = {s: [] for s in starts}
    for i in range(n_tokens):
        best, best_ctx = None, -1
        for s in starts:
            if s <= i < s + window:
                ctx = min(i - s, s + window - 1 - i)
                if ctx > best_ctx:
                    best, best_ctx = s, ctx
        scored[best].append(i)
    return [(s, idx) for s, idx in scored.items() if idx]


@dataclass(frozen=True)
class _Row:
    """One masked copy: which text, which window of it, where the mask is, the true id."""

    text: int
    window: tuple[int, ...]
    mask_pos: int
    target: int


class PseudoPerplexity:
    """Batched PPPL scorer around a loaded masked LM and its tokenizer.

    ``max_batch`` bounds rows per forward pass and ``max_batch_tokens`` bounds rows × padded
    length, so one long caption cannot blow up memory.
    """

    def __init__(self, model, tokenizer, *, model_id: str = "", model_version: str | None = None,
                 device: str = "cpu", dtype: str = "float32", max_batch: int = 64,
                 max_batch_tokens: int = 16384):
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.model_version = model_version
        self.device = device
        self.dtype = dtype
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens
        self.prefix, self.suffix = _special_ids(tokenizer)
        self.mask_id = tokenizer.mask_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if self.mask_id is None:
            raise ModelUnavailableError(f"tokenizer of {model_id!r} has no mask token: not a masked LM")
        self.window = _window_size(model, tokenizer, len(self.prefix) + len(self.suffix))
        self._head = _mlm_head(model)

    @classmethod
    def load(cls, name_or_dir: str, *, device: str = "auto", dtype: str = "float32",
             **kwargs: Any) -> "PseudoPerplexity":
        """Load a masked LM from a hub name or a local directory (see ``load_masked_lm``)."""
        device = resolve_device(device)
        model, tokenizer, version = load_masked_lm(name_or_dir, device=device, dtype=dtype)
        return cls(model, tokenizer, model_id=name_or_dir, model_version=version, device=device,
                   dtype=dtype, **kwargs)

    def tokenize(self, text: str) -> list[int]:
        """Wordpiece ids of ``text`` without special tokens."""
        return list(self.tokenizer(text or "", add_special_tokens=False)["input_ids"])

    def score(self, texts: list[str]) -> list[PPPLResult | None]:
        """PPPL of each text (``None`` for a text with no wordpieces), in input order."""
        token_ids = [self.tokenize(t) for t in texts]
        rows, n_windows = self._rows(token_ids)
        sums = [0.0] * len(texts)
        for batch in self._batches(rows):
            for row, logp in zip(batch, self._forward(batch)):
                sums[row.text] += logp
        out: list[PPPLResult | None] = []
        for i, ids in enumerate(token_ids):
            if not ids:
                out.append(None)
                continue
            nll = -sums[i] / len(ids)
            out.append(PPPLResult(pppl=math.exp(nll), log_pppl=nll, n_tokens=len(ids), n_windows=n_windows[i]))
        return out

    def _rows(self, token_ids: list[list[int]]) -> tuple[list[_Row], list[int]]:
        """All masked copies, texts ordered by length so batches pad little."""
        rows: list[_Row] = []
        n_windows = [0] * len(token_ids)
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
        for i in order:
            ids = token_ids[i]
            plan = plan_windows(len(ids), self.window)
            n_windows[i] = len(plan)
            for start, scored in plan:
                window = tuple(self.prefix + ids[start:start + self.window] + self.suffix)
                for j in scored:
                    rows.append(_Row(i, window, len(self.prefix) + j - start, ids[j]))
        return rows, n_windows

    def _batches(self, rows: list[_Row]):
        """Consecutive runs of rows within the row and token bounds."""
        batch: list[_Row] = []
        longest = 0
        for row in rows:
            longest_if = max(longest, len(row.window))
            if batch and (len(batch) >= self.max_batch or longest_if * (len(batch) + 1) > self.max_batch_tokens):
                yield batch
                batch, longest_if = [], len(row.window)
            batch.append(row)
            longest = longest_if
        if batch:
            yield batch

    def encode_batch(self, batch: list[_Row]):
        """Padded input ids, attention mask, mask positions and targets as tensors."""
        import torch

        width = max(len(r.window) for r in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for k, row in enumerate(batch):
            ids[k, :len(row.window)] = torch.tensor(row.window)
            attn[k, :len(row.window)] = 1
            ids[k, row.mask_pos] = self.mask_id
        pos = torch.tensor([r.mask_pos for r in batch])
        targets = torch.tensor([r.target for r in batch])
        return ids.to(self.device), attn.to(self.device), pos.to(self.device), targets.to(self.device)

    def _forward(self, batch: list[_Row]) -> list[float]:
        """log P(target | rest) for each row: encoder on all positions, head on the mask only."""
        import torch

        ids, attn, pos, targets = self.encode_batch(batch)
        rows = torch.arange(len(batch), device=ids.device)
        with torch.inference_mode():
            if self._head is not None:
                hidden = self.model.base_model(input_ids=ids, attention_mask=attn).last_hidden_state
                logits = self._head(hidden[rows, pos])
            else:
                logits = self.model(input_ids=ids, attention_mask=attn).logits[rows, pos]
            logp = torch.log_softmax(logits.float(), dim=-1)[rows, targets]
        return logp.cpu().tolist()


def _special_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The single-sequence wrapper tokens: [CLS] … [SEP] for BERT, <s> … </s> for RoBERTa."""
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return ([first] if first is not None else []), ([last] if last is not None else [])


def _window_size(model, tokenizer, n_special: int) -> int:
    """Wordpieces per window: the model's position limit (and tokenizer's, if smaller) minus specials."""
    limit = getattr(model.config, "max_position_embeddings", None) or 512
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if tok_limit and tok_limit < 1_000_000:
        limit = min(limit, tok_limit)
    if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # RoBERTa's positions start after padding_idx
    window = limit - n_special
    if window < 1:
        raise ModelUnavailableError(f"model context of {limit} positions leaves no room for text")
    return window


def _mlm_head(model):
    """The LM head module applied to hidden states, when the architecture exposes one."""
    for name in ("cls", "lm_head"):
        head = getattr(model, name, None)
        if head is not None and getattr(model, "base_model", None) is not model:
            return head
    return None


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def load_masked_lm(name_or_dir: str, *, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer, version) from a local directory or a hub name.

    A hub name is loaded with ``local_files_only`` under HF_HUB_OFFLINE, so an absent
    model fails at once with a message naming what to download, instead of a network error.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype)
    path = Path(name_or_dir).expanduser()
    if _looks_like_path(name_or_dir):
        if not path.is_dir():
            raise ModelUnavailableError(f"PPPL model directory {str(path)!r} does not exist")
        source, offline = str(path), True
    else:
        source, offline = name_or_dir, hub_offline()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
        model = AutoModelForMaskedLM.from_pretrained(source, local_files_only=offline, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(_missing_message(name_or_dir, path.is_dir(), offline, exc)) from exc
    model.to(device).eval()
    return model, tokenizer, _version(name_or_dir, path)


def _missing_message(name: str, is_dir: bool, offline: bool, exc: BaseException) -> str:
    if is_dir:
        return f"cannot load masked LM from {name!r}: {exc}"
    hint = (f"download it on a connected machine (`hf download {name}`) into the HF cache, or save it "
            f"to a directory and set FIGALIGN_PPPL_MODEL to that directory")
    mode = "HF_HUB_OFFLINE is set and " if offline else ""
    return f"PPPL model {name!r} unavailable: {mode}it is not in the local HF cache; {hint} ({type(exc).__name__})"


def _version(name: str, path: Path) -> str | None:
    """Hub commit of a cached model, else a content hash of a local directory's weights."""
    if path.is_dir():
        weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin")]
        return file_fingerprint(weights) if weights else None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str) and "/snapshots/" in cached:
        return Path(cached).parent.name
    return None
