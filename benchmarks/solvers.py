"""DDIM against DPM-Solver++(2M) at equal steps: the BENCHMARKS.md table, read from `diffusion-lite evaluate`
reports named results/solver_<checkpoint>_<sampler>[-<spacing>]_<steps>[_interval<lo>-<hi>].json (one file per
row; each one evaluate command, shown with the table; the spacing is named only when it is not the default,
linspace, and the guidance interval only when there is one: those rows make a table of their own). There is no
runner: the commands are the evaluate CLI's."""

from __future__ import annotations

import json
from pathlib import Path

PATTERN = "solver_*.json"
ORDER = {"ddim": 0, "dpm++2m": 1, "ddpm": 2}  # within a step count: the two ODE solvers, then DDPM


def _spacing(s: dict) -> str:
    return s.get("spacing", "linspace")  # reports from before the option: linspace, the only grid then


def _order(s: dict) -> tuple[int, bool]:
    return ORDER.get(s["sampler"], 9), _spacing(s) != "linspace"  # a sampler's default grid first, then the other


def _interval(s: dict) -> tuple[int, int] | None:
    iv = s.get("guidance_interval")
    return tuple(iv) if iv else None


def load(results: Path) -> dict[str, dict]:
    """{file stem: evaluate report} for every solver_*.json in ``results``."""
    return {f.stem: json.loads(f.read_text(encoding="utf-8")) for f in sorted(results.glob(PATTERN))}


def _command(r: dict, stem: str) -> str:
    s = r["settings"]
    guidance = f" --guidance {s['guidance']:g}" if s.get("guidance") is not None else ""
    spacing = f" --spacing {_spacing(s)}" if _spacing(s) != "linspace" else ""
    interval = " --guidance-interval {} {}".format(*_interval(s)) if _interval(s) else ""
    return (f"diffusion-lite evaluate --checkpoint {s['checkpoint']} --n {r['n']}{guidance} --steps {s['steps']} "
            f"--sampler {s['sampler']}{spacing}{interval} --threads {s['torch_threads']} "
            f"--out benchmarks/results/{stem}.json")


def render(reports: dict[str, dict]) -> str:
    """One table per checkpoint (and guidance interval, after the same checkpoint's plain guidance): a row per
    (steps, sampler), steps ascending, then DDIM, DPM-Solver++, DDPM."""
    if not reports:
        return ("*Not run yet.* Commands: `diffusion-lite evaluate --checkpoint mnist-uncond --n 1000 --steps 20 "
                "--sampler dpm++2m --out benchmarks/results/solver_mnist-uncond_dpm++2m_20.json`, and the same "
                "with `--sampler ddim` and other `--steps`.\n")
    tables: dict[tuple[str, tuple[int, int] | None], list[tuple[str, dict]]] = {}
    for stem, r in reports.items():
        tables.setdefault((r["settings"]["checkpoint"], _interval(r["settings"])), []).append((stem, r))

    def table_order(item):  # the unconditional model first; within a checkpoint, plain guidance before an interval
        (_, interval), rows = item
        return rows[0][1].get("accuracy") is not None, interval is not None

    out = []
    for (ckpt, interval), rows in sorted(tables.items(), key=table_order):
        rows.sort(key=lambda sr: (sr[1]["settings"]["steps"], _order(sr[1]["settings"])))
        r0 = rows[0][1]
        text = r0.get("accuracy") is not None
        guidance = f", guidance {r0['settings']['guidance']:g}" if text else ""
        if interval:
            guidance += " for {} <= t <= {} only (the conditional model elsewhere)".format(*interval)
        floors = sorted({round(r["fid_floor"], 3) for _, r in rows})
        out += [f"`{ckpt}`{guidance}, n = {r0['n']:,} per row, the same starting noise and reference for every row "
                f"(real-vs-real floor {', '.join(f'{f:.3f}' for f in floors)}); {r0['settings']['torch_threads']} "
                "torch thread(s). Commands:  ",
                "  \n".join(f"`{_command(r, stem)}`" for stem, r in rows) + "\n",
                "| sampler | steps | FID | FID / floor | diversity / real |" + (" accuracy |" if text else ""),
                "|---|---:|---:|---:|---:|" + ("---:|" if text else "")]
        for _, r in rows:
            s = r["settings"]
            acc = f" {r['accuracy']:.1%} |" if text else ""
            grid = f" ({_spacing(s)} grid)" if _spacing(s) != "linspace" else ""
            out.append(f"| {s['sampler']}{grid} | {s['steps']} | {r['fid']:.3f} | {r['fid_ratio']:.2f} | "
                       f"{r['diversity_ratio']:.2f} |{acc}")
        out.append("")
    return "\n".join(out)
