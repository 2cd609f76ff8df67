"""CLIP score: known properties on a tiny open_clip model loaded through our loader."""

from __future__ import annotations

import pytest

from figalign.errors import BadInputError
from figalign.metrics import ModelUnavailableError
from figalign.metrics.clipscore import ClipScorer, clip_model_id, clipscore, split_sentences
from tests.metrics.tiny_models import make_clip_files, make_png

LONG = " ".join(f"Panel {c} shows the mean error of the cell growth rate over time in condition {c}."
                for c in "ABCDEFGH")


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    return make_clip_files(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def scorer(clip_files):
    config, checkpoint = clip_files
    return ClipScorer.load(str(config), str(checkpoint), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    return [make_png(d / f"{i}.png", c, size) for i, (c, size) in
            enumerate([((200, 20, 20), (64, 48)), ((20, 200, 20), (40, 90)), ((20, 20, 200), (33, 33))])]


class _Same:
    """A stand-in model whose image and text embeddings are the same vector."""

    context_length = 77

    def __init__(self, vec):
        self.vec = vec

    def encode_image(self, x):
        return self.vec.expand(x.shape[0], -1) * 3.0

    def encode_text(self, tokens):
        return self.vec.expand(tokens.shape[0], -1) * 0.5


def test_identical_embeddings_score_one(scorer, images):
    import torch

    same = ClipScorer(_Same(torch.tensor([[0.3, -1.2, 2.0, 0.1]])), scorer.preprocess, scorer.tokenizer)
    (res,) = same.score([images[0]], ["anything"])
    assert res.cosine == pytest.approx(1.0, abs=1e-6)
    assert res.clipscore == pytest.approx(2.5, abs=1e-6)


def test_clipscore_formula():
    assert clipscore(0.4) == pytest.approx(1.0)
    assert clipscore(-0.2) == 0.0
    assert clipscore(0.0) == 0.0


def test_cosine_matches_open_clip_directly(scorer, images):
    import torch
    from PIL import Image

    texts = ["a red square", "a green bar"]
    results = scorer.score(images[:2], texts)
    with torch.no_grad():
        img = scorer.model.encode_image(torch.stack([scorer.preprocess(Image.open(p).convert("RGB"))
                                                     for p in images[:2]]))
        txt = scorer.model.encode_text(scorer.tokenizer(texts))
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    for k, res in enumerate(results):
        assert res.cosine == pytest.approx(float(img[k] @ txt[k]), abs=1e-5)
        assert res.clipscore == pytest.approx(2.5 * max(res.cosine, 0), abs=1e-9)
        assert -1.0 <= res.cosine <= 1.0


def test_batching_invariant(clip_files, images):
    config, checkpoint = clip_files
    texts = ["a red square", "a green bar", LONG]
    pairs = [images[0], images[1], images[2]]
    big = ClipScorer.load(str(config), str(checkpoint), device="cpu", batch_size=64)
    one = ClipScorer.load(str(config), str(checkpoint), device="cpu", batch_size=1)
    for strategy in ("truncate", "sentence-mean"):
        together = big.score(pairs, texts, strategy)
        alone = [one.score([p], [t], strategy)[0] for p, t in zip(pairs, texts)]
        for a, b in zip(together, alone):
            assert a.cosine == pytest.approx(b.cosine, abs=1e-5)


def test_same_image_encoded_once(scorer, images, monkeypatch):
    seen = []
    original = scorer.encode_images
    monkeypatch.setattr(scorer, "encode_images", lambda ims: seen.append(len(ims)) or original(ims))
    scorer.score([images[0], images[0], images[1]], ["a", "b", "c"])
    assert seen == [2]


def test_long_text_strategies(scorer, images):
    import torch

    assert scorer.count_tokens(LONG) > scorer.context_length
    (trunc,) = scorer.score([images[0]], [LONG], "truncate")
    (mean,) = scorer.score([images[0]], [LONG], "sentence-mean")
    assert trunc.strategy == "truncate" and not trunc.fits_context and trunc.n_chunks == 1
    assert mean.strategy == "sentence-mean" and mean.n_chunks > 1
    chunks = scorer.chunks(LONG)
    assert all(scorer.count_tokens(c) <= scorer.context_length for c in chunks)
    assert " ".join(chunks) == " ".join(split_sentences(LONG))
    emb = scorer.encode_text_list(chunks).mean(dim=0)
    emb = emb / emb.norm()
    img = scorer.encode_images([images[0]])[0]
    assert mean.cosine == pytest.approx(float(torch.dot(img, emb)), abs=1e-5)
    assert mean.cosine != pytest.approx(trunc.cosine, abs=1e-6)


def test_short_text_same_under_both_strategies(scorer, images):
    (a,) = scorer.score([images[1]], ["The cells grow. A green bar."], "truncate")
    (b,) = scorer.score([images[1]], ["The cells grow. A green bar."], "sentence-mean")
    assert a.fits_context and b.n_chunks == 1 and a.cosine == pytest.approx(b.cosine, abs=1e-6)


def test_model_id_and_version(scorer, clip_files):
    config, checkpoint = clip_files
    assert scorer.model_id == clip_model_id(str(config), str(checkpoint)) == f"{config.stem}:{checkpoint.name}"
    assert scorer.model_version.startswith("sha256:")
    assert clip_model_id("ViT-L-14", "openai") == "ViT-L-14:openai"


def test_unreadable_image_is_bad_input(scorer, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(BadInputError):
        scorer.score([bad], ["x"])


def test_offline_tag_not_cached_names_repo(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        ClipScorer.load("ViT-L-14", "openai", device="cpu")
    assert "timm/vit_large_patch14_clip_224.openai" in str(err.value) and "hf download" in str(err.value)


@pytest.mark.parametrize("pretrained,match", [("", "no CLIP weights"), ("no_such_tag", "no weights"),
                                              ("/nowhere/x.pt", "does not exist")])
def test_refuses_unusable_weights(pretrained, match):
    with pytest.raises(ModelUnavailableError, match=match):
        ClipScorer.load("ViT-B-32", pretrained, device="cpu")


def _wide(sides: tuple[int, int, int]):
    """A 4:1 figure: a blue centre band (wider than the centre square, so resampling at the
    crop's edge reads blue only) between two side bands of colour ``sides``."""
    from PIL import Image

    img = Image.new("RGB", (160, 40), sides)
    img.paste(Image.new("RGB", (64, 40), (20, 20, 200)), (48, 0))
    return img


def test_pad_square_keeps_the_sides_of_wide_figures(clip_files):

    from figalign.metrics.clipscore import fit_image

    padded = fit_image(_wide((200, 20, 20)), "pad-square")
    assert padded.size == (160, 160)
    assert padded.getpixel((0, 0)) == (255, 255, 255) and padded.getpixel((0, 70)) == (200, 20, 20)
    assert fit_image(_wide((200, 20, 20)), "centre-crop").size == (160, 40)
    config, checkpoint = clip_files
    crop = ClipScorer.load(str(config), str(checkpoint), device="cpu")
    pad = ClipScorer.load(str(config), str(checkpoint), device="cpu", image_fit="pad-square")
    a, b = _wide((200, 20, 20)), _wide((20, 200, 20))  # differ only outside the centre square
    crop_change = (crop.encode_images([a]) - crop.encode_images([b])).abs().max().item()
    pad_change = (pad.encode_images([a]) - pad.encode_images([b])).abs().max().item()
    assert crop_change < 1e-5 < 1e-2 < pad_change  # the centre crop never sees the sides; the padded image does
    assert pad.model_id == crop.model_id + "+pad-square" and pad.image_fit == "pad-square"
    assert clip_model_id("ViT-L-14", "openai", "pad-square") == "ViT-L-14:openai+pad-square"
    with pytest.raises(ValueError):
        ClipScorer(None, None, None, image_fit="stretch")


def test_image_fit_setting():
    from figalign.config import load_settings
    from figalign.errors import ConfigError

    assert load_settings({}).clip_image_fit == "centre-crop"
    assert load_settings({"FIGALIGN_CLIP_IMAGE_FIT": "pad-square"}).clip_image_fit == "pad-square"
    with pytest.raises(ConfigError):
        load_settings({"FIGALIGN_CLIP_IMAGE_FIT": "stretch"})


# -- which activation a checkpoint file's weights need ------------------------------------
def _config_without_activation(path, name="FigalignTinyNoAct"):
    """A tiny model config that, like open_clip's ``ViT-L-14``, says nothing of QuickGELU."""
    import json

    from tests.metrics.tiny_models import TINY_CLIP

    config = path / f"{name}.json"
    config.write_text(json.dumps({k: v for k, v in TINY_CLIP.items() if k != "quick_gelu"}))
    return config


def _activation_of(scorer) -> str:
    return type(scorer.model.transformer.resblocks[0].mlp.gelu).__name__


@pytest.fixture(scope="module")
def bare_checkpoint(tmp_path_factory):
    """(config without quick_gelu, plain state-dict file, TorchScript archive of the same
    weights built with QuickGELU, as OpenAI publishes CLIP)."""
    import open_clip
    import torch

    d = tmp_path_factory.mktemp("act")
    config = _config_without_activation(d)
    open_clip.add_model_config(config)
    torch.manual_seed(3)
    model = open_clip.create_model(config.stem, force_quick_gelu=True).eval()
    plain = d / "weights.pt"
    torch.save(model.state_dict(), plain)
    archive = d / "ViT-tiny.pt"
    torch.jit.save(torch.jit.script(model), str(archive))
    return config, plain, archive


def test_checkpoint_file_must_say_its_activation(bare_checkpoint):
    config, plain, _ = bare_checkpoint
    with pytest.raises(ModelUnavailableError, match="FIGALIGN_CLIP_ACTIVATION=quick-gelu"):
        ClipScorer.load(str(config), str(plain), device="cpu")


def test_activation_setting_builds_that_activation(bare_checkpoint, images):
    config, plain, _ = bare_checkpoint
    quick = ClipScorer.load(str(config), str(plain), device="cpu", activation="quick-gelu")
    gelu = ClipScorer.load(str(config), str(plain), device="cpu", activation="gelu")
    assert (_activation_of(quick), _activation_of(gelu)) == ("QuickGELU", "GELU")
    assert quick.model_version.endswith("+quick-gelu") and gelu.model_version.endswith("+gelu")
    a, b = quick.score(images, ["a red square"] * 3), gelu.score(images, ["a red square"] * 3)
    assert max(abs(x.cosine - y.cosine) for x, y in zip(a, b)) > 1e-4, "the activation must change the scores"


def test_config_activation_conflicting_with_setting_is_refused(clip_files):
    config, checkpoint = clip_files  # the tiny config says quick_gelu: false
    assert _activation_of(ClipScorer.load(str(config), str(checkpoint), device="cpu")) == "GELU"
    with pytest.raises(ModelUnavailableError, match="quick_gelu=False"):
        ClipScorer.load(str(config), str(checkpoint), device="cpu", activation="quick-gelu")


def test_openai_torchscript_archive_loads_as_published(bare_checkpoint, images):
    """OpenAI's ``ViT-*.pt`` files are TorchScript, which open_clip's weights-only loading
    refuses: the loader takes the archive's tensors, with QuickGELU, and scores exactly as
    the plain state dict of the same weights does."""
    config, plain, archive = bare_checkpoint
    from_archive = ClipScorer.load(str(config), str(archive), device="cpu")
    from_plain = ClipScorer.load(str(config), str(plain), device="cpu", activation="quick-gelu")
    assert _activation_of(from_archive) == "QuickGELU"
    texts = ["a red square", "a green bar", LONG]
    for x, y in zip(from_archive.score(images, texts), from_plain.score(images, texts)):
        assert x.cosine == pytest.approx(y.cosine, abs=1e-6)
