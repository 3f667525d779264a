"""What ``train.fit`` checks before it trains: the images, the labels, the conditioning, and whether a
text-conditional run stores what loading it needs. Each problem is an error that says what was expected
(or, where training can go on but probably not as meant, a warning); nothing is silently converted.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from .config import TrainConfig
from .utils import caller_stacklevel


def check_image_range(images: torch.Tensor) -> None:
    """Training images must be floats in [-1, 1] (DDPM sec. 3.3; utils.from_uint8). Out of range is an error;
    no pixel below 0 is a warning: most likely images in [0, 1], whose samples come out with a grey
    background and whose noise-to-signal ratio at each t differs from the schedule's design (chapter 10)."""
    if not images.is_floating_point():
        raise ValueError(f"images must be floats in [-1, 1], got {images.dtype} (convert with utils.from_uint8)")
    lo, hi = float(images.min()), float(images.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN would pass every comparison below
        raise ValueError(f"images contain NaN or inf (values in [{lo}, {hi}])")
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"images must be in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]"
                         + (" (uint8 range: use utils.from_uint8)" if hi > 2 else ""))
    if lo >= 0:
        warnings.warn(f"no training pixel is below 0 (values in [{lo:.3g}, {hi:.3g}]): are the images in [0, 1]? "
                      "The models expect [-1, 1] (x * 2 - 1)", stacklevel=caller_stacklevel())


def check_fit_inputs(model: torch.nn.Module, images: Any, cfg: TrainConfig, labels: Any, cond_fn: Any,
                     fresh: bool) -> None:
    """The checks of ``fit`` before any step: ``images`` (N, C, H, W) floats in [-1, 1] in the model's dtype and,
    for a model with a ``cfg`` (UNet), its channels and size; ``labels`` a tensor or numpy array with one entry per
    image; a cross-attention U-Net needs a ``cond_fn`` (pipeline.text_training gives one, with the meta that
    stores the text encoder: check_text_meta)."""
    if not torch.is_tensor(images):
        numpy = isinstance(images, np.ndarray)
        hint = " (torch.from_numpy(a), then utils.from_uint8 for uint8 pixels)" if numpy else ""
        raise ValueError(f"images must be a torch.Tensor (N, C, H, W) of floats in [-1, 1], got "
                         f"{type(images).__name__}{hint}")
    ucfg = getattr(model, "cfg", None)
    C, S = getattr(ucfg, "in_channels", None), getattr(ucfg, "image_size", None)
    channels_last = images.dim() == 4 and C is not None and images.shape[-1] == C and images.shape[1] != C
    last = " (channels last? images.permute(0, 3, 1, 2))" if channels_last else ""
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}"
                         + (" (add the channel axis: images[:, None])" if images.dim() == 3 else ""))
    if images.shape[0] == 0:
        raise ValueError("images holds no image (N = 0)")
    check_image_range(images)
    if C is not None and S is not None and tuple(images.shape[1:]) != (C, S, S):
        raise ValueError(f"the model takes images (N, {C}, {S}, {S}) (model.cfg: in_channels, image_size), got "
                         f"{tuple(images.shape)}{last}")
    dtype = next(model.parameters()).dtype
    if dtype in (torch.float16, torch.bfloat16):  # most EMA updates (1 - ema_decay of a step) would round away
        raise ValueError(f"the model's weights are {dtype}; fit trains float32 weights (in {dtype}, the averaged "
                         "weights that checkpoints keep would barely move): model.float(), and TrainConfig(amp=True) "
                         "for bfloat16 arithmetic on a GPU")
    if images.dtype != dtype:
        raise ValueError(f"images are {images.dtype} but the model's parameters {dtype}: convert them "
                         f"(images.to({dtype}))")
    indexable = torch.is_tensor(labels) or isinstance(labels, np.ndarray)  # labels[idx] with a LongTensor idx
    if labels is not None and not (indexable and labels.ndim >= 1 and labels.shape[0] == len(images)):
        got = tuple(labels.shape) if indexable else type(labels).__name__
        raise ValueError(f"labels must be a tensor or numpy array with one entry per image, ({len(images)},), got "
                         f"{got}; cond_fn gets labels[idx] for each batch (class ids, or e.g. a numpy array of "
                         "captions) and turns them into the model's condition")
    if labels is not None and cond_fn is None:
        warnings.warn("labels are only passed to cond_fn, and there is none: they are unused (the model trains "
                      "unconditionally)", stacklevel=caller_stacklevel())
    context_dim = getattr(ucfg, "context_dim", None)
    if context_dim is not None:
        if cond_fn is None:
            raise ValueError(f"the model has cross-attention (context_dim {context_dim}), so it needs text: pass "
                             "labels and cond_fn, e.g. fit(..., labels=y, **pipeline.text_training(clip, "
                             "caption_fn, cfg.p_uncond))")
        declared = getattr(cond_fn, "p_uncond", None)
        if declared is None:
            warnings.warn(f"cond_fn does not say how often it drops the prompt (no cond_fn.p_uncond); the run records "
                          f"p_uncond={cfg.p_uncond}, and guidance needs the empty prompt's branch: "
                          "pipeline.text_cond_fn drops prompts with its p_uncond (a cond_fn of your own that does: "
                          "set cond_fn.p_uncond = cfg.p_uncond)", stacklevel=caller_stacklevel())
        elif declared != cfg.p_uncond:
            raise ValueError(f"cond_fn drops prompts with p_uncond={declared}, cfg.p_uncond is {cfg.p_uncond}: the "
                             "checkpoint would record the wrong one; make them equal")
    if cfg.warmup_steps > cfg.steps and fresh:  # lr_at(steps - 1) = lr * steps / warmup_steps
        warnings.warn(f"warmup_steps={cfg.warmup_steps} is longer than the run (steps={cfg.steps}): the "
                      f"learning rate never reaches lr={cfg.lr:g} (lr_at: linear warm-up, then cosine decay); "
                      "lower warmup_steps", stacklevel=caller_stacklevel())


def check_text_meta(model: torch.nn.Module, meta: dict | None) -> None:
    """A fresh text-conditional run with checkpoints that does not store its text encoder (``meta["text"]`` and
    ``extra_tensors`` "text.*") is a warning: checkpoints.load cannot rebuild it (a run conditioned on something
    else than a CLIPModel, e.g. class tokens or a Hugging Face encoder, loads it with code of its own)."""
    if getattr(getattr(model, "cfg", None), "context_dim", None) is not None and not (meta or {}).get("text"):
        warnings.warn("this text-conditional run does not store its text encoder, so checkpoints.load will not "
                      "rebuild it: for a CLIPModel pass meta and extra_tensors from pipeline.text_training(clip, "
                      "caption_fn, cfg.p_uncond) (fit(..., **pipeline.text_training(...)))",
                      stacklevel=caller_stacklevel())
