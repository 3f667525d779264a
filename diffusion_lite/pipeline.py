"""A trained diffusion model ready to sample: U-Net + schedule (+ frozen text encoder) - chapters 04-08.

    pipe = load_pretrained("mnist-text2img")
    images = pipe.sample(prompts=["a handwritten seven"] * 8, guidance=3.0, steps=50, generator=g)

``images`` is (B, C, H, W) in [-1, 1]. The pipeline only assembles a ``model_fn`` (text conditioning,
classifier-free guidance) and hands it to a sampler from sampling.py; it holds no sampler state.
"""

from __future__ import annotations

import numbers
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoints import CheckpointError, add_prefix, check_meta, load_state_strict, save_checkpoint, split_prefix
from .config import ScheduleConfig, UNetConfig
from .guidance import CADS, classifier_free_guidance
from .sampling import SAMPLERS, ModelFn, eps_model_fn, sample
from .schedules import Schedule
from .unet import UNet
from .utils import autocast_enabled, check_device, generator_device, randn


def _prompt_list(prompts: str | list[str], what: str = "prompts") -> list[str]:
    """One string is one prompt; otherwise a list (or tuple) of strings, checked, not coerced."""
    if isinstance(prompts, str):
        return [prompts]
    prompts = list(prompts)
    bad = [p for p in prompts if not isinstance(p, str)]
    if bad:
        raise ValueError(f"{what} must be a str or a list of str, got an item {bad[0]!r} "
                         f"of type {type(bad[0]).__name__}")
    return prompts


DEFAULT_GUIDANCE = 3.0


def _check_unconditional(**given) -> None:
    """On an unconditional model, text and guidance options would be silently ignored: an error instead."""
    names = [k for k, v in given.items() if v is not None]
    if names:
        verb = "applies" if len(names) == 1 else "apply"
        raise ValueError(f"this model is unconditional: {', '.join(names)} only {verb} to text-to-image models "
                         "(give n, the number of images)")


def _text_entry(text: Any) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta) storing a text encoder in a diffusion checkpoint, as clip.save_clip writes a CLIPModel."""
    from .clip import CLIPModel

    if not isinstance(text, CLIPModel):
        raise ValueError(f"cannot save the pipeline's text encoder, a {type(text).__name__}: only a CLIPModel (or "
                         "text_checkpoint=(tensors, meta) of a saved one) can be stored, and without it the "
                         "checkpoint would refuse every prompt")
    return text.state_dict(), {"kind": "clip", "config": text.cfg.to_dict(), "tokenizer": text.tokenizer.to_dict()}


class DiffusionPipeline:
    """unet: a UNet; schedule: its Schedule; prediction: "eps" | "v" | "x0" (what the U-Net was trained to
    predict); text: an encoder with ``text_tokens(prompts) -> (context (B, L, D), mask (B, L))`` or None.

    The pipeline puts ``unet`` (the caller's module, not a copy) in eval mode, for sampling: dropout off.
    """

    def __init__(self, unet: UNet, schedule: Schedule, *, prediction: str = "eps", text: Any = None,
                 meta: dict | None = None, text_checkpoint: tuple[dict, dict] | None = None):
        if prediction not in ("eps", "v", "x0"):
            raise ValueError(f"unknown prediction {prediction!r}; expected 'eps', 'v' or 'x0'")
        width, D = getattr(text, "context_dim", None), unet.cfg.context_dim
        if text is not None and D is not None and isinstance(width, int) and width != D:
            raise ValueError(f"the text encoder returns {width}-wide token embeddings but the U-Net's cross-attention "
                             f"expects context_dim {D}: use the text encoder the U-Net was trained with")
        self.unet, self.prediction, self.text = unet.eval(), prediction, text
        self.schedule = schedule.to(self.device)  # else extract() copies its constants to the GPU at every step
        self.meta = meta or {}
        self._text_checkpoint = text_checkpoint  # (tensors, meta) of the text encoder, for saving

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def is_text_conditional(self) -> bool:
        return self.unet.cfg.context_dim is not None

    def to(self, device) -> DiffusionPipeline:
        """Move the U-Net, the schedule and the text encoder to ``device`` (checked to exist here)."""
        device = check_device(device)
        self.unet.to(device)
        self.schedule = self.schedule.to(device)
        if self.text is not None and hasattr(self.text, "to"):
            self.text.to(device)
        return self

    @torch.no_grad()
    def encode(self, prompts: str | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts (a list, or one string: B = 1) -> (context (B, L, D), mask (B, L)) on the U-Net's device."""
        if self.text is None and self.is_text_conditional:
            raise ValueError(f"this pipeline's U-Net is text-conditional (context_dim {self.unet.cfg.context_dim}) "
                             "but it has no text encoder: pass text= (e.g. the CLIPModel it was trained with)")
        if self.text is None:
            raise ValueError("this model has no text encoder; it is unconditional (omit prompts)")
        ctx, mask = self.text.text_tokens(_prompt_list(prompts))
        return ctx.to(self.device, self.dtype), mask.to(self.device)  # the U-Net's dtype (the encoder's may differ)

    def model_fn(self, prompts: str | list[str] | None = None, *, guidance: float | None = None,
                 negative_prompt: str | list[str] | None = None,
                 guidance_interval: tuple[int, int] | None = None, cads: CADS | float | None = None,
                 generator: torch.Generator | None = None) -> ModelFn:
        """``model_fn(x_t, t) -> eps_hat`` for the given prompts (one per image; a str is one prompt), with
        guidance scale s (None: DEFAULT_GUIDANCE, 3).

        The unconditional branch uses the empty prompt "" or ``negative_prompt``. ``guidance_interval``
        (t_lo, t_hi), within [0, T - 1], limits guidance to those timesteps; ``cads`` (a CADS, or a number:
        CADS(noise_scale)) noises the prompt tokens early in the chain, drawing from ``generator`` (both:
        guidance.classifier_free_guidance). On an unconditional model all of these are errors.
        """
        base = lambda x_t, t, **cond: eps_model_fn(self.unet, self.schedule, self.prediction, **cond)(x_t, t)
        if not self.is_text_conditional:
            _check_unconditional(prompts=prompts, guidance=guidance, negative_prompt=negative_prompt,
                                 guidance_interval=guidance_interval, cads=cads)
            return base
        guidance = DEFAULT_GUIDANCE if guidance is None else guidance
        T = self.schedule.T
        if guidance_interval is not None and not 0 <= guidance_interval[0] <= guidance_interval[1] <= T - 1:
            raise ValueError(f"guidance_interval must be (t_lo, t_hi) with 0 <= t_lo <= t_hi <= {T - 1} (this "
                             f"model's timesteps), got {tuple(guidance_interval)}")
        prompts = [""] if prompts is None else _prompt_list(prompts)
        if negative_prompt is None:
            negative_prompt = ""
        negs = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) \
            else _prompt_list(negative_prompt, "negative_prompt")
        if len(negs) != len(prompts):
            raise ValueError(f"got {len(negs)} negative prompts for {len(prompts)} prompts")
        cond = self.encode(prompts)
        with warnings.catch_warnings(record=True) as caught:  # say which prompt an unknown word came from
            warnings.simplefilter("always")
            uncond = self.encode(negs)
        for w in caught:
            warnings.warn_explicit(f"negative prompt: {w.message}", w.category, w.filename, w.lineno)
        return classifier_free_guidance(base, cond, uncond, guidance,
                                        interval=guidance_interval, cads=cads, T=T,
                                        generator=generator)

    @torch.no_grad()
    def sample(self, prompts: str | list[str] | None = None, n: int | None = None, *,
               guidance: float | None = None,
               negative_prompt: str | list[str] | None = None, steps: int = 50, sampler: str = "ddim",
               eta: float = 0.0, generator: torch.Generator | None = None, callback: Callable | None = None,
               progress: bool = True, clip_x0: bool = True, x_T: torch.Tensor | None = None,
               guidance_interval: tuple[int, int] | None = None, cads: CADS | float | None = None,
               spacing: str = "linspace") -> torch.Tensor:
        """Generate images (B, C, H, W) in [-1, 1].

        prompts: a list (one image each), or one string repeated ``n`` times (default 1); None for
        unconditional models (then give ``n``), which refuse prompts. A text model given only ``n`` samples its
        unconditional branch, the empty prompt (guidance then changes nothing). x_T (B, C, H, W), B the number of
        images, defaults to noise drawn on the CPU with ``generator`` (so results do not depend on the
        device), moved to the model's device. guidance_interval and cads: see ``model_fn``. eta is DDIM's
        noise setting (0: deterministic); with another sampler it is an error. sampler: "ddim", "ddpm" or
        "dpm++2m" (DPM-Solver++, dpm_solver.py: deterministic, second order). guidance: the scale s of
        classifier-free guidance for text models (None: DEFAULT_GUIDANCE, 3); unconditional models refuse it.
        spacing: the time grid, "linspace" (even in t) or "logsnr" (even in log-SNR; ``sampling.timesteps``).
        An unconditional model also takes the number of images first: ``pipe.sample(4)``.
        """
        if isinstance(prompts, numbers.Integral) and not isinstance(prompts, bool):  # sample(4)
            if self.is_text_conditional:
                raise ValueError(f"sample({prompts}): a text-to-image model takes prompts first (a str or a list of "
                                 f"str); for {prompts} images of one prompt: sample('a prompt', n={prompts})")
            if n is not None:
                raise ValueError(f"sample({prompts}, n={n}): give the number of images once")
            prompts, n = None, prompts
        if not self.is_text_conditional:
            _check_unconditional(prompts=prompts, guidance=guidance, negative_prompt=negative_prompt,
                                 guidance_interval=guidance_interval, cads=cads)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
        if sampler != "ddim" and eta != 0.0:
            how = "always adds its full noise" if sampler == "ddpm" else "adds none"
            raise ValueError(f"eta is DDIM's noise setting; the {sampler!r} sampler {how} (drop eta or use "
                             "sampler='ddim')")
        if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        if isinstance(prompts, str):
            prompts = [prompts] * (n or 1)
        elif prompts is not None:
            prompts = _prompt_list(prompts)
            if n is not None and n != len(prompts):
                raise ValueError(f"n={n} but {len(prompts)} prompts were given; give one or the other")
        B = len(prompts) if prompts is not None else n
        if not B:
            raise ValueError("nothing to sample: give prompts or n >= 1")
        c = self.unet.cfg
        shape = (B, c.in_channels, c.image_size, c.image_size)
        if x_T is None:
            x_T = randn(shape, generator).to(self.dtype)  # drawn on the generator's device, in float32
        elif tuple(x_T.shape) != shape:
            raise ValueError(f"x_T must have shape {shape} ({B} image(s) of {c.in_channels}x{c.image_size}x"
                             f"{c.image_size}: one per prompt, or n), got {tuple(x_T.shape)}")
        elif x_T.dtype != self.dtype and not autocast_enabled(self.device.type):
            raise TypeError(f"x_T must have the U-Net's dtype {self.dtype}, got {x_T.dtype}")
        fn = self.model_fn(prompts, guidance=guidance, negative_prompt=negative_prompt,
                           guidance_interval=guidance_interval, cads=cads, generator=generator) \
            if self.is_text_conditional else self.model_fn()
        kw = dict(x_T=x_T.to(self.device), steps=steps, generator=generator, callback=callback, progress=progress,
                  clip_x0=clip_x0)
        if sampler == "ddim":
            kw["eta"] = eta
        kw["spacing"] = spacing
        return sample(fn, self.schedule, sampler=sampler, **kw)

    # -------------------------------------------------------------------------------- saving
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, meta) describing this pipeline: U-Net weights, configs, and the text encoder."""
        unet = getattr(self.unet, "_orig_mod", self.unet)  # after pipe.unet = torch.compile(pipe.unet)
        tensors = add_prefix(unet.state_dict(), "unet")
        meta = {"kind": "diffusion", "unet": self.unet.cfg.to_dict(), "schedule": self.schedule.config.to_dict(),
                "prediction": self.prediction, "text": None,
                **{k: v for k, v in self.meta.items() if k in ("dataset", "card", "train")}}
        if self._text_checkpoint is None and self.is_text_conditional and self.text is None:
            raise ValueError(f"cannot save: the U-Net is text-conditional (context_dim {self.unet.cfg.context_dim}) "
                             "but the pipeline has no text encoder, so the checkpoint could not be prompted; "
                             "pass text= (the CLIPModel it was trained with)")
        if self._text_checkpoint is not None or self.text is not None:
            t_tensors, t_meta = self._text_checkpoint or _text_entry(self.text)
            tensors.update(add_prefix(t_tensors, "text"))
            meta["text"] = t_meta
        return tensors, meta

    def save(self, path: str | Path) -> Path:
        """Write an inference-only checkpoint (no optimizer state) of this pipeline's U-Net, text encoder and
        schedule to PATH.{safetensors,json}. After ``train.fit``, build the pipeline on the EMA copy,
        ``out["ema"].model``, as checkpoints.load does for a run: the raw weights sample worse."""
        tensors, meta = self.state()
        return save_checkpoint(path, tensors, meta)


def _prediction(meta: dict) -> str:
    """The checkpoint's prediction: meta["prediction"], else what it was trained with (meta["train"], as
    train.fit wrote it before recording it at the top level), else "eps" (a checkpoint with neither)."""
    top, trained = meta.get("prediction"), (meta.get("train") or {}).get("prediction")
    if top is not None and trained is not None and top != trained:
        raise CheckpointError(f"the checkpoint's prediction is ambiguous: {top!r}, but it was trained with "
                              f"{trained!r} (train.prediction); fix the JSON's 'prediction'")
    return top or trained or "eps"


def pipeline_from_checkpoint(tensors: dict[str, torch.Tensor], meta: dict, device="cpu") -> DiffusionPipeline:
    """Builder for checkpoints of kind "diffusion" (see checkpoints.BUILDERS); uses the EMA weights."""
    check_meta(meta, "diffusion checkpoint metadata")
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
    pipe = DiffusionPipeline(unet, schedule, prediction=_prediction(meta), text=text, meta=meta,
                             text_checkpoint=text_ckpt)
    return pipe.to(device)


def text_cond_fn(text: Any, caption_fn: Callable, p_uncond: float) -> Callable:
    """Training-time conditioning: captions for the batch, each dropped to "" with probability p_uncond.

    caption_fn(images, labels, generator) -> list[str]. Returns cond_fn(x0, labels, generator) -> dict
    with context (B, L, D) and context_mask (B, L) for the U-Net (the text encoder stays frozen).
    """

    def cond_fn(x0: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> dict:
        captions = caption_fn(x0, labels, gen)
        drop = (torch.rand(len(captions), generator=gen, device=generator_device(gen)) < p_uncond).tolist()
        captions = ["" if d else c for c, d in zip(captions, drop)]
        with torch.no_grad():
            ctx, mask = text.text_tokens(captions)
        return {"context": ctx.to(x0.device), "context_mask": mask.to(x0.device)}

    cond_fn.p_uncond = p_uncond  # train.fit checks it against TrainConfig.p_uncond, which the run records
    return cond_fn


def text_training(text: Any, caption_fn: Callable, p_uncond: float) -> dict[str, Any]:
    """Everything ``train.fit`` needs to train a text-conditional U-Net on a frozen CLIPModel ``text``:
    ``fit(unet, schedule, images, cfg, labels=labels, run_dir=..., **text_training(clip, caption_fn, cfg.p_uncond))``.

    Returns {"cond_fn": text_cond_fn(text, caption_fn, p_uncond), "meta": {"text": ...}, "extra_tensors":
    {"text.<name>": ...}}: the conditioning (prompts dropped to "" with probability p_uncond, for
    classifier-free guidance) and the text encoder stored in the run's checkpoints, so that
    ``checkpoints.load(run_dir)`` rebuilds the whole pipeline. caption_fn(images, labels, generator) -> list[str],
    e.g. ``captions.caption_fn("mnist")`` or your own.
    """
    tensors, meta = _text_entry(text)
    return {"cond_fn": text_cond_fn(text, caption_fn, p_uncond), "meta": {"text": meta},
            "extra_tensors": add_prefix({k: v.detach().cpu() for k, v in tensors.items()}, "text")}
