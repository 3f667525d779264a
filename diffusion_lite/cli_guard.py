"""What every command does around its work (cli.main): check --out before any work starts, and give the command
stdout and stderr that survive a reader that went away; and how an out-of-memory error is recognised."""

from __future__ import annotations

import json
import os
from pathlib import Path

_FOLDER_OUT = {"train", "demo", "bench"}  # --out is a folder; export and train-clip take a checkpoint stem
_FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npz", ".npy", ".json", ".safetensors", ".pt", ".pth", ".ckpt")


def _check_report_path(out: Path) -> None:
    """evaluate's report.json must not replace a checkpoint's JSON (a model named after its report: "--checkpoint
    my-model --out my-model.json"), nor shadow a shipped model's name in the current folder."""
    from .cli import CLIError, check_not_shipped

    stem = out.with_suffix("") if out.suffix.lower() == ".json" else None
    if stem is None:
        return
    is_checkpoint = Path(f"{stem}.safetensors").is_file() or (stem / "checkpoint.json").is_file()  # or a run:
    # STEM.json beside the run folder STEM would be what --checkpoint STEM finds, instead of the run
    if out.is_file() and not is_checkpoint:
        try:
            data = json.loads(out.read_text(encoding="utf-8"))
            is_checkpoint = isinstance(data, dict) and "kind" in data  # reports have no "kind"
        except (OSError, ValueError):
            is_checkpoint = False
    if is_checkpoint:
        raise CLIError(f"--out {out} is the JSON of the checkpoint {stem} (or would shadow the run {stem}/): the "
                       f"checkpoint could no longer be loaded by that name; choose another, e.g. --out "
                       f"{stem}-report.json")
    check_not_shipped(str(out))


def check_out(args) -> None:
    """Check --out before any work is done: not a folder where a file goes (or the reverse), and inside a
    folder that exists or can be created and is writable."""
    from .cli import CLIError, check_not_shipped, inside_pretrained

    if getattr(args, "out", None) is None:
        return
    out = Path(args.out)
    if args.command != "export" and inside_pretrained(out):  # export: check_not_shipped, with --replace-shipped
        check_not_shipped(str(out))
    if args.command in _FOLDER_OUT and out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file; expected a folder")
    if args.command in ("sample", "edit", "evaluate") and out.is_dir():
        raise CLIError(f"--out {out} is a folder; expected a file name")
    if args.command in _FOLDER_OUT and not out.exists() and out.suffix.lower() in _FILE_SUFFIXES:
        raise CLIError(f"--out {out} names a file, but {args.command} writes a folder of files there; drop the "
                       f"{out.suffix!r} (e.g. --out {out.with_suffix('')})")
    if args.command == "evaluate":
        _check_report_path(out)
    folder = out if args.command in _FOLDER_OUT else out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise CLIError(f"--out {out}: {folder} is a file, so no folder can be made there")
    try:  # a real file, not os.access: that says yes to root on a read-only disk or in /proc
        from .files import create_temp

        os.remove(create_temp(folder, out.name))
    except OSError as e:
        raise CLIError(f"--out {out}: cannot write in {folder} ({e.strerror or e})") from None


class _SafeStream:
    """stdout/stderr for the length of a command: a reader that went away (`| head`, or `| tee log` after Ctrl-C,
    which stops tee at once) or a closed stream must not stop training before it saves, nor hide the exit code; and
    a console that cannot encode a character (a Windows code page) shows it escaped instead of failing the command
    after its file was written. Writes after the reader is gone are dropped."""

    def __init__(self, stream):
        self._stream, self.gone = stream, stream is None

    def write(self, s: str) -> int:
        if not self.gone:
            try:
                try:
                    self._stream.write(s)
                except UnicodeEncodeError:
                    enc = getattr(self._stream, "encoding", None) or "ascii"
                    self._stream.write(s.encode(enc, "backslashreplace").decode(enc))
            except (OSError, ValueError):  # BrokenPipeError, EPIPE, or a closed file
                self.gone = True
        return len(s)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self.gone = True

    def settle(self) -> None:
        """At the end of the command: flush what is still buffered (a reader gone now is found here, not at exit),
        and point a gone stream's descriptor at /dev/null, else Python's own flush at exit fails and the process
        exits 120 instead of with the command's code (the Python docs' remedy for SIGPIPE)."""
        self.flush()
        if self.gone and self._stream is not None:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
            except (OSError, ValueError, AttributeError):  # no real file behind it (e.g. pytest's capture)
                pass

    def isatty(self) -> bool:
        return not self.gone and bool(getattr(self._stream, "isatty", lambda: False)())

    def __getattr__(self, name):  # encoding, fileno, ...
        return getattr(self._stream, name)


def _out_of_memory(e: BaseException) -> bool:
    """torch's CPU and GPU allocation failures (RuntimeError, torch.OutOfMemoryError) and Python's MemoryError."""
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and any(
        s in str(e) for s in ("out of memory", "can't allocate memory", "tried to allocate", "not enough memory")))
