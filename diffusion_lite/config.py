"""Frozen configuration dataclasses (taught in chapters 02-04).

Every model checkpoint stores these as JSON, so a model is rebuilt from the file alone::

    cfg = UNetConfig.from_dict(json.loads(text))

Defaults are the MNIST recipe that trains in minutes on a laptop CPU; `cifar_unet_config()` is a
preset for 3x32x32 images.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any


def _from_dict(cls, d: dict[str, Any]):
    """Build dataclass `cls` from a dict, turning lists back into tuples; unknown keys are an error."""
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}; expected some of {sorted(names)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**kwargs)


SCHEDULE_KINDS = ("linear", "cosine", "sigmoid")


def _check_int(cfg, name: str, low: int | None) -> None:
    """Field ``name`` must be an integer (a numpy integer is stored as int, for JSON) and >= ``low``."""
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (low is not None and value < low):
        raise ValueError(f"{type(cfg).__name__}.{name} must be an integer" + (f" >= {low}" if low is not None else "")
                         + f", got {value!r}")
    object.__setattr__(cfg, name, int(value))


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        return _from_dict(cls, d)

    def replace(self, **changes):
        """A copy with some fields changed (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ScheduleConfig(_Serializable):
    """Noise schedule: `kind` in {"linear", "cosine", "sigmoid"} over `T` steps (see schedules.py)."""

    kind: str = "cosine"
    T: int = 1000
    beta_start: float = 1e-4  # linear / sigmoid only
    beta_end: float = 0.02  # linear / sigmoid only

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind {self.kind!r}; expected one of {list(SCHEDULE_KINDS)}")
        _check_int(self, "T", 2)
        if self.kind != "cosine" and not 0.0 < self.beta_start < self.beta_end < 1.0:  # cosine ignores them
            raise ValueError(f"ScheduleConfig needs 0 < beta_start < beta_end < 1, got beta_start={self.beta_start}, "
                             f"beta_end={self.beta_end}")


@dataclass(frozen=True)
class UNetConfig(_Serializable):
    """Noise-prediction U-Net.

    Resolutions are counted in pixels: with image_size=28 and channel_mults=(1, 2, 2) the levels run
    at 28, 14 and 7 pixels, so ``attn_resolutions=(7,)`` puts self-attention at the 7x7 level.
    ``cross_attn_resolutions`` puts transformer blocks (self + cross-attention to text tokens of width
    ``context_dim``) at those levels; they need ``context_dim``.
    """

    in_channels: int = 1
    image_size: int = 28
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = (7,)
    cross_attn_resolutions: tuple[int, ...] = ()
    context_dim: int | None = None
    num_heads: int = 4
    groups: int = 8
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("channel_mults", "attn_resolutions", "cross_attn_resolutions"):  # a frozen config stays hashable
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("in_channels", "image_size", "base_channels", "num_res_blocks", "num_heads", "groups"):
            _check_int(self, name, 1)
        if not self.channel_mults or any(isinstance(m, bool) or not isinstance(m, int) or m < 1
                                         for m in self.channel_mults):
            raise ValueError(f"channel_mults must be a non-empty tuple of integers >= 1, got {self.channel_mults!r}")
        if self.context_dim is not None:
            _check_int(self, "context_dim", 1)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.cross_attn_resolutions and not self.context_dim:
            raise ValueError("cross_attn_resolutions need context_dim (the width of the text tokens)")
        for m in self.channel_mults:
            if (self.base_channels * m) % self.groups:
                raise ValueError(f"channels {self.base_channels * m} not divisible by groups={self.groups}")
        size, levels = self.image_size, [self.image_size]
        for _ in range(len(self.channel_mults) - 1):
            if size % 2:
                raise ValueError(
                    f"image_size={self.image_size} cannot be halved {len(self.channel_mults) - 1} times; "
                    "use fewer channel_mults")
            size //= 2
            levels.append(size)
        for name in ("attn_resolutions", "cross_attn_resolutions"):
            bad = [r for r in getattr(self, name) if r not in levels]
            if bad:  # else the block is silently left out (a text model that ignores its text)
                raise ValueError(f"{name}={tuple(getattr(self, name))}: this U-Net has no level at {bad} pixels; "
                                 f"its levels are {levels}")
            for r in getattr(self, name):
                c = self.base_channels * self.channel_mults[levels.index(r)]
                if c % self.num_heads:
                    raise ValueError(f"{name} includes {r}, where the U-Net has {c} channels, which num_heads="
                                     f"{self.num_heads} does not divide (each head gets channels / num_heads)")


@dataclass(frozen=True)
class TrainConfig(_Serializable):
    """Optimisation settings for `train.fit` (chapter 04).

    prediction: what the network outputs, "eps" (DDPM), "v" (Salimans & Ho 2022) or "x0".
    loss_weighting: "none" (plain MSE on the target) or "min_snr" (Hang et al. 2023, gamma=5).
    p_uncond: probability that a text prompt is replaced by the empty prompt (classifier-free guidance); the
    conditioning function applies it (pipeline.text_cond_fn, via pipeline.text_training), fit checks it matches.
    lr: the peak learning rate, reached after ``warmup_steps`` of linear warm-up and decayed along a cosine to
    10% of it at ``steps`` (train_state.lr_at); a run shorter than its warm-up never reaches it (fit warns).
    """

    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    ema_decay: float = 0.999
    ema_warmup: bool = True
    grad_clip: float | None = 1.0  # max gradient norm; 0 or None: no clipping
    prediction: str = "eps"
    loss_weighting: str = "none"
    p_uncond: float = 0.1
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    amp: bool = False  # bf16 autocast on CUDA only
    compile: bool = False
    channels_last: bool = False

    def __post_init__(self):
        for name in ("lr", "weight_decay", "ema_decay", "p_uncond", "grad_clip"):  # before comparing them
            value = getattr(self, name)
            if not (value is None and name == "grad_clip") and (isinstance(value, bool)
                                                                or not isinstance(value, numbers.Real)):
                raise ValueError(f"TrainConfig.{name} must be a number, got {value!r}")
        if self.prediction not in ("eps", "v", "x0"):
            raise ValueError(f"prediction must be 'eps', 'v' or 'x0', got {self.prediction!r}")
        if self.loss_weighting not in ("none", "min_snr"):
            raise ValueError(f"loss_weighting must be 'none' or 'min_snr', got {self.loss_weighting!r}")
        if not 0.0 <= self.p_uncond <= 1.0:
            raise ValueError(f"p_uncond must be in [0, 1], got {self.p_uncond}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name, low in (("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("checkpoint_every", 0),
                          ("log_every", 1), ("seed", None)):
            _check_int(self, name, low)
        if not 0.0 < self.lr < float("inf"):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        clip = 0.0 if self.grad_clip is None else self.grad_clip  # None or 0: no clipping
        if not (0.0 <= self.weight_decay < float("inf") and 0.0 <= clip < float("inf")):
            raise ValueError(f"weight_decay and grad_clip must be finite and >= 0 (grad_clip 0 or None: no "
                             f"clipping), got {self.weight_decay}, {self.grad_clip}")


def mnist_unet_config(**changes) -> UNetConfig:
    """The default MNIST U-Net (1.19M parameters; UNetConfig's defaults). The CLI's smaller presets
    (``--model tiny`` 0.28M, ``small`` 0.72M as in mnist-uncond) train faster on a CPU."""
    return UNetConfig(**changes)


def cifar_unet_config(**changes) -> UNetConfig:
    """A 3x32x32 preset (levels 32, 16, 8, 4); meant for a GPU."""
    base = dict(in_channels=3, image_size=32, base_channels=64, channel_mults=(1, 2, 2, 2),
                num_res_blocks=2, attn_resolutions=(16,), groups=32, dropout=0.1)
    base.update(changes)
    return UNetConfig(**base)
