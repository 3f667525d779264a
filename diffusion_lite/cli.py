"""The ``diffusion-lite`` command line: train, sample, demo, export, train-clip, evaluate, bench.

Every command has ``--help``; bad arguments end in a one-line error (exit code 2), not a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

MODEL_PRESETS = {
    # name: UNetConfig overrides (MNIST-sized; CIFAR uses cifar_unet_config)
    "tiny": dict(base_channels=16, channel_mults=(1, 2, 2), attn_resolutions=()),
    "small": dict(base_channels=16, channel_mults=(1, 2, 4), attn_resolutions=(7,)),
    "base": dict(base_channels=32, channel_mults=(1, 2, 2), attn_resolutions=(7,)),
}


class CLIError(Exception):
    """An error meant for the user: printed as one line."""


def _positive(kind=int):
    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {s!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {s}")
        return v
    return parse


def _setup(args) -> "torch.device":  # noqa: F821
    import torch

    from .utils import get_device

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return get_device(getattr(args, "device", None))


def cmd_train(args) -> None:

    from .captions import class_prompts
    from .config import ScheduleConfig, TrainConfig, UNetConfig, cifar_unet_config
    from .data import load_dataset
    from .pipeline import text_cond_fn
    from .schedules import Schedule
    from .train import fit
    from .unet import UNet

    device = _setup(args)
    out = Path(args.out)
    ds = load_dataset(args.dataset, "train", subset=args.subset, balanced=args.balanced, download=args.download)
    C, H = ds.images.shape[1], ds.images.shape[2]
    resume = (out / "checkpoint.json").exists()
    text_tensors, text_meta, text = None, None, None
    if args.text:
        from .checkpoints import load, load_checkpoint
        text_tensors, text_meta = load_checkpoint(args.text)
        if text_meta["kind"] != "clip":
            raise CLIError(f"--text expects a CLIP checkpoint (kind 'clip'), got kind {text_meta['kind']!r}")
        text = load(args.text, device)
    if resume:
        saved = json.loads((out / "checkpoint.json").read_text())
        ucfg = UNetConfig.from_dict(saved["unet"])
        scfg = ScheduleConfig.from_dict(saved["schedule"])
        done = saved["train_state"]["step"]
        if done >= args.steps:
            print(f"{out} is already trained to step {done} (>= --steps {args.steps}): nothing to do; give a larger "
                  "--steps to train on, or another --out to start afresh")
            return
        print(f"resuming {out} from step {done}")
    else:
        overrides = dict(MODEL_PRESETS[args.model])
        if text is not None:
            overrides.update(cross_attn_resolutions=tuple(args.cross_attn), attn_resolutions=(),
                             context_dim=int(text.context_dim))
        ucfg = cifar_unet_config() if C == 3 else UNetConfig(in_channels=C, image_size=H, **overrides)
        scfg = ScheduleConfig(kind=args.schedule)
    init_tensors = None
    if args.init_from and not resume:  # fine-tune: the architecture and schedule come from that checkpoint
        from .checkpoints import load_checkpoint, split_prefix
        init_tensors, init_meta = load_checkpoint(args.init_from)
        if "unet" not in init_meta:
            raise CLIError(f"--init-from expects a diffusion checkpoint, got kind {init_meta.get('kind')!r}")
        if (init_meta.get("text") is None) != (text is None):
            raise CLIError("--init-from: the checkpoint and this run must both be text-conditional or both not "
                           f"(checkpoint text encoder: {'yes' if init_meta.get('text') else 'none'}, --text "
                           f"{args.text or 'not given'})")
        init_sha = (init_meta.get("text") or {}).get("weights_sha256")
        if text_meta is not None and init_sha and init_sha != text_meta.get("weights_sha256"):
            print(f"warning: --init-from {args.init_from} was trained with another text encoder than --text "
                  f"{args.text}: its cross-attention learned that encoder's embeddings, so the prompts start out "
                  "meaningless to it (use the same --text to fine-tune, or expect to retrain the conditioning)",
                  file=sys.stderr)
        ucfg = UNetConfig.from_dict(init_meta["unet"])
        scfg = ScheduleConfig.from_dict(init_meta["schedule"])
        if (ucfg.in_channels, ucfg.image_size) != (C, H):
            raise CLIError(f"--init-from: the checkpoint's U-Net takes {ucfg.in_channels}x{ucfg.image_size}px "
                           f"images, but {args.dataset} has {C}x{H}px")
        init_tensors = split_prefix(init_tensors, "unet")
        print(f"initialising the U-Net from {args.init_from} (its architecture and schedule; --model is ignored)")
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       prediction=args.prediction, loss_weighting=args.loss_weighting, p_uncond=args.p_uncond,
                       checkpoint_every=args.checkpoint_every, amp=args.amp, compile=args.compile,
                       channels_last=args.channels_last, ema_decay=args.ema_decay)
    unet = UNet(ucfg).to(device)
    if init_tensors is not None:
        from .checkpoints import load_state_strict
        load_state_strict(unet, init_tensors, f"--init-from {args.init_from}")
    schedule = Schedule.from_config(scfg)
    cond_fn = None
    if text is not None:
        from .captions import make_captions
        caption_fn = lambda x, y, g: make_captions(x.cpu(), y.cpu(), dataset=args.dataset, generator=g)
        cond_fn = text_cond_fn(text, caption_fn, tcfg.p_uncond)
    meta = {"unet": ucfg.to_dict(), "schedule": scfg.to_dict(), "prediction": tcfg.prediction, "text": text_meta,
            "dataset": {"name": args.dataset, "subset": args.subset, "balanced": args.balanced, "n": len(ds)}}
    if args.init_from:
        meta["init_from"] = str(args.init_from)
    extra = {f"text.{k}": v for k, v in text_tensors.items()} if text_tensors else None
    print(f"training a {unet.num_parameters() / 1e6:.2f}M-parameter U-Net on {len(ds)} {args.dataset} images "
          f"for {tcfg.steps} steps on {device}; checkpoints in {out}/")
    res = fit(unet, schedule, ds.images, tcfg, labels=ds.labels, cond_fn=cond_fn, run_dir=out, meta=meta,
              extra_tensors=extra)
    last = res["loss"][-1][1] if res["loss"] else float("nan")
    print(f"done: step {res['step']}, loss {last:.4f}, {res['seconds'] / 60:.1f} min of training, "
          f"{res['images_per_s']:.0f} images/s")
    prompt = f" --prompt \"{class_prompts(args.dataset)[7 if args.dataset == 'mnist' else 0]}\"" if text else ""
    print(f"sample from it: diffusion-lite sample --checkpoint {out}{prompt} --n 64 --out samples.png")


def _read_prompts(args) -> list[str] | None:
    prompts = list(args.prompt or [])
    if args.prompts_file:
        p = Path(args.prompts_file)
        if not p.exists():
            raise CLIError(f"prompts file {p} does not exist")
        from_file = [line.strip() for line in p.read_text().splitlines() if line.strip()]
        if not from_file:
            raise CLIError(f"prompts file {p} has no prompts (expected one prompt per line)")
        prompts += from_file
    return prompts or None


def cmd_sample(args) -> None:
    import numpy as np
    import torch

    from .checkpoints import load
    from .utils import to_uint8
    from .viz import save_grid

    device = _setup(args)
    out = Path(args.out)
    if out.suffix not in (".png", ".npz"):
        raise CLIError(f"--out must end in .png (image grid) or .npz (uint8 array), got {out.name!r}")
    pipe = load(args.checkpoint, device)
    if not hasattr(pipe, "sample"):
        raise CLIError(f"{args.checkpoint} is not a diffusion model checkpoint")
    prompts = _read_prompts(args)
    if prompts and not pipe.is_text_conditional:
        raise CLIError("this checkpoint is unconditional: it takes no --prompt")
    gen = torch.Generator().manual_seed(args.seed)
    all_prompts = [p for p in prompts for _ in range(args.n)] if prompts else None
    t0 = time.perf_counter()
    if pipe.is_text_conditional and all_prompts is None:
        all_prompts = [""] * args.n  # the unconditional branch of a text model
    images = pipe.sample(all_prompts, n=None if all_prompts else args.n, guidance=args.guidance,
                         negative_prompt=args.negative_prompt, steps=args.steps, sampler=args.sampler,
                         eta=args.eta, generator=gen,
                         guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None,
                         cads=_cads(args, pipe))
    dt = time.perf_counter() - t0
    if out.suffix == ".png":
        save_grid(images, out, nrow=args.n if prompts and args.n <= 16 else None)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        extra = {"prompts": np.array(all_prompts)} if all_prompts else {}
        np.savez_compressed(out, images=to_uint8(images).numpy(), **extra)
    print(f"wrote {len(images)} samples to {out} ({args.sampler}, {args.steps} steps, {dt:.1f} s)")


def add_guidance_args(p: argparse.ArgumentParser) -> None:
    """--guidance, --guidance-interval, --cads, --cads-window (sample and evaluate)."""
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale s (text models)")
    p.add_argument("--guidance-interval", type=int, nargs=2, default=None, metavar=("T_LO", "T_HI"),
                   help="apply the guidance scale only for timesteps T_LO <= t <= T_HI (s = 1 elsewhere)")
    p.add_argument("--cads", type=float, default=None, metavar="NOISE",
                   help="condition-annealed sampling: noise the prompt tokens early in the chain with this "
                        "scale (Sadat et al. 2024; 0.5 is a good start for mnist-text2img)")
    p.add_argument("--cads-window", type=float, nargs=2, default=(0.6, 0.9), metavar=("TAU1", "TAU2"),
                   help="with --cads: full prompt for t/T <= TAU1, pure noise for t/T >= TAU2 (default 0.6 0.9)")


def _cads(args, pipe):
    """The CADS settings of --cads/--cads-window, or None."""
    if args.cads is None:
        return None
    from .guidance import CADS
    if not pipe.is_text_conditional:
        raise CLIError("--cads noises the prompt; this checkpoint is unconditional")
    try:
        return CADS(noise_scale=args.cads, tau1=args.cads_window[0], tau2=args.cads_window[1])
    except ValueError as e:
        raise CLIError(str(e)) from None


def cmd_export(args) -> None:
    from .checkpoints import load

    pipe = load(args.run)
    if args.card:
        card = json.loads(Path(args.card).read_text())
        pipe.meta["card"] = card
    stem = pipe.save(args.out)
    print(f"wrote {stem}.safetensors and {stem}.json (inference only: EMA weights and configs)")


def cmd_demo(args) -> None:
    from .demo import run_demo

    _setup(args)
    run_demo(Path(args.out), device=getattr(args, "device", None))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffusion-lite", description="Train and sample small diffusion models.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp):
        sp.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best available)")
        sp.add_argument("--threads", type=_positive(), default=None, help="CPU threads for torch")

    t = sub.add_parser("train", help="train a diffusion model (resumes if --out holds a checkpoint)")
    t.add_argument("--dataset", required=True, help="mnist, fashion-mnist or cifar10")
    t.add_argument("--steps", type=_positive(), required=True, help="optimizer steps in total")
    t.add_argument("--batch-size", type=_positive(), default=128)
    t.add_argument("--subset", type=_positive(), default=None, help="use only K training images")
    t.add_argument("--balanced", action="store_true", help="with --subset: the same number per class")
    t.add_argument("--download", action="store_true", help="allow torchvision to download the data (online)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="run folder for checkpoints")
    t.add_argument("--model", choices=sorted(MODEL_PRESETS), default="small", help="U-Net size preset")
    t.add_argument("--init-from", default=None,
                   help="fine-tune: start from the U-Net weights of this checkpoint (name or path)")
    t.add_argument("--text", default=None, help="CLIP checkpoint (name or path): train a text-to-image model")
    t.add_argument("--cross-attn", type=int, nargs="+", default=[7, 14], help="resolutions with cross-attention")
    t.add_argument("--p-uncond", type=float, default=0.1, help="prompt dropout probability for CFG")
    t.add_argument("--schedule", choices=["linear", "cosine", "sigmoid"], default="cosine")
    t.add_argument("--prediction", choices=["eps", "v", "x0"], default="eps")
    t.add_argument("--loss-weighting", choices=["none", "min_snr"], default="none")
    t.add_argument("--lr", type=_positive(float), default=2e-3)
    t.add_argument("--ema-decay", type=float, default=0.999)
    t.add_argument("--checkpoint-every", type=_positive(), default=500)
    t.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    t.add_argument("--compile", action="store_true", help="torch.compile the U-Net")
    t.add_argument("--channels-last", action="store_true")
    common(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate images from a checkpoint or a pretrained model name")
    s.add_argument("--checkpoint", required=True, help="checkpoint path, run folder, or pretrained name")
    s.add_argument("--n", type=_positive(), default=16, help="images (per prompt, with --prompt)")
    s.add_argument("--steps", type=_positive(), default=50)
    s.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddim")
    s.add_argument("--eta", type=float, default=0.0, help="DDIM noise (0 deterministic, 1 like DDPM)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--prompt", action="append", help="text prompt (repeat for several)")
    s.add_argument("--prompts-file", default=None, help="file with one prompt per line")
    add_guidance_args(s)
    s.add_argument("--negative-prompt", default=None)
    s.add_argument("--out", required=True, help="FILE.png (grid) or FILE.npz (uint8 images)")
    common(s)
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("export", help="write an inference-only checkpoint from a run folder")
    e.add_argument("--run", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--card", default=None, help="JSON file with model-card facts to store")
    e.set_defaults(func=cmd_export)

    d = sub.add_parser("demo", help="the quick tour: sample from the shipped models into a picture")
    d.add_argument("--out", default="outputs", help="folder for the pictures")
    common(d)
    d.set_defaults(func=cmd_demo)

    from . import bench_cli, clip_cli, eval_cli

    clip_cli.add_parser(sub, common)
    eval_cli.add_parser(sub, common)
    bench_cli.add_parser(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    from .checkpoints import CheckpointError
    from .data import DatasetDownloadError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if os.environ.get("DIFFUSION_LITE_DEBUG"):
        args.func(args)
        return 0
    warnings.formatwarning = lambda message, category, *a, **k: f"diffusion-lite: warning: {message}\n"
    try:
        args.func(args)
    except (CLIError, CheckpointError, ValueError, FileNotFoundError, DatasetDownloadError) as e:
        print(f"diffusion-lite {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; a resumable checkpoint is kept in the run folder if one was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
