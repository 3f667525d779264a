"""Contrastive training of the small CLIP (chapter 06): the loop around clip.clip_loss.

    clip = CLIPModel.for_dataset("mnist")
    losses = train_clip(clip, load_dataset("mnist"), steps=2000, generator=torch.Generator().manual_seed(0))

Each step draws a batch of images, one caption per image (captions.py: class words plus measured
attributes), and minimises the symmetric InfoNCE loss of the B x B similarity matrix (Radford et al.
2021, Fig. 3) with AdamW.

Ctrl-C, SIGTERM or SIGHUP end the loop between two steps (train_state.StopOnInterrupt, as train.fit does).
With ``checkpoint=STEM`` the run is then saved atomically in STEM.safetensors + STEM.json (the weights, AdamW's
state, the learning-rate schedule, the generators' states and the place in the data; meta["kind"] RUN_KIND, so
it cannot be mistaken for a finished encoder), and calling train_clip again with the same STEM and settings
continues it: the result is bit-identical to an uninterrupted run (on a CPU; GPU kernels are not all
deterministic, so there any two runs differ slightly).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoints import add_prefix, check_resumable, load_checkpoint, load_state_strict, save_checkpoint, split_prefix
from .clip import CLIPModel, clip_loss
from .metrics import check_images
from .train_state import StopOnInterrupt, TrainingInterrupted, keeps_caller_state, load_optimizer, optimizer_tensors
from .utils import caller_stacklevel, generator_device, progress_disabled

RUN_KIND = "clip-partial"  # meta["kind"] of a train_clip run checkpoint: checkpoints.load refuses to build it


@keeps_caller_state
def train_clip(model: CLIPModel, dataset, *, steps: int = 1000, batch_size: int = 256, lr: float = 2e-3,
               weight_decay: float = 0.05, warmup_steps: int = 50, captions: Callable | None = None,
               p_attribute: float | None = None, dataset_name: str | None = None, positives: str = "diagonal",
               generator: torch.Generator | None = None,
               device: str | torch.device | None = None, progress: bool = True, checkpoint: str | Path | None = None,
               checkpoint_every: int | None = None, meta: dict | None = None,
               callback: Callable[[dict], None] | None = None) -> list[float]:
    """Train contrastively in place; returns the loss of every step.

    dataset: has ``.images`` (N, C, S, S) in [-1, 1] and ``.labels`` (N,) (e.g. data.load_dataset), or is an
    (images, labels) tuple. captions(images, labels, generator) -> list[str]; default
    captions.caption_fn(dataset_name, p_attribute) (default ``dataset.name``; p_attribute: the share of captions
    with attribute words, default captions.default_p_attribute, 0.5 for MNIST and Fashion-MNIST). AdamW with linear
    warmup and cosine decay to 10% of lr; batches and captions are drawn with ``generator``; 1 <= batch_size <= N.
    After each step logit_scale is clamped to [0, ln 100], as in OpenAI's CLIP (forward's clamp has no gradient
    beyond ln 100). positives: "diagonal" (CLIP) or "label" (every same-class pair is a match; see clip.py's module
    docstring). The model is moved to ``device`` if given, else it trains where it is.

    Ctrl-C, SIGTERM or SIGHUP stop training after the current step with TrainingInterrupted (a KeyboardInterrupt;
    ``.signum`` is the signal). checkpoint: a stem; the run is saved there when stopped so, every
    ``checkpoint_every`` steps and at the end, and a run saved there is resumed (its losses are returned too):
    ``steps`` may change, the other settings, the model's config and the dataset size must be the run's (else
    ValueError). ``meta`` (JSON) is stored in the checkpoint. callback({"step", "loss", "model"}) runs after
    each step. As train.fit, the caller's global RNG state and signal handlers are restored on return.
    """
    from .captions import caption_fn, check_p_attribute

    images, labels = (dataset.images, dataset.labels) if hasattr(dataset, "images") else dataset
    if positives not in ("diagonal", "label"):
        raise ValueError(f"positives must be 'diagonal' or 'label', got {positives!r}")
    name = dataset_name or getattr(dataset, "name", None)
    if captions is None:
        if name is None:
            raise ValueError("give dataset_name (or a captions function) for a dataset without .name")
        p_attribute = check_p_attribute(p_attribute, name)
        captions = caption_fn(name, p_attribute)
    elif p_attribute is not None:
        raise ValueError("p_attribute sets the default captions; with your own captions function, set it there")
    if steps < 1 or not 1 <= batch_size <= len(images):
        raise ValueError(f"need steps >= 1 and 1 <= batch_size <= N = {len(images)} (the dataset size), "
                         f"got steps={steps}, batch_size={batch_size}")
    if checkpoint_every is not None and (checkpoint is None or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every={checkpoint_every} needs a checkpoint stem and a positive number")
    check_images(images)
    if device is not None:
        model.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}],
                            lr=lr, betas=(0.9, 0.98))
    lr_at = lambda s: min(1.0, (s + 1) / max(1, warmup_steps)) * (0.55 + 0.45 * math.cos(math.pi * s / steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    settings = {"steps": steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                "warmup_steps": warmup_steps, "positives": positives, "dataset": name, "n_images": len(images),
                "p_attribute": p_attribute,  # None: a captions function of the caller's
                "generator": None if generator is None else generator_device(generator).type}
    run = _ClipRun(checkpoint, model, opt, sched, generator, settings, meta, checkpoint_every, callback)
    model.train()
    perm = lambda: torch.randperm(len(images), generator=generator, device=generator_device(generator)).cpu()
    history, order, pos = run.start() or ([], perm(), 0)  # or, resuming a saved run, where it stopped
    bar = tqdm(range(len(history), steps), initial=len(history), total=steps, desc="clip",
               disable=progress_disabled(progress))
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
        if not math.isfinite(history[-1]):  # as train.fit: a NaN encoder must not be saved as finished
            raise FloatingPointError(f"the contrastive loss became {history[-1]} at step {len(history)}; lower the "
                                     f"learning rate (now {lr:g})")
        if len(history) % 10 == 0:
            bar.set_postfix(loss=f"{sum(history[-10:]) / 10:.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
        run.step_done(history, order, pos)  # Ctrl-C ends the run here (saved, with checkpoint=)
    run.finish(history, order, pos)  # the last checkpoint
    model.eval()
    return history


class _ClipRun:
    """train_clip's bookkeeping: stop between two steps on a signal, and save (checkpoint stem given) or resume
    the run. The checkpoint holds tensors ``clip.*`` (weights), ``optim.*``, ``rng.*`` and ``data.order`` (this
    epoch's permutation), and meta: the caller's ``meta``, ``config`` and ``tokenizer`` (the model's),
    ``train`` (train_clip's settings) and ``train_state`` (step, seconds, position in ``data.order``, the loss
    of every step, the optimizer's param_groups and the learning-rate scheduler's state)."""

    def __init__(self, stem, model: CLIPModel, opt, sched, generator, settings: dict, meta: dict | None,
                 every: int | None, callback: Callable[[dict], None] | None):
        self.stem = None if stem is None else Path(str(stem).removesuffix(".safetensors").removesuffix(".json"))
        self.model, self.opt, self.sched, self.generator = model, opt, sched, generator
        self.settings, self.every, self.callback = settings, every, callback
        self.meta, self.saved, self.seconds, self.stop = dict(meta or {}), None, 0.0, None
        if any(k in _OWN_META for k in self.meta):
            raise ValueError(f"meta may not set {', '.join(repr(k) for k in self.meta if k in _OWN_META)}: train_clip "
                             "writes those entries itself")
        if self.stem is not None:
            check_resumable(self.stem, "choose another checkpoint")
        if self.stem is not None and Path(f"{self.stem}.json").exists():
            self.tensors, self.saved = load_checkpoint(self.stem, "cpu")
            self._check(self.saved)
            self.meta = {**{k: v for k, v in self.saved.items() if k not in _OWN_META}, **self.meta}

    def _check(self, saved: dict) -> None:
        if saved.get("kind") != RUN_KIND:
            raise ValueError(f"{self.stem}.json is a {saved.get('kind')!r} checkpoint, not a train_clip run, so it "
                             "cannot be resumed: give another checkpoint stem")
        missing = [k for k in ("config", "tokenizer", "train_state") if not isinstance(saved.get(k), dict)]
        if missing:
            raise ValueError(f"{self.stem}.json lacks {', '.join(missing)} (was it edited?), so the run cannot be "
                             "resumed: restore it from a copy, or give another checkpoint stem to start afresh")
        then, now = saved.get("train") or {}, self.settings
        if "p_attribute" not in then and now.get("p_attribute") is not None:
            from .captions import default_p_attribute  # a run from before 2026-12-07: the default share

            then = {**then, "p_attribute": default_p_attribute(then.get("dataset") or now["dataset"])}
        conflicts = [(k, then[k], v) for k, v in now.items() if k != "steps" and k in then and then[k] != v]
        config = _plain(self.model.cfg.to_dict())  # as stored in the JSON (tuples become lists)
        conflicts += [(f"config {k}", v, config.get(k)) for k, v in saved["config"].items() if config.get(k) != v]
        if saved["tokenizer"] != _plain(self.model.tokenizer.to_dict()):
            conflicts.append(("tokenizer", "(the run's)", "(another vocabulary)"))
        if conflicts:
            raise ValueError(f"cannot resume {self.stem} with other settings than the run's: "
                             + "; ".join(f"{k}: saved {a!r}, requested {b!r}" for k, a, b in conflicts)
                             + ". Pass the run's settings (only steps may change), or another checkpoint stem to "
                             "start afresh")
        done, steps = saved["train_state"]["step"], now["steps"]
        if done > steps:
            raise ValueError(f"{self.stem} is already trained to step {done}, past steps={steps}: pass steps >= {done}")
        if then.get("steps", steps) != steps and done < steps:
            warnings.warn(f"the run was planned for {then['steps']} steps and now trains to {steps}: the learning-rate "
                          f"schedule (cosine decay to 10% of lr at the last step) is recomputed from step {done + 1}",
                          stacklevel=caller_stacklevel())

    def start(self) -> tuple[list[float], torch.Tensor, int] | None:
        """Install the signal handlers; for a resumed run, restore its state and return (losses, data order, the
        position in it), else None."""
        self.stop, self.t0 = StopOnInterrupt(), time.perf_counter()
        if self.saved is None:
            return None
        t, st = self.tensors, self.saved["train_state"]
        load_state_strict(self.model, split_prefix(t, "clip"), f"resume {self.stem} (CLIP model)")
        load_optimizer(self.opt, t, st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        if self.generator is not None:
            self.generator.set_state(t["rng.generator"])
        torch.set_rng_state(t["rng.torch"])  # the global RNG: draws of a run without a generator
        self.seconds = st["seconds"]
        return list(st["loss_history"]), t["data.order"], st["pos"]

    def save(self, history: list[float], order: torch.Tensor, pos: int) -> None:
        if self.stem is None:
            return
        opt_tensors, opt_meta = optimizer_tensors(self.opt)
        tensors = {**add_prefix(self.model.state_dict(), "clip"), **opt_tensors, "data.order": order,
                   "rng.torch": torch.get_rng_state()}
        if self.generator is not None:
            tensors["rng.generator"] = self.generator.get_state()
        state = {"step": len(history), "seconds": self.seconds + time.perf_counter() - self.t0, "pos": pos,
                 "loss_history": history, "optimizer": opt_meta, "scheduler": self.sched.state_dict()}
        meta = {**self.meta, "kind": RUN_KIND, "config": self.model.cfg.to_dict(),
                "tokenizer": self.model.tokenizer.to_dict(), "train": self.settings, "train_state": state}
        with self.stop.saving():  # a second Ctrl-C waits until both files are written
            save_checkpoint(self.stem, tensors, meta)

    def step_done(self, history: list[float], order: torch.Tensor, pos: int) -> None:
        """After each step: the callback; then, before the last step, save the run every ``every`` steps, and after
        Ctrl-C / SIGTERM / SIGHUP save it and raise TrainingInterrupted."""
        step, steps = len(history), self.settings["steps"]
        if self.callback is not None:
            self.callback({"step": step, "loss": history[-1], "model": self.model})
        if step < steps and self.stop.requested:
            self.save(history, order, pos)
            by = "" if self.stop.name == "SIGINT" else f" by {self.stop.name}"
            where = f"; the run is saved in {self.stem}.safetensors and {self.stem}.json" if self.stem else ""
            raise TrainingInterrupted(f"training interrupted{by} at step {step} of {steps}{where}", self.stop.signum)
        if step < steps and self.every and step % self.every == 0:
            self.save(history, order, pos)

    def finish(self, history: list[float], order: torch.Tensor, pos: int) -> None:
        self.save(history, order, pos)  # a signal during the save is held until both files are written
        self.stop.restore()


_OWN_META = ("kind", "config", "tokenizer", "train", "train_state", "format_version", "weights_sha256")


def _plain(d: dict) -> dict:
    return json.loads(json.dumps(d))
