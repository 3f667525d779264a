"""Write BENCHMARKS.md from the JSON files in benchmarks/results/ (every number in it comes from them).

    python -m benchmarks.report                  # after running the benchmarks
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import cfg_oracle, fashion_evaluator, guidance_interval, inpainting, solvers
from .common import RESULTS_DIR, recognised_note

ROOT = RESULTS_DIR.parent.parent
COMMANDS = {
    "train_throughput": "python -m benchmarks.train_throughput --threads 2",
    "sampling_quality": "python -m benchmarks.sampling_quality --threads 2",
    "guidance_sweep": "python -m benchmarks.guidance_sweep --threads 2",
    "time_to_quality": "python -m benchmarks.time_to_quality --threads 2 --minutes 15",
}


def _load(results: Path, name: str) -> dict | None:
    f = results / f"{name}.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.exists() else None


def _spread(s: dict, fmt: str = ".1f") -> str:
    return f"{s['median']:{fmt}} [{s['min']:{fmt}}, {s['max']:{fmt}}]"


def _num(v, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def _kid_excess(row: dict) -> float | None:
    """Of a text-to-image row (class-balanced draws): KID minus its real-vs-real floor drawn the same way
    (stored as kid_excess since it was added; computed from the stored KID and floor in older files)."""
    if row.get("kid_excess") is not None:
        return row["kid_excess"]
    return None if row.get("kid_floor") is None else row["kid_mean"] - row["kid_floor"]


def _kid_cell(row: dict, text: bool) -> str:
    """KID - floor for text-to-image rows, KID itself (random draws: centred on 0) for unconditional ones."""
    return _num(_kid_excess(row), "+.4f") if text else _num(row["kid_mean"], "+.4f")


def _cmd(r: dict | None, name: str) -> str:
    return f"`{r['command'] if r and r.get('command') else COMMANDS[name]}`"


def _not_run(name: str) -> str:
    return f"*Not run yet.* Command: `{COMMANDS[name]}`\n"


def _machine(r: dict) -> str:
    m = r["machine"]
    end = (r.get("machine_end") or {}).get("load_average_1_5_15min")
    text = (f"{m['cpu']}, {m['logical_cores']} logical cores ({m['usable_cores']} usable), torch {m['torch']}, "
            f"diffusers {m['diffusers']}, {m['torch_threads']} torch thread(s); load average (1/5/15 min) "
            f"{m['load_average_1_5_15min']} at the start" + (f", {end} at the end" if end else "")
            + f"; {m['date_utc']} UTC")
    load = (m["load_average_1_5_15min"] or [0])[0]
    if load > m["usable_cores"]:
        text += (f"  \n**The machine was busy with other jobs during this run** (load {load:.1f} on "
                 f"{m['usable_cores']} cores): absolute rates are lower than on an idle machine and not comparable "
                 "across runs; ratios measured within the run are.")
    return text


def section_train(r: dict | None) -> str:
    if r is None:
        return _not_run("train_throughput")
    s = r["settings"]
    out = [f"Command: {_cmd(r, 'train_throughput')}  \nMachine: {_machine(r)}  \n"
           f"Batch {s['batch_size']} of 1x28x28 MNIST images, {s['optimizer']}, {s['loss']}; {s['warmup']} warm-up "
           f"steps discarded, then {s['reps']} repetitions of {s['iters']} steps per side, interleaved. "
           "images/s: median [min, max] over the repetitions.\n",
           "| model | implementation | parameters | training images/s | MFLOP/image (fwd+bwd) | ratio ours/diffusers |",
           "|---|---|---:|---:|---:|---:|"]
    for kind, k in r["kinds"].items():
        ratio = k["ratio_images_per_s"]
        for side in ("diffusion_lite", "diffusers"):
            d = k[side]
            cell = (f"**{ratio['median']:.2f}x** [{ratio['low']:.2f}, {ratio['high']:.2f}]; per parameter "
                    f"{k['ratio_per_parameter']:.2f}x" if side == "diffusion_lite" else "")
            out.append(f"| {kind} | {side} | {d['parameters']:,} | {_spread(d['images_per_s'])} | "
                       f"{d['flops_per_image'] / 1e6:.0f} | {cell} |")
    out.append("\nRatio: median [min, max] of the per-repetition ratios (both sides measured in the same "
               "repetition). Per parameter = (images/s x parameters) ours over diffusers.\n")
    out.append("![training throughput in images per second of diffusion_lite and diffusers, and their ratios, "
               "per U-Net size (the table above)](benchmarks/results/train_throughput.png)\n")
    return "\n".join(out)


def section_hardware(r: dict | None) -> str:
    if r is None:
        return _not_run("train_throughput")
    busy = (r["machine"]["load_average_1_5_15min"] or [0])[0] > r["machine"]["usable_cores"]
    starts = ", ".join(f"{x['gflops_peak']:.1f}" for x in r["matmul_peak"]["start"])
    ends = ", ".join(f"{x['gflops_peak']:.1f}" for x in r["matmul_peak"]["end"])
    n = r["matmul_peak"]["start"][0]["n"]
    out = [f"Same run as the table above. Peak: a {n}x{n} {r['peak_dtype']} matmul timed as a third contender in "
           "the same interleaved repetitions as the training steps (so both see the same machine load); fraction = "
           "median [min, max] over repetitions of achieved / matmul GFLOP/s in that repetition. For reference, the "
           f"best separate matmul measurement was {starts} GFLOP/s at the start and {ends} GFLOP/s at the end. "
           "FLOPs: FlopCounterMode over one training step (matmuls, convolutions, attention; elementwise work "
           "not counted).\n",
           "| model | implementation | GFLOP per step | achieved GFLOP/s | matmul GFLOP/s (same reps) "
           "| fraction of matmul peak |",
           "|---|---|---:|---:|---:|---:|"]
    for kind, k in r["kinds"].items():
        for side in ("diffusion_lite", "diffusers"):
            d, e = k[side], k[side]["hardware_efficiency"]
            out.append(f"| {kind} | {side} | {d['flops_per_step'] / 1e9:.1f} | {d['achieved_gflops']:.2f} | "
                       f"{_spread(k['matmul_gflops'])} | **{e['median']:.1%}** [{e['min']:.1%}, {e['max']:.1%}] |")
    if busy:
        out.append("\n**Not representative:** this run shared the CPU with other jobs, and under that load the big "
                   "matmul slowed down much more than the U-Net steps did (compare its rate with the same core's "
                   "rate on an idle machine), so the denominator is depressed and the fraction inflated. "
                   "Measure on an idle machine.")
    return "\n".join(out) + "\n"


def section_sampling(r: dict | None) -> str:
    if r is None:
        return _not_run("sampling_quality")
    s = r["settings"]
    runs, sources = r.get("runs") or [], r.get("sources") or {}
    out = [f"Command: {_cmd(r, 'sampling_quality')}" + ("\n" if sources else f"  \nMachine: {_machine(r)}\n")]

    def measured_by(part: str, kinds) -> str:
        """'Measured by part k of the command: <machine>' when a merged file says which run measured it."""
        idx = sorted({sources.get(part, {}).get(k) for k in kinds} - {None})
        if not runs or not idx:
            return ""
        return "".join(f"Measured by part {i + 1} of the command (`{runs[i]['command']}`): {_machine(runs[i])}\n\n"
                       for i in idx)

    if r.get("throughput"):
        out += [f"**Sampling throughput** (DDIM {s['throughput_steps']} steps, batch {s['throughput_batch']}, random "
                f"weights of the matched U-Nets; text with guidance 3 = two network passes per step; {s['reps']} "
                "repetitions after one warm-up):\n",
                measured_by("throughput", r["throughput"]) +
                "| model | diffusion_lite images/s | diffusers images/s | ratio |", "|---|---:|---:|---:|"]
        for kind, t in r["throughput"].items():
            ratio = t["ratio_images_per_s"]
            out.append(f"| {kind} | {_spread(t['images_per_s']['diffusion_lite'])} | "
                       f"{_spread(t['images_per_s']['diffusers'])} | **{ratio['median']:.2f}x** "
                       f"[{ratio['low']:.2f}, {ratio['high']:.2f}] |")
        out.append("")
    for kind, m in (r.get("models") or {}).items():
        if not m.get("sweep"):
            out.append(f"*{kind}: {m['checkpoint']} could not be loaded ({m.get('error')}).*\n")
            continue
        out += [f"**Quality versus steps: `{m['checkpoint']}`** ({m['parameters']:,} parameters"
                + (f", guidance {s['guidance']}" if kind == "text" else "") + "):\n",
                measured_by("models", [kind]) +
                f"| sampler | steps | n | FID | FID floor | FID / floor | {'KID - floor' if kind == 'text' else 'KID'} "
                "| accuracy | diversity / real "
                "| images/s |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in m["sweep"]:
            out.append(f"| {row['sampler']} | {row['steps']} | {row['n']} | {row['fid']:.3f} | "
                       f"{row['fid_floor']:.3f} | {row['fid_ratio']:.2f} | {_kid_cell(row, kind == 'text')} | "
                       f"{_num(row['accuracy'], '.1%')} | {_num(row['diversity_ratio'], '.2f')} | "
                       f"{row['images_per_s']:.1f} |")
        out.append("")
    if any(m.get("sweep") for m in (r.get("models") or {}).values()):
        out.append("![FID over its floor and conditional accuracy against the number of sampler steps, one line "
                   "per model and sampler (the tables above)](benchmarks/results/sampling_quality.png)\n")
    return "\n".join(out)


def section_guidance(r: dict | None) -> str:
    if r is None:
        return _not_run("guidance_sweep")
    s = r["settings"]
    out = [f"Command: {_cmd(r, 'guidance_sweep')}  \nMachine: {_machine(r)}  \n`{s['checkpoint']}`, n = {s['n']} per "
           f"scale, DDIM {s['steps']} steps, the same noise, prompts and reference for every scale.\n",
           "| guidance s | accuracy | FID | FID / floor | KID - floor | diversity / real |",
           "|---:|---:|---:|---:|---:|---:|"]
    for row in r["sweep"]:
        out.append(f"| {row['guidance']:g} | {row['accuracy']:.1%} | {row['fid']:.3f} | {row['fid_ratio']:.2f} | "
                   f"{_kid_cell(row, True)} | {_num(row['diversity_ratio'], '.2f')} |")
    a = r["attribute_adherence"]
    out += ["", f"**Attribute adherence** ({s['attribute_n_per_digit']} pairs per digit and attribute, guidance "
            f"{s['attribute_guidance']}, each pair from the same noise; 0.5 = the word is ignored, "
            "1 = always obeyed):\n",
            "| attribute | prompts (e.g.) | adherence | mean low | mean high | digit accuracy |",
            "|---|---|---:|---:|---:|---:|"]
    for name, x in a["attributes"].items():
        out.append(f"| {name} | {x['example_prompts'][0]!r} / {x['example_prompts'][1]!r} | {x['adherence']:.3f} | "
                   f"{x['mean_low']:.3f} | {x['mean_high']:.3f} | {x['accuracy']:.3f} |")
    note = recognised_note(a["attributes"]).strip()
    out += ["", note] if note else []  # a paragraph after the table, not a row of it
    out.append("\n![accuracy, FID over its floor and diversity against the guidance scale s (the table above)]"
               "(benchmarks/results/guidance_sweep.png)\n")
    return "\n".join(out)


EVAL_NAME = "eval_mnist-text2img"  # the issue-3 protocol; eval_mnist-text2img_*.json: the same with other settings
EVAL_COMMAND = ("diffusion-lite evaluate --checkpoint mnist-text2img --n 1000 --guidance 3 --steps 50 --attributes 20 "
                "--threads 1 --out benchmarks/results/eval_mnist-text2img.json")


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _eval_label(r: dict) -> str:
    s = r["settings"]
    iv, c = s.get("guidance_interval"), s.get("cads")
    return (f"s = {s['guidance']:g}" + (f", guided only for {iv[0]} <= t <= {iv[1]}" if iv else "")
            + (f", CADS noise {c['noise_scale']:g} (t/(T-1) {c['tau1']:g}-{c['tau2']:g})" if c else "")
            + (f"; other draw (seed {s['seed']})" if s.get("seed") else ""))


def _cads_flags(c: dict | None) -> str:
    if not c:
        return ""
    window = "" if (c["tau1"], c["tau2"]) == (0.6, 0.9) else f" --cads-window {c['tau1']:g} {c['tau2']:g}"
    return f" --cads {c['noise_scale']:g}" + window


def _eval_command(r: dict, name: str) -> str:
    s = r["settings"]
    iv = s.get("guidance_interval")
    return (f"diffusion-lite evaluate --checkpoint {s['checkpoint']} --n {r['n']} --guidance {s['guidance']:g} "
            f"--steps {s['steps']}" + (f" --guidance-interval {iv[0]} {iv[1]}" if iv else "")
            + _cads_flags(s.get("cads")) + (f" --seed {s['seed']}" if s.get("seed") else "")
            + (f" --attributes {r['attribute_adherence']['settings']['n_per_digit']}"
               if r.get("attribute_adherence") else "")
            + f" --threads {s['torch_threads']} --out benchmarks/results/{name}.json")


def section_issue3(reports: dict[str, dict] | dict | None) -> str:
    """The text-to-image quality targets of issue 3, read from `diffusion-lite evaluate` reports.

    reports: {file stem: report}; the first is the protocol itself (plain guidance), any others are the same
    protocol with other sampler settings, shown as extra columns (a single report is also accepted).
    """
    head = "### The issue-3 protocol (guidance 3, DDIM 50 steps, n = 1,000)\n\n"
    if not reports:
        return head + f"*Not run yet.* Command: `{EVAL_COMMAND}`\n"
    if "settings" in reports:
        reports = {EVAL_NAME: reports}
    rs = list(reports.values())
    r0, s = rs[0], rs[0]["settings"]
    n, per = r0["n"], r0["n"] // 10
    cmds = "  \n".join(f"`{_eval_command(r, name)}`" for name, r in reports.items())
    out = [head + f"Commands:  \n{cmds}  \n`{s['checkpoint']}` ({s['parameters']:,} parameters), "
           f"{s['sampler'].upper()} {s['steps']} steps, n = {n:,} ({per} samples per digit, "
           f"{len(s['prompt_templates'])} phrasings naming the digit); reference: {n:,} {s['reference']} images, the "
           f"floor a second disjoint draw of {n:,}; {s['torch_threads']} torch thread(s); sampling took "
           + ", ".join(f"{r['sample_seconds'] / 60:.1f}" for r in rs) + " min.\n",
           "| metric | " + " | ".join(_eval_label(r) for r in rs) + " | target (issue 3) |",
           "|---|" + "---:|" * len(rs) + "---|"]

    def row(name, cells, target=""):
        out.append(f"| {name} | " + " | ".join(cells) + f" | {target} |")

    row("conditional accuracy", [f"**{r['accuracy']:.1%}** ({round(r['accuracy'] * r['n']):,} / {r['n']:,})"
                                 for r in rs],
        ">= 99%: " + " / ".join(_met(r["accuracy"] >= 0.99) for r in rs))
    row("FID (classifier features)", [f"{r['fid']:.3f}" for r in rs])
    row("real-vs-real floor, same n", [f"{r['fid_floor']:.3f}" for r in rs])
    row("FID / floor", [f"**{r['fid_ratio']:.2f}**" for r in rs],
        "<= 1.5: " + " / ".join(_met(r["fid_ratio"] <= 1.5) for r in rs))
    row("KID - floor (KID; floor)", [f"{_kid_excess(r):+.4f} ({r['kid_mean']:.4f}; {r['kid_floor']:.4f})" for r in rs])
    row("diversity (real digits)", [f"{r['diversity']:.2f} ({r['diversity_real']:.2f})" for r in rs])
    with_attr = [r for r in rs if (r.get("attribute_adherence") or {}).get("attributes")]
    for r in with_attr:
        a = r["attribute_adherence"]["attributes"]
        met = [k for k, x in a.items() if x["adherence"] > 0.5]
        out.append(f"\nAttribute adherence at {_eval_label(r)} ({r['attribute_adherence']['settings']['n_per_digit']} "
                   f"pairs per digit and attribute, each pair from the same noise; 0.5 = the word is ignored): "
                   + ", ".join(f"{k} **{x['adherence']:.2f}**" for k, x in a.items())
                   + f". Target \"most samples\" (> 0.5): met for {', '.join(met) or 'none'}." + recognised_note(a))
    return "\n".join(out) + "\n"


def section_ttq(r: dict | None) -> str:
    if r is None:
        return _not_run("time_to_quality")
    s = r["settings"]
    out = [f"Command: {_cmd(r, 'time_to_quality')}  \nMachine: {_machine(r)}  \n{s['minutes']:g} min of training per "
           f"side ({s['data']}, batch {s['batch_size']}, AdamW lr {s['lr']}, EMA {s['ema_decay']}), FID check every "
           f"{s['eval_every_min']:g} min of training time on n = {s['n_eval']} EMA samples (DDIM {s['eval_steps']} "
           f"steps); real-vs-real floor at this n: {r['fid_floor']:.3f}.\n",
           "| implementation | steps in budget | training images/s | final FID / floor | "
           + " | ".join(f"time to FID/floor <= {t:g}" for t in s["targets"]) + " |",
           "|---|---:|---:|---:|" + "---:|" * len(s["targets"])]
    for name, sd in r["sides"].items():
        cells = []
        for t in s["targets"]:
            hit = sd["time_to_target"][str(float(t))]
            cells.append("not reached" if hit is None else f"{hit['train_seconds'] / 60:.1f} min")
        final = sd["final"]["fid_ratio"] if sd["final"] else None
        out.append(f"| {name} | {sd['steps']} | {sd['images_per_s']:.1f} | {_num(final, '.2f')} | " + " | ".join(cells)
                   + " |")
    out.append(f"\n{r['summary']['text']}\n")
    out.append("![FID over its floor against training minutes, diffusion_lite and diffusers (the table above)]"
               "(benchmarks/results/time_to_quality.png)\n")
    return "\n".join(out)


def section_gpu(results: Path) -> str:
    lines = []
    for name in [*COMMANDS, "guidance_interval", "cfg_oracle"]:
        g = _load(results, f"{name}_gpu")
        if g is None:
            lines.append(f"- `{name}`: not run in GPU mode (`python -m benchmarks.{name} --gpu`)")
        elif g.get("gpu"):
            lines.append(f"- `{name}`: {g['gpu']} (machine: {g['machine']['cpu']})")
        else:
            lines.append(f"- `{name}`: measured on {g['machine']['gpu']}, see `benchmarks/results/{name}_gpu.json`")
    return "\n".join(lines) + "\n"


def render(results: Path = RESULTS_DIR) -> str:
    tt, sq, gs, tq = (_load(results, n) for n in COMMANDS)
    ev = {f.stem: json.loads(f.read_text(encoding="utf-8")) for f in sorted(results.glob(f"{EVAL_NAME}*.json"))}
    template = (Path(__file__).parent / "BENCHMARKS.template.md").read_text(encoding="utf-8")
    return template.format(train=section_train(tt), hardware=section_hardware(tt), sampling=section_sampling(sq),
                           issue3=section_issue3(ev), guidance=section_guidance(gs),
                           interval=guidance_interval.render(_load(results, "guidance_interval")),
                           oracle=cfg_oracle.render(_load(results, "cfg_oracle")), ttq=section_ttq(tq),
                           gpu=section_gpu(results),
                           fashion=fashion_evaluator.render(_load(results, "fashion_evaluator")),
                           solvers=solvers.render(solvers.load(results)),
                           inpainting=inpainting.render(_load(results, "inpainting")),
                           fashion_shipped=fashion_evaluator.render_shipped(
                               {f.stem: json.loads(f.read_text(encoding="utf-8"))
                         for f in sorted(results.glob("eval_fashion-*"))}))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    a = p.parse_args(argv)
    a.out.write_text(render(a.results), encoding="utf-8")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
