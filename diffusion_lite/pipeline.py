"""A trained diffusion model ready to sample: U-Net + schedule (+ frozen text encoder) - chapters 04-08.

    pipe = load_pretrained("mnist-text2img")
    images = pipe.sample(prompts=["a handwritten seven"] * 8, guidance=3.0, steps=50, generator=g)

``images`` is (B, C, H, W) in [-1, 1]. The pipeline only assembles a ``model_fn`` (text conditioning,
classifier-free guidance) and hands it to a sampler from sampling.py; it holds no sampler state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoints import add_prefix, load_state_strict, save_checkpoint, split_prefix
from .config import ScheduleConfig, UNetConfig
from .guidance import CADS, classifier_free_guidance
from .sampling import ModelFn, eps_model_fn, sample
from .schedules import Schedule
from .unet import UNet
from .utils import randn


class DiffusionPipeline:
    """unet: a UNet; schedule: its Schedule; prediction: "eps" | "v" | "x0";
    text: an encoder with ``text_tokens(prompts) -> (context (B, L, D), mask (B, L))`` or None."""

    def __init__(self, unet: UNet, schedule: Schedule, *, prediction: str = "eps", text: Any = None,
                 meta: dict | None = None, text_checkpoint: tuple[dict, dict] | None = None):
        self.unet, self.schedule, self.prediction, self.text = unet.eval(), schedule, prediction, text
        self.meta = meta or {}
        self._text_checkpoint = text_checkpoint  # (tensors, meta) of the text encoder, for saving

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def is_text_conditional(self) -> bool:
        return self.unet.cfg.context_dim is not None

    def to(self, device) -> DiffusionPipeline:
        self.unet.to(device)
        self.schedule = self.schedule.to(device)
        if self.text is not None and hasattr(self.text, "to"):
            self.text.to(device)
        return self

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> (context (B, L, D), mask (B, L)) on the U-Net's device."""
        if self.text is None:
            raise ValueError("this model has no text encoder; it is unconditional (omit prompts)")
        ctx, mask = self.text.text_tokens(list(prompts))
        return ctx.to(self.device), mask.to(self.device)

    def model_fn(self, prompts: list[str] | None = None, *, guidance: float = 3.0,
                 negative_prompt: str | list[str] | None = None,
                 guidance_interval: tuple[int, int] | None = None, cads: CADS | None = None,
                 generator: torch.Generator | None = None) -> ModelFn:
        """``model_fn(x_t, t) -> eps_hat`` for the given prompts (one per image), with guidance scale s.

        The unconditional branch uses the empty prompt "" or ``negative_prompt``. ``guidance_interval``
        (t_lo, t_hi) limits guidance to those timesteps; ``cads`` noises the prompt tokens early in the
        chain, drawing from ``generator`` (both: guidance.classifier_free_guidance).
        """
        base = lambda x_t, t, **cond: eps_model_fn(self.unet, self.schedule, self.prediction, **cond)(x_t, t)
        if not self.is_text_conditional:
            if prompts is not None:
                raise ValueError("this model is unconditional: it takes no prompts")
            return base
        if prompts is None:
            prompts = [""]
        if negative_prompt is None:
            negative_prompt = ""
        negs = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
        if len(negs) != len(prompts):
            raise ValueError(f"got {len(negs)} negative prompts for {len(prompts)} prompts")
        return classifier_free_guidance(base, self.encode(prompts), self.encode(negs), guidance,
                                        interval=guidance_interval, cads=cads, T=self.schedule.T,
                                        generator=generator)

    @torch.no_grad()
    def sample(self, prompts: str | list[str] | None = None, n: int | None = None, *, guidance: float = 3.0,
               negative_prompt: str | list[str] | None = None, steps: int = 50, sampler: str = "ddim",
               eta: float = 0.0, generator: torch.Generator | None = None, callback: Callable | None = None,
               progress: bool = True, clip_x0: bool = True, x_T: torch.Tensor | None = None,
               guidance_interval: tuple[int, int] | None = None, cads: CADS | None = None) -> torch.Tensor:
        """Generate images (B, C, H, W) in [-1, 1].

        prompts: a list (one image each), or one string repeated ``n`` times; None for unconditional
        models (then give ``n``). x_T is drawn on the CPU with ``generator`` (so results do not depend
        on the device) and moved to the model's device. guidance_interval and cads: see ``model_fn``.
        """
        if isinstance(prompts, str):
            prompts = [prompts] * (n or 1)
        elif prompts is not None:
            prompts = list(prompts)
            if n is not None and n != len(prompts):
                raise ValueError(f"n={n} but {len(prompts)} prompts were given; give one or the other")
        if cads is not None and not self.is_text_conditional:
            raise ValueError("cads noises the prompt; this model is unconditional")
        B = len(prompts) if prompts is not None else n
        if not B:
            raise ValueError("nothing to sample: give prompts or n >= 1")
        c = self.unet.cfg
        if x_T is None:
            x_T = randn((B, c.in_channels, c.image_size, c.image_size), generator)  # on the generator's device
        fn = self.model_fn(prompts, guidance=guidance, negative_prompt=negative_prompt,
                           guidance_interval=guidance_interval, cads=cads, generator=generator) \
            if self.is_text_conditional else self.model_fn()
        kw = dict(x_T=x_T.to(self.device), steps=steps, generator=generator, callback=callback, progress=progress,
                  clip_x0=clip_x0)
        if sampler == "ddim":
            kw["eta"] = eta
        return sample(fn, self.schedule, sampler=sampler, **kw)

    # -------------------------------------------------------------------------------- saving
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, meta) describing this pipeline: U-Net weights, configs, and the text encoder."""
        tensors = add_prefix(self.unet.state_dict(), "unet")
        meta = {"kind": "diffusion", "unet": self.unet.cfg.to_dict(), "schedule": self.schedule.config.to_dict(),
                "prediction": self.prediction, "text": None,
                **{k: v for k, v in self.meta.items() if k in ("dataset", "card", "train")}}
        if self._text_checkpoint is not None:
            t_tensors, t_meta = self._text_checkpoint
            tensors.update(add_prefix(t_tensors, "text"))
            meta["text"] = t_meta
        return tensors, meta

    def save(self, path: str | Path) -> Path:
        """Write an inference-only checkpoint (EMA weights, no optimizer state) to PATH.{safetensors,json}."""
        tensors, meta = self.state()
        return save_checkpoint(path, tensors, meta)


def pipeline_from_checkpoint(tensors: dict[str, torch.Tensor], meta: dict, device="cpu") -> DiffusionPipeline:
    """Builder for checkpoints of kind "diffusion" (see checkpoints.BUILDERS); uses the EMA weights."""
    unet = UNet(UNetConfig.from_dict(meta["unet"]))
    load_state_strict(unet, split_prefix(tensors, "unet"), "U-Net")
    schedule = Schedule.from_config(ScheduleConfig.from_dict(meta["schedule"]))
    text, text_ckpt = None, None
    if meta.get("text"):
        import importlib

        from .checkpoints import BUILDERS
        module, fn = BUILDERS[meta["text"]["kind"]].split(":")
        t_tensors = split_prefix(tensors, "text")
        text = getattr(importlib.import_module(module), fn)(t_tensors, meta["text"], device)
        text_ckpt = ({k: v.cpu() for k, v in t_tensors.items()}, meta["text"])
    pipe = DiffusionPipeline(unet, schedule, prediction=meta.get("prediction", "eps"), text=text, meta=meta,
                             text_checkpoint=text_ckpt)
    return pipe.to(device)


def text_cond_fn(text: Any, caption_fn: Callable, p_uncond: float) -> Callable:
    """Training-time conditioning: captions for the batch, each dropped to "" with probability p_uncond.

    caption_fn(images, labels, generator) -> list[str]. Returns cond_fn(x0, labels, generator) -> dict
    with context (B, L, D) and context_mask (B, L) for the U-Net (the text encoder stays frozen).
    """

    def cond_fn(x0: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> dict:
        captions = caption_fn(x0, labels, gen)
        drop = (torch.rand(len(captions), generator=gen) < p_uncond).tolist()
        captions = ["" if d else c for c, d in zip(captions, drop)]
        with torch.no_grad():
            ctx, mask = text.text_tokens(captions)
        return {"context": ctx.to(x0.device), "context_mask": mask.to(x0.device)}

    return cond_fn
