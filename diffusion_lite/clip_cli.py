"""``diffusion-lite train-clip``: train the CLIP-style text/image encoder pair (chapter 06).

The finished encoder is OUT.safetensors + OUT.json, written only when training has completed (a text-to-image run
depends on it). Until then the run lives in OUT.partial.safetensors + OUT.partial.json (clip_train.RUN_KIND, which
checkpoints.load and ``train --text`` refuse): saved every --checkpoint-every steps and when Ctrl-C, SIGTERM or SIGHUP
stops training (exit code 128 + the signal), resumed by the same command, and deleted once OUT is written. Once
OUT is written, the same command again has nothing to do (exit code 0, as with ``train``); another command with
that --out is refused: a finished encoder is never overwritten nor trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

# command-line option -> where a partial run's JSON records it (all but --steps must match to resume)
RUN_OPTIONS = {"--dataset": ("dataset", "name"), "--subset": ("dataset", "subset"), "--seed": ("seed",),
               "--width": ("config", "width"), "--batch-size": ("train", "batch_size"), "--lr": ("train", "lr"),
               "--p-attribute": ("train", "p_attribute")}


def _option_diffs(saved: dict, args, options: dict) -> list[str]:
    """'--lr: saved 0.002, requested 0.001' for each option whose value in ``saved`` differs from the command's."""
    show = lambda v: "not given" if v is None else repr(v)  # noqa: E731
    diffs = []
    for option, keys in options.items():
        value, requested = saved, getattr(args, option[2:].replace("-", "_"))
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if value is None and option == "--p-attribute":  # recorded since 2026-12-07; before, always the default
            from .captions import default_p_attribute
            value = default_p_attribute(args.dataset)
        if value != requested:
            default = f" (the default, as {option} was not given)" if option in getattr(args, "defaulted", ()) else ""
            diffs.append(f"{option}: saved {show(value)}, requested {show(requested)}{default}")
    return diffs


def _partial_run(partial: str, args) -> dict | None:
    """The meta of the interrupted run at PARTIAL.{safetensors,json}, checked to be this command's; None if none."""
    from .checkpoints import check_resumable
    from .cli import CLIError
    from .clip_train import RUN_KIND

    sidecar, weights = Path(partial + ".json"), Path(partial + ".safetensors")
    afresh = f"delete {sidecar} and {weights} to start afresh"
    check_resumable(partial, afresh)
    if not sidecar.exists():
        return None
    try:
        saved = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CLIError(f"{sidecar} is not valid JSON ({e}), so the interrupted run cannot be resumed; restore it from "
                       f"a copy, or {afresh}") from None
    if not isinstance(saved, dict) or saved.get("kind") != RUN_KIND or "train_state" not in saved:
        kind = saved.get("kind") if isinstance(saved, dict) else None
        raise CLIError(f"{sidecar} is a {kind!r} checkpoint, not an interrupted train-clip run; move it away, or "
                       "choose another --out")
    if not weights.exists():
        raise CLIError(f"{sidecar} has no {weights.name} beside it, so the interrupted run cannot be resumed; restore "
                       f"the weights from a copy, or {afresh}")
    diffs = _option_diffs(saved, args, RUN_OPTIONS)
    if diffs:
        raise CLIError(f"cannot resume the interrupted run {partial}: this command's settings differ from the run's: "
                       f"{'; '.join(diffs)}. Re-run with the run's settings (only --steps may change), or {afresh}")
    done = saved["train_state"]["step"]
    if done > args.steps:
        raise CLIError(f"the interrupted run {partial} is already at step {done}, past --steps {args.steps}: give "
                       f"--steps {(saved.get('train') or {}).get('steps')} (the run's), or at least {done}")
    return saved


# command-line option -> where a finished encoder's JSON records it (save_clip's meta: dataset, config and card)
FINISHED_OPTIONS = {"--steps": ("card", "steps"), "--dataset": ("dataset", "name"), "--subset": ("dataset", "subset"),
                    "--seed": ("card", "seed"), "--width": ("config", "width"),
                    "--batch-size": ("card", "batch_size"), "--lr": ("card", "lr"),
                    "--p-attribute": ("card", "p_attribute")}


def _finished_encoder(stem: str, args) -> bool:
    """True if STEM.{safetensors,json} is the encoder this very command trains (re-running it has nothing to do,
    as with ``train``); False if neither file exists. Anything else there is a CLIError: a finished encoder is never
    overwritten, nor trained on (its optimizer state is not kept), and a text-to-image run may depend on it."""
    from .cli import CLIError

    existing = [f"{stem}{s}" for s in (".safetensors", ".json") if Path(stem + s).exists()]
    if not existing:
        return False
    keep = "choose another --out, or delete them first (a text-to-image run trained on that encoder would no " \
           "longer resume)"
    try:
        saved = json.loads(Path(stem + ".json").read_text(encoding="utf-8")) if len(existing) == 2 else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        saved = None
    if not isinstance(saved, dict) or saved.get("kind") != "clip" or "card" not in saved:
        raise CLIError(f"{' and '.join(existing)} already exist: {keep}")
    diffs = _option_diffs(saved, args, FINISHED_OPTIONS)
    if diffs:
        raise CLIError(f"{stem}.safetensors is a finished encoder trained with other settings than this command's: "
                       f"{'; '.join(diffs)}. A finished encoder is never overwritten nor trained on: {keep}")
    return True


def cmd_train_clip(args) -> None:
    import torch

    from .captions import class_prompts
    from .cli import CLIError, check_not_shipped, check_stem, p_attribute_option
    from .clip import CLIPConfig, CLIPModel, save_clip, zero_shot_accuracy
    from .clip_train import train_clip
    from .data import load_dataset
    from .train_state import TrainingInterrupted
    from .utils import LogLines, get_device

    stem = check_stem(args.out)
    check_not_shipped(args.out)
    args.defaulted = {"--p-attribute"} if args.p_attribute is None else set()  # a conflict on it says "(the default)"
    args.p_attribute = p_attribute_option(args.p_attribute, args.dataset)
    if _finished_encoder(stem, args):
        print(f"{stem}.safetensors is already trained with these settings ({args.steps} steps): nothing to do; "
              "choose another --out to train another encoder")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.width % CLIPConfig.heads:  # checked before the data loads; CLIPConfig checks it again
        raise CLIError(f"--width {args.width}: expected a multiple of {CLIPConfig.heads} (the text encoder's "
                       "attention heads)")
    if args.subset is not None and args.subset % 10:  # all three datasets have 10 classes
        lo, hi = args.subset // 10 * 10, args.subset // 10 * 10 + 10
        raise CLIError(f"--subset {args.subset}: train-clip takes the same number of images of each class (K / 10), "
                       f"so K must be a multiple of 10: use {f'{lo} or {hi}' if lo else hi}")
    partial = f"{stem}.partial"  # the unfinished run: never mistaken for the encoder
    saved = _partial_run(partial, args)
    device = get_device(args.device)
    train = load_dataset(args.dataset, "train", subset=args.subset, balanced=args.subset is not None,
                         download=args.download)
    test = load_dataset(args.dataset, "test", download=args.download)
    if len(test) < 2000:  # else load_dataset's "subset=2000" error names a value the user never gave
        raise CLIError(f"the zero-shot check after training uses 2,000 {args.dataset} test images, but its test "
                       f"split has only {len(test)}: is the copy of {args.dataset} complete?")
    test = load_dataset(args.dataset, "test", subset=2000)  # the first 2,000 (read from the cache)
    if args.batch_size > len(train):  # a contrastive batch holds distinct images: none may repeat
        raise CLIError(f"--batch-size {args.batch_size} is larger than the {len(train)} training images; use "
                       f"--batch-size {len(train)} or less (or a larger --subset)")
    torch.manual_seed(args.seed)  # the initial weights too: the same command gives the same model
    model = CLIPModel.for_dataset(args.dataset, width=args.width)
    g = torch.Generator().manual_seed(args.seed)
    if saved is not None:
        print(f"resuming the interrupted run {partial} from step {saved['train_state']['step']} of {args.steps}")
    meta = {"dataset": {"name": args.dataset, "subset": args.subset}, "seed": args.seed}
    try:
        log = LogLines("train-clip", args.steps, saved["train_state"]["step"] if saved else 0) if args.quiet else None
        history = train_clip(model, train, steps=args.steps, batch_size=args.batch_size, lr=args.lr, generator=g,
                             device=device, checkpoint=partial, checkpoint_every=args.checkpoint_every, meta=meta,
                             callback=log, p_attribute=args.p_attribute)
    except FloatingPointError as e:  # a NaN loss: the partial run holds these settings, so a new lr needs a new run
        raise CLIError(f"{e}, with a new --out (or delete {partial}.json and {partial}.safetensors: a run resumes "
                       "only with its own settings)") from None
    except TrainingInterrupted as e:  # cli.main prints it and exits with 128 + the signal
        raise TrainingInterrupted(f"{e}; rerun the same command to resume it ({stem}.safetensors and {stem}.json are "
                                  "written when training completes)", e.signum) from None
    final = json.loads(Path(partial + ".json").read_text(encoding="utf-8"))
    minutes = final["train_state"]["seconds"] / 60  # all sessions
    model.eval()
    with torch.no_grad():
        acc = zero_shot_accuracy(model, test.images.to(device), test.labels.to(device), class_prompts(args.dataset))
    meta["card"] = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                    "p_attribute": args.p_attribute,
                    "minutes": round(minutes, 2), "final_loss": round(sum(history[-20:]) / min(20, len(history)), 4),
                    "zero_shot_accuracy_test2000": round(acc, 4)}
    stem = save_clip(stem, model, {"dataset": meta["dataset"], "card": meta["card"]})
    for f in (".json", ".safetensors"):  # the finished encoder is written: the run is no longer needed
        Path(partial + f).unlink(missing_ok=True)
    print(f"zero-shot accuracy on 2,000 {args.dataset} test images: {acc:.2%} ({minutes:.1f} min of training)")
    print(f"wrote {stem}.safetensors and {stem}.json; train a text-to-image model on it with:")
    from .train_cli import default_cross_attn  # the shipped recipe attends at 7 px only: the smaller default level
    cross_attn = min(default_cross_attn(args.dataset))
    print(f"  diffusion-lite train --dataset {args.dataset} --text {stem} --cross-attn {cross_attn} --steps 4000 "
          "--out runs/t2i")


def add_parser(sub, common) -> None:
    from .cli import _positive, _probability, _seed

    p = sub.add_parser("train-clip", help="train a CLIP-style text/image encoder pair contrastively (resumes an "
                                          "interrupted run)")
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist or cifar10")
    p.add_argument("--steps", type=_positive(), default=1500, help="optimizer steps in total")
    p.add_argument("--batch-size", type=_positive(), default=256)
    p.add_argument("--lr", type=_positive(float), default=2e-3)
    p.add_argument("--width", type=_positive(), default=64, help="text token width D (the U-Net's context_dim)")
    p.add_argument("--subset", type=_positive(), default=None, help="train on K images, K / 10 of each class")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the initial weights and the batches")
    p.add_argument("--p-attribute", type=_probability, default=None,
                   help="share of training captions with attribute words, e.g. 'a thick seven' (default 0.5 for "
                        "mnist and fashion-mnist; cifar10 has none: 0)")
    p.add_argument("--download", action="store_true", help="fetch the dataset with torchvision if not found (online)")
    p.add_argument("--checkpoint-every", type=_positive(), default=500,
                   help="save the unfinished run (OUT.partial.*) every N steps")
    p.add_argument("--out", required=True, help="checkpoint path (writes OUT.safetensors + OUT.json when training "
                                                "completes; OUT.partial.* holds an unfinished run)")
    common(p)
    p.set_defaults(func=cmd_train_clip)
