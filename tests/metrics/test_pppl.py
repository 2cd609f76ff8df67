"""Pseudo-perplexity: batched scorer vs a direct one-mask-per-forward computation, a
hand-computable model, the long-text window rule and the offline loading errors."""

from __future__ import annotations

import math
import random

import pytest

from figalign.metrics import ModelUnavailableError
from figalign.metrics.pppl import PseudoPerplexity, plan_windows
from tests.metrics.tiny_models import VOCAB, make_bert_dir, make_constant_bert_dir

TEXTS = ["The cells grow.", "Fig. a plot of the mean error bar, showing cells with time.",
         "cells", "mean and error in the plot of the cells"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_bert_dir(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def short_window_dir(tmp_path_factory):
    """Positions 12 → windows of 10 wordpieces, so a 30-wordpiece text needs several."""
    return make_bert_dir(tmp_path_factory.mktemp("bert12"), max_positions=12, seed=3)


def _reference_pppl(scorer: PseudoPerplexity, text: str) -> float:
    """One masked copy per forward pass, full MLM forward, no padding; windows by the documented rule."""
    import torch

    ids = scorer.tokenize(text)
    n, size = len(ids), scorer.window
    starts = [0] if n <= size else sorted(set(list(range(0, n - size, size // 2)) + [n - size]))
    total = 0.0
    for i in range(n):
        start = max((s for s in starts if s <= i < s + size),
                    key=lambda s: (min(i - s, s + size - 1 - i), -s))
        window = ids[start:start + size]
        seq = [scorer.tokenizer.cls_token_id] + window + [scorer.tokenizer.sep_token_id]
        pos = 1 + i - start
        seq[pos] = scorer.tokenizer.mask_token_id
        with torch.no_grad():
            logits = scorer.model(input_ids=torch.tensor([seq])).logits[0, pos]
        total += torch.log_softmax(logits.double(), -1)[ids[i]].item()
    return math.exp(-total / n)


def test_batched_equals_direct_unbatched(bert_dir):
    scorer = PseudoPerplexity.load(str(bert_dir), device="cpu", max_batch=7)
    results = scorer.score(TEXTS)
    for text, res in zip(TEXTS, results):
        assert res.n_tokens == len(scorer.tokenize(text))
        assert res.pppl == pytest.approx(_reference_pppl(scorer, text), rel=1e-5, abs=1e-5)
        assert res.log_pppl == pytest.approx(math.log(res.pppl), abs=1e-9)


def test_batch_bounds_do_not_change_scores(bert_dir):
    big = PseudoPerplexity.load(str(bert_dir), device="cpu", max_batch=1000, max_batch_tokens=10**6).score(TEXTS)
    small = PseudoPerplexity.load(str(bert_dir), device="cpu", max_batch=2, max_batch_tokens=40).score(TEXTS)
    alone = [PseudoPerplexity.load(str(bert_dir), device="cpu").score([t])[0] for t in TEXTS]
    for a, b, c in zip(big, small, alone):
        assert a.pppl == pytest.approx(b.pppl, abs=1e-5)
        assert a.pppl == pytest.approx(c.pppl, abs=1e-5)


def test_long_text_windows_match_direct_computation(short_window_dir):
    scorer = PseudoPerplexity.load(str(short_window_dir), device="cpu", max_batch=16)
    assert scorer.window == 10
    text = " ".join(["the cells grow in time with a mean error bar"] * 3)
    (res,) = scorer.score([text])
    assert res.n_tokens > 2 * scorer.window and res.n_windows >= 3
    assert res.pppl == pytest.approx(_reference_pppl(scorer, text), rel=1e-5, abs=1e-5)


def test_hand_computable_pppl(tmp_path):
    rng = random.Random(1)
    logits = [rng.uniform(-3, 3) for _ in VOCAB]
    z = math.log(sum(math.exp(x) for x in logits))
    log_p = [x - z for x in logits]
    scorer = PseudoPerplexity.load(str(make_constant_bert_dir(tmp_path / "const", logits)), device="cpu")
    ids = scorer.tokenize("the cells grow.")
    assert ids == [VOCAB.index(w) for w in ("the", "cell", "##s", "grow", ".")]
    expected = math.exp(-sum(log_p[i] for i in ids) / len(ids))
    (res,) = scorer.score(["the cells grow."])
    assert res.pppl == pytest.approx(expected, rel=1e-6)


def test_uniform_model_gives_vocab_size(tmp_path):
    scorer = PseudoPerplexity.load(str(make_constant_bert_dir(tmp_path / "u", [0.0] * len(VOCAB))), device="cpu")
    assert scorer.score(["fig. a plot of the cells"])[0].pppl == pytest.approx(len(VOCAB), rel=1e-6)


def test_empty_text_has_no_score(bert_dir):
    scorer = PseudoPerplexity.load(str(bert_dir), device="cpu")
    res = scorer.score(["", "cells", "   "])
    assert res[0] is None and res[2] is None and res[1].n_tokens == 2


@pytest.mark.parametrize("n,size", [(1, 10), (10, 10), (11, 10), (25, 10), (100, 7), (510, 510), (1300, 510)])
def test_plan_windows_scores_every_token_once(n, size):
    plan = plan_windows(n, size)
    scored = sorted(i for _, idx in plan for i in idx)
    assert scored == list(range(n))
    for start, idx in plan:
        assert 0 <= start and start + min(size, n) <= n
        assert all(start <= i < start + size for i in idx)
    if n > size:  # every token keeps >= size//4 context on both sides unless the text ends first
        q = size // 4
        for start, idx in plan:
            for i in idx:
                assert min(i - start, q) >= min(i, q) and min(start + size - 1 - i, q) >= min(n - 1 - i, q)


def test_bfloat16_runs_close(bert_dir):
    ref = PseudoPerplexity.load(str(bert_dir), device="cpu").score(TEXTS[:2])
    low = PseudoPerplexity.load(str(bert_dir), device="cpu", dtype="bfloat16").score(TEXTS[:2])
    for a, b in zip(ref, low):
        assert b.pppl == pytest.approx(a.pppl, rel=0.1)


def test_offline_hub_name_names_what_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        PseudoPerplexity.load("allenai/scibert_scivocab_uncased", device="cpu")
    msg = str(err.value)
    assert "allenai/scibert_scivocab_uncased" in msg and "HF_HUB_OFFLINE" in msg and "hf download" in msg


def test_missing_local_dir_is_unavailable(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        PseudoPerplexity.load(str(tmp_path / "nope"), device="cpu")


def test_version_is_content_hash_of_local_weights(bert_dir, tmp_path):
    a = PseudoPerplexity.load(str(bert_dir), device="cpu")
    b = PseudoPerplexity.load(str(make_bert_dir(tmp_path / "other", seed=9)), device="cpu")
    assert a.model_version.startswith("sha256:") and a.model_version != b.model_version
