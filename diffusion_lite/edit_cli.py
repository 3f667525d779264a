"""``diffusion-lite edit``: image to image and inpainting from the command line (editing.py; chapter 08,
section 6). Inputs are the .npz files ``sample`` writes or image files of the model's size; the mask is a
half of the image by name or a greyscale image (white = regenerate)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from .cli import CLIError, _setup

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _read_image_file(path: Path, channels: int, size: int):
    """(1, C, H, W) uint8 from an image file, in greyscale or RGB as the model wants; the size must match."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise CLIError(f"{path} could not be read as an image ({e})") from None
    if arr.shape[:2] != (size, size):
        raise CLIError(f"{path} is {arr.shape[1]}x{arr.shape[0]} pixels; this model edits {size}x{size} images: "
                       "resize it first (nothing is resized for you)")
    return arr[None, None] if channels == 1 else arr.transpose(2, 0, 1)[None]


def read_images(paths: list[str], channels: int, size: int):
    """The --images files as one float tensor (N, C, H, W) in [-1, 1], plus their sources (one per image)."""
    import numpy as np
    import torch

    from .utils import from_uint8

    chunks, sources = [], []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise CLIError(f"--images {path}: no such file" if not path.exists() else f"--images {path} is not a file")
        suffix = path.suffix.lower()
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if "images" not in f.files:
                    raise CLIError(f"{path} has no 'images' array (expected a file from `diffusion-lite sample "
                                   f"--out FILE.npz`; it has {', '.join(f.files) or 'nothing'})")
                arr = f["images"]
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (channels, size, size):
                raise CLIError(f"{path}: 'images' is {arr.dtype} of shape {arr.shape}; this model edits uint8 "
                               f"(N, {channels}, {size}, {size}) arrays")
        elif suffix in IMAGE_SUFFIXES:
            arr = _read_image_file(path, channels, size)
        else:
            raise CLIError(f"--images {path}: expected .npz (from `sample`) or an image file "
                           f"({', '.join(IMAGE_SUFFIXES)})")
        chunks.append(torch.from_numpy(np.array(arr)))  # a copy: PIL's arrays are read-only
        sources += [f"{path.name}[{i}]" if suffix == ".npz" else path.name for i in range(len(arr))]
    return from_uint8(torch.cat(chunks)), sources


def make_mask(spec: str, size: int):
    """(1, 1, size, size) float mask, 1 = regenerate: a half by name (editing.HALVES) or a greyscale image,
    thresholded at 128 (white: regenerate)."""
    import torch

    from .editing import HALVES, half_mask

    if spec in HALVES:
        return half_mask(spec, size)
    path = Path(spec)
    if not path.is_file():
        raise CLIError(f"--mask {spec}: expected one of {', '.join(HALVES)} (the half to regenerate) or a greyscale "
                       "image file (white = regenerate, black = keep)")
    arr = _read_image_file(path, 1, size)  # (1, 1, size, size) uint8, greyscale (alpha ignored)
    if arr.max() < 128:
        raise CLIError(f"--mask {path} has no white pixel (values 0-{arr.max()}): white (255) marks what to "
                       "regenerate, black (0) what to keep; a mask saved as 0/1 needs scaling to 0/255")
    return torch.from_numpy(arr >= 128).float()  # white or light grey: regenerate; a JPEG's near-black: keep


def cmd_edit(args) -> None:
    import numpy as np
    import torch

    from .checkpoints import load
    from .editing import edit, edit_timesteps
    from .files import atomic_write
    from .guidance_cli import _cads, check_guidance_args, check_something_to_steer, one_negative_prompt
    from .pipeline import DEFAULT_GUIDANCE
    from .utils import to_uint8
    from .viz import save_grid

    device = _setup(args)
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".npz"):
        raise CLIError(f"--out must end in .png (inputs and edits side by side) or .npz, got {out.name!r}")
    pipe = load(args.checkpoint, device)
    if not hasattr(pipe, "sample"):
        raise CLIError(f"{args.checkpoint} is not a diffusion model checkpoint")
    c = pipe.unet.cfg
    images, sources = read_images(args.images, c.in_channels, c.image_size)
    prompts = args.prompt or []
    if prompts and not pipe.is_text_conditional:
        raise CLIError("this checkpoint is unconditional: it takes no --prompt")
    if pipe.is_text_conditional and len(prompts) not in (1, len(images)):
        raise CLIError(f"give --prompt once (for all {len(images)} images) or once per image; got {len(prompts)}")
    args.negative_prompt = one_negative_prompt(args)
    mask = None if args.mask is None else make_mask(args.mask, c.image_size)
    strength = args.strength = args.strength if args.strength is not None else (1.0 if mask is not None else 0.6)
    grid = edit_timesteps(pipe.schedule, args.steps, strength, args.spacing) if args.steps <= pipe.schedule.T \
        else None  # (a --steps above T is check_guidance_args' error)
    check_guidance_args(args, pipe, grid)
    check_something_to_steer(args, pipe, [p for p in prompts if p.strip()])
    if args.resample > 1 and args.mask is None:
        raise CLIError("--resample repeats steps to match an inpainted region to the kept pixels: it needs --mask")
    if args.resample > 1 and args.sampler == "dpm++2m":
        raise CLIError("--resample works with --sampler ddim or ddpm (DPM-Solver++ extrapolates from the step "
                       "before, which resampling repeats)")
    prompts = prompts * len(images) if len(prompts) == 1 else prompts
    cads = _cads(args, pipe)
    t0 = time.perf_counter()
    edited = edit(pipe, images, prompts or None, strength=strength, mask=mask, resample=args.resample,
                  guidance=args.guidance, negative_prompt=args.negative_prompt,
                  guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None,
                  cads=cads, steps=args.steps, sampler=args.sampler, eta=args.eta, spacing=args.spacing,
                  generator=torch.Generator().manual_seed(args.seed))
    dt = time.perf_counter() - t0
    settings = {"checkpoint": str(args.checkpoint), "inputs": sources, "strength": strength, "mask": args.mask,
                "resample": args.resample, "sampler": args.sampler, "steps": args.steps, "eta": args.eta,
                "spacing": args.spacing, "seed": args.seed,
                "guidance": (args.guidance if args.guidance is not None else DEFAULT_GUIDANCE)
                if pipe.is_text_conditional else None,
                "guidance_interval": list(args.guidance_interval) if args.guidance_interval else None,
                "negative_prompt": args.negative_prompt,
                "cads": None if cads is None else dataclasses.asdict(cads)}  # with the window actually used
    if out.suffix.lower() == ".png":  # each input, then its edit; eight pairs per row
        pairs = torch.stack([images.to(edited.device), edited], dim=1).flatten(0, 1)  # (2N, C, H, W)
        save_grid(pairs, out, nrow=2 * min(8, len(images)))
    else:
        extra = {"prompts": np.array(prompts)} if prompts else {}

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez_compressed(f, images=to_uint8(edited).numpy(), inputs=to_uint8(images).numpy(),
                                    settings=np.array(json.dumps(settings)), **extra)
        atomic_write(out, write)
    kind = "inpainted" if mask is not None else "edited"
    print(f"wrote {len(edited)} {kind} image{'s' if len(edited) != 1 else ''} to {out} (strength {strength:g}, "
          f"{args.sampler}, {args.steps}-step grid, seed {args.seed}, {dt:.1f} s)", file=sys.stdout)


def add_parser(sub, common) -> None:
    from .cli import _positive, _seed
    from .guidance_cli import add_guidance_args
    from .sampling import SAMPLERS, SPACINGS

    def strength(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            v = float("nan")
        if not 0 < v <= 1:
            raise argparse.ArgumentTypeError(
                f"expected a number in (0, 1] (1: start from noise, small: keep most of the image), got {s!r}")
        return v

    e = sub.add_parser("edit", help="image to image and inpainting: edit images with a model and a prompt")
    e.add_argument("--checkpoint", required=True, help="checkpoint path, run folder, or pretrained name")
    e.add_argument("--images", action="append", required=True, metavar="FILE",
                   help="images to edit: a .npz from `sample --out FILE.npz`, or an image file of the model's size "
                        "(repeat for several)")
    e.add_argument("--prompt", action="append", help="text models: once for every image, or once per image")
    e.add_argument("--strength", type=strength, default=None,
                   help="how much of each image to give up, in (0, 1]: the chain starts that far into its grid "
                        "(default 0.6; 1 with --mask)")
    e.add_argument("--mask", default=None,
                   help="inpaint: regenerate only top, bottom, left, right (a half of the image) or where a greyscale "
                        "image file is white; the rest is kept exactly")
    e.add_argument("--resample", type=_positive(), default=1,
                   help="with --mask: take each step this many times (RePaint), so the fill matches the kept "
                        "pixels; costs as many network calls")
    e.add_argument("--steps", type=_positive(), default=50,
                   help="the sampler's full grid; --strength of it is run")
    e.add_argument("--sampler", choices=SAMPLERS, default="ddim")
    e.add_argument("--spacing", choices=SPACINGS, default="linspace")
    e.add_argument("--eta", type=float, default=0.0, help="DDIM noise (0 deterministic, 1 like DDPM)")
    e.add_argument("--seed", type=_seed, default=0, help="seed of the noise: same seed, same edits")
    add_guidance_args(e)
    e.add_argument("--negative-prompt", action="append", default=None,
                   help="text models: guidance steers away from this prompt instead of the empty one (give once)")
    e.add_argument("--out", required=True,
                   help="FILE.png (each input next to its edit) or FILE.npz (uint8 images and inputs, the "
                        "prompts, and the settings as JSON)")
    common(e)
    e.set_defaults(func=cmd_edit)
