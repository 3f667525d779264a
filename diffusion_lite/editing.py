"""Editing an image instead of drawing one from noise (chapter 08, section 6): image to image and inpainting.

Image to image (SDEdit, Meng et al. 2022) noises a given image x_0 to an intermediate step with the forward
process's closed form, DDPM eq. (4), and runs the usual reverse chain from there::

    x_{t_start} = sqrt(alpha_bar_{t_start}) x_0 + sqrt(1 - alpha_bar_{t_start}) eps        (q_sample)

``strength`` in (0, 1] chooses t_start, as in diffusers' image-to-image pipelines: of a sampler's grid of
``steps`` time steps (``sampling.timesteps``) the last int(strength * steps) are run (at least one, where
diffusers refuses 0), so strength 1 starts from (almost) pure noise and forgets the image, and a small strength
keeps its layout and changes details. Strength is a share of the grid, not of t: 0.6 of 15 steps starts at
t = 571 on the even grid but at t = 862 on the log-SNR one, which crowds its steps near T. With
a text model's guided ``model_fn`` the prompt decides what the image becomes: a 3 at strength 0.6 under "the
digit eight" keeps its slant and thickness and becomes an 8.

Inpainting regenerates only where ``mask`` is 1 and keeps the image where it is 0. After every step the known
pixels are replaced by the given image noised to the new step with the same eps as at the start (the
"replacement" method, as Ho et al. 2022 named it; Song et al. 2021, appendix I.2, call it imputation). The
known pixels keep the start's eps at every step, as in diffusers' inpainting pipelines (RePaint draws it
afresh), and the output equals x_0 exactly where ``mask`` is 0.
The fill is not always consistent with what surrounds it: the masked region can commit to its content while
the known pixels are still mostly noise. ``resample=r`` takes each step r times, noising forward in between
(RePaint, Lugmayr et al. 2022), which lets the two harmonise at r times the model calls; for the exact
denoiser of two images (tests/test_editing.py; 2,048 starting noises, 20 steps) DDIM completes the missing
half consistently from 86% of them with r = 1, 98% with r = 2 and all with r = 5 (DDPM from 93% with r = 1).
The U-Net is an ordinary one: nothing here was trained for editing.

=============  ===============  ===================================================
symbol         code             meaning
=============  ===============  ===================================================
x_0            ``x0``           the image to edit, (B, C, H, W) in [-1, 1]
m              ``mask``         1 = regenerate, 0 = keep; broadcast to x0's shape
t_start        ``grid[0]``      where the chain starts: the strength-th part of the grid
=============  ===============  ===================================================
"""

from __future__ import annotations

import numbers
import warnings

import torch

from .sampling import Callback, ModelFn, _loop, step_function, timesteps
from .schedules import Schedule, q_sample
from .utils import caller_stacklevel, randn


def edit_timesteps(schedule: Schedule, steps: int, strength: float, spacing: str = "linspace") -> list[int]:
    """The part of ``timesteps(schedule, steps, spacing)`` an edit of this ``strength`` runs: its last
    int(strength * steps) entries, at least one (diffusers' img2img convention). Cosine, T = 1000, 10 steps,
    strength 0.5: 444, 333, 222, 111, 0; 0.75 runs 7 of the 10."""
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1] (1: start from noise, small: keep most of the image), "
                         f"got {strength!r}")
    ts = timesteps(schedule, steps, spacing)
    return ts[-max(1, int(strength * steps + 1e-9)):]  # + 1e-9: 0.7 * 10 is 6.999... in floating point


HALVES = ("top", "bottom", "left", "right")  # half_mask's names: the half of the image to regenerate


def half_mask(name: str, size: int) -> torch.Tensor:
    """(1, 1, size, size) float mask that regenerates one half of a square image (1) and keeps the other (0)."""
    if name not in HALVES:
        raise ValueError(f"unknown half {name!r}; expected one of {', '.join(HALVES)}")
    mask, h = torch.zeros(1, 1, size, size), size // 2
    {"top": mask[..., :h, :], "bottom": mask[..., h:, :], "left": mask[..., :, :h],
     "right": mask[..., :, h:]}[name].fill_(1)
    return mask


def _check_image(x0, what="x0") -> None:
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
        got = x0.dtype if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise TypeError(f"{what} must be a float tensor (B, C, H, W) in [-1, 1], got {got}"
                        + (" (uint8 images: utils.from_uint8)" if got == torch.uint8 else ""))
    if x0.dim() != 4:
        hint = f" (one image: {what}[None])" if x0.dim() == 3 else ""
        raise ValueError(f"{what} must be (B, C, H, W), got shape {tuple(x0.shape)}{hint}")
    lo, hi = x0.min().item(), x0.max().item()
    if not (lo >= -1.001 and hi <= 1.001):  # also NaN
        raise ValueError(f"{what} must be in [-1, 1] (the models' pixel range), got values in [{lo:.3g}, {hi:.3g}]")
    if lo >= 0 and hi > 0:
        warnings.warn(f"no pixel of {what} is below 0 (values in [{lo:.3g}, {hi:.3g}]): are the images in [0, 1]? "
                      "The models work in [-1, 1] (x * 2 - 1)", stacklevel=caller_stacklevel())


def _check_mask(mask, x0: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a tensor (1 = regenerate, 0 = keep), got {type(mask).__name__}")
    try:
        fits = mask.dim() == 4 and torch.broadcast_shapes(mask.shape, x0.shape) == x0.shape
    except RuntimeError:  # not broadcastable at all
        fits = False
    if not fits:
        raise ValueError(f"mask must broadcast to the image's shape {tuple(x0.shape)}, e.g. (B or 1, 1, H, W); "
                         f"got {tuple(mask.shape)}")
    mask = mask.to(device=x0.device, dtype=x0.dtype)
    lo, hi = mask.min().item(), mask.max().item()
    if not (lo >= 0 and hi <= 1):
        hint = " (a 0/255 image mask: mask / 255)" if hi > 1 else ""
        raise ValueError(f"mask values must be in [0, 1] (1 = regenerate, 0 = keep), got [{lo:g}, {hi:g}]{hint}")
    return mask


@torch.no_grad()
def img2img(model_fn: ModelFn, schedule: Schedule, x0: torch.Tensor, *, strength: float | None = None,
            mask: torch.Tensor | None = None, resample: int = 1, steps: int = 50, sampler: str = "ddim",
            eta: float = 0.0, generator: torch.Generator | None = None, callback: Callback | None = None,
            clip_x0: bool = True, progress: bool = True, spacing: str = "linspace") -> torch.Tensor:
    """Edit x0 (B, C, H, W) in [-1, 1]: noise it to the step ``strength`` picks (``edit_timesteps``; default
    0.6, and 1 with a mask, so the masked part starts from noise: a lower strength keeps it as a hint) and denoise
    with ``sampler`` ("ddim", "ddpm" or "dpm++2m", as ``sampling.sample``) and ``model_fn``; with ``mask``
    (broadcast to x0's shape, 1 = regenerate, 0 = keep), only the masked pixels change (inpainting), and
    ``resample`` > 1 repeats each step to harmonise the fill with the kept pixels (RePaint; DDIM and DDPM). The noise
    eps is drawn with ``generator`` on its device, like x_T in the samplers. steps: the full grid's length, of
    which int(strength * steps) are run. Returns the edited images (B, C, H, W), roughly in [-1, 1]."""
    _check_image(x0)
    mask = None if mask is None else _check_mask(mask, x0)
    if isinstance(resample, bool) or not isinstance(resample, numbers.Integral) or resample < 1:
        raise ValueError(f"resample must be an integer >= 1 (1: no resampling), got {resample!r}")
    if resample > 1 and (mask is None or sampler == "dpm++2m"):
        raise ValueError("resample > 1 needs a mask (it is for inpainting) and sampler 'ddim' or 'ddpm' "
                         "(DPM-Solver++ extrapolates from the step before, which resampling repeats)")
    strength = (0.6 if mask is None else 1.0) if strength is None else strength
    grid = edit_timesteps(schedule, steps, strength, spacing)
    eps = randn(x0.shape, generator, x0.device, x0.dtype)
    x_start = q_sample(schedule, x0, grid[0], noise=eps)  # (B, C, H, W): x0 noised to t_start

    def keep_known(x, t_next):  # the known pixels: x0 itself at the end, else x0 noised to t_next with eps
        known = x0 if t_next < 0 else q_sample(schedule, x0, t_next, noise=eps)
        return mask * x + (1 - mask) * known.to(x.dtype)

    step = step_function(sampler, schedule, eta=eta, clip_x0=clip_x0)
    if resample > 1:
        step = _resampling(step, model_fn, schedule, keep_known, resample, generator, x0.dtype)
    return _loop(step, model_fn, schedule, None, x_start, len(grid), generator, callback, progress, None, None,
                 f"{sampler.upper()} edit", grid=grid, after_step=None if mask is None else keep_known)


def _resampling(step, model_fn, schedule, keep_known, resample, generator, model_dtype):
    """RePaint's resampling (Lugmayr et al. 2022, Algorithm 1, jump length 1): each step t -> t_prev is taken
    ``resample`` times; between two, the known pixels are put back and x_{t_prev} is noised forward to t again,
    x_t = sqrt(ab_t / ab_prev) x_prev + sqrt(1 - ab_t / ab_prev) z, so the network sees the known pixels
    and its own fill at the same noise level once more and can harmonise them. ``resample`` model calls per step."""
    def resampling_step(x, t, t_prev, eps_hat, noise):
        t0, p0 = int(t[0]), int(t_prev[0])
        x_prev, x0_hat = step(x, t, t_prev, eps_hat, noise)
        for _ in range(resample - 1 if p0 >= 0 else 0):  # the last step, to x_0, is taken once
            ratio = schedule.alpha_bar[t0] / schedule.alpha_bar[p0]  # alpha_bar_t / alpha_bar_prev, < 1
            z = randn(x.shape, generator, x.device, x.dtype)
            x = ratio.sqrt().to(x.dtype) * keep_known(x_prev, p0) + (1 - ratio).sqrt().to(x.dtype) * z  # back to t
            eps_hat = model_fn(x.to(model_dtype), t).to(x.dtype)  # the model sees x0's dtype (no_grad: img2img)
            x_prev, x0_hat = step(x, t, t_prev, eps_hat, randn(x.shape, generator, x.device, x.dtype))
        return x_prev, x0_hat

    return resampling_step


def inpaint(model_fn: ModelFn, schedule: Schedule, x0: torch.Tensor, mask: torch.Tensor, **kwargs) -> torch.Tensor:
    """Regenerate x0 where ``mask`` is 1 and keep it where it is 0: ``img2img`` with a mask, by default at
    strength 1 (the masked region starts from noise); other keywords as img2img's."""
    if mask is None:
        raise ValueError("inpaint needs a mask (1 = regenerate, 0 = keep); for a whole-image edit use img2img")
    return img2img(model_fn, schedule, x0, mask=mask, **kwargs)


def edit(pipe, x0: torch.Tensor, prompts: str | list[str] | None = None, *, strength: float | None = None,
         mask: torch.Tensor | None = None, guidance: float | None = None, negative_prompt=None,
         guidance_interval: tuple[int, int] | None = None, cads=None, generator: torch.Generator | None = None,
         **kwargs) -> torch.Tensor:
    """``img2img`` with a pipeline's model (strength: default 0.6, 1 with a mask): x0 (B, C, H, W) in [-1, 1] on
    any device (moved to the model's). A text pipeline takes prompts (one str for every image, or a list, one per
    image), guidance, negative_prompt, guidance_interval and cads as ``pipe.model_fn`` does; an unconditional one
    refuses them. Other keywords (steps, sampler, eta, spacing, callback, progress, clip_x0) as img2img's. Returns
    (B, C, H, W) on the model's device."""
    if not isinstance(x0, torch.Tensor):
        _check_image(x0)  # the error; img2img checks the rest
    x0 = x0.to(device=pipe.device, dtype=pipe.dtype)
    if pipe.is_text_conditional:
        prompts = [prompts] * x0.shape[0] if isinstance(prompts, str) else prompts
        if prompts is None or len(prompts) != x0.shape[0]:
            raise ValueError(f"give one prompt for all {x0.shape[0]} image(s), or one per image; got "
                             f"{'none' if prompts is None else len(prompts)}")
    fn = pipe.model_fn(prompts, guidance=guidance, negative_prompt=negative_prompt,
                       guidance_interval=guidance_interval, cads=cads, generator=generator)
    return img2img(fn, pipe.schedule, x0, strength=strength, mask=mask, generator=generator, **kwargs)
