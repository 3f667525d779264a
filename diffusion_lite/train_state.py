"""What a training run stores besides the weights, and what it may change when resumed (train.fit).

A run checkpoint holds the model, its EMA copy, the optimiser state and the RNG states (tensor prefixes
TRAIN_PREFIXES), plus a JSON meta: the U-Net config, the schedule and the prediction (so that
checkpoints.load rebuilds the model from the file alone), ``meta["train"]`` (the TrainConfig) and
``meta["train_state"]`` (step, losses). Resuming compares the requested TrainConfig with the saved one;
the learning-rate schedule ``lr_at`` lives here too, since a resume that changes ``steps`` recomputes it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import threading
import warnings
from typing import Any

import torch

from .checkpoints import split_prefix
from .config import TrainConfig
from .schedules import Schedule
from .utils import caller_stacklevel

# TrainConfig fields a resumed run may change: steps (to extend a run) and settings that do not change the result
RESUME_MAY_CHANGE = ("steps", "checkpoint_every", "log_every", "amp", "compile", "channels_last")


def resume_conflicts(saved: dict, cfg: TrainConfig) -> list[tuple[str, Any, Any]]:
    """(field, saved value, requested value) for each field of ``cfg`` that differs from a run's saved
    ``meta["train"]``, except those in RESUME_MAY_CHANGE: resuming with them would silently switch the
    objective (prediction, loss weighting) or the optimisation mid-run."""
    return [(k, saved[k], v) for k, v in cfg.to_dict().items()
            if k not in RESUME_MAY_CHANGE and k in saved and saved[k] != v]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up for ``warmup_steps``, then cosine decay to 10% of ``lr`` at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def warn_if_lr_jumps(saved_train: dict, cfg: TrainConfig, step: int) -> None:
    """A resume with another ``steps`` recomputes the cosine decay for the new total: say what that does to the
    learning rate (extending a finished run raises it from its final 10% of lr back up)."""
    planned = saved_train.get("steps")
    if planned is None or planned == cfg.steps:
        return
    last, planned_next, after = (lr_at(step - 1, cfg.replace(steps=planned)), lr_at(step, cfg.replace(steps=planned)),
                                 lr_at(step, cfg))
    if abs(after - planned_next) > 0.1 * planned_next:  # (during warm-up the total changes nothing)
        warnings.warn(f"the run was planned for {planned} steps and now trains to {cfg.steps}: the learning-rate "
                      f"schedule (cosine decay to 10% of lr at the last step) is recomputed, so the rate goes from "
                      f"{last:.2g} at step {step} to {after:.2g} at step {step + 1}", stacklevel=caller_stacklevel())


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimiser's state as flat tensors ``optim.<param index>.<name>`` and its param_groups (JSON)."""
    sd = opt.state_dict()
    tensors = {f"optim.{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v))
               for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of optimizer_tensors: restore ``opt`` from a checkpoint's tensors and meta."""
    state: dict[int, dict] = {}
    for key, v in split_prefix(tensors, "optim").items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    for p, st in opt.state.items():  # saved contiguous: give each moment its parameter's layout (channels-last),
        for k, v in st.items():     # or AdamW's foreach kernels fall back to one launch per tensor
            if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                st[k] = torch.empty_like(p).copy_(v)


# meta entries fit writes itself: a caller's meta may not set them
RESERVED_META = ("train", "train_state", "format_version", "weights_sha256")
# tensor key prefixes of fit's own state; other tensors of a run checkpoint are extra_tensors (e.g. "text.")
TRAIN_PREFIXES = ("unet.", "train_unet.", "optim.", "rng.")


def run_meta(model: torch.nn.Module, schedule: Schedule, cfg: TrainConfig, meta: dict | None = None) -> dict:
    """The meta of a run's checkpoints besides its training state: ``meta`` with what fit knows on top (the
    schedule, the prediction and, for a model with a ``cfg`` such as UNet, ``unet``), so that checkpoints.load
    rebuilds the model. ``meta`` contradicting those, or setting what fit writes (RESERVED_META), is a ValueError."""
    meta = dict(meta or {})
    known = {"schedule": schedule.config, "prediction": cfg.prediction, "unet": getattr(model, "cfg", None)}
    known = {k: v for k, v in known.items() if isinstance(v, str) or hasattr(v, "from_dict")}
    bad = [k for k in (*RESERVED_META, "kind") if k in meta and (k != "kind" or meta[k] != "diffusion")]
    if bad:
        raise ValueError(f"meta may not set {', '.join(map(repr, bad))}: fit writes those entries itself")
    plain = {k: v if isinstance(v, str) else v.to_dict() for k, v in known.items()}  # as stored in the JSON
    for k, v in known.items():
        given = meta.get(k)
        if given is not None and (v.from_dict(given) if isinstance(given, dict) and k != "prediction" else given) != v:
            what = {"unet": "the model's config (model.cfg)", "schedule": "the schedule's config"}.get(k, "cfg." + k)
            raise ValueError(f"meta[{k!r}] = {given!r} contradicts {what}, {plain[k]!r}; fit records {k!r} "
                             "itself: drop it from meta or pass the matching value")
    return {**meta, **plain, "kind": "diffusion"}


# The signals that stop training cleanly: Ctrl-C, and what job schedulers, `timeout`, `docker stop` and a closed
# terminal send (SLURM sends SIGTERM at the time limit). SIGHUP does not exist on Windows.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class TrainingInterrupted(KeyboardInterrupt):
    """fit stopped by a signal after saving the run; ``signum`` is the signal (a shell reports 128 + signum)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


class StopOnInterrupt:
    """Ctrl-C (SIGINT), SIGTERM or SIGHUP during training sets ``requested`` (and ``signum``) instead of
    stopping mid-step, so that fit stops at the next step boundary with a consistent model and checkpoint; a
    second signal raises KeyboardInterrupt at once, except while a checkpoint is written (``saving()``): then it
    is raised when the files are complete. Installed only in the main thread (the only one where
    Python runs signal handlers); a signal ignored when training starts stays ignored (``nohup``'s SIGHUP, SIGINT
    in a background job); ``restore()`` puts the previous handlers back (fit's decorator also does, however fit
    ends)."""

    def __init__(self):
        self.requested, self.signum, self._previous = False, None, {}
        self._saving, self._forced = False, False
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) is signal.SIG_IGN:  # `nohup` (SIGHUP), a background job (SIGINT): the
                    continue  # user asked for this signal not to stop the program, so it does not stop training
                self._previous[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum, frame):
        if self.requested:
            if self._saving:  # a second Ctrl-C during the save waits for it: the run ends with a whole checkpoint
                self._forced = True
                return
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum

    @contextlib.contextmanager
    def saving(self):
        """Hold every signal while the block writes a checkpoint; a second one received meanwhile raises
        KeyboardInterrupt once the block is done (the files are then whole)."""
        self._saving, self._forced = True, False
        try:
            yield
        finally:
            self._saving = False
        if self._forced:
            raise KeyboardInterrupt

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "interrupt"

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


def bf16_native(device: torch.device) -> bool:
    with torch.cuda.device(device):  # is_bf16_supported asks the current GPU
        return torch.cuda.is_bf16_supported(including_emulation=False)


def keeps_caller_state(fn):
    """Run ``fn`` inside torch.random.fork_rng: the global RNG state (CPU, CUDA if initialised, and MPS) that
    ``fn`` reseeds is the caller's again afterwards, and so are the signal handlers (see StopOnInterrupt)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        mps_state = torch.mps.get_rng_state() if torch.backends.mps.is_available() else None
        main = threading.current_thread() is threading.main_thread()
        handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if main else {}
        try:
            with torch.random.fork_rng(devices=devices):
                return fn(*args, **kwargs)
        finally:
            if mps_state is not None:  # fork_rng covers the CPU and CUDA generators only
                torch.mps.set_rng_state(mps_state)
            for sig, handler in handlers.items():
                if handler is not None:  # None: set outside Python, cannot be put back
                    signal.signal(sig, handler)
    return wrapper
