"""The ``diffusion-lite`` command line: train, sample, demo, export, train-clip, evaluate, bench.

This module holds the dispatcher, export and demo; train, sample, train-clip, evaluate and bench are in
train_cli.py, sample_cli.py, clip_cli.py, eval_cli.py and bench_cli.py, registered on the same subparsers.

Every command has ``--help``; bad arguments end in a one-line error (exit code 2), not a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

from .cli_guard import _out_of_memory, _SafeStream, check_out
from .train_cli import MODEL_PRESETS  # noqa: F401  (re-exported: benchmarks/models.py)


class CLIError(Exception):
    """An error meant for the user: printed as one line."""


def _positive(kind=int):
    what = "an integer" if kind is int else "a number"

    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if (kind is float and not math.isfinite(v)) or v <= 0:  # NaN passes "<= 0"; an infinite lr trains to NaN
            raise argparse.ArgumentTypeError(f"expected a positive number, got {s}")
        if kind is int and v >= 2**63:  # torch's sizes and counts are 64-bit
            raise argparse.ArgumentTypeError(f"expected an integer below 2**63, got one of {len(s)} digits")
        return v
    return parse


def _probability(s: str) -> float:
    """--p-uncond and --p-attribute: a number in [0, 1]."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not 0.0 <= v <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {s}")
    return v


def p_attribute_option(p_attribute: float | None, dataset: str) -> float:
    """--p-attribute of train --text and train-clip: the value given, or the dataset's default share of captions
    with attribute words (captions.check_p_attribute), as a CLIError that names the option."""
    from .captions import check_p_attribute
    from .data import dataset_info

    dataset_info(dataset)  # an unknown name is that error (with a did-you-mean), not one about attributes
    try:
        return check_p_attribute(p_attribute, dataset)
    except ValueError as e:
        raise CLIError(f"--p-attribute: {e}".replace("use p_attribute=0", "drop --p-attribute or give 0")) from None


def _seed(s: str) -> int:
    """--seed: an integer in [0, 2**63), the range every generator the package seeds accepts."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**63 - 1, got {s}")
    return v


def _setup(args) -> "torch.device":  # noqa: F821
    import torch

    from .utils import get_device

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return get_device(getattr(args, "device", None))


def check_stem(out: str) -> str:
    """--out of a command that writes OUT.safetensors and OUT.json: the stem (a given .safetensors or .json
    suffix dropped); a folder, or an image or pickle suffix, is a CLIError."""
    suffix = Path(out).suffix
    if suffix.lower() in (".png", ".jpg", ".npz", ".npy", ".pt", ".pth", ".ckpt", ".bin", ".pkl"):
        raise CLIError(f"--out is a checkpoint stem: it writes STEM.safetensors and STEM.json; drop the {suffix!r} "
                       f"(got {out!r})")
    stem = out.removesuffix(".safetensors").removesuffix(".json")
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        raise CLIError(f"--out {out} is a folder; expected a checkpoint stem (e.g. {Path(out) / 'clip'})")
    if Path(stem).is_dir():  # STEM.json beside the folder STEM/: --checkpoint STEM would find only one of them
        raise CLIError(f"--out {out}: {stem} is a folder (a run?), and {stem}.json beside it would shadow it for "
                       f"`--checkpoint {stem}`; choose another name")
    return stem


def inside_pretrained(out: str | os.PathLike, pretrained_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``out`` is the package's pretrained folder (or ``pretrained_dir``) or lies inside it (symlinks,
    relative paths and case-insensitive file systems included: every existing ancestor is compared with
    os.path.samefile)."""
    from .checkpoints import PRETRAINED_DIR

    path = Path(os.path.abspath(out))
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                if os.path.samefile(folder, pretrained_dir or PRETRAINED_DIR):
                    return True
            except OSError:
                pass
    return False


def check_not_shipped(out: str, replace_shipped: bool = False, can_replace: bool = False,
                      how_to_replace: str = "`diffusion-lite export ... --replace-shipped`",
                      source_pretrained: str | os.PathLike | None = None) -> None:
    """--out must not replace a shipped model: neither a path inside the package's pretrained folder (unless
    ``replace_shipped``: export's --replace-shipped, which its message mentions, as ``how_to_replace``, when
    ``can_replace``), nor the bare name of a shipped model in the current folder (checkpoints.resolve prefers local
    files and run folders, so every later use of that name here would load the new files instead of the shipped
    ones). ``source_pretrained``: the pretrained folder of the checkout a maintainer script runs from, guarded
    the same way (it is not the installed package's when that script runs with another checkout's environment)."""
    from .checkpoints import PRETRAINED_DIR, list_pretrained

    path = Path(str(out).removesuffix(".safetensors").removesuffix(".json")).resolve()
    folders = [PRETRAINED_DIR] + ([source_pretrained] if source_pretrained else [])
    folder = next((f for f in folders if inside_pretrained(path, f)), None)
    if folder is not None:
        if not replace_shipped:
            hint = f" (maintainers re-training a shipped model: {how_to_replace})"
            raise CLIError(f"--out {out} is inside the package's pretrained folder ({Path(folder).resolve()}): "
                           "it would replace or add to the shipped models; choose a path outside it"
                           + (hint if can_replace else ""))
        return
    name = path.name
    if path.parent == Path.cwd().resolve() and name in list_pretrained():
        raise CLIError(f"--out {out} is the name of a shipped model: the new files would be loaded instead of it by "
                       f"every later use of {name!r} in this folder; choose another name (e.g. my-{name})")


def _kind_of(sidecar: Path) -> str:
    """What a checkpoint's JSON says it holds, for messages: "a 'clip' checkpoint", or why that is unknown."""
    try:
        kind = json.loads(sidecar.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return "its JSON is missing or unreadable"
    return f"a {kind!r} checkpoint"


def cmd_export(args) -> None:
    from .checkpoints import load

    stem = check_stem(args.out)  # as save_checkpoint names it
    check_not_shipped(args.out, replace_shipped=args.replace_shipped, can_replace=True)
    target = Path(stem + ".json")
    if target.is_file() and "train_state" in target.read_text(encoding="utf-8"):
        raise CLIError(f"{target} is a training checkpoint (it resumes a run); export to another --out")
    existing = [f for f in (target, Path(stem + ".safetensors")) if f.exists()]
    if existing and not args.overwrite and not (args.replace_shipped and inside_pretrained(stem)):
        raise CLIError(f"{existing[0]} exists ({_kind_of(target)}); export to another --out, or add --overwrite "
                       "to replace it")
    pipe = load(args.run)
    if not hasattr(pipe, "save"):
        raise CLIError(f"export turns a diffusion run into an inference checkpoint; {args.run} is a "
                       f"{type(pipe).__name__} checkpoint (copy its .safetensors and .json files instead)")
    if args.card:
        try:
            card = json.loads(Path(args.card).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CLIError(f"--card {args.card}: expected a JSON file of model-card facts, in UTF-8 ({e})") from None
        pipe.meta["card"] = card
    stem = pipe.save(args.out)
    print(f"wrote {stem}.safetensors and {stem}.json (inference only: EMA weights and configs)")


def cmd_demo(args) -> None:
    from .demo import run_demo

    _setup(args)
    run_demo(Path(args.out), device=getattr(args, "device", None))


EXAMPLES = """examples (each command's --help lists its options):
  diffusion-lite demo                                                   # pictures from the shipped models
  diffusion-lite sample --checkpoint mnist-text2img --prompt "a thick seven" --n 16 --guidance 3 --out seven.png
  diffusion-lite edit --checkpoint mnist-text2img --images sevens.npz --prompt "the digit one" --out ones.png
                                                                        # sevens.npz: from sample --out sevens.npz
  diffusion-lite train --dataset mnist --steps 2000 --out runs/uncond   # rerun the same command to resume
  diffusion-lite train-clip --out my-clip
  diffusion-lite train --dataset mnist --text my-clip --cross-attn 7 --steps 4000 --out runs/t2i
  diffusion-lite export --run runs/t2i --out my-model
  diffusion-lite evaluate --checkpoint mnist-text2img --n 1000 --guidance 3 --out report.json"""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="diffusion-lite", description="Train and sample small diffusion models.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp):
        sp.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N or mps (default: $DIFFUSION_LITE_DEVICE if set, else the best "
                             "available)")
        sp.add_argument("--threads", type=_positive(), default=None, help="CPU threads for torch")
        logs = "; a plain line every 5%% of the run instead" if sp.prog.split()[-1] in ("train", "train-clip") else ""
        sp.add_argument("--quiet", action="store_true",
                        help=f"no progress bars (as TQDM_DISABLE=1), e.g. in logs{logs}")

    from . import edit_cli, sample_cli, train_cli

    train_cli.add_parser(sub, common)
    sample_cli.add_parser(sub, common)
    edit_cli.add_parser(sub, common)

    e = sub.add_parser("export", help="write an inference-only checkpoint from a run folder")
    e.add_argument("--run", required=True, help="run folder of `diffusion-lite train` (or a checkpoint)")
    e.add_argument("--out", required=True, help="checkpoint stem: writes OUT.safetensors and OUT.json")
    e.add_argument("--card", default=None, help="JSON file with model-card facts to store")
    e.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --out")
    e.add_argument("--replace-shipped", action="store_true",
                   help="allow --out inside the package's pretrained folder (maintainers re-training a shipped model)")
    e.set_defaults(func=cmd_export)

    d = sub.add_parser("demo", help="the quick tour: sample from the shipped models into a picture")
    d.add_argument("--out", default="outputs", help="folder for the pictures")
    common(d)
    d.set_defaults(func=cmd_demo)

    from . import bench_cli, clip_cli, eval_cli

    clip_cli.add_parser(sub, common)
    eval_cli.add_parser(sub, common)
    bench_cli.add_parser(sub, common)
    for sp in sub.choices.values():  # --help shows the defaults
        sp.formatter_class = _DefaultsHelp
        for a in sp._actions:
            if a.help is None and not any(a.default is v for v in (None, False, argparse.SUPPRESS)):
                a.help = "(default: %(default)s)"
    return p


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, unless it is None/False or the help text already names it."""

    def _get_help_string(self, action):
        help = action.help or ""
        if action.default is None or action.default is False or "default" in help:
            return action.help
        return super()._get_help_string(action)


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
    format_before = warnings.formatwarning  # one-line warnings while the command runs, restored after
    warnings.formatwarning = lambda message, category, *a, **k: f"diffusion-lite: warning: {message}\n"
    tqdm_before = os.environ.get("TQDM_DISABLE")
    if getattr(args, "quiet", False) or sys.stderr is None:  # every bar in the package asks progress_disabled()
        os.environ["TQDM_DISABLE"] = "1"
    streams_before = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _SafeStream(sys.stdout), _SafeStream(sys.stderr)
    try:
        check_out(args)
        args.func(args)
    except (CLIError, CheckpointError, ValueError, OSError, DatasetDownloadError) as e:
        print(f"diffusion-lite {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, MemoryError) as e:
        if not _out_of_memory(e):
            raise
        fix = {"sample": "lower --n or --batch-size", "evaluate": "lower --batch-size",
               "edit": "edit fewer --images at a time"}.get(
            args.command, "lower --batch-size" if args.command in ("train", "train-clip") else "free some memory")
        what = (str(e).splitlines() or [type(e).__name__])[0][:200]  # Python's MemoryError has no message
        print(f"diffusion-lite {args.command}: error: out of memory ({what}); {fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # train: "training interrupted at step N; the run is saved in OUT ..."
        print(f"diffusion-lite {args.command}: {str(e) or 'interrupted'}"
              + (" (rerun the same command)" if args.command == "train" and str(e) else ""), file=sys.stderr)
        return 128 + int(getattr(e, "signum", 2))  # as a shell reports a process ended by that signal
    finally:
        sys.stdout.settle()
        sys.stderr.settle()
        sys.stdout, sys.stderr = streams_before
        warnings.formatwarning = format_before
        if tqdm_before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = tqdm_before
    return 0


if __name__ == "__main__":  # python -m diffusion_lite.cli: run the package's module (the subcommands import it, and a
    from diffusion_lite.cli import main as package_main  # second copy's CLIError would escape as a traceback)

    sys.exit(package_main())
