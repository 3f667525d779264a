"""``diffusion-lite train``: train a diffusion model, unconditional or text-to-image, with resume.

    diffusion-lite train --dataset mnist --steps 2000 --out runs/mnist
    diffusion-lite train --dataset mnist --text mnist-clip --cross-attn 7 --steps 4000 --out runs/t2i

Registered on cli.py's subparsers by ``add_parser``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

MODEL_PRESETS = {
    # name: UNetConfig overrides (MNIST-sized; CIFAR uses cifar_unet_config)
    "tiny": dict(base_channels=16, channel_mults=(1, 2, 2), attn_resolutions=()),
    "small": dict(base_channels=16, channel_mults=(1, 2, 4), attn_resolutions=(7,)),
    "base": dict(base_channels=32, channel_mults=(1, 2, 2), attn_resolutions=(7,)),
}


# TrainConfig fields the command line sets on resume (the others keep the run's values)
TRAIN_OPTIONS = {"batch_size": "--batch-size", "lr": "--lr", "seed": "--seed", "prediction": "--prediction",
                 "loss_weighting": "--loss-weighting", "p_uncond": "--p-uncond", "ema_decay": "--ema-decay"}


# --cross-attn when not given: the levels after the first two halvings of the image, 14 and 7 of MNIST's 28/14/7
# (the default for other datasets) and 16 and 8 of CIFAR-10's 32/16/8/4
DEFAULT_CROSS_ATTN = {"cifar10": (8, 16)}


def default_cross_attn(dataset: str) -> tuple[int, ...]:
    return DEFAULT_CROSS_ATTN.get(dataset, (7, 14))


def _unet_config(model: str, C: int, H: int, context_dim: int | None, cross_attn) -> "UNetConfig":  # noqa: F821
    """The U-Net a fresh run builds: the --model preset (with cross-attention for text), or CIFAR's preset."""
    from .config import UNetConfig, cifar_unet_config

    overrides = dict(MODEL_PRESETS[model])
    if context_dim is not None:
        overrides.update(cross_attn_resolutions=tuple(cross_attn), attn_resolutions=(), context_dim=int(context_dim))
    if C == 3:  # CIFAR's preset; text adds cross-attention at the given levels (32, 16, 8 or 4 pixels)
        text = ("cross_attn_resolutions", "attn_resolutions", "context_dim") if context_dim is not None else ()
        return cifar_unet_config(**{k: overrides[k] for k in text})
    return UNetConfig(in_channels=C, image_size=H, **overrides)


def _check_vocabulary(text, name: str, dataset: str) -> None:
    """Every word the dataset's captions can contain must be known to a word-level tokenizer; else most
    training prompts would become <unk> (a BPE tokenizer, as hf_text's, has no unknown words)."""
    from .captions import all_vocabulary
    from .cli import CLIError
    from .tokenizer import Tokenizer

    tok = getattr(text, "tokenizer", None)
    if not isinstance(tok, Tokenizer):
        return
    vocab = all_vocabulary(dataset)
    missing = tok.unknown_words(" ".join(vocab))
    if missing:
        more = f", ... ({len(missing)} in all)" if len(missing) > 10 else ""
        raise CLIError(f"--text {name} does not know {len(missing)} of the {len(vocab)} words of the {dataset} "
                       f"captions ({', '.join(missing[:10])}{more}): they would train as <unk>; use a text encoder "
                       f"trained on {dataset} (diffusion-lite train-clip --dataset {dataset} --out {dataset}-clip)")


def cmd_train(args) -> None:
    """Build (or resume, or fine-tune --init-from) a U-Net and run train.fit; see the module docstring."""
    import torch

    from .captions import class_prompts
    from .cli import CLIError, _setup, check_not_shipped, p_attribute_option
    from .config import ScheduleConfig, TrainConfig, UNetConfig
    from .data import load_dataset
    from .pipeline import text_cond_fn
    from .schedules import Schedule
    from .train import fit
    from .train_cli_resume import check_resume_text, fine_tune_start, read_run, resume_conflicts
    from .unet import UNet
    from .utils import LogLines

    check_not_shipped(args.out)
    # options whose default is filled in below: a resume conflict on one of them says "(the default)"
    args.defaulted = {o for o, v in (("--model", args.model), ("--schedule", args.schedule),
                                     ("--cross-attn", args.cross_attn), ("--prediction", args.prediction),
                                     ("--p-uncond", args.p_uncond), ("--p-attribute", args.p_attribute)) if v is None}
    if args.balanced and args.subset is None:
        raise CLIError("--balanced needs --subset K (it keeps K / 10 images of each class)")
    device = _setup(args)
    out = Path(args.out)
    full = out.resolve()  # ("." has no name to put a suffix on)
    for f in (full.with_name(full.name + ".json"), full.with_name(full.name + ".safetensors")):
        if full.name and f.exists():  # load(OUT) and --checkpoint OUT would find that file, not this run's folder
            what = "move or rename that file" if (out / "checkpoint.json").exists() else "choose another --out"
            raise CLIError(f"--out {out}: {f} exists beside it, so `--checkpoint {out}` would load that file instead "
                           f"of this run; {what}")
    saved = read_run(out)  # None: a new run
    resume = saved is not None
    text_tensors, text_meta, text = None, None, None
    if args.text:
        from .checkpoints import load, load_checkpoint
        text_tensors, text_meta = load_checkpoint(args.text)
        if text_meta["kind"] != "clip":
            raise CLIError(f"--text expects a CLIP checkpoint (kind 'clip'), got kind {text_meta['kind']!r}")
    if resume:
        check_resume_text(out, saved, args, text_meta)
    if not args.text:
        given = [o for o, v in (("--cross-attn", args.cross_attn), ("--p-uncond", args.p_uncond),
                                ("--p-attribute", args.p_attribute)) if v is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise CLIError(f"{' and '.join(given)} only {verb} to text-to-image training: add --text CLIP (e.g. "
                           "--text mnist-clip)")
    if args.cross_attn is None:
        args.cross_attn = list(default_cross_attn(args.dataset))
    if len(set(args.cross_attn)) != len(args.cross_attn):
        raise CLIError(f"--cross-attn lists a resolution twice ({' '.join(map(str, args.cross_attn))}); give each once")
    args.p_uncond = 0.1 if args.p_uncond is None else args.p_uncond
    if args.text:  # the dataset's default share of captions with attribute words, or the one given, checked
        args.p_attribute = p_attribute_option(args.p_attribute, args.dataset)
    if args.text:
        text = load(args.text, device)
        _check_vocabulary(text, args.text, args.dataset)
    ds = load_dataset(args.dataset, "train", subset=args.subset, balanced=args.balanced, download=args.download)
    C, H = ds.images.shape[1], ds.images.shape[2]
    if C == 3 and args.model is not None:
        raise CLIError(f"--model {args.model}: the presets are MNIST-sized; {args.dataset} uses its own U-Net "
                       "(config.cifar_unet_config, 9.5M parameters, meant for a GPU): drop --model")
    args.model = args.model or "small"
    if text is not None:  # a resolution the U-Net has no level at: say which option, and which values fit
        plain = _unet_config(args.model, C, H, None, ())
        levels = [plain.image_size // 2 ** i for i in range(len(plain.channel_mults))]
        bad = [r for r in args.cross_attn if r not in levels]
        if bad:
            default = " (the default)" if "--cross-attn" in args.defaulted else ""
            raise CLIError(f"--cross-attn {' '.join(map(str, args.cross_attn))}{default}: this U-Net has no level at "
                           f"{' '.join(map(str, bad))} pixels; choose among its levels {' '.join(map(str, levels))}")
    ucfg = _unet_config(args.model, C, H, text.context_dim if text is not None else None, args.cross_attn)
    scfg = ScheduleConfig(kind=args.schedule or "cosine")
    prediction = args.prediction or "eps"
    if resume and saved.get("init_from") and args.prediction is None:  # a fine-tune's target is its checkpoint's
        prediction = (saved.get("train") or {}).get("prediction", prediction)
    init_tensors = None
    if args.init_from and not resume:  # fine-tune: the architecture, schedule and target come from that checkpoint
        ucfg, scfg, prediction, init_tensors = fine_tune_start(args, text, text_meta, C, H)
    # settings the command line has no option for keep the run's values on resume
    kept = {k: v for k, v in (saved or {}).get("train", {}).items() if k in ("weight_decay", "warmup_steps",
                                                                             "ema_warmup", "grad_clip", "log_every")}
    tcfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       prediction=prediction, loss_weighting=args.loss_weighting, p_uncond=args.p_uncond,
                       checkpoint_every=args.checkpoint_every, amp=args.amp, compile=args.compile,
                       channels_last=args.channels_last, ema_decay=args.ema_decay, **kept)
    if resume:
        conflicts = resume_conflicts(saved, args, ucfg, scfg, tcfg)
        if conflicts:
            raise CLIError(f"cannot resume {out}: this command's settings differ from the run's: "
                           f"{'; '.join(conflicts)}. Re-run with the run's settings (only --steps may change), "
                           "or choose a new --out to start afresh")
        ucfg, scfg = UNetConfig.from_dict(saved["unet"]), ScheduleConfig.from_dict(saved["schedule"])
        done = saved["train_state"]["step"]
        if done >= args.steps:
            print(f"{out} is already trained to step {done} (>= --steps {args.steps}): nothing to do; give a larger "
                  "--steps to train on, or another --out to start afresh")
            return
        print(f"resuming {out} from step {done}")
    torch.manual_seed(args.seed)  # the initial weights too: the same command gives the same run
    unet = UNet(ucfg).to(device)
    if init_tensors is not None:
        from .checkpoints import load_state_strict
        load_state_strict(unet, init_tensors, f"--init-from {args.init_from}")
    schedule = Schedule.from_config(scfg)
    cond_fn = None
    if text is not None:
        from .captions import make_captions
        caption_fn = lambda x, y, g: make_captions(x.cpu(), y.cpu(), dataset=args.dataset, generator=g,
                                                   p_attribute=args.p_attribute)
        cond_fn = text_cond_fn(text, caption_fn, tcfg.p_uncond)
    meta = {"unet": ucfg.to_dict(), "schedule": scfg.to_dict(), "prediction": tcfg.prediction, "text": text_meta,
            "dataset": {"name": args.dataset, "subset": args.subset, "balanced": args.balanced, "n": len(ds)}}
    if text is not None:
        meta["captions"] = {"p_attribute": args.p_attribute}
    for key, value in (("text_from", args.text), ("init_from", args.init_from)):  # as first given: a resume may
        if value:                                                                  # spell the same file otherwise
            meta[key] = saved.get(key, str(value)) if resume else str(value)
    extra = {f"text.{k}": v for k, v in text_tensors.items()} if text_tensors else None
    done = saved["train_state"]["step"] if resume else 0
    todo = f"step {tcfg.steps}" if done + 1 == tcfg.steps else f"steps {done + 1}-{tcfg.steps}"
    steps = f"{todo} of {tcfg.steps} (resumed)" if done else f"{tcfg.steps} steps"
    print(f"training a {unet.num_parameters() / 1e6:.2f}M-parameter U-Net on {len(ds)} {args.dataset} images "
          f"for {steps} on {device}; checkpoints in {out}/")
    try:
        log = LogLines("train", tcfg.steps, done) if args.quiet else None  # a log file gets lines, not a bar
        with warnings.catch_warnings():  # the CLI has no --warmup-steps: a short demo run need not hear of it
            warnings.filterwarnings("ignore", message="warmup_steps=", category=UserWarning)
            res = fit(unet, schedule, ds.images, tcfg, labels=ds.labels if cond_fn else None, cond_fn=cond_fn,
                      run_dir=out, meta=meta, extra_tensors=extra, callback=log)
    except FloatingPointError as e:  # a resume keeps the run's settings, so a lower --lr needs a new run
        raise CLIError(f"{e}, with a new --out (or after deleting {out}: a run resumes with its own "
                       "settings)") from None
    last = res["loss"][-1][1] if res["loss"] else float("nan")
    print(f"done: step {res['step']}, loss {last:.4f} (exponential moving average, weight 0.98 per step: about the "
          f"last 50 steps, and it lags a falling loss), {res['seconds'] / 60:.1f} min in training steps (without "
          f"checkpoints), {res['images_per_s']:.0f} images/s")
    prompt = f" --prompt \"{class_prompts(args.dataset)[7 if args.dataset == 'mnist' else 0]}\"" if text else ""
    print(f"sample from it: diffusion-lite sample --checkpoint {out}{prompt} --n 64 --out samples.png")


def _ema_decay(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a float, got {s!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"ema_decay must be in [0, 1), got {s} (0.999 averages ~1000 steps)")
    return v


def add_parser(sub, common) -> None:
    from .cli import _positive, _probability, _seed

    t = sub.add_parser("train", help="train a diffusion model (resumes if --out holds a checkpoint)")
    t.add_argument("--dataset", required=True, help="mnist, fashion-mnist or cifar10")
    t.add_argument("--steps", type=_positive(), required=True, help="optimizer steps in total")
    t.add_argument("--batch-size", type=_positive(), default=128)
    t.add_argument("--subset", type=_positive(), default=None, help="use only K training images")
    t.add_argument("--balanced", action="store_true", help="with --subset: the same number per class")
    t.add_argument("--download", action="store_true", help="allow torchvision to download the data (online)")
    t.add_argument("--seed", type=_seed, default=0, help="seed of the initial weights, batches, t and noise")
    t.add_argument("--out", required=True, help="run folder for checkpoints")
    t.add_argument("--model", choices=sorted(MODEL_PRESETS), default=None,
                   help="U-Net size preset for MNIST-sized data (default small; CIFAR-10 has its own U-Net; "
                        "with --init-from, the checkpoint's)")
    t.add_argument("--init-from", default=None,
                   help="fine-tune: start from the U-Net weights of this checkpoint (name or path)")
    t.add_argument("--text", default=None, help="CLIP checkpoint (name or path): train a text-to-image model")
    t.add_argument("--cross-attn", type=int, nargs="+", default=None,
                   help="with --text: resolutions with cross-attention (default 7 14, for cifar10 8 16; with "
                        "--init-from, the checkpoint's)")
    t.add_argument("--p-uncond", type=_probability, default=None,
                   help="with --text: prompt dropout probability for CFG (default 0.1)")
    t.add_argument("--p-attribute", type=_probability, default=None,
                   help="with --text: share of training captions with attribute words, e.g. 'a thick seven' "
                        "(default 0.5 for mnist and fashion-mnist; cifar10 has none: 0)")
    t.add_argument("--schedule", choices=["linear", "cosine", "sigmoid"], default=None,
                   help="noise schedule (default cosine; with --init-from, the checkpoint's)")
    t.add_argument("--prediction", choices=["eps", "v", "x0"], default=None,
                   help="what the U-Net predicts (default eps; with --init-from, the checkpoint's)")
    t.add_argument("--loss-weighting", choices=["none", "min_snr"], default="none")
    t.add_argument("--lr", type=_positive(float), default=2e-3)
    t.add_argument("--ema-decay", type=_ema_decay, default=0.999, help="EMA of the weights, in [0, 1)")
    t.add_argument("--checkpoint-every", type=_positive(), default=500)
    t.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    t.add_argument("--compile", action="store_true", help="torch.compile the U-Net")
    t.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format (faster convolutions on recent GPUs)")
    common(t)
    t.set_defaults(func=cmd_train)
