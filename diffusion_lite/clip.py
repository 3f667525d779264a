"""A small CLIP: text and image encoders trained so matching pairs have similar embeddings (chapter 06).

    clip = load_pretrained("mnist-clip")                  # a CLIPModel; clip.tokenizer is its Tokenizer
    context, mask = clip.text_tokens(["a thick seven"])   # (1, 16, D), (1, 16): what the U-Net attends to
    preds = zero_shot_classify(clip, images, captions.class_prompts("mnist"))  # (N,) class ids

Radford et al. 2021 (CLIP): a text encoder and an image encoder map a batch of B (image, caption) pairs
to unit vectors; the B x B cosine similarities divided by a learned temperature tau (that is, times the
learned logit scale exp(t) = 1 / tau) are logits, and a symmetric cross-entropy asks each image to pick
its caption among the B and each caption its image (Fig. 3). The text encoder is a causal pre-LN
transformer; its output at <eos> (which has seen the whole prompt) is projected to the joint space, while
its per-token outputs (B, L, D) are the context that the diffusion U-Net cross-attends to, as Stable
Diffusion uses CLIP's last hidden states.

The model owns its tokenizer (``model.tokenizer``): the vocabulary and the embedding table must match,
so they travel together (and are saved together, kind "clip" in checkpoints.py).

False negatives. With 10 classes, a batch of 256 holds about 25 images of each digit, and InfoNCE
treats the caption of every other seven as a wrong answer for this seven. Two cases:
- Identical captions ("the digit seven" twice) need no special handling: their embeddings are equal,
  so the loss with the diagonal as target has exactly the value and gradient of the loss with soft
  targets spread over the duplicates (the pushes towards one and away from the other cancel); the
  loss just cannot fall below the entropy of those ties. (tests/test_clip.py checks this.)
- Different captions of the same class stay negatives with ``positives="diagonal"`` (default, the
  paper's loss). That pressure is what teaches "a thick seven" apart from "a thin seven", at the cost
  of also pushing apart wordings that mean the same. ``positives="label"`` counts every same-class pair
  as a match: no false negatives, but no reason left to learn the attribute words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_state_strict, save_checkpoint
from .config import _Serializable
from .metrics import check_images
from .tokenizer import EOS, Tokenizer


@dataclass(frozen=True)
class CLIPConfig(_Serializable):
    """width = D, the text token width (the U-Net's context_dim); embed_dim = E, the joint space."""

    vocab_size: int
    max_len: int = 16
    width: int = 64
    layers: int = 3
    heads: int = 4
    embed_dim: int = 64
    image_channels: int = 1
    image_size: int = 28
    cnn_channels: tuple[int, ...] = (16, 32, 64)
    groups: int = 8

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"width {self.width} not divisible by heads={self.heads}")
        if any(c % self.groups for c in self.cnn_channels):
            raise ValueError(f"cnn_channels {self.cnn_channels} must be divisible by groups={self.groups}")


class Block(nn.Module):
    """Pre-LN transformer block with causal self-attention: (B, L, D) -> (B, L, D)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.h = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(B, L, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)  # (B, h, L, d)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # token i sees tokens <= i
        x = x + self.proj(a.transpose(1, 2).reshape(B, L, D))
        return x + self.mlp(self.ln2(x))


class TextEncoder(nn.Module):
    """ids (B, L) long -> (tokens (B, L, D) after the final LayerNorm, pooled (B, E) from <eos>).

    Causal attention means <pad> tokens after <eos> never affect the real tokens, so no padding mask is
    needed here; the U-Net gets the mask to ignore the padded positions.
    """

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.position_embedding = nn.Parameter(torch.randn(cfg.max_len, cfg.width) * 0.01)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads) for _ in range(cfg.layers))
        self.ln_final = nn.LayerNorm(cfg.width)
        self.projection = nn.Linear(cfg.width, cfg.embed_dim, bias=False)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if ids.dim() != 2 or ids.shape[1] > self.cfg.max_len:
            raise ValueError(f"ids must be (B, L <= {self.cfg.max_len}) long, got {tuple(ids.shape)}")
        if not (ids == EOS).any(1).all():
            raise ValueError("every sequence needs an <eos> token; encode text with the model's tokenizer")
        x = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]  # (B, L, D)
        for block in self.blocks:
            x = block(x)
        x = self.ln_final(x)
        eos = (ids == EOS).int().argmax(1)  # (B,) position of the first <eos>
        return x, self.projection(x[torch.arange(len(ids), device=ids.device), eos])  # (B, L, D), (B, E)


class ImageEncoder(nn.Module):
    """Small CNN: (B, C, S, S) in [-1, 1] -> (B, E). Each stage is two 3x3 conv + GroupNorm + SiLU, the
    second with stride 2 except in the last stage; then global average pooling (so 28 or 32 pixels work)."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.cfg = cfg
        layers, c_in = [], cfg.image_channels
        for i, c in enumerate(cfg.cnn_channels):
            stride = 2 if i < len(cfg.cnn_channels) - 1 else 1
            for c_a, c_b, s in ((c_in, c, 1), (c, c, stride)):
                layers += [nn.Conv2d(c_a, c_b, 3, stride=s, padding=1), nn.GroupNorm(cfg.groups, c_b), nn.SiLU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.projection = nn.Linear(c_in, cfg.embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if images.dim() != 4 or images.shape[1:] != (c.image_channels, c.image_size, c.image_size):
            raise ValueError(f"images must be (B, {c.image_channels}, {c.image_size}, {c.image_size}) in [-1, 1], "
                             f"got {tuple(images.shape)}")
        return self.projection(self.features(images).mean((2, 3)))  # (B, C_last) -> (B, E)


class CLIPModel(nn.Module):
    """Text encoder + image encoder + learned temperature; ``tokenizer`` turns prompts into ids."""

    def __init__(self, cfg: CLIPConfig, tokenizer: Tokenizer):
        super().__init__()
        if tokenizer.vocab_size != cfg.vocab_size or tokenizer.max_length != cfg.max_len:
            raise ValueError(f"tokenizer ({tokenizer.vocab_size} tokens, max_length {tokenizer.max_length}) does "
                             f"not match the config (vocab_size {cfg.vocab_size}, max_len {cfg.max_len})")
        self.cfg, self.tokenizer = cfg, tokenizer
        self.text, self.image = TextEncoder(cfg), ImageEncoder(cfg)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # t = log(1 / tau); exp(t) <= 100

    @classmethod
    def for_dataset(cls, dataset: str, **config) -> CLIPModel:
        """A fresh model whose tokenizer holds every caption word of ``dataset`` and whose image encoder takes
        its images (e.g. 3x32x32 for cifar10)."""
        from .data import dataset_info

        info = dataset_info(dataset)
        tok = Tokenizer.for_dataset(dataset, max_length=config.get("max_len", 16))
        config = {"image_channels": info.channels, "image_size": info.image_size, **config}
        return cls(CLIPConfig(vocab_size=tok.vocab_size, **config), tok)

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def context_dim(self) -> int:
        """D, the width of the per-token embeddings returned by text_tokens."""
        return self.cfg.width

    def _ids(self, texts: list[str] | torch.Tensor) -> torch.Tensor:
        ids = self.tokenizer.encode(texts)[0] if not torch.is_tensor(texts) else texts
        return ids.to(self.device)

    def encode_text(self, texts: list[str] | torch.Tensor) -> torch.Tensor:
        """Prompts (B strings) or ids (B, L) -> unit-norm embeddings (B, E)."""
        return F.normalize(self.text(self._ids(texts))[1], dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) float in [-1, 1] (checked by metrics.check_images) -> unit-norm embeddings (B, E)."""
        check_images(images)
        return self._encode_image(images)

    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(images.to(self.device, self.logit_scale.dtype)), dim=-1)  # model's dtype

    def forward(self, images: torch.Tensor, texts: list[str] | torch.Tensor) -> torch.Tensor:
        """logits_per_image (B, B) = exp(t) * cos(image_i, text_j); logits_per_text is its transpose. (Images
        are not checked here: train_clip checks its whole dataset once.)"""
        scale = self.logit_scale.clamp(max=math.log(100)).exp()
        return scale * self._encode_image(images) @ self.encode_text(texts).T

    @torch.no_grad()
    def text_tokens(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen per-token text features for cross-attention: (context (B, L, D), mask (B, L) bool)."""
        ids, mask = self.tokenizer.encode(prompts)
        return self.text(ids.to(self.device))[0], mask.to(self.device)


def clip_loss(logits_per_image: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE (Radford et al. 2021, Fig. 3): mean of the image->text and text->image
    cross-entropies. logits_per_image (B, B); positives (B, B) bool marks the correct captions of each
    image (default: the diagonal); several positives share the target probability equally."""
    B = logits_per_image.shape[0]
    if logits_per_image.shape != (B, B):
        raise ValueError(f"expected square logits (B, B), got {tuple(logits_per_image.shape)}")
    if positives is None:
        target = torch.arange(B, device=logits_per_image.device)
        return (F.cross_entropy(logits_per_image, target) + F.cross_entropy(logits_per_image.T, target)) / 2
    p = positives.float()
    if p.shape != (B, B) or not p.diagonal().all():
        raise ValueError("positives must be (B, B) bool with a True diagonal")
    loss_i = F.cross_entropy(logits_per_image, p / p.sum(1, keepdim=True))
    loss_t = F.cross_entropy(logits_per_image.T, p.T / p.T.sum(1, keepdim=True))
    return (loss_i + loss_t) / 2


@torch.no_grad()
def zero_shot_classify(model: CLIPModel, images: torch.Tensor, class_prompts: list[str],
                       batch_size: int = 500) -> torch.Tensor:
    """images (N, C, S, S) in [-1, 1] -> (N,) long: the index of the most similar class prompt."""
    check_images(images)
    text = model.encode_text(class_prompts)  # (K, E)
    return torch.cat([(model._encode_image(x) @ text.T).argmax(1).cpu() for x in images.split(batch_size)])


def zero_shot_accuracy(model: CLIPModel, images: torch.Tensor, labels: torch.Tensor, class_prompts: list[str],
                       batch_size: int = 500) -> float:
    """Fraction of images (N, C, S, S) whose most similar prompt is class_prompts[label]; labels (N,)."""
    if labels.shape != (images.shape[0],):
        raise ValueError(f"expected one label per image, shape ({images.shape[0]},), got {tuple(labels.shape)}")
    return (zero_shot_classify(model, images, class_prompts, batch_size) == labels.cpu()).float().mean().item()


@torch.no_grad()
def retrieval_recall(model: CLIPModel, images: torch.Tensor, captions: list[str], ks: tuple[int, ...] = (1, 10),
                     relevant: torch.Tensor | None = None, batch_size: int = 500) -> dict[int, float]:
    """Text-to-image recall@k: the fraction of captions with a relevant image among their k nearest images.

    images (N, C, S, S), captions (Q strings); relevant (Q, N) bool, default caption i <-> image i
    (instance retrieval; pass labels[:, None] == labels[None] for class-level retrieval).
    """
    relevant = torch.eye(len(captions), images.shape[0], dtype=torch.bool) if relevant is None else relevant.cpu()
    if relevant.shape != (len(captions), images.shape[0]):
        raise ValueError(f"relevant must be ({len(captions)}, {images.shape[0]}) bool")
    if not ks or not 1 <= min(ks) <= max(ks) <= images.shape[0]:
        raise ValueError(f"every k must be in [1, N = {images.shape[0]}] (the number of images), got ks={ks}")
    check_images(images)
    img = torch.cat([model._encode_image(x) for x in images.split(batch_size)])  # (N, E)
    txt = torch.cat([model.encode_text(captions[i: i + batch_size]) for i in range(0, len(captions), batch_size)])
    top = (txt @ img.T).topk(max(ks), dim=1).indices.cpu()  # (Q, kmax)
    hits = relevant.gather(1, top)  # (Q, kmax)
    return {k: hits[:, :k].any(1).float().mean().item() for k in ks}


def save_clip(path: str | Path, model: CLIPModel, extra_meta: dict | None = None) -> Path:
    """Write PATH.safetensors + PATH.json (kind "clip": config, tokenizer, and ``extra_meta``)."""
    meta = {**(extra_meta or {}), "kind": "clip", "config": model.cfg.to_dict(), "tokenizer": model.tokenizer.to_dict()}
    return save_checkpoint(path, model.state_dict(), meta)


def clip_from_checkpoint(tensors: dict[str, torch.Tensor], meta: dict, device: str | torch.device = "cpu") -> CLIPModel:
    """Builder for kind "clip" (checkpoints.BUILDERS): a CLIPModel in eval mode on ``device``."""
    model = CLIPModel(CLIPConfig.from_dict(meta["config"]), Tokenizer.from_dict(meta["tokenizer"]))
    load_state_strict(model, tensors, "CLIP model")
    return model.to(device).eval()


def __getattr__(name: str):
    """``train_clip`` moved to clip_train.py; ``from diffusion_lite.clip import train_clip`` keeps working."""
    if name == "train_clip":
        from .clip_train import train_clip
        return train_clip
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
