"""Training: the noise-prediction loss, EMA, and a resumable training loop (chapter 04).

DDPM's simplified objective (Ho et al. 2020, eq. 14 / Algorithm 1)::

    t ~ U{0..T-1},  eps ~ N(0, I),  x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
    L_simple = || eps - eps_theta(x_t, t) ||^2

The loop draws batches, t and eps from one seeded ``torch.Generator`` whose state is checkpointed,
so stopping and resuming continues exactly as an uninterrupted run would (on a CPU; on a GPU, some cuDNN and
attention kernels are not deterministic, so two runs, resumed or not, differ slightly).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .checkpoints import add_prefix, check_resumable, load_checkpoint, load_state_strict, save_checkpoint, split_prefix
from .config import ScheduleConfig, TrainConfig, UNetConfig
from .schedules import Schedule, extract, q_sample, v_target
from .train_checks import check_fit_inputs, check_image_range, check_text_meta  # noqa: F401
from .train_state import (  # noqa: F401  (resume_conflicts, lr_at: public)
    RESERVED_META,
    RESUME_MAY_CHANGE,
    TRAIN_PREFIXES,
    StopOnInterrupt,
    TrainingInterrupted,
    bf16_native,
    keeps_caller_state,
    load_optimizer,
    lr_at,
    optimizer_tensors,
    resume_conflicts,
    run_meta,
    warn_if_lr_jumps,
)
from .utils import autocast_enabled, caller_stacklevel, generator_device, progress_disabled, randn

# cond_fn(images, labels, generator) -> extra keyword arguments for the U-Net (e.g. context, context_mask)
CondFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], dict]


def diffusion_loss(model: torch.nn.Module, schedule: Schedule, x0: torch.Tensor, *, prediction: str = "eps",
                   loss_weighting: str = "none", generator: torch.Generator | None = None,
                   t: torch.Tensor | None = None, reduce: bool = True, **cond) -> torch.Tensor:
    """MSE between the network output and its target at random t (DDPM eq. 14).

    x0: (B, C, H, W) in [-1, 1]. prediction: "eps" (target eps), "v" (target
    sqrt(ab) eps - sqrt(1-ab) x0) or "x0". loss_weighting "min_snr": per-sample weight
    min(SNR, 5) / SNR for eps (Hang et al. 2023), which down-weights the easy low-noise steps.
    Returns a scalar, or the per-sample losses (B,) with ``reduce=False``.
    """
    B = x0.shape[0]
    gen_device = generator_device(generator) if generator is not None else x0.device
    if t is None:
        t = torch.randint(0, schedule.T, (B,), generator=generator, device=gen_device).to(x0.device)
    eps = randn(x0.shape, generator, x0.device, x0.dtype)  # drawn on the generator's device
    x_t = q_sample(schedule, x0, t, noise=eps)
    out = model(x_t, t, **cond)
    target = {"eps": eps, "x0": x0}.get(prediction)
    if prediction == "v":
        target = v_target(schedule, x0, t, eps)
    if target is None:
        raise ValueError(f"unknown prediction {prediction!r}; expected 'eps', 'v' or 'x0'")
    per_sample = (out.float() - target.float()).pow(2).mean(dim=(1, 2, 3))  # (B,)
    if loss_weighting == "min_snr":
        snr = extract(schedule.snr, t, x0).flatten()
        w = {"eps": snr.clamp(max=5.0) / snr, "v": snr.clamp(max=5.0) / (snr + 1), "x0": snr.clamp(max=5.0)}
        per_sample = per_sample * w[prediction]
    elif loss_weighting != "none":
        raise ValueError(f"unknown loss_weighting {loss_weighting!r}; expected 'none' or 'min_snr'")
    return per_sample.mean() if reduce else per_sample


class EMA:
    """Exponential moving average of a model's weights: theta_ema <- d theta_ema + (1 - d) theta.

    With ``warmup`` the decay is min(decay, (1 + n) / (10 + n)) after n updates, so early averages
    are not dominated by the random initialisation.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay} (0.999 averages over ~1000 updates)")
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.num_updates = decay, warmup, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates)) if self.warmup else self.decay
        # p_ema <- p_ema + (1 - d) (p - p_ema) for every parameter, in one call (one kernel launch per step on a GPU)
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)


@keeps_caller_state
def fit(model: torch.nn.Module, schedule: Schedule, images: torch.Tensor, cfg: TrainConfig, *,
        labels: torch.Tensor | None = None, cond_fn: CondFn | None = None, run_dir: str | Path | None = None,
        meta: dict | None = None, extra_tensors: dict[str, torch.Tensor] | None = None,
        progress: bool = True, callback: Callable[[dict], None] | None = None) -> dict:
    """Train ``model`` (in place) to predict noise on ``images`` (N, C, H, W) in [-1, 1].

    The model's device is used for the computation; ``images`` may stay on the CPU. With ``run_dir``
    a checkpoint is written atomically every ``cfg.checkpoint_every`` steps and at the end, and an
    existing checkpoint there is resumed (same data order, noise and weights as an unbroken run); ``cfg``
    and ``schedule`` must then be the run's, except ``steps`` and RESUME_MAY_CHANGE, and so must the U-Net
    config (else ValueError).
    Checkpoints record the U-Net config (``model.cfg``), schedule and prediction, so checkpoints.load rebuilds
    the model, with ``meta`` (JSON: dataset, text encoder, ...; see ``run_meta``) and ``extra_tensors`` (e.g. a
    frozen text encoder) merged in. On resume the checkpoint's meta and extra tensors are kept (a given extra
    tensor that differs from the saved one is a ValueError).

    A text-conditional U-Net (cross-attention) takes its prompts from ``cond_fn``, which also drops them to the
    empty prompt with probability ``cfg.p_uncond``: pass ``labels`` and ``**pipeline.text_training(clip,
    caption_fn, cfg.p_uncond)``, which gives cond_fn, and meta and extra_tensors that store the text encoder.
    The inputs are checked first (train_checks.py: shapes against ``model.cfg``, dtypes, labels), and a resumed
    run must get as many images as it was started with.

    The loop seeds its own generator and the global torch RNG (dropout) with ``cfg.seed``; the caller's global
    RNG state (CPU, and CUDA if initialised) is restored on return. ``model`` is returned in eval mode, as is
    the EMA copy ``out["ema"].model``, which is what to sample from (checkpoints.load of the run gives it; it
    is usually the better of the two); call ``model.train()`` before training it further by hand.

    Returns {"loss": [(step, loss)], "ema": EMA, "step": int, "seconds": float, "images_per_s": float}; the
    loss, logged every ``cfg.log_every`` steps, is a bias-corrected moving average of the per-batch loss over
    roughly the last 50 steps (per-batch losses are noisy: every batch draws different t).
    """
    device = next(model.parameters()).device
    schedule = schedule.to(device)  # else extract() copies its constants to the GPU at every step
    ckpt = Path(run_dir) / "checkpoint" if run_dir is not None else None
    fresh = ckpt is None or not ckpt.with_name("checkpoint.json").exists()
    check_fit_inputs(model, images, cfg, labels, cond_fn, fresh)
    if ckpt is not None and fresh:
        check_text_meta(model, meta)
    if cond_fn is not None and labels is None:
        raise ValueError("cond_fn needs labels (one per image)")
    extra_tensors, kept = dict(extra_tensors or {}), None
    if ckpt is not None:
        check_resumable(ckpt, "choose another run_dir")
    saved = None
    if ckpt is not None and ckpt.with_name("checkpoint.json").exists():
        tensors, saved = load_checkpoint(ckpt, "cpu")  # load_state_dict copies to the model's device; AdamW's
        # step counts must stay on the CPU (on a GPU, AdamW reads them back with .item() every step)
        if "train_state" not in saved:
            raise ValueError(f"{ckpt}.json is a {saved.get('kind', 'non-training')!r} checkpoint without a training "
                             "state (an exported model?), so it cannot be resumed: give train another run_dir / "
                             "--out, or start from its weights with --init-from")
        conflicts = resume_conflicts(saved.get("train") or {}, cfg)
        if saved.get("schedule") and ScheduleConfig.from_dict(saved["schedule"]) != schedule.config:
            conflicts.append(("schedule", saved["schedule"], schedule.config.to_dict()))
        if saved.get("unet") and hasattr(model, "cfg") and UNetConfig.from_dict(saved["unet"]) != model.cfg:
            was, now = UNetConfig.from_dict(saved["unet"]).to_dict(), model.cfg.to_dict()
            conflicts += [(f"unet {k}", was[k], now[k]) for k in now if was[k] != now[k]]
        n_saved = saved["train_state"].get("n_images")  # (runs saved before 2026-12-07 did not record it)
        if n_saved is not None and n_saved != images.shape[0]:
            conflicts.append(("images (N)", n_saved, images.shape[0]))
        kept = {k: v for k, v in tensors.items() if not k.startswith(TRAIN_PREFIXES)}
        conflicts += [(f"extra tensor {k}", "(saved)", "(other values)") for k, v in extra_tensors.items()
                      if k in kept and not torch.equal(kept[k], v.to(kept[k].device))]
        if conflicts:
            raise ValueError(f"cannot resume {run_dir} with other settings than the run's: "
                             + "; ".join(f"{k}: saved {a!r}, requested {b!r}" for k, a, b in conflicts)
                             + f". Pass the run's settings (only {', '.join(RESUME_MAY_CHANGE)} may change), "
                             "or another run_dir to start afresh")
    gen = torch.Generator().manual_seed(cfg.seed)  # CPU generator: batches, t, eps, prompt dropout
    torch.manual_seed(cfg.seed)
    if cfg.channels_last:  # before the EMA copy and the optimizer state, whose foreach updates need one layout
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
    history: list[tuple[int, float]] = []
    step, seconds, running = 0, 0.0, None

    if saved is not None:  # resume, the settings being the same (checked above, before the model was touched)
        meta = {**{k: v for k, v in saved.items() if k not in RESERVED_META}, **run_meta(model, schedule, cfg, meta)}
        load_state_strict(model, split_prefix(tensors, "train_unet"), "resume (model)")
        load_state_strict(ema.model, split_prefix(tensors, "unet"), "resume (EMA)")
        load_optimizer(opt, tensors, saved["train_state"]["optimizer"])
        extra_tensors = {**kept, **extra_tensors}
        gen.set_state(tensors["rng.generator"].cpu())
        torch.set_rng_state(tensors["rng.torch"].cpu())
        if device.type == "cuda" and "rng.cuda" in tensors:  # dropout masks on the GPU draw from it
            torch.cuda.set_rng_state(tensors["rng.cuda"].cpu(), device)
        if device.type == "mps" and "rng.mps" in tensors:
            torch.mps.set_rng_state(tensors["rng.mps"].cpu())
        st = saved["train_state"]
        step, seconds, ema.num_updates = st["step"], st["seconds"], st["ema_updates"]
        history = [tuple(h) for h in st["loss_history"]]
        running = st["running_loss"]
        if step >= cfg.steps:  # already finished: nothing to train
            model.eval()
            return {"loss": history, "ema": ema, "step": step, "seconds": seconds, "images_per_s": float("nan")}
        warn_if_lr_jumps(saved.get("train") or {}, cfg, step)

    if kept is None:  # a fresh run (a resumed one keeps the saved entries, above)
        meta = run_meta(model, schedule, cfg, meta)
    train_model = torch.compile(model) if cfg.compile else model
    use_amp = cfg.amp and device.type == "cuda"
    if cfg.amp and not use_amp:
        warnings.warn(f"amp (bf16 autocast) is for CUDA GPUs; training in float32 on {device.type}",
                      stacklevel=caller_stacklevel())
    if use_amp and not bf16_native(device):
        warnings.warn(f"--amp uses bfloat16, which {torch.cuda.get_device_name(device)} only emulates (native from "
                      "Ampere on); training in float32 (without --amp) is likely faster here",
                      stacklevel=caller_stacklevel())

    def save():
        if ckpt is None:
            return
        opt_tensors, opt_meta = optimizer_tensors(opt)
        tensors = {**add_prefix(ema.model.state_dict(), "unet"), **add_prefix(model.state_dict(), "train_unet"),
                   **opt_tensors, **extra_tensors,
                   "rng.generator": gen.get_state(), "rng.torch": torch.get_rng_state()}
        if device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
        if device.type == "mps":
            tensors["rng.mps"] = torch.mps.get_rng_state()
        state = {"step": step, "seconds": seconds, "ema_updates": ema.num_updates, "loss_history": history,
                 "running_loss": running, "optimizer": opt_meta, "n_images": images.shape[0]}
        with stop.saving():  # a second Ctrl-C waits until both files are written
            save_checkpoint(ckpt, tensors, {**meta, "train": cfg.to_dict(), "train_state": state})

    # bf16 autocast with amp; else float32, also inside a caller's autocast (switched off here). Where none is on,
    # no autocast call at all: torch 2.4 refuses "mps" as an autocast device even with enabled=False
    amp_context = (torch.autocast(device.type, dtype=torch.bfloat16) if use_amp
                   else torch.autocast(device.type, enabled=False) if autocast_enabled(device.type)
                   else contextlib.nullcontext())
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=progress_disabled(progress), dynamic_ncols=True)
    start_step, t_start, diverging = step, time.perf_counter(), False
    low = min(history, key=lambda h: h[1]) if history else None  # the lowest smoothed loss so far: (step, loss)
    stop = StopOnInterrupt()  # Ctrl-C, SIGTERM or SIGHUP now end the loop between two steps
    while step < cfg.steps:
        t0 = time.perf_counter()
        idx = torch.randint(0, images.shape[0], (cfg.batch_size,), generator=gen)
        x0 = images[idx].to(device)  # not non_blocking: on MPS it can read the temporary images[idx] after its release
        if cfg.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        cond = cond_fn(x0, labels[idx], gen) if cond_fn is not None else {}
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        with amp_context:  # bf16 autocast with cfg.amp on a GPU; else float32
            loss = diffusion_loss(train_model, schedule, x0, prediction=cfg.prediction,
                                  loss_weighting=cfg.loss_weighting, generator=gen, **cond)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(model)
        step += 1
        seconds += time.perf_counter() - t0
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {step}; lower the learning rate (now {cfg.lr})")
        # moving average of the per-batch loss, bias-corrected as Adam's moments are: m_n = r_n / (1 - 0.98^n) for
        # r_n = 0.98 r_{n-1} + 0.02 loss_n, r_0 = 0, so no early loss (the untrained 1.0) lingers in the curve
        w = 0.02 / (1 - 0.98 ** step)
        running = value if running is None else running + w * (value - running)
        if low is None or running < low[1]:
            low = (step, running)
        if step % cfg.log_every == 0 or step == cfg.steps:
            history.append((step, round(running, 6)))
        if not diverging and running > 10 * low[1]:  # finite but exploding (even from step 2): one warning, no stop
            diverging = True
            warnings.warn(f"the loss rose to {running:.4g} at step {step}, more than 10x its {low[1]:.4g} at "
                          f"step {low[0]}: training is diverging; lower the learning rate (now {cfg.lr:g})",
                          stacklevel=caller_stacklevel())
        bar.set_postfix(loss=f"{running:.4f}", refresh=False)
        bar.update(1)
        if callback is not None:
            callback({"step": step, "loss": value, "model": model, "ema": ema})
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
            save()
        if stop.requested and step < cfg.steps:  # Ctrl-C / SIGTERM / SIGHUP: save the run as it is, then stop
            save()
            bar.close()
            by = "" if stop.name == "SIGINT" else f" by {stop.name}"
            raise TrainingInterrupted(f"training interrupted{by} at step {step}" + (
                f"; the run is saved in {run_dir} and resumes from there" if ckpt else ""), stop.signum)
    bar.close()
    save()
    stop.restore()
    model.eval()
    elapsed = time.perf_counter() - t_start
    ips = (step - start_step) * cfg.batch_size / elapsed if step > start_step else float("nan")
    return {"loss": history, "ema": ema, "step": step, "seconds": seconds, "images_per_s": ips}


@torch.no_grad()
def loss_per_timestep(model: torch.nn.Module, schedule: Schedule, x0: torch.Tensor, ts: list[int], *,
                      prediction: str = "eps", generator: torch.Generator | None = None, **cond) -> list[float]:
    """Mean MSE at each fixed t in ``ts`` (for the "which steps are hard?" plot of chapter 04)."""
    out = []
    for t_val in ts:
        t = torch.full((x0.shape[0],), int(t_val), dtype=torch.long, device=x0.device)
        out.append(diffusion_loss(model, schedule, x0, prediction=prediction, generator=generator, t=t,
                                  **cond).item())
    return out
