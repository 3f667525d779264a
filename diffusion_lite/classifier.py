"""The MNIST evaluation classifier: a small CNN whose penultimate features define FID/KID.

Taught in the evaluation chapter.

FID (Heusel et al. 2017) needs a feature space in which "looks like the data" is measured. ImageNet's
Inception-v3 knows nothing about 28x28 grey digits, so, as is common for MNIST-scale work, we train a small
domain classifier and use its penultimate layer instead. Numbers in this feature space are comparable
only to numbers computed with the same classifier (the shipped ``mnist-classifier``), at the same sample
count. ``metrics.py`` holds the metrics; this module holds the network, its training and its checkpoints.

Architecture (``ClassifierConfig`` defaults), for x: (N, 1, 28, 28) in [-1, 1]::

    stages 32@28, 64@14, 128@7, 128@3 (width@pixels): 2x2 max-pool (not before the first stage),
        then [conv3x3 -> BatchNorm -> ReLU] x convs_per_stage
    global average pool -> (N, 128) -> Linear -> BatchNorm1d -> ReLU = features (N, 128)
    Dropout -> Linear -> logits (N, 10)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoints import load_state_strict, save_checkpoint
from .config import _Serializable
from .utils import generator_device, progress_disabled


@dataclass(frozen=True)
class ClassifierConfig(_Serializable):
    """A small CNN classifier for (in_channels, image_size, image_size) images in [-1, 1].

    channels: width of each stage; stages after the first start with a 2x2 max-pool.
    feature_dim: width of the penultimate layer (the features FID/KID use).
    """

    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    channels: tuple[int, ...] = (32, 64, 128, 128)
    convs_per_stage: int = 1
    feature_dim: int = 128
    dropout: float = 0.2

    def __post_init__(self):
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty tuple of positive widths, got {self.channels}")
        if self.image_size // 2 ** (len(self.channels) - 1) < 1:
            raise ValueError(f"image_size={self.image_size} is too small for {len(self.channels)} stages")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class Classifier(nn.Module):
    """CNN classifier. ``forward(x) -> logits``; ``features(x)`` -> penultimate features (used by FID)."""

    def __init__(self, cfg: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for i, c in enumerate(cfg.channels):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(cfg.convs_per_stage):
                layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
                c_in = c
        self.body = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Linear(c_in, cfg.feature_dim, bias=False),
                                  nn.BatchNorm1d(cfg.feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.feature_dim, cfg.num_classes))

    def _check(self, x: torch.Tensor) -> None:
        c, s = self.cfg.in_channels, self.cfg.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"expected images of shape (N, {c}, {s}, {s}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected float images in [-1, 1], got dtype {x.dtype} (see utils.from_uint8)")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) in [-1, 1] -> penultimate features (N, feature_dim), >= 0 (after ReLU)."""
        self._check(x)
        h = self.body(x)  # (N, C_last, h, w)
        return self.proj(h.mean(dim=(2, 3)))  # global average pool -> (N, C_last) -> (N, F)

    def classify_features(self, f: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, feature_dim) -> logits (N, num_classes)."""
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) in [-1, 1] -> logits (N, num_classes)."""
        return self.head(self.features(x))


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by its own random integer (dy, dx) in [-max_shift, max_shift], filling with -1.

    x: (N, C, H, W) in [-1, 1] (-1 is the background) -> same shape.
    """
    if max_shift == 0:
        return x
    N, C, H, W = x.shape
    gen_device = generator_device(generator) if generator is not None else x.device
    d = torch.randint(0, 2 * max_shift + 1, (2, N), generator=generator, device=gen_device).to(x.device)
    xp = F.pad(x, (max_shift,) * 4, value=-1.0)  # (N, C, H + 2s, W + 2s)
    rows = d[0][:, None] + torch.arange(H, device=x.device)  # (N, H)
    cols = d[1][:, None] + torch.arange(W, device=x.device)  # (N, W)
    n = torch.arange(N, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[n, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def train_classifier(model: Classifier, dataset: Any, *, epochs: float = 3.0, batch_size: int = 128,
                     lr: float = 3e-3, weight_decay: float = 5e-4, label_smoothing: float = 0.05,
                     max_shift: int = 2, generator: torch.Generator | None = None,
                     device: str | torch.device | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``model`` with AdamW and a one-cycle learning-rate schedule (Smith & Topin 2018).

    dataset: anything with ``.images`` (N, C, H, W) float in [-1, 1] and ``.labels`` (N,) long, such as
    ``data.load_dataset("mnist")``. Each epoch visits every image once in a random order; each batch is
    augmented with random shifts of up to ``max_shift`` pixels (an epoch's last batch, if it would hold a single
    image, is left out: BatchNorm needs two). ``device`` defaults to the model's device.
    ``generator`` draws the batch order and the shifts; dropout draws from the global torch RNG (as in ``fit``),
    so seed that too (``torch.manual_seed``, as scripts/train_classifier.py does) for a repeatable run.
    Returns a JSON-able training record: steps, epochs, wall time, final loss, settings.
    """
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError("dataset must have .images (N, C, H, W) and .labels (N,) tensors, "
                         f"got {type(dataset).__name__}")
    if images.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match")
    if epochs <= 0 or batch_size < 2:  # BatchNorm needs two images to normalise over
        raise ValueError(f"epochs must be > 0 and batch_size >= 2, got {epochs}, {batch_size}")
    if images.shape[0] < 2:
        raise ValueError(f"need at least 2 images to train on, got {images.shape[0]}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    N = images.shape[0]
    starts = [i for i in range(0, N, batch_size) if N - i >= 2]  # a last batch of one image is left out (BatchNorm)
    per_epoch = len(starts)
    steps = max(1, round(epochs * per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    gen_device = generator_device(generator)
    t0, step, avg = time.time(), 0, None
    bar = tqdm(total=steps, desc="classifier", disable=progress_disabled(progress), dynamic_ncols=True)
    while step < steps:
        order = torch.randperm(N, generator=generator, device=gen_device).cpu()
        for i in starts:
            if step == steps:
                break
            idx = order[i:i + batch_size]
            x = random_shift(images[idx].to(device), max_shift, generator)
            y = labels[idx].to(device)
            loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            # moving average of the batch loss, bias-corrected as in train.fit
            avg = loss.item() if avg is None else avg + 0.02 / (1 - 0.98 ** step) * (loss.item() - avg)
            bar.update(1)
            bar.set_postfix(loss=f"{avg:.3f}")
    bar.close()
    model.eval()
    return {"steps": steps, "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "weight_decay": weight_decay, "label_smoothing": label_smoothing, "max_shift": max_shift,
            "final_loss": avg, "wall_time_s": round(time.time() - t0, 1)}


@torch.no_grad()
def accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of ``images`` (N, C, H, W) in [-1, 1] whose argmax prediction equals ``labels`` (N,)."""
    if labels.shape != (images.shape[0],):
        raise ValueError(f"expected one label per image, labels of shape ({images.shape[0]},), "
                         f"got {tuple(labels.shape)}")
    if images.shape[0] == 0:
        raise ValueError("no images: the accuracy of 0 images is undefined")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, images.shape[0], batch_size):
        pred = model(images[i:i + batch_size].to(device)).argmax(dim=1).cpu()
        correct += (pred == labels[i:i + batch_size].cpu()).sum().item()
    model.train(was_training)
    return correct / images.shape[0]


def save_classifier(path, model: Classifier, meta: dict[str, Any] | None = None):
    """Save as a checkpoint of kind "classifier" (config in the JSON, weights in safetensors)."""
    meta = {**(meta or {}), "kind": "classifier", "classifier_config": model.cfg.to_dict()}
    return save_checkpoint(path, dict(model.state_dict()), meta)


def classifier_from_checkpoint(tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                               device: str | torch.device = "cpu") -> Classifier:
    """Builder for ``checkpoints.load``: rebuild the Classifier from its stored config, in eval mode;
    ``model.dataset`` is the dataset it was trained on (meta "dataset"; None if the file does not say)."""
    model = Classifier(ClassifierConfig.from_dict(meta["classifier_config"]))
    load_state_strict(model, tensors, "classifier checkpoint")
    model.dataset = meta.get("dataset")
    return model.to(device).eval()
