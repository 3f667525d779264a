"""The guidance options shared by ``sample``, ``edit`` and ``evaluate`` (--guidance, --guidance-interval,
--cads, --cads-window, --negative-prompt), and the checks that turn options which would change nothing into
errors (registered by each command's add_parser)."""

from __future__ import annotations

import argparse
import warnings

from .cli import CLIError


def one_negative_prompt(args) -> str | None:
    """--negative-prompt (an "append" option: repeating it must not silently keep only the last), or None."""
    negatives = args.negative_prompt or []
    if len(negatives) > 1:
        raise CLIError(f"--negative-prompt given {len(negatives)} times ({', '.join(map(repr, negatives))}): give "
                       "it once, it applies to every prompt; to steer away from several words, put them in one "
                       f"prompt, e.g. --negative-prompt {' '.join(negatives)!r}")
    return negatives[0] if negatives else None


def check_something_to_steer(args, pipe, worded: list[str]) -> None:
    """--guidance or --guidance-interval with only the empty prompt and no negative prompt change nothing: an
    error (sample and edit)."""
    if pipe.is_text_conditional and not worded and args.negative_prompt is None:
        given = [f"--{n.replace('_', '-')}" for n in ("guidance", "guidance_interval") if getattr(args, n) is not None]
        if given and args.cads is None:  # the empty prompt is both branches of guidance: nothing to steer (CADS
            # noises the conditional branch's <bos>/<eos> tokens, so with it the branches do differ)
            verb = "steers" if len(given) == 1 else "steer"
            raise CLIError(f"{', '.join(given)} {verb} samples towards a prompt, and none was given (the empty "
                           "prompt is both branches of guidance, so it would change nothing): add --prompt, or "
                           "--negative-prompt to steer away from one")


def add_guidance_args(p: argparse.ArgumentParser) -> None:
    """--guidance, --guidance-interval, --cads, --cads-window (sample and evaluate)."""
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale s (text models; default 3)")
    p.add_argument("--guidance-interval", type=int, nargs=2, default=None, metavar=("T_LO", "T_HI"),
                   help="apply the guidance scale only for timesteps T_LO <= t <= T_HI (s = 1 elsewhere)")
    p.add_argument("--cads", type=float, default=None, metavar="NOISE",
                   help="condition-annealed sampling: noise the prompt tokens early in the chain with this "
                        "scale (Sadat et al. 2024; 0.5 is a good start for mnist-text2img)")
    p.add_argument("--cads-window", type=float, nargs=2, default=None, metavar=("TAU1", "TAU2"),
                   help="with --cads: full prompt for t/(T-1) <= TAU1, pure noise for t/(T-1) >= TAU2 "
                        "(default 0.6 0.9)")


def check_guidance_args(args, pipe, grid: list[int] | None = None) -> None:
    """Options that would be silently ignored are errors: guidance options on an unconditional model, an
    interval outside the schedule's timesteps, a negative prompt at s = 1 (unused) or s = 0 (it alone makes the
    images, unless --guidance-interval keeps the prompt outside the interval), an interval at s = 1, --cads at
    s = 0 (again unless there is an interval), --cads-window without --cads, --eta with a sampler other than ddim, an
    interval that holds none of the timesteps --steps samples, an empty --negative-prompt (the default branch);
    so is --steps above the model's T. ``grid``: the timesteps actually run, when not the whole grid of --steps
    (``edit`` runs its end): an interval or a CADS window that none of them reaches is an error too. (The Python
    API, pipeline.model_fn, takes all of these.)"""
    import math

    given = [f"--{name.replace('_', '-')}" for name in ("guidance", "guidance_interval", "negative_prompt", "cads")
             if getattr(args, name, None) is not None]
    if given and not pipe.is_text_conditional:
        raise CLIError(f"this checkpoint is unconditional: {', '.join(given)} only "
                       f"{'applies' if len(given) == 1 else 'apply'} to text-to-image models")
    if args.guidance is not None and not (math.isfinite(args.guidance) and args.guidance >= 0):
        raise CLIError(f"--guidance must be a finite number >= 0 (0: unconditional, 1: conditional), "
                       f"got {args.guidance}")
    if args.guidance is not None and args.guidance > 20:
        warnings.warn(f"--guidance {args.guidance:g} is far above the usual 1-10: expect saturated, noisy images "
                      "(chapter 08 shows the sweep up to 8)", stacklevel=2)
    T = pipe.schedule.T
    if getattr(args, "steps", None) is not None and args.steps > T:
        raise CLIError(f"--steps {args.steps}: expected at most {T} (this model's T; each step is one of its "
                       "timesteps)")
    if args.guidance_interval is not None and not 0 <= args.guidance_interval[0] <= args.guidance_interval[1] <= T - 1:
        raise CLIError(f"--guidance-interval {args.guidance_interval[0]} {args.guidance_interval[1]}: expected "
                       f"0 <= T_LO <= T_HI <= {T - 1} (this model's timesteps)")
    negative = getattr(args, "negative_prompt", None)
    if negative is not None and not negative.strip():
        raise CLIError(f"--negative-prompt {negative!r} is the empty prompt, which is already the unconditional "
                       "branch guidance steers away from, so it changes nothing: drop it, or name the words to "
                       "steer away from, e.g. --negative-prompt 'thick'")
    if args.guidance == 1 and getattr(args, "negative_prompt", None) is not None:
        raise CLIError("--negative-prompt replaces the unconditional branch, which guidance 1 does not use "
                       "(s = 1 is the conditional model alone); use a scale other than 1")
    whole_chain = args.guidance_interval is None  # with an interval, s = 1 (the prompt) is used outside it
    if args.guidance == 0 and whole_chain and getattr(args, "negative_prompt", None) is not None:
        raise CLIError("--negative-prompt replaces the unconditional branch, which is all that guidance 0 uses (s = 0 "
                       "is the unconditional model alone), so the images would come from the negative prompt alone; "
                       "to sample it, pass it as --prompt, or use a scale above 0")
    if args.guidance == 1 and args.guidance_interval is not None:
        raise CLIError("--guidance-interval applies the scale inside T_LO..T_HI and s = 1 outside it, so with "
                       "guidance 1 it changes nothing; drop --guidance-interval or use a scale other than 1")
    if args.guidance == 0 and whole_chain and args.cads is not None:
        raise CLIError("--cads noises the prompt, which guidance 0 does not use (s = 0 is the unconditional "
                       "model alone); drop --cads or use a scale above 0")
    if args.cads_window is not None and args.cads is None:
        raise CLIError("--cads-window needs --cads NOISE")
    if grid is None and getattr(args, "steps", None) is not None:
        from .sampling import timesteps

        grid = timesteps(pipe.schedule, args.steps, getattr(args, "spacing", "linspace"))
    runs = f"that --steps {args.steps} samples" if getattr(args, "strength", None) is None else \
        f"that --strength {args.strength:g} runs of --steps {args.steps}"
    shown = "" if grid is None else ", ".join(map(str, grid[:8])) + (", ..." if len(grid) > 8 else "")
    if args.guidance_interval is not None and grid is not None:
        lo, hi = args.guidance_interval
        if not any(lo <= t <= hi for t in grid):  # guidance would never act: the same images as guidance 1
            raise CLIError(f"--guidance-interval {lo} {hi} holds none of the {len(grid)} timesteps {runs} ({shown}), "
                           "so guidance would never act; widen it or use more --steps")
    if args.cads is not None and grid is not None:
        tau1 = args.cads_window[0] if args.cads_window is not None else 0.6
        if not any(t / (T - 1) >= tau1 for t in grid):  # the prompt is never noised: the same images
            raise CLIError(f"--cads noises the prompt only for t/(T-1) >= {tau1:g}, and none of the {len(grid)} "
                           f"timesteps {runs} ({shown}) is that noisy, so it would change nothing")
    if args.sampler != "ddim" and args.eta != 0.0:
        how = "always adds its full noise" if args.sampler == "ddpm" else "adds none"
        raise CLIError(f"--eta is DDIM's noise setting; the {args.sampler} sampler {how} (drop --eta or use "
                       "--sampler ddim)")


def _cads(args, pipe):
    """The CADS settings of --cads/--cads-window, or None."""
    if args.cads is None:
        return None
    from .guidance import CADS
    if not pipe.is_text_conditional:
        raise CLIError("--cads noises the prompt; this checkpoint is unconditional")
    tau1, tau2 = args.cads_window if args.cads_window is not None else (0.6, 0.9)
    try:
        return CADS(noise_scale=args.cads, tau1=tau1, tau2=tau2)
    except ValueError as e:
        raise CLIError(f"--cads {args.cads:g}" + (f" --cads-window {tau1:g} {tau2:g}" if args.cads_window else "")
                       + f": {e}") from None
