"""Contrastive training of the small CLIP (chapter 06): the loop around clip.clip_loss.

    clip = CLIPModel.for_dataset("mnist")
    losses = train_clip(clip, load_dataset("mnist"), steps=2000, generator=torch.Generator().manual_seed(0))

Each step draws a batch of images, one caption per image (captions.py: class words plus measured
attributes), and minimises the symmetric InfoNCE loss of the B x B similarity matrix (Radford et al.
2021, Fig. 3) with AdamW.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from .clip import CLIPModel, clip_loss
from .metrics import check_images
from .utils import generator_device, progress_disabled


def train_clip(model: CLIPModel, dataset, *, steps: int = 1000, batch_size: int = 256, lr: float = 2e-3,
               weight_decay: float = 0.05, warmup_steps: int = 50, captions: Callable | None = None,
               dataset_name: str | None = None, positives: str = "diagonal", generator: torch.Generator | None = None,
               device: str | torch.device | None = None, progress: bool = True) -> list[float]:
    """Train contrastively in place; returns the loss of every step.

    dataset: has ``.images`` (N, C, S, S) in [-1, 1] and ``.labels`` (N,) (e.g. data.load_dataset), or is
    an (images, labels) tuple. captions(images, labels, generator) -> list[str]; default
    captions.caption_fn(dataset_name) (default ``dataset.name``). AdamW with linear warmup and
    cosine decay to 10% of lr; batches and captions are drawn with ``generator``; 1 <= batch_size <= N.
    After each step logit_scale is clamped to [0, ln 100], as in OpenAI's CLIP (forward's clamp has no
    gradient beyond ln 100). positives: "diagonal" (CLIP) or "label" (every same-class pair is a match; see
    clip.py's module docstring). The model is moved to ``device`` if given, else it trains where it is.
    """
    from .captions import caption_fn

    images, labels = (dataset.images, dataset.labels) if hasattr(dataset, "images") else dataset
    if positives not in ("diagonal", "label"):
        raise ValueError(f"positives must be 'diagonal' or 'label', got {positives!r}")
    if captions is None:
        name = dataset_name or getattr(dataset, "name", None)
        if name is None:
            raise ValueError("give dataset_name (or a captions function) for a dataset without .name")
        captions = caption_fn(name)
    if steps < 1 or not 1 <= batch_size <= len(images):
        raise ValueError(f"need steps >= 1 and 1 <= batch_size <= N = {len(images)} (the dataset size), "
                         f"got steps={steps}, batch_size={batch_size}")
    check_images(images)
    if device is not None:
        model.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}],
                            lr=lr, betas=(0.9, 0.98))
    lr_at = lambda s: min(1.0, (s + 1) / max(1, warmup_steps)) * (0.55 + 0.45 * math.cos(math.pi * s / steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    perm = lambda: torch.randperm(len(images), generator=generator, device=generator_device(generator)).cpu()
    history, order, pos = [], perm(), 0
    bar = tqdm(range(steps), desc="clip", disable=progress_disabled(progress))
    for _ in bar:
        if pos + batch_size > len(order):
            order, pos = perm(), 0
        idx = order[pos: pos + batch_size]
        pos += batch_size
        x, y = images[idx], labels[idx]
        ids = model.tokenizer.encode(captions(x, y, generator), on_unknown="error")[0].to(model.device)
        same = (y[:, None] == y[None]).to(model.device) if positives == "label" else None  # (B, B) same class
        loss = clip_loss(model(x.to(model.device), ids), same)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, math.log(100))  # a no-op while the scale stays in range
        sched.step()
        history.append(loss.item())
        if len(history) % 10 == 0:
            bar.set_postfix(loss=f"{sum(history[-10:]) / 10:.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
    model.eval()
    return history
