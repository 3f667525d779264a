"""``diffusion-lite train``'s checks for a run that does not start from scratch: a run folder read back to resume
(its text encoder and settings against this command's), and ``--init-from`` (fine-tuning another checkpoint).
Each mismatch is a CLIError that names the option to change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .train_cli import MODEL_PRESETS, TRAIN_OPTIONS, _unet_config


def read_run(out: Path) -> dict | None:
    """The metadata of the run in folder ``out`` to resume, or None for a new run; CLIError for a folder that
    holds a checkpoint that cannot be resumed (invalid JSON, no weights, an exported model)."""
    from .checkpoints import check_resumable
    from .cli import CLIError

    check_resumable(out / "checkpoint", "choose a new --out to start afresh")  # before "resuming" or "nothing to do"
    if not (out / "checkpoint.json").exists():
        return None
    try:
        saved = json.loads((out / "checkpoint.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CLIError(f"{out / 'checkpoint.json'} is not valid JSON ({e}), so the run cannot be resumed; restore "
                       "it from a copy, or choose a new --out to start afresh") from None
    if not (out / "checkpoint.safetensors").exists():  # say so before announcing a resume
        raise CLIError(f"{out / 'checkpoint.json'} has no checkpoint.safetensors beside it, so the run cannot be "
                       "resumed; restore the weights from a copy, or choose a new --out to start afresh")
    if not isinstance(saved, dict) or "train_state" not in saved:
        kind = saved.get("kind", "non-training") if isinstance(saved, dict) else "non-training"
        raise CLIError(f"{out / 'checkpoint.json'} is a {kind!r} checkpoint without a "
                       "training state (an exported model?), so it cannot be resumed: choose a new --out, or start "
                       f"from its weights with --init-from {out}")
    return saved


def _encoder_name(saved: dict) -> str:
    """The run's text encoder: its --text argument, else the shipped model with those weights, else its sha256."""
    from .checkpoints import PRETRAINED_DIR, list_pretrained

    if saved.get("text_from"):
        return saved["text_from"]
    sha = saved["text"].get("weights_sha256")
    for name in list_pretrained():
        if json.loads((PRETRAINED_DIR / f"{name}.json").read_text(encoding="utf-8")).get("weights_sha256") == sha:
            return name
    return f"<the CLIP checkpoint with weights sha256 {str(sha)[:12]}>"


def check_resume_text(out: Path, saved: dict, args, text_meta: dict | None) -> None:
    """Resume a text-to-image run with the same text encoder, and an unconditional one without --text."""
    from .cli import CLIError

    if saved.get("text") is None:
        if text_meta is not None:
            raise CLIError(f"{out} is an unconditional run (trained without --text); drop --text {args.text} to "
                           "resume it, or choose a new --out for a text-to-image run")
        return
    name = _encoder_name(saved)
    if text_meta is None:
        raise CLIError(f"{out} is a text-to-image run (trained with --text {name}); pass --text {name} to resume it")
    then, now = saved["text"].get("weights_sha256"), text_meta.get("weights_sha256")
    if then != now:
        hint = (f"{args.text} now holds other weights than when the run started; restore them" if name == args.text
                else f"pass --text {name}")
        raise CLIError(f"{out} was trained with the text encoder {name} (weights sha256 {str(then)[:12]}), but --text "
                       f"{args.text} is another one (sha256 {str(now)[:12]}) whose embeddings its cross-attention "
                       f"never learned; {hint} to resume, or choose a new --out to train with {args.text}")


def _preset_of(u) -> str:
    """The --model preset a fresh run builds ``u`` from, or a description for a U-Net of no preset."""
    for m in MODEL_PRESETS:
        try:
            if _unet_config(m, u.in_channels, u.image_size, u.context_dim, u.cross_attn_resolutions) == u:
                return m
        except ValueError:  # the preset has no level at one of u's cross-attention resolutions
            continue
    return "a U-Net of no preset"


def resume_conflicts(saved: dict, args, ucfg, scfg, tcfg) -> list[str]:
    """'--option: saved X, requested Y' for each setting of this command that differs from the run's."""
    from .config import ScheduleConfig, UNetConfig
    from .train import resume_conflicts as train_conflicts

    show = lambda v: "not given" if v is None else repr(v)  # noqa: E731
    diffs = [(TRAIN_OPTIONS.get(k, k), a, b) for k, a, b in train_conflicts(saved.get("train") or {}, tcfg)]
    ds = saved.get("dataset") or {}
    for key, option, value in (("name", "--dataset", args.dataset), ("subset", "--subset", args.subset),
                               ("balanced", "--balanced", args.balanced)):
        if key in ds and ds[key] != value:
            diffs.append((option, ds[key], value))
    if not _same_checkpoint(saved.get("init_from"), args.init_from):
        diffs.append(("--init-from", saved.get("init_from"), args.init_from))
    else:
        diffs += architecture_conflicts(args, UNetConfig.from_dict(saved["unet"]),
                                        ScheduleConfig.from_dict(saved["schedule"]), ucfg, scfg)
    if getattr(args, "text", None):  # the captions' share with attribute words (recorded since 2026-12-07; before,
        from .captions import default_p_attribute  # always the dataset's default)
        run_p = (saved.get("captions") or {}).get("p_attribute", default_p_attribute(args.dataset))
        if run_p != args.p_attribute:
            diffs.append(("--p-attribute", run_p, args.p_attribute))
    defaulted = getattr(args, "defaulted", set())
    return [f"{option}: saved {show(a)}, requested {show(b)}"
            + (f" (the default, as {option} was not given)" if option in defaulted else "") for option, a, b in diffs]


def architecture_conflicts(args, run_u, run_s, ucfg, scfg) -> list[tuple]:
    """(option, the run's value, this command's) for --model, --cross-attn and --schedule where this command's
    U-Net config ``ucfg`` and schedule ``scfg`` differ from the run's ``run_u`` and ``run_s``. With --init-from
    these come from that checkpoint, so only the options given are compared (an equal one is accepted)."""
    defaulted = getattr(args, "defaulted", set())
    asked = lambda option: not args.init_from or option not in defaulted  # noqa: E731
    diffs = []
    if asked("--cross-attn") and sorted(run_u.cross_attn_resolutions) != sorted(ucfg.cross_attn_resolutions):
        diffs.append(("--cross-attn", list(run_u.cross_attn_resolutions), list(ucfg.cross_attn_resolutions)))
    other = [f for f in run_u.to_dict() if f not in ("cross_attn_resolutions", "context_dim")]
    if asked("--model") and any(getattr(run_u, f) != getattr(ucfg, f) for f in other):
        diffs.append(("--model", _preset_of(run_u), args.model))
    if args.init_from:  # --schedule names the kind; the checkpoint's other schedule settings are kept
        if asked("--schedule") and run_s.kind != scfg.kind:
            diffs.append(("--schedule", run_s.kind, scfg.kind))
    else:
        diffs += [("--schedule" if k == "kind" else f"schedule {k}", v, getattr(scfg, k))
                  for k, v in run_s.to_dict().items() if getattr(scfg, k) != v]
    return diffs


def _words(value) -> str:
    """An option's value as typed: [7, 14] -> '7 14'."""
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _same_checkpoint(a: str | None, b: str | None) -> bool:
    """Whether two --init-from arguments name the same checkpoint ('base', './base', an absolute path, or a
    shipped model's name); a name that no longer resolves is compared as written."""
    from .checkpoints import CheckpointError, resolve

    if a == b or a is None or b is None:
        return a == b
    try:
        return resolve(a).resolve() == resolve(b).resolve()
    except CheckpointError:
        return False


def fine_tune_start(args, text, text_meta: dict | None, C: int, H: int):
    """``--init-from``: the checkpoint's U-Net and schedule configs, its prediction target and its U-Net weights,
    checked against this run's text encoder and images (C channels, H pixels); CLIError when they do not fit."""
    from .checkpoints import dataset_name, load_checkpoint, split_prefix
    from .cli import CLIError
    from .config import ScheduleConfig, UNetConfig

    init_tensors, init_meta = load_checkpoint(args.init_from)
    if "unet" not in init_meta:
        raise CLIError(f"--init-from expects a diffusion checkpoint, got kind {init_meta.get('kind')!r}")
    if (init_meta.get("text") is None) != (text is None):
        raise CLIError("--init-from: the checkpoint and this run must both be text-conditional or both not "
                       f"(checkpoint text encoder: {'yes' if init_meta.get('text') else 'none'}, --text "
                       f"{args.text or 'not given'})")
    D = UNetConfig.from_dict(init_meta["unet"]).context_dim
    if text is not None and D != text.context_dim:
        raise CLIError(f"--init-from {args.init_from}: its cross-attention takes {D}-wide token embeddings, "
                       f"but --text {args.text} gives {text.context_dim}-wide ones")
    init_sha = (init_meta.get("text") or {}).get("weights_sha256")
    if text_meta is not None and init_sha and init_sha != text_meta.get("weights_sha256"):
        print(f"warning: --init-from {args.init_from} was trained with another text encoder than --text "
              f"{args.text}: its cross-attention learned that encoder's embeddings, so the prompts start out "
              "meaningless to it (use the same --text to fine-tune, or expect to retrain the conditioning)",
              file=sys.stderr)
    ucfg = UNetConfig.from_dict(init_meta["unet"])
    scfg = ScheduleConfig.from_dict(init_meta["schedule"])
    asked_u = _unet_config(args.model, C, H, ucfg.context_dim, args.cross_attn)
    conflicts = architecture_conflicts(args, ucfg, scfg, asked_u, ScheduleConfig(kind=args.schedule or scfg.kind))
    if conflicts:
        what = "; ".join(f"{o} {_words(b)}: {args.init_from} has {_words(a)}" for o, a, b in conflicts)
        raise CLIError(f"{what}. Fine-tuning keeps the U-Net and schedule of {args.init_from}: drop "
                       f"{' and '.join(o for o, _, _ in conflicts)}, or train from scratch")
    init_prediction = init_meta.get("prediction", "eps")
    if args.prediction is not None and args.prediction != init_prediction:
        raise CLIError(f"--prediction {args.prediction}: {args.init_from} was trained to predict "
                       f"{init_prediction}, and its weights mean that; drop --prediction to fine-tune it")
    prediction = init_prediction
    if (ucfg.in_channels, ucfg.image_size) != (C, H):
        raise CLIError(f"--init-from: the checkpoint's U-Net takes {ucfg.in_channels}x{ucfg.image_size}px "
                       f"images, but {args.dataset} has {C}x{H}px")
    init_tensors = split_prefix(init_tensors, "unet")
    init_data = dataset_name(init_meta)
    if init_data and init_data != args.dataset:  # transfer may be meant (the shapes fit): say so
        print(f"note: --init-from {args.init_from} was trained on {init_data}; fine-tuning it on {args.dataset}",
              file=sys.stderr)
    print(f"initialising the U-Net from {args.init_from} (its architecture, schedule and {prediction} target)")
    return ucfg, scfg, prediction, init_tensors
