"""``diffusion-lite demo``: a one-minute tour that writes pictures a newcomer can open."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import torch

DEMO_PROMPTS = [
    "a handwritten zero", "the digit one", "number two", "a handwritten 3", "the digit four",
    "a thick five", "a handwritten six", "a seven slanting right", "the number eight", "a thin nine",
]
FASHION_PROMPTS = [
    "a t-shirt", "a pair of trousers", "a patterned pullover", "a dress", "a light coat",
    "a sandal", "a dark shirt", "a sneaker", "a bag", "an ankle boot",
]


def run_demo(out: Path, device: str | None = None, seed: int = 0) -> list[Path]:
    """Sample from the shipped models (or, without them, train a tiny model for ~40 s); returns the PNGs."""
    from .checkpoints import list_pretrained, load_pretrained
    from .utils import get_device, source_checkout
    from .viz import save_grid

    dev = get_device(device)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    have = set(list_pretrained())
    t0 = time.perf_counter()
    if "mnist-text2img" in have:
        written += _prompt_grid(load_pretrained("mnist-text2img", dev), DEMO_PROMPTS, out / "demo_text2img.png", seed)
    if "fashion-text2img" in have:
        written += _prompt_grid(load_pretrained("fashion-text2img", dev), FASHION_PROMPTS, out / "demo_fashion.png",
                                seed)
    if "mnist-uncond" in have:
        pipe = load_pretrained("mnist-uncond", dev)
        # DDPM: for this briefly trained model its stochastic steps give cleaner digits than DDIM
        # (FID/floor 1.7 against 2.5 at 100 steps, BENCHMARKS.md section 3)
        print("unconditional: 36 samples from pure noise, 100 DDPM steps ...")
        imgs = pipe.sample(n=36, steps=100, sampler="ddpm", generator=torch.Generator().manual_seed(seed))
        written.append(save_grid(imgs, out / "demo_uncond.png", nrow=6, scale=3))
    if not written:
        written.append(_tiny_live_demo(out, dev, seed))
    print(f"\ndone in {time.perf_counter() - t0:.0f} s. Open the picture(s):")
    for w in written:
        print(f"  {w.resolve()}")
    bindir = Path(sys.executable).parent
    if shutil.which("diffusion-lite") is None and (bindir / "activate").exists():  # run as .venv/bin/... (make demo)
        print(f"\nThe commands below are in {bindir}/: first run  source {bindir / 'activate'}")
    print(next_steps(source_checkout()))
    return written


def _prompt_grid(pipe, prompts: list[str], png: Path, seed: int) -> list[Path]:
    """6 samples per prompt, one row each, guidance 3 and 25 DDIM steps: PNG, and the rows' prompts as PNG_prompts.txt
    (only the picture is returned: what the demo asks the reader to open)."""
    from .checkpoints import dataset_name
    from .files import atomic_write
    from .viz import save_grid

    print(f"text-to-image ({dataset_name(pipe.meta)}): {len(prompts)} prompts x 6 samples, "
          "guidance 3, 25 DDIM steps ...")
    imgs = pipe.sample([p for p in prompts for _ in range(6)], guidance=3.0, steps=25,
                       generator=torch.Generator().manual_seed(seed))
    rows = "Rows, top to bottom (6 samples each):\n" + "\n".join(prompts) + "\n"
    atomic_write(png.with_name(png.stem + "_prompts.txt"), lambda tmp: Path(tmp).write_text(rows, encoding="utf-8"))
    return [save_grid(imgs, png, nrow=6, scale=3)]


def next_steps(root: Path | None) -> str:
    """What to do after the demo: open the course (``root``: the source checkout, None for a wheel install)."""
    if root is not None and (root / "notebooks").is_dir():
        nb = root / "notebooks"
        shown = nb.relative_to(Path.cwd()) if nb.is_relative_to(Path.cwd()) else nb  # "notebooks" from the root
        first = f"Next: read the course, chapter by chapter:  jupyter lab {shown}/"
    else:  # a wheel install: the notebooks live in the source repository only
        first = ("Next: the course's notebooks are in the diffusion-lite source repository (notebooks/), not in a "
                 "pip install: clone it and run `make demo` there")
    return (f"\n{first}\n      or sample yourself:  diffusion-lite sample --checkpoint mnist-text2img "
            "--prompt \"a thick seven\" --n 16 --out seven.png")


def _tiny_live_demo(out: Path, dev: torch.device, seed: int) -> Path:
    """No shipped models: train a tiny U-Net on MNIST for ~40 s and sample from it."""
    from .config import ScheduleConfig, TrainConfig, UNetConfig
    from .data import load_dataset
    from .pipeline import DiffusionPipeline
    from .schedules import Schedule
    from .train import fit
    from .unet import UNet
    from .viz import save_grid

    print("no pretrained models found: training a tiny model for ~40 s (samples will be rough) ...")
    ds = load_dataset("mnist", "train", subset=5000, balanced=True)
    unet = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2, 2), attn_resolutions=())).to(dev)
    schedule = Schedule.from_config(ScheduleConfig("cosine"))
    res = fit(unet, schedule, ds.images, TrainConfig(steps=250, batch_size=64, lr=3e-3, warmup_steps=20,
                                                     ema_decay=0.99, seed=seed))
    pipe = DiffusionPipeline(res["ema"].model, schedule)
    imgs = pipe.sample(n=36, steps=25, generator=torch.Generator().manual_seed(seed))
    return save_grid(imgs, out / "demo_tiny.png", nrow=6, scale=3)
