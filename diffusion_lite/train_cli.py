"""``diffusion-lite train``: train a diffusion model, unconditional or text-to-image, with resume.

    diffusion-lite train --dataset mnist --steps 2000 --out runs/mnist
    diffusion-lite train --dataset mnist --text mnist-clip --cross-attn 7 --steps 4000 --out runs/t2i

Registered on cli.py's subparsers by ``add_parser``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODEL_PRESETS = {
    # name: UNetConfig overrides (MNIST-sized; CIFAR uses cifar_unet_config)
    "tiny": dict(base_channels=16, channel_mults=(1, 2, 2), attn_resolutions=()),
    "small": dict(base_channels=16, channel_mults=(1, 2, 4), attn_resolutions=(7,)),
    "base": dict(base_channels=32, channel_mults=(1, 2, 2), attn_resolutions=(7,)),
}


def cmd_train(args) -> None:
    """Build (or resume, or fine-tune --init-from) a U-Net and run train.fit; see the module docstring."""
    from .captions import class_prompts
    from .cli import CLIError, _setup
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


def add_parser(sub, common) -> None:
    from .cli import _positive

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
