"""The benchmark scripts run end to end in tiny configurations (no timing assertions: numbers are not checked)."""

import json
import sys
import types
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from test_evaluation import tiny_text_pipe, tiny_uncond_pipe  # noqa: E402

from benchmarks import common, models, suite  # noqa: E402

QUICK = ["--quick", "--no-plot", "--threads", "1"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    tiny_uncond_pipe().save(d / "uncond")
    tiny_text_pipe(d).save(d / "text")
    return {"uncond": str(d / "uncond"), "text": str(d / "text")}


@pytest.mark.parametrize("kind", models.KINDS)
def test_contenders_match_in_size_and_call(kind):
    nets = models.build(kind)
    p_ours, p_hf = (models.num_parameters(nets[k]) for k in ("diffusion_lite", "diffusers"))
    assert abs(p_hf / p_ours - 1) <= models.TOLERANCE
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10, 900])
    cond = {}
    if kind == "text":
        ctx, mask = models.random_context(2, torch.Generator().manual_seed(0))
        assert ctx.shape == (2, models.CONTEXT_LEN, models.CONTEXT_DIM) and mask[:, :3].all() and not mask[:, 8:].any()
        cond = {"context": ctx, "context_mask": mask}
    for net in nets.values():
        assert net(x, t, **cond).shape == x.shape


def test_interleaved_timing_and_summaries():
    calls = []
    out = common.time_interleaved({"a": lambda: calls.append("a") or 2, "b": lambda: calls.append("b") or 3},
                                  warmup=1, reps=3, iters=2, progress=False)
    assert calls[:2] == ["a", "b"] and len(calls) == 2 + 3 * 4
    assert calls[2:8] == ["a", "b", "b", "a", "a", "b"]  # one iteration at a time, the order flipping
    assert out["a"]["reps"] == 3 and out["a"]["min"] <= out["a"]["median"] <= out["a"]["max"]
    r = common.ratio_summary(common.summarize([2.0, 4.0, 1.0]), common.summarize([1.0, 4.0, 0.5]))
    assert r == {"median": 2.0, "low": 1.0, "high": 2.0, "of_medians": 2.0}


def test_machine_record():
    m = common.machine_info()
    assert m["cpu"] and m["logical_cores"] >= 1 and m["torch"] == torch.__version__ and m["diffusers"]


def test_train_throughput_and_hardware_efficiency(tmp_path):
    from benchmarks import plots, train_throughput

    r = train_throughput.main([*QUICK, "--out", str(tmp_path), "--reps", "1", "--peak-n", "128",
                                  "--batch-size", "4"])
    saved = json.loads((tmp_path / "train_throughput.json").read_text(encoding="utf-8"))
    assert saved["command"].startswith("python -m benchmarks.train_throughput --quick")
    assert saved["machine"]["cpu"] and saved["settings"]["batch_size"] == 4
    for kind in models.KINDS:
        k = r["kinds"][kind]
        for side in ("diffusion_lite", "diffusers"):
            assert k[side]["images_per_s"]["median"] > 0 and k[side]["flops_per_image"] > 1e6
            e = k[side]["hardware_efficiency"]
            assert 0 < e["min"] <= e["median"] <= e["max"] and e["reps"] == 1
        assert k["ratio_images_per_s"]["low"] <= k["ratio_images_per_s"]["median"] <= k["ratio_images_per_s"]["high"]
        assert 0.9 <= k["ratio_parameters"] <= 1.1 and k["matmul_gflops"]["median"] > 0
    assert "ratio ours/diffusers" in train_throughput.format_table(r)
    assert plots.plot_train_throughput(saved, tmp_path / "t.png").stat().st_size > 0


def test_sampling_quality_and_guidance_sweep(tmp_path, checkpoints):
    from benchmarks import guidance_sweep, plots, sampling_quality

    r = sampling_quality.main([*QUICK, "--out", str(tmp_path), "--uncond", checkpoints["uncond"], "--text",
                               checkpoints["text"], "--steps", "1", "2", "--samplers", "ddim", "--reps", "1",
                               "--throughput-batch", "2"])
    assert set(r["throughput"]) == {"uncond", "text"}
    assert all(v["ratio_images_per_s"]["median"] > 0 for v in r["throughput"].values())
    rows = r["models"]["text"]["sweep"]
    assert [row["steps"] for row in rows] == [1, 2] and all(0 <= row["accuracy"] <= 1 for row in rows)
    assert r["models"]["uncond"]["sweep"][0]["accuracy"] is None
    assert plots.plot_sampling_quality(r, tmp_path / "s.png").exists()

    g = guidance_sweep.main([*QUICK, "--out", str(tmp_path), "--text", checkpoints["text"], "--scales", "0", "2"])
    assert [row["guidance"] for row in g["sweep"]] == [0.0, 2.0]
    assert set(g["attribute_adherence"]["attributes"]) == {"thickness", "slant", "size"}
    assert plots.plot_guidance(g, tmp_path / "g.png").exists()
    assert json.loads((tmp_path / "guidance_sweep.json").read_text(encoding="utf-8"))["settings"]["n"] == 20


def test_guidance_interval(tmp_path, checkpoints):
    from benchmarks import guidance_interval, report

    r = guidance_interval.main([*QUICK, "--out", str(tmp_path), "--text", checkpoints["text"],
                                "--intervals", "all", "0-500", "all+cads=0.5"])
    assert [row["interval"] for row in r["rows"]] == ["conditional only (s = 1)", "all", "0-500", "all+cads=0.5"]
    assert all(0 <= row["accuracy"] <= 1 and row["fid"] > row["fid_floor"] > 0 for row in r["rows"])  # 2 steps
    assert len({row["fid"] for row in r["rows"]}) == 4  # each interval changes the samples
    assert [row["guidance"] for row in r["rows"]] == [1.0, 3.0, 3.0, 3.0]
    assert r["rows"][3]["cads"]["noise_scale"] == 0.5 and r["rows"][3]["fid"] != r["rows"][1]["fid"]
    table = guidance_interval.render(r)
    assert "| 0-500 |" in table and "all (plain guidance)" in table
    assert "| all (plain guidance), CADS noise 0.5 over t/(T-1) 0.6-0.9 |" in table
    assert "guided timesteps" in report.render(tmp_path)
    for bad in ("700-200", "0-x", "-5", "all+cads=x", "all+foo=1"):
        with pytest.raises(SystemExit):
            guidance_interval.main([*QUICK, "--out", str(tmp_path), "--text", checkpoints["text"], "--intervals", bad])


def test_sampling_quality_update_keeps_the_other_models_results(tmp_path, checkpoints):
    from benchmarks import report, sampling_quality

    common_args = [*QUICK, "--out", str(tmp_path), "--steps", "1", "--samplers", "ddim", "--reps", "1",
                   "--throughput-batch", "2", "--uncond", checkpoints["uncond"], "--text", checkpoints["text"]]
    sampling_quality.main([*common_args, "--models", "uncond"])
    r = sampling_quality.main([*common_args, "--models", "text", "--update"])
    assert set(r["models"]) == set(r["throughput"]) == {"uncond", "text"}
    assert [run["settings"]["models"] for run in r["runs"]] == [["uncond"], ["text"]]
    assert "--models uncond" in r["command"] and "--models text --update" in r["command"]
    saved = json.loads((tmp_path / "sampling_quality.json").read_text(encoding="utf-8"))
    assert saved["models"]["uncond"]["sweep"][0]["steps"] == 1
    assert "| uncond |" in report.section_sampling(saved) and "| text |" in report.section_sampling(saved)
    # each table says which run measured it; a later throughput-only run replaces only the throughput
    assert saved["sources"] == {"throughput": {"uncond": 0, "text": 1}, "models": {"uncond": 0, "text": 1}}
    r = sampling_quality.main([*common_args, "--models", "uncond", "--skip-sweep", "--update"])
    assert r["sources"] == {"throughput": {"uncond": 2, "text": 1}, "models": {"uncond": 0, "text": 1}}
    text = report.section_sampling(r)
    assert text.count("Measured by part 3 of the command") == 1 and text.count("Measured by part 1 ") == 1


def test_a_missing_checkpoint_is_skipped_not_fatal(tmp_path):
    from benchmarks import sampling_quality

    r = sampling_quality.main([*QUICK, "--out", str(tmp_path), "--skip-throughput", "--models", "text", "--text",
                               str(tmp_path / "nothing")])
    assert r["models"]["text"]["sweep"] is None and "nothing" in r["models"]["text"]["error"]
    out = suite.run_suite(["guidance_sweep"], quick=True, out=tmp_path, text=str(tmp_path / "nothing"))
    assert "error" in out["guidance_sweep"]


def test_time_to_quality(tmp_path):
    from benchmarks import plots, time_to_quality

    r = time_to_quality.main([*QUICK, "--out", str(tmp_path), "--minutes", "0.01", "--eval-every", "0.005",
                              "--subset", "200", "--targets", "1000", "1"])
    for side in ("diffusion_lite", "diffusers"):
        sd = r["sides"][side]
        assert sd["steps"] > 0 and sd["evals"] and sd["train_seconds"] >= 0.6  # a step may outlast the budget
        assert sd["final"] == sd["evals"][-1] and sd["final"]["step"] == sd["steps"]  # evaluated at the end
        assert sd["time_to_target"]["1000.0"] is not None  # any model beats FID/floor 1000
    assert r["summary"]["target"] == 1000.0 and r["fid_floor"] > 0
    assert plots.plot_time_to_quality(r, tmp_path / "q.png").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU report")
def test_gpu_mode_reports_no_gpu_on_a_cpu_machine(tmp_path):
    from benchmarks import train_throughput

    r = train_throughput.main(["--gpu", "--out", str(tmp_path)])
    assert "no GPU present" in r["gpu"]
    assert "no GPU present" in json.loads((tmp_path / "train_throughput_gpu.json").read_text(encoding="utf-8"))["gpu"]


def test_gpu_style_options_run_on_cpu(tmp_path):
    """bf16 autocast and channels_last, the GPU mode's options, also work on the CPU."""
    from benchmarks import train_throughput

    r = train_throughput.main([*QUICK, "--out", str(tmp_path), "--kinds", "uncond", "--reps", "1", "--peak-n", "64",
                               "--batch-size", "4", "--amp", "--channels-last"])
    assert r["runtime"] == {"device": "cpu", "amp": True, "channels_last": True, "compile": False}
    assert r["kinds"]["uncond"]["diffusion_lite"]["images_per_s"]["median"] > 0


def test_suite_and_bench_command_wiring(tmp_path, monkeypatch):
    from diffusion_lite import bench_cli

    assert bench_cli.ORDER == suite.ORDER
    assert suite.suite_argv("sampling_quality", quick=True, out=tmp_path, uncond="u", text="t") == [
        "--out", str(tmp_path), "--quick", "--uncond", "u", "--text", "t"]
    assert suite.suite_argv("time_to_quality", minutes=2.0, threads=2, gpu=True) == [
        "--threads", "2", "--gpu", "--minutes", "2.0"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        suite.run_suite(["nope"])
    from diffusion_lite.cli import build_parser

    p = build_parser()  # the real one, with the options every command shares
    args = p.parse_args(["bench", "--quick", "--only", "guidance_sweep", "--text", str(tmp_path / "none"),
                         "--out", str(tmp_path)])
    from diffusion_lite.checkpoints import CheckpointError
    from diffusion_lite.cli import CLIError

    with pytest.raises(CheckpointError, match="no checkpoint at"):  # a typo: before any benchmark runs
        args.func(args)
    args = p.parse_args(["bench", "--quick", "--only", "guidance_sweep", "--text", "mnist-uncond",
                         "--out", str(tmp_path)])
    with pytest.raises(CLIError, match="--text mnist-uncond is an unconditional checkpoint"):  # also before
        args.func(args)
    # a benchmark that cannot run is reported with its error, after the others have run
    args = p.parse_args(["bench", "--quick", "--only", "guidance_sweep", "--out", str(tmp_path)])
    results = {"throughput": {}, "guidance_sweep": {"error": "boom"}}
    fake_suite = types.SimpleNamespace(run_suite=lambda *a, **k: results)
    monkeypatch.setattr(bench_cli, "_import_suite", lambda: fake_suite)
    with pytest.raises(CLIError, match="benchmark[(]s[)] guidance_sweep could not run: boom"):
        args.func(args)
    # DIFFUSION_LITE_DEVICE chooses as for every other command (it was ignored: a CPU run when cuda was set)
    monkeypatch.setenv("DIFFUSION_LITE_DEVICE", "mps")
    with pytest.raises(CLIError, match="bench runs on cpu or cuda [(]GPU mode[)], got DIFFUSION_LITE_DEVICE=mps"):
        args.func(args)
    monkeypatch.setenv("DIFFUSION_LITE_DEVICE", "cuda:1")
    with pytest.raises(CLIError, match="got DIFFUSION_LITE_DEVICE=cuda:1; choose the GPU with CUDA_VISIBLE_DEVICES=1"):
        args.func(args)
    modes = []
    fake_suite.run_suite = lambda *a, **k: modes.append(k["gpu"]) or {}
    for env, gpu in (("cuda", True), ("cpu", False), ("auto", False), ("", False)):
        monkeypatch.setenv("DIFFUSION_LITE_DEVICE", env)
        args.func(args)
        assert modes.pop() is gpu, env


def test_issue3_table_is_rendered_from_the_evaluation_report():
    from benchmarks import report

    r = {"n": 1000, "fid": 0.5, "fid_floor": 0.2, "fid_ratio": 2.5, "kid_mean": 0.001, "kid_floor": -0.001,
         "diversity": 2.9, "diversity_real": 3.1, "accuracy": 0.995, "sample_seconds": 120.0,
         "settings": {"checkpoint": "mnist-text2img", "parameters": 1000, "guidance": 3.0, "sampler": "ddim",
                      "steps": 50, "prompt_templates": ["{name}"] * 8, "reference": "mnist-test", "torch_threads": 1},
         "attribute_adherence": {"settings": {"n_per_digit": 20},
                                 "attributes": {"thickness": {"adherence": 0.9}, "size": {"adherence": 0.4}}}}
    text = report.section_issue3(r)
    assert "**99.5%** (995 / 1,000) | >= 99%: met" in text
    assert "**2.50** | <= 1.5: **not met**" in text
    assert "thickness **0.90**, size **0.40**" in text and "met for thickness." in text
    assert "Over only the pairs" not in text  # a report from before recognised pairs were counted
    r["attribute_adherence"]["attributes"]["thickness"].update(recognised_pairs=190, adherence_recognised=0.95,
                                                               n_low=200)
    assert "thickness 0.95 (190 of 200 pairs)." in report.section_issue3(r)
    r.update(fid_ratio=1.2, accuracy=0.98)
    text = report.section_issue3(r)
    assert "<= 1.5: met" in text and ">= 99%: **not met**" in text
    assert "Not run yet" in report.section_issue3(None)
    other = {**r, "settings": {**r["settings"], "guidance_interval": [170, 880]}, "fid_ratio": 1.4}
    text = report.section_issue3({"eval_mnist-text2img": r, "eval_mnist-text2img_interval": other})
    assert "| s = 3 | s = 3, guided only for 170 <= t <= 880 |" in text
    assert "<= 1.5: met / met" in text and "--guidance-interval 170 880" in text
    cads = {**r, "settings": {**r["settings"], "cads": {"noise_scale": 0.5, "tau1": 0.6, "tau2": 0.9, "psi": 1.0}}}
    text = report.section_issue3({"eval_mnist-text2img": r, "eval_mnist-text2img_cads": cads})
    assert "| s = 3, CADS noise 0.5 (t/(T-1) 0.6-0.9) |" in text and "--steps 50 --cads 0.5 --attributes 20" in text
    seed1 = {**other, "settings": {**other["settings"], "seed": 1}}
    text = report.section_issue3({"eval_mnist-text2img": r, "eval_mnist-text2img_interval_seed1": seed1})
    assert "| s = 3, guided only for 170 <= t <= 880; other draw (seed 1) |" in text and "--seed 1 " in text


def _toy_oracle():
    from benchmarks.cfg_oracle import EmpiricalDenoiser
    from diffusion_lite.config import ScheduleConfig
    from diffusion_lite.schedules import Schedule

    g = torch.Generator().manual_seed(0)
    images = torch.rand(12, 1, 4, 4, generator=g) * 2 - 1
    labels = torch.arange(12) % 3
    return EmpiricalDenoiser(images, labels, Schedule.from_config(ScheduleConfig(T=100)).alpha_bar), images, labels


def test_empirical_denoiser_is_the_exact_posterior_mean():
    oracle, images, labels = _toy_oracle()
    X, a = images.flatten(1).double(), oracle.alpha_bar[60]
    x_t = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    asked = torch.tensor([0, 1, 2, 0, 1])
    x0_c, x0_u = oracle.x0(x_t, 60, asked)
    for b in range(5):  # brute force: weights prop. to the Gaussian likelihood q(x_t | x_i), eq. 4
        lik = torch.stack([torch.distributions.Normal(a.sqrt() * X[i], (1 - a).sqrt()).log_prob(
            x_t[b].flatten().double()).sum() for i in range(12)])
        torch.testing.assert_close(x0_u[b], torch.softmax(lik, 0) @ X)
        own = labels == asked[b]
        torch.testing.assert_close(x0_c[b], torch.softmax(lik[own], 0) @ X[own])
    # nearly noise-free: the training image that was noised comes back, and the class limits the choice
    x_t = oracle.alpha_bar[1].sqrt() * images[:3] + 1e-3 * torch.randn(3, 1, 4, 4, generator=torch.Generator())
    x0_c, x0_u = oracle.x0(x_t, 1, labels[:3])
    torch.testing.assert_close(x0_u, X[:3])
    torch.testing.assert_close(x0_c, X[:3])
    assert oracle.nearest(images[[4, 7]]).tolist() == [4, 7]


def test_empirical_guidance_scales_and_interval():
    oracle, images, labels = _toy_oracle()
    x_t, lab = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 2, 0])
    t = torch.full((4,), 50)
    e = {s: oracle.guided_eps_fn(lab, s)(x_t, t) for s in (0.0, 1.0, 3.0)}
    torch.testing.assert_close(e[3.0], e[0.0] + 3 * (e[1.0] - e[0.0]), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(e[1.0], e[0.0])
    torch.testing.assert_close(oracle.guided_eps_fn(lab, 3.0, (60, 90))(x_t, t), e[1.0])  # outside: s = 1
    torch.testing.assert_close(oracle.guided_eps_fn(lab, 3.0, (40, 90))(x_t, t), e[3.0])
    with pytest.raises(ValueError, match="one timestep"):
        oracle.guided_eps_fn(lab, 3.0)(x_t, torch.tensor([50, 50, 50, 49]))


def test_cfg_oracle_benchmark_runs_and_renders(tmp_path):
    from benchmarks import cfg_oracle, report

    r = cfg_oracle.main([*QUICK, "--out", str(tmp_path), "--rows", "1", "3@200-700", "--steps", "5"])
    assert [(row["guidance"], row["interval"]) for row in r["rows"]] == [(1.0, None), (3.0, [200, 700])]
    assert all(0 <= row["accuracy"] <= 1 and 1 <= row["distinct_train_images"] <= 20 for row in r["rows"])
    assert "| s = 3 for 200 <= t <= 700 |" in cfg_oracle.render(r)
    assert "distinct training images" in report.render(tmp_path)
    with pytest.raises(SystemExit):
        cfg_oracle.main([*QUICK, "--out", str(tmp_path), "--rows", "x@1-2"])


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
def test_fashion_evaluator_benchmark_runs_and_renders(tmp_path):
    from benchmarks import fashion_evaluator, report

    r = fashion_evaluator.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    rows = r["copier"]
    assert set(rows) == {"copied training images", "copier + noise sd 0.2", "copier blurred 3x3"}
    assert rows["copier blurred 3x3"]["fid"] > rows["copied training images"]["fid"]  # even at n = 20
    assert r["model"]["fid"] > 0 and "--dataset fashion-mnist --model tiny" in r["model"]["command"]
    assert "| copied training images |" in report.render(tmp_path) and "samples of the `tiny` U-Net" in \
        fashion_evaluator.render(r)


def test_the_shipped_fashion_model_rows_come_from_its_evaluate_reports(tmp_path):
    """BENCHMARKS section 7's second table: one row per `diffusion-lite evaluate` report, whole-chain guidance first."""
    from benchmarks import fashion_evaluator, report

    assert "*Not run yet.*" in fashion_evaluator.render_shipped({})
    base = {"accuracy": 0.9, "fid": 1.0, "fid_floor": 0.5, "fid_ratio": 2.0, "diversity_ratio": 0.8}
    for name, s, iv in [("eval_fashion-text2img_interval", 3.0, [200, 700]), ("eval_fashion-text2img", 3.0, None)]:
        r = {**base, "settings": {"guidance": s, "guidance_interval": iv}}
        (tmp_path / f"{name}.json").write_text(json.dumps(r), encoding="utf-8")
    table = report.render(tmp_path)
    rows = [line for line in table.splitlines() if line.startswith("| `--guidance")]
    assert rows == ["| `--guidance 3` | 90.0% | 1.000 | 0.500 | 2.00 | 0.80 |",
                    "| `--guidance 3 --guidance-interval 200 700` | 90.0% | 1.000 | 0.500 | 2.00 | 0.80 |"]


def test_solver_tables_are_rendered_from_evaluate_reports(tmp_path):
    """benchmarks/solvers.py: one table per checkpoint from solver_*.json, the unconditional model first, rows
    by steps and then DDIM, DPM-Solver++, DDPM; each row's evaluate command; accuracy only for text models."""
    from benchmarks import report, solvers

    def rep(ckpt, sampler, steps, fid, accuracy=None, spacing=None, stem=None, interval=None):
        settings = {"checkpoint": ckpt, "sampler": sampler, "steps": steps, "torch_threads": 1, "n": 10,
                    **({"guidance": 3.0} if accuracy is not None else {}),
                    **({"spacing": spacing} if spacing else {}), "guidance_interval": interval}
        r = {"settings": settings, "n": 10, "fid": fid, "fid_floor": 0.5, "fid_ratio": fid / 0.5,
             "diversity_ratio": 0.9, "accuracy": accuracy}
        name = stem or f"solver_{ckpt}_{sampler}_{steps}"
        (tmp_path / f"{name}.json").write_text(json.dumps(r), encoding="utf-8")

    assert "*Not run yet.*" in solvers.render({})
    rep("mnist-uncond", "ddpm", 10, 1.0)
    rep("mnist-uncond", "dpm++2m", 10, 2.0)
    rep("mnist-uncond", "ddim", 10, 3.0)
    rep("mnist-uncond", "ddim", 5, 4.0)
    rep("mnist-text2img", "dpm++2m", 10, 1.5, accuracy=0.99)
    rep("mnist-uncond", "dpm++2m", 10, 1.8, spacing="logsnr", stem="solver_mnist-uncond_dpm++2m-logsnr_10")
    table = solvers.render(solvers.load(tmp_path))
    rows = [line for line in table.splitlines() if line.startswith("| d")]
    assert rows == ["| ddim | 5 | 4.000 | 8.00 | 0.90 |", "| ddim | 10 | 3.000 | 6.00 | 0.90 |",
                    "| dpm++2m | 10 | 2.000 | 4.00 | 0.90 |", "| dpm++2m (logsnr grid) | 10 | 1.800 | 3.60 | 0.90 |",
                    "| ddpm | 10 | 1.000 | 2.00 | 0.90 |", "| dpm++2m | 10 | 1.500 | 3.00 | 0.90 | 99.0% |"]
    assert ("--steps 10 --sampler dpm++2m --spacing logsnr --threads 1 "
            "--out benchmarks/results/solver_mnist-uncond_dpm++2m-logsnr_10.json`") in table
    assert table.index("`mnist-uncond`") < table.index("`mnist-text2img`, guidance 3")
    assert ("`diffusion-lite evaluate --checkpoint mnist-text2img --n 10 --guidance 3 --steps 10 --sampler dpm++2m "
            "--threads 1 --out benchmarks/results/solver_mnist-text2img_dpm++2m_10.json`") in table
    assert "| ddpm | 10 | 1.000 |" in report.render(tmp_path)
    # a guidance interval: a table of its own after the same model's plain guidance, its flag in each command
    rep("mnist-text2img", "ddim", 20, 0.7, accuracy=0.98, interval=[200, 700],
        stem="solver_mnist-text2img_ddim_20_interval200-700")
    table = solvers.render(solvers.load(tmp_path))
    plain = table.index("`mnist-text2img`, guidance 3, n = 10")
    interval = table.index("`mnist-text2img`, guidance 3 for 200 <= t <= 700 only")
    assert table.index("`mnist-uncond`") < plain < interval
    assert table[interval:].count("| ddim | 20 |") == 1 and "| ddim | 20 |" not in table[:interval]
    assert ("--steps 20 --sampler ddim --guidance-interval 200 700 --threads 1 "
            "--out benchmarks/results/solver_mnist-text2img_ddim_20_interval200-700.json`") in table
    assert table[plain:interval].count("--guidance-interval") == 0


def test_inpainting_benchmark_runs_and_renders(tmp_path):
    """benchmarks/inpainting.py: each half, both resample settings and the two baselines, rendered as a table."""
    from benchmarks import inpainting, report

    assert "*Not run yet.*" in inpainting.render(None)
    r = inpainting.main(["--quick", "--n", "25", "--threads", "1", "--out", str(tmp_path)])  # 25: 20, balanced
    assert set(r["rows"]) == {f"{h}, {p}" for h in ("bottom", "top") for p in ("own digit", "empty")}
    assert 0.5 < r["real"] <= 1
    for row in r["rows"].values():
        assert 0 <= row["kept_half_alone"] < r["real"]  # half a digit is harder to read than a whole one
        assert {"resample_1", "resample_3"} <= set(row) and len(row["resample_3"]["per_digit"]) == 10
        assert len(row["resample_1"]["right"]) == r["settings"]["n"] == 20
    table = inpainting.render(r)
    assert "| bottom | the image's own digit, guidance 3 |" in table and "| top | empty (guidance 1) |" in table
    assert "resample 3" in table and "| bottom | empty (guidance 1) |" in report.render(tmp_path)
    assert "Resample 3 against 1, paired over the same images" in table
    row = {"resample_1": {"right": [0, 0, 1, 1]}, "resample_3": {"right": [1, 0, 1, 1]}}
    assert inpainting.paired_gain(row, 1, 3) == "+25.0 [-24.0, +74.0]"  # mean 0.25, sd 0.5: se 0.25
