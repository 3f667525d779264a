"""Small helpers: device choice, seeding, image conversion, the source checkout."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

DEVICE_ENV = "DIFFUSION_LITE_DEVICE"  # e.g. DIFFUSION_LITE_DEVICE=cpu: the notebooks on a Mac's CPU, not its MPS


def get_device(preferred: str | None = None) -> torch.device:
    """cuda, then mps, then cpu; or ``preferred`` ("cpu", "cuda", "cuda:1", "mps"), checked to exist. Without
    ``preferred``, the environment variable DIFFUSION_LITE_DEVICE, when set, chooses instead (the notebooks call
    get_device() with no argument: ``DIFFUSION_LITE_DEVICE=cpu jupyter lab`` keeps them on the CPU).

    Called only by scripts, the CLI and notebooks; library code follows its inputs' device.
    """
    hint, source = " (CLI: --device cpu)", ""
    if preferred in (None, "") and os.environ.get(DEVICE_ENV, "").strip():
        preferred = os.environ[DEVICE_ENV].strip()
        hint = source = f" (the device comes from the environment variable {DEVICE_ENV})"
    if preferred not in (None, "", "auto"):
        dev = check_device(preferred, hint, source)
        if dev.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"unknown device {preferred!r}; expected cpu, cuda[:N] or mps{source}")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_enabled(device_type: str) -> bool:
    """torch.is_autocast_enabled(device_type), or False where this torch has no autocast for the device (torch 2.4
    raises for "mps", which gained autocast in 2.5)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


def check_device(preferred: str | int | torch.device, hint: str = "", source: str = "") -> torch.device:
    """``preferred`` as torch.device reads it (an int is a CUDA index), or a ValueError that says why a CUDA or MPS
    device cannot be used here; other device types are left to torch."""
    try:
        dev = preferred if isinstance(preferred, torch.device) else torch.device(preferred)
    except (RuntimeError, TypeError):  # e.g. "gpu", "CUDA", "cuda:x"
        raise ValueError(f"unknown device {preferred!r}; expected cpu, cuda[:N] or mps{source}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preferred!r} requested but CUDA is not available; use 'cpu'{hint}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {preferred!r} requested but this machine has {torch.cuda.device_count()} "
                         f"GPU(s): cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {preferred!r} requested but MPS is not available; use 'cpu'{hint}")
    return dev


def generator_device(generator: torch.Generator | None) -> torch.device:
    """Where a draw with ``generator`` must happen (torch raises otherwise): its device, or the CPU for None.
    Anything else (a seed such as 0) is a TypeError that says how to make a generator."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)) or None, got "
                        f"{type(generator).__name__} {generator!r}")
    return generator.device if generator is not None else torch.device("cpu")


def randn(shape, generator: torch.Generator | None = None, device: torch.device | str | None = None,
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """N(0, I) of ``shape``, drawn in float32 on the generator's device, then moved to ``device`` (default: cpu)
    and cast to ``dtype`` (default: torch's default dtype).

    torch.randn needs the generator and the output on the same device (a CPU generator with
    device="cuda" raises), so the project draws where the generator lives: a CPU generator gives
    the same numbers whether the model runs on the CPU, a GPU or MPS. It also draws different numbers
    in float64 than in float32, so the draw is always float32: a float64 (or float16) run sees the same
    noise as a float32 one, up to rounding.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    gen_device = generator_device(generator) if generator is not None else device
    x = torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32)
    return x.to(device=device, dtype=dtype if dtype is not None else torch.get_default_dtype())


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU torch.Generator seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (any float) -> uint8 in [0, 255], same shape, on the CPU."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def from_uint8(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [-1, 1]."""
    x = torch.as_tensor(x)
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    return x.float() / 127.5 - 1.0


def progress_disabled(progress: bool) -> bool:
    """tqdm's ``disable`` for a ``progress`` flag: off when asked, or when TQDM_DISABLE is set (CI, nbval)."""
    import os

    return (not progress) or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")


class LogLines:
    """A training callback for logs (the CLI's --quiet): one plain line about every 5% of the run, e.g.
    ``train: step 400/2000 (20%), loss 0.0517 over steps 301-400, 1.4 min, ~5.6 min left``. Takes fit's and
    train_clip's callback dicts ({"step", "loss", ...})."""

    def __init__(self, what: str, total: int, start: int = 0, file=None):
        import time

        self.what, self.total, self.start, self.file = what, total, start, file
        self.every = max(1, total // 20)  # 5% of the whole run, also when resumed (not 5% of what is left)
        self.t0, self.clock, self.losses = time.perf_counter(), time.perf_counter, []

    def __call__(self, info: dict) -> None:
        step = info["step"]
        self.losses.append(float(info["loss"]))
        if step % self.every and step != self.total:
            return
        minutes = (self.clock() - self.t0) / 60
        left = minutes / max(1, step - self.start) * (self.total - step)
        first = step - len(self.losses) + 1
        print(f"{self.what}: step {step}/{self.total} ({step / self.total:.0%}), loss "
              f"{sum(self.losses) / len(self.losses):.4f} over steps {first}-{step}, {minutes:.1f} min, "
              f"~{left:.1f} min left", file=self.file or sys.stdout, flush=True)
        self.losses = []


def caller_stacklevel() -> int:
    """stacklevel for warnings.warn in our caller that names the first frame outside diffusion_lite and torch
    (the user's line, not a decorator of torch's or the package's internals)."""
    inside = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(torch.__file__)))
    frame, level = sys._getframe(2), 2  # 1: our caller, which calls warnings.warn
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def source_checkout(package_dir: str | os.PathLike | None = None) -> Path | None:
    """The root of the diffusion-lite source tree this package runs from, or None for a wheel install.

    A git checkout or an editable install (``pip install -e .``) has data/, notebooks/ and benchmarks/ next to
    the package; a wheel install puts the package in site-packages, whose other folders belong to others.
    ``package_dir``: the diffusion_lite folder to ask about (default: this one).
    """
    root = Path(package_dir or Path(__file__).parent).resolve().parent
    try:
        is_ours = 'name = "diffusion-lite"' in (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if is_ours else None
