"""``diffusion-lite sample``: images from a checkpoint or a pretrained name, each prompt starting a new grid row
(one row per prompt for --n <= 16, rows of 16 above); and the
guidance options that ``evaluate`` shares (registered by cli.build_parser)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from .cli import CLIError, _setup
from .guidance_cli import _cads, add_guidance_args, check_guidance_args, check_something_to_steer, one_negative_prompt


def _read_prompts(args) -> list[str] | None:
    prompts = list(args.prompt or [])
    if args.prompts_file:
        p = Path(args.prompts_file)
        if not p.exists():
            raise CLIError(f"prompts file {p} does not exist")
        if not p.is_file():
            raise CLIError(f"prompts file {p} is not a file (expected a text file, one prompt per line)")
        try:
            text = p.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark (Windows editors) is not a word
        except UnicodeDecodeError as e:
            raise CLIError(f"prompts file {p} is not UTF-8 text ({e.reason} at byte {e.start})") from None
        from_file = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        if not from_file:
            raise CLIError(f"prompts file {p} has no prompts (expected one prompt per line; blank lines and lines "
                           "starting with # are skipped)")
        prompts += from_file
    return prompts or None


def cmd_sample(args) -> None:
    import numpy as np
    import torch

    from .checkpoints import load
    from .files import atomic_write
    from .pipeline import DEFAULT_GUIDANCE
    from .utils import randn, to_uint8
    from .viz import save_grid

    device = _setup(args)
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".npz"):
        raise CLIError(f"--out must end in .png (image grid) or .npz (uint8 array), got {out.name!r}")
    args.negative_prompt = one_negative_prompt(args)
    pipe = load(args.checkpoint, device)
    if not hasattr(pipe, "sample"):
        hint = (f": it is a text encoder (CLIP); sample from a U-Net trained with it, e.g. `diffusion-lite train "
                f"--text {args.checkpoint} ...`" if hasattr(pipe, "encode_text") else f" (got a {type(pipe).__name__})")
        raise CLIError(f"{args.checkpoint} is not a diffusion model checkpoint{hint}")
    prompts = _read_prompts(args)
    if prompts and not pipe.is_text_conditional:
        raise CLIError("this checkpoint is unconditional: it takes no --prompt or --prompts-file")
    check_guidance_args(args, pipe)
    _note_other_dataset(pipe, args.checkpoint, prompts or [])
    worded = [p for p in prompts or [] if p.strip()]  # "" and "   " are the empty prompt: the unconditional branch
    check_something_to_steer(args, pipe, worded)
    gen = torch.Generator().manual_seed(args.seed)
    all_prompts = [p for p in prompts for _ in range(args.n)] if prompts else None
    t0 = time.perf_counter()
    if pipe.is_text_conditional and all_prompts is None:
        all_prompts = [""] * args.n  # the empty prompt: the unconditional branch of a text model
        print("no --prompt: sampling with the empty prompt, " + (
            f"guided away from the negative prompt {args.negative_prompt!r}" if args.negative_prompt is not None
            else "this text model's unconditional branch"), file=sys.stderr)
    B, c = len(all_prompts) if all_prompts else args.n, pipe.unet.cfg
    x_T = randn((B, c.in_channels, c.image_size, c.image_size), gen).to(pipe.dtype)  # all at once, as pipe.sample
    kw = dict(guidance=args.guidance,  # None: the pipeline's default (3) for text models
              negative_prompt=args.negative_prompt, steps=args.steps, sampler=args.sampler, eta=args.eta,
              spacing=args.spacing, generator=gen,
              guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None,
              cads=_cads(args, pipe))
    chunks, starts = [], range(0, B, args.batch_size)
    bar = _batches_bar(pipe, args, len(starts))
    if bar is not None:  # several batches: one bar over all of them instead of one "DDIM 0/50" bar per batch
        kw.update(progress=False, callback=lambda info: bar.update(1))
    try:
        for s in starts:  # memory grows with the batch: at most --batch-size images at once
            e = min(B, s + args.batch_size)
            chunks.append(pipe.sample(all_prompts[s:e], x_T=x_T[s:e], **kw) if all_prompts
                          else pipe.sample(n=e - s, x_T=x_T[s:e], **kw))
    finally:
        if bar is not None:
            bar.close()
    images = torch.cat(chunks)
    if not torch.isfinite(images).all():  # to_uint8 would write NaN as black pixels
        raise CLIError(f"the sampler produced NaN or inf pixels in {int((~torch.isfinite(images)).sum()):,} places, "
                       "so nothing was written: the checkpoint may have diverged in training, or a setting is "
                       "extreme (--guidance, --cads)")
    dt = time.perf_counter() - t0
    cads = kw["cads"]
    guided = pipe.is_text_conditional and (worded or args.negative_prompt is not None or cads is not None)
    settings = {"checkpoint": str(args.checkpoint), "sampler": args.sampler, "steps": args.steps, "eta": args.eta,
                "spacing": args.spacing,
                "seed": args.seed, "n_per_prompt": args.n, "batch_size": args.batch_size,  # (DDPM's noise per batch)
                "guidance": (args.guidance if args.guidance is not None else DEFAULT_GUIDANCE) if guided else None,
                "guidance_interval": list(args.guidance_interval) if args.guidance_interval else None,
                "negative_prompt": args.negative_prompt,
                "cads": None if cads is None else dataclasses.asdict(cads)}  # with the window actually used
    if out.suffix.lower() == ".png":
        grid, nrow = _prompt_rows(images, len(prompts or []), args.n)
        save_grid(grid, out, nrow=nrow)
    else:
        extra = {"prompts": np.array(all_prompts)} if all_prompts else {}
        extra["settings"] = np.array(json.dumps(settings))  # how the images were made: json.loads(f["settings"][()])

        def write(tmp):
            with open(tmp, "wb") as f:  # a file object: numpy would append ".npz" to a name ending in ".NPZ"
                np.savez_compressed(f, images=to_uint8(images).numpy(), **extra)
        atomic_write(out, write)  # an existing file is replaced whole or kept
    what = f"{len(images)} sample{'s' if len(images) != 1 else ''}"
    how = "" if settings["guidance"] is None else f", guidance {settings['guidance']:g}" + (
        f" in t {settings['guidance_interval'][0]}-{settings['guidance_interval'][1]}"
        if settings["guidance_interval"] else "") + (
        f", negative prompt {args.negative_prompt!r}" if args.negative_prompt is not None else "")
    print(f"wrote {what} to {out} ({args.sampler}, {args.steps} steps{how}, seed {args.seed}, {dt:.1f} s)")


def _batches_bar(pipe, args, n_batches: int):
    """For more than one batch, one progress bar over every sampler step of every batch, named as evaluate's
    (e.g. "DDIM 50 steps x 3 batches of <= 256"); None for one batch, which shows pipe.sample's own "DDIM" bar."""
    from .sampling import batches_bar

    return batches_bar(pipe.schedule, args.sampler, args.steps, n_batches, args.batch_size) if n_batches > 1 else None


def _note_other_dataset(pipe, name: str, prompts: list[str]) -> None:
    """A prompt with unknown words and none of the model's class names is likely meant for another dataset ("a
    sneaker" for an MNIST model): say what the model was trained on (the tokenizer's warning names the words)."""
    from .captions import NOUNS, class_names
    from .tokenizer import Tokenizer, split_words

    tok = getattr(pipe.text, "tokenizer", None) if pipe.is_text_conditional else None
    from .checkpoints import dataset_name

    dataset = dataset_name(pipe.meta)
    if not isinstance(tok, Tokenizer) or dataset not in NOUNS:
        return
    phrases = sorted(((tuple(split_words(ph)), k) for k, names in enumerate(NOUNS[dataset]) for ph in names),
                     key=lambda pk: -len(pk[0]))  # longest first: "t-shirt" is not a "shirt"

    def classes_named(words: list[str]) -> list[int]:
        found, i = [], 0
        while i < len(words):
            n, k = next(((n, k) for n, k in phrases if tuple(words[i:i + len(n)]) == n), ((), None))
            if k is not None and k not in found:
                found.append(k)
            i += max(len(n), 1)
        return found

    unique = list(dict.fromkeys(prompts))
    off = [p for p in unique if tok.unknown_words(p) and not classes_named(split_words(p))]
    if off:
        print(f"note: {', '.join(map(repr, off))} names none of the classes {name} was trained on "
              f"({dataset}: {', '.join(class_names(dataset))}), so the images will show one of those",
              file=sys.stderr)
    for p in unique:
        several = classes_named(split_words(p))
        if len(several) > 1:  # "7.0" is the words 7 . 0; "seven eight": every caption named one class
            shown = " and ".join(class_names(dataset)[k] for k in several)
            print(f"note: {p!r} names {len(several)} classes ({shown}); {name} was trained on captions that name "
                  "one, so expect one of them, or a blend", file=sys.stderr)


def _prompt_rows(images, n_prompts: int, n: int) -> tuple["torch.Tensor", int | None]:  # noqa: F821
    """(images, nrow) for `sample`'s grid. No prompt or one prompt: a square grid (16 images: 4 x 4).
    Several: one row per prompt for n <= 16; above that each prompt's n images fill rows of 16, the last
    padded with blank (white) tiles, so that every prompt starts a new row."""
    import torch

    from .utils import to_uint8

    if n_prompts <= 1:
        return images, None
    if n <= 16 or n % 16 == 0:
        return images, min(n, 16)
    x = to_uint8(images)  # (P * n, C, H, W)
    blank = torch.full((16 - n % 16, *x.shape[1:]), 255, dtype=torch.uint8)
    return torch.cat([t for group in x.split(n) for t in (group, blank)]), 16


def add_parser(sub, common) -> None:
    from .cli import _positive, _seed
    from .sampling import SAMPLERS, SPACINGS

    s = sub.add_parser("sample", help="generate images from a checkpoint or a pretrained model name")
    s.add_argument("--checkpoint", required=True, help="checkpoint path, run folder, or pretrained name")
    s.add_argument("--n", type=_positive(), default=16,
                   help="images (per prompt, with --prompt or --prompts-file)")
    s.add_argument("--steps", type=_positive(), default=50,
                   help="sampler steps, one network call each (two with guidance); at most the model's T")
    s.add_argument("--sampler", choices=SAMPLERS, default="ddim",
                   help="ddim (deterministic), ddpm (stochastic: fresh noise at every step) or dpm++2m "
                        "(DPM-Solver++: deterministic, second order; BENCHMARKS.md section 3 compares them)")
    s.add_argument("--spacing", choices=SPACINGS, default="linspace",
                   help="the time grid: linspace (even in t, the default) or logsnr (even in log-SNR: with "
                        "dpm++2m and few steps far better without guidance, worse with guidance 3 over the whole "
                        "chain; BENCHMARKS.md section 3)")
    s.add_argument("--eta", type=float, default=0.0, help="DDIM noise (0 deterministic, 1 like DDPM)")
    s.add_argument("--seed", type=_seed, default=0,
                   help="seed of the starting noise and the sampler: same seed, same images")
    s.add_argument("--batch-size", type=_positive(), default=256,
                   help="images per batch (memory grows with it; DDIM with eta 0 or dpm++2m, without --cads, gives "
                        "the same images for any value, up to float rounding)")
    s.add_argument("--prompt", action="append", help="text prompt (repeat for several)")
    s.add_argument("--prompts-file", default=None,
                   help="file with one prompt per line (blank lines and lines starting with # are skipped)")
    add_guidance_args(s)
    s.add_argument("--negative-prompt", action="append", default=None,
                   help="text models: guidance steers away from this prompt instead of the empty one (give once)")
    s.add_argument("--out", required=True, help="FILE.png (a grid: square for one prompt, one row per prompt "
                   "for several) or FILE.npz (uint8 images, the prompts, and the settings as JSON)")
    common(s)
    s.set_defaults(func=cmd_sample)

