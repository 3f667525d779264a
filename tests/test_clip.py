"""The small CLIP: loss, encoders, training, checkpoints, and the Hugging Face text-encoder adapter."""

import json
import math

import pytest
import torch

from diffusion_lite.captions import class_prompts
from diffusion_lite.checkpoints import CheckpointError, list_pretrained, load, load_pretrained
from diffusion_lite.clip import (
    CLIPConfig,
    CLIPModel,
    clip_loss,
    retrieval_recall,
    save_clip,
    zero_shot_accuracy,
    zero_shot_classify,
)
from diffusion_lite.clip_train import train_clip
from diffusion_lite.data import load_dataset
from diffusion_lite.tokenizer import Tokenizer

TINY = dict(width=32, layers=2, heads=4, embed_dim=32, cnn_channels=(8, 16, 32))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return CLIPModel.for_dataset("mnist", **TINY).eval()


# ---------------------------------------------------------------------------------------------- loss
def test_clip_loss_is_symmetric_and_rewards_matching_pairs():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(8, 8, generator=g)
    assert clip_loss(noise) == pytest.approx(clip_loss(noise.T).item())
    assert clip_loss(torch.zeros(8, 8)).item() == pytest.approx(math.log(8))  # no preference: chance
    matched = noise + 10 * torch.eye(8)
    assert clip_loss(matched) < 0.01 < clip_loss(noise)
    assert clip_loss(noise - 10 * torch.eye(8)) > clip_loss(noise)


def test_identical_captions_need_no_special_targets():
    # captions 0 and 2 are the same text, so their embeddings (and logit columns) are equal
    g = torch.Generator().manual_seed(0)
    img = torch.randn(5, 8, generator=g).requires_grad_(True)
    txt = torch.randn(5, 8, generator=g)
    txt[2] = txt[0]
    txt.requires_grad_(True)
    same = torch.eye(5, dtype=torch.bool)
    same[0, 2] = same[2, 0] = True
    grads = []
    for positives in (None, same):
        img.grad = txt.grad = None
        loss = clip_loss(3 * img @ txt.T, positives)
        loss.backward()
        grads.append((loss.detach(), img.grad.clone(), txt.grad[[0, 2]].sum(0), txt.grad[1].clone()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="diagonal"):
        clip_loss(torch.zeros(3, 3), torch.zeros(3, 3, dtype=torch.bool))


def test_label_positives_lower_the_loss_of_same_class_ties():
    logits = torch.full((4, 4), -10.0)
    logits[:2, :2] = logits[2:, 2:] = 10.0  # two classes, each image equally close to both same-class captions
    same = torch.tensor([0, 0, 1, 1])[:, None] == torch.tensor([0, 0, 1, 1])[None]
    assert clip_loss(logits) == pytest.approx(math.log(2), rel=1e-4)
    assert clip_loss(logits, same) == pytest.approx(math.log(2), rel=1e-4)  # the entropy of the soft target
    logits[0, 1] = logits[1, 0] = 5.0  # the diagonal loss wants this; the label loss does not
    assert clip_loss(logits) < math.log(2) < clip_loss(logits, same)


# ------------------------------------------------------------------------------------------ encoders
def test_text_tokens_shapes_mask_and_empty_prompt(tiny):
    ctx, mask = tiny.text_tokens(["a thick seven", ""])
    assert ctx.shape == (2, 16, tiny.context_dim) and mask.shape == (2, 16) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [5, 2] and not ctx.requires_grad and torch.isfinite(ctx).all()


def test_text_encoder_is_causal(tiny):
    # "a thick seven" and "a thick one" agree on the tokens before the word that differs
    ctx, _ = tiny.text_tokens(["a thick seven", "a thick one"])
    assert torch.allclose(ctx[0, :3], ctx[1, :3], atol=1e-6) and not torch.allclose(ctx[0, 3], ctx[1, 3])


def test_embeddings_are_unit_norm_and_logits_scaled(tiny):
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert torch.allclose(tiny.encode_image(x).norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(tiny.encode_text(["7", "a 7", "", "the digit seven"]).norm(dim=1), torch.ones(4), atol=1e-5)
    logits = tiny(x, ["7", "a 7", "", "the digit seven"])
    assert logits.shape == (4, 4) and logits.abs().max() <= 1 / 0.07 + 1e-3
    with torch.no_grad():
        tiny.logit_scale.fill_(10.0)
    assert tiny(x, ["7"] * 4).abs().max() <= 100 + 1e-3  # temperature clamped at 100


def test_image_encoder_takes_cifar_shaped_images():
    tok = Tokenizer.for_dataset("cifar10")
    cfg = CLIPConfig(vocab_size=tok.vocab_size, image_channels=3, image_size=32, **TINY)
    model = CLIPModel(cfg, tok)
    assert model.encode_image(-torch.ones(2, 3, 32, 32)).shape == (2, 32)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model.encode_image(-torch.ones(2, 1, 28, 28))


def test_tokenizer_must_match_config():
    tok = Tokenizer.for_dataset("mnist")
    with pytest.raises(ValueError, match="does not match"):
        CLIPModel(CLIPConfig(vocab_size=tok.vocab_size + 1), tok)


# ------------------------------------------------------------------------------- training, checkpoint
def test_short_training_beats_chance_by_far():
    torch.manual_seed(0)
    train = load_dataset("mnist", "train", subset=2000, balanced=True)
    test = load_dataset("mnist", "test", subset=500, balanced=True)
    model = CLIPModel.for_dataset("mnist", **TINY)
    history = train_clip(model, train, steps=150, batch_size=128, lr=3e-3, warmup_steps=20,
                         generator=torch.Generator().manual_seed(0), progress=False)
    assert len(history) == 150 and sum(history[-10:]) < sum(history[:10]) - 5
    acc = zero_shot_accuracy(model, test.images, test.labels, class_prompts("mnist"))
    assert acc > 0.5, f"zero-shot accuracy {acc:.2f} after 150 steps (chance 0.10)"


def test_train_clip_rejects_bad_options(tiny):
    with pytest.raises(ValueError, match="positives"):
        train_clip(tiny, (torch.zeros(4, 1, 28, 28), torch.arange(4)), steps=1, positives="text")
    with pytest.raises(ValueError, match="dataset_name"):
        train_clip(tiny, (torch.zeros(4, 1, 28, 28), torch.arange(4)), steps=1)


def test_save_load_round_trip(tiny, tmp_path):
    stem = save_clip(tmp_path / "clip", tiny, {"dataset": "mnist"})
    meta = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["kind"] == "clip" and meta["dataset"] == "mnist"
    again = load(tmp_path / "clip")
    assert isinstance(again, CLIPModel) and again.tokenizer.vocab == tiny.tokenizer.vocab
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert torch.equal(again(x, ["a 1", "a thin 2", ""]), tiny(x, ["a 1", "a thin 2", ""]))
    stem.with_suffix(".safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load(tmp_path / "clip")


@pytest.mark.skipif("mnist-clip" not in list_pretrained(), reason="mnist-clip not shipped yet")
def test_shipped_mnist_clip():
    model = load_pretrained("mnist-clip")
    test = load_dataset("mnist", "test", subset=1000, balanced=True)
    assert zero_shot_accuracy(model, test.images, test.labels, class_prompts("mnist")) > 0.95
    preds = zero_shot_classify(model, test.images[:20], class_prompts("mnist", "a handwritten {digit}"))
    assert (preds == test.labels[:20]).float().mean() > 0.8
    relevant = torch.arange(10)[:, None] == test.labels[None]  # (10 prompts, 1000 images)
    assert retrieval_recall(model, test.images, class_prompts("mnist"), ks=(1, 5), relevant=relevant) == {1: 1, 5: 1}
    ctx, mask = model.text_tokens(["the digit seven"])
    assert ctx.shape[-1] == model.context_dim


# ----------------------------------------------------------------------------------------- HF adapter
def _tiny_hf_clip(folder):
    """A randomly initialised 2-layer CLIP text model and a byte-level BPE tokenizer with no merges."""
    transformers = pytest.importorskip("transformers")
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs, n = bs[:], 0
    for b in range(256):  # GPT-2's bytes_to_unicode
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tok = transformers.CLIPTokenizer.from_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    cfg = transformers.CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, max_position_embeddings=24,
                                      bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"])
    torch.manual_seed(0)
    transformers.CLIPTextModel(cfg).save_pretrained(str(folder))


def test_hf_text_encoder_on_a_tiny_local_model(tmp_path):
    _tiny_hf_clip(tmp_path)
    from diffusion_lite.hf_text import HFTextEncoder

    enc = HFTextEncoder(tmp_path)
    assert enc.context_dim == 32 and enc.max_length == 24
    ctx, mask = enc.text_tokens(["a cat", ""])
    assert ctx.shape == (2, 24, 32) and ctx.dtype == torch.float32 and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [2 + 4, 2]  # <|startoftext|> a c a t <|endoftext|>: one token per character
    again, _ = enc.text_tokens(["a cat"])
    assert torch.allclose(again[0], ctx[0], atol=1e-5)
    with pytest.raises(ValueError, match="max_length=24"):
        enc.text_tokens(["a very long prompt about cats"])
    with pytest.raises(ValueError, match="list of strings"):
        enc.text_tokens("a cat")
    ctx0, mask0 = enc.text_tokens([])  # no prompts, no rows (as the package's tokenizer)
    assert ctx0.shape == (0, 24, 32) and mask0.shape == (0, 24)
    with pytest.raises(ValueError, match=r"max_length must be in \[2, 24\].*got 0"):
        HFTextEncoder(tmp_path, max_length=0)  # not read as "the default"
    from diffusion_lite.attention_viz import token_labels
    assert token_labels(enc.tokenizer, "a cat") == ["<|startoftext|>", "a</w>", "c", "a", "t</w>", "<|endoftext|>"]
    with pytest.raises(ValueError, match="no such folder"):
        HFTextEncoder(tmp_path / "missing")
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        HFTextEncoder(tmp_path / "config.json")
    with pytest.raises(ValueError, match="neither a folder here nor a Hugging Face hub name in the local cache"):
        HFTextEncoder("no-such-org/no-such-clip-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot load"):
        HFTextEncoder(tmp_path / "empty")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_clip_in_another_dtype_encodes_float32_images(dtype):
    """encode_image moves images to the model's device and dtype, as encode_text's ids are moved."""
    model = CLIPModel.for_dataset("mnist", width=16, layers=1, heads=2, embed_dim=16, cnn_channels=(8, 8, 8))
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ref = model.encode_image(images)
    got = model.to(dtype).encode_image(images)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), ref, atol=0.03 if dtype == torch.bfloat16 else 1e-5, rtol=0)
