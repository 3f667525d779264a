"""The `diffusion-lite` console script, run as a user would (a real subprocess)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

EXE = shutil.which("diffusion-lite", path=str(Path(sys.executable).parent)) or "diffusion-lite"


def run(*args, check=True, env=None):
    e = {**os.environ, "TQDM_DISABLE": "1", **(env or {})}
    p = subprocess.run([EXE, *args], capture_output=True, text=True, env=e, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


@pytest.mark.parametrize("cmd", [[], ["train"], ["sample"], ["demo"], ["export"], ["train-clip"], ["evaluate"],
                                 ["bench"]])
def test_help(cmd):
    p = run(*cmd, "--help")
    assert "usage: diffusion-lite" in p.stdout


def test_train_sample_resume(tmp_path):
    out = tmp_path / "run"
    p = run("train", "--dataset", "mnist", "--steps", "4", "--batch-size", "8", "--subset", "100", "--model", "tiny",
            "--out", str(out), "--checkpoint-every", "2", "--threads", "1")
    assert (out / "checkpoint.safetensors").exists() and (out / "checkpoint.json").exists()
    assert "done: step 4" in p.stdout
    p = run("train", "--dataset", "mnist", "--steps", "6", "--batch-size", "8", "--subset", "100", "--model", "tiny",
            "--out", str(out), "--threads", "1")
    assert "resuming" in p.stdout and "done: step 6" in p.stdout
    p = run("train", "--dataset", "mnist", "--steps", "5", "--batch-size", "8", "--subset", "100", "--model", "tiny",
            "--out", str(out), "--threads", "1")
    assert "already trained to step 6 (>= --steps 5): nothing to do" in p.stdout and "done:" not in p.stdout
    run("sample", "--checkpoint", str(out), "--n", "3", "--steps", "2", "--out", str(tmp_path / "s.npz"))
    arr = np.load(tmp_path / "s.npz")["images"]
    assert arr.shape == (3, 1, 28, 28) and arr.dtype == np.uint8
    run("sample", "--checkpoint", str(out), "--n", "4", "--steps", "2", "--sampler", "ddpm",
        "--out", str(tmp_path / "s.png"))
    assert (tmp_path / "s.png").stat().st_size > 100
    run("sample", "--checkpoint", str(out), "--n", "2", "--steps", "3", "--sampler", "dpm++2m", "--spacing", "logsnr",
        "--out", str(tmp_path / "d.npz"))
    settings = json.loads(np.load(tmp_path / "d.npz")["settings"][()])
    assert settings["sampler"] == "dpm++2m" and settings["spacing"] == "logsnr"  # the grid is recorded too
    p = run("export", "--run", str(out), "--out", str(out / "checkpoint"), check=False)  # would lose the run state
    assert p.returncode == 2 and "is a training checkpoint" in p.stderr
    run("export", "--run", str(out), "--out", str(tmp_path / "exported"))
    run("sample", "--checkpoint", str(tmp_path / "exported.json"), "--n", "2", "--steps", "2",
        "--out", str(tmp_path / "e.npz"))


def test_init_from_fine_tunes_an_exported_model(tmp_path):
    from safetensors.torch import load_file

    src = tmp_path / "src"
    run("train", "--dataset", "mnist", "--steps", "2", "--batch-size", "8", "--subset", "100", "--model", "tiny",
        "--out", str(src), "--threads", "1")
    run("export", "--run", str(src), "--out", str(tmp_path / "tiny"))
    ft = tmp_path / "ft"
    # the architecture, schedule and prediction target come from the checkpoint: asking for others is an error
    for option, message in ((["--model", "base"], "--model base: {} has tiny"),
                            (["--schedule", "linear"], "--schedule linear: {} has cosine"),
                            (["--model", "small", "--schedule", "sigmoid"], "drop --model and --schedule"),
                            (["--cross-attn", "7"], "only applies to text-to-image training"),
                            (["--prediction", "v"], "was trained to predict eps")):
        message = message.format(tmp_path / "tiny")
        p = run("train", "--dataset", "mnist", "--steps", "1", "--subset", "100", *option,
                "--init-from", str(tmp_path / "tiny"), "--out", str(ft), check=False)
        assert p.returncode == 2 and message in p.stderr and not ft.exists(), p.stderr
    # a negligible lr keeps the weights; options equal to the checkpoint's are accepted
    p = run("train", "--dataset", "mnist", "--steps", "1", "--batch-size", "8", "--subset", "100",
            "--model", "tiny", "--schedule", "cosine", "--prediction", "eps",
            "--init-from", str(tmp_path / "tiny"), "--lr", "1e-12", "--out", str(ft), "--threads", "1")
    assert "initialising the U-Net from" in p.stdout and "eps target" in p.stdout
    before = load_file(str(tmp_path / "tiny.safetensors"))
    after = load_file(str(ft / "checkpoint.safetensors"))
    unet_keys = [k for k in before if k.startswith("unet.")]
    assert unet_keys and all(k in after for k in unet_keys)  # same architecture
    assert max((before[k] - after[k]).abs().max().item() for k in unet_keys) < 1e-6
    p = run("train", "--dataset", "mnist", "--steps", "1", "--text", "mnist-clip",
            "--init-from", str(tmp_path / "tiny"), "--out", str(tmp_path / "bad"), check=False)
    assert p.returncode == 2 and "both be text-conditional or both not" in p.stderr


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "imagenet", "--steps", "1", "--out", "x"], "unknown dataset"),
    (["train", "--dataset", "Fashion_MNIST", "--steps", "1", "--out", "x"], "did you mean 'fashion-mnist'?"),
    (["train", "--dataset", "fashon-mnist", "--steps", "1", "--out", "x"], "did you mean 'fashion-mnist'?"),
    (["train", "--dataset", "mnist", "--steps", "0", "--out", "x"], "expected a positive number"),
    (["sample", "--checkpoint", "no/such/file", "--out", "a.png"], "no checkpoint at"),
    (["sample", "--checkpoint", "no/such/file", "--out", "a.jpg"], "must end in .png"),
    (["export", "--run", "no/such/run", "--out", "model.png"], "drop the '.png'"),
    (["train", "--dataset", "mnist", "--steps", "1", "--out", "x", "--device", "cuda:7"], "not available"),
    (["sample", "--checkpoint", "mnist-uncond", "--n", "1", "--out", "a.png", "--device", "gpu"],
     "unknown device 'gpu'; expected cpu, cuda[:N] or mps"),
    (["bench", "--device", "cuda:1"], "CUDA_VISIBLE_DEVICES=1"),
    (["sample", "--checkpoint", "mnist-text2img", "--prompt", "a seven", "--guidance", "-1", "--n", "1",
      "--steps", "1", "--out", "a.png"], "--guidance must be a finite number >= 0"),
    (["sample", "--checkpoint", "mnist-text2img", "--prompt", "a seven", "--guidance", "inf", "--n", "1",
      "--steps", "1", "--out", "a.png"], "--guidance must be a finite number >= 0"),
    # options that would be silently ignored
    (["sample", "--checkpoint", "mnist-uncond", "--guidance", "7", "--negative-prompt", "x", "--n", "1",
      "--out", "a.png"], "unconditional: --guidance, --negative-prompt only apply to text-to-image models"),
    (["sample", "--checkpoint", "mnist-text2img", "--prompt", "a seven", "--guidance-interval", "2000", "3000",
      "--out", "a.png"], "expected 0 <= T_LO <= T_HI <= 999 (this model's timesteps)"),
    (["sample", "--checkpoint", "mnist-text2img", "--prompt", "a seven", "--guidance-interval", "200", "1500",
      "--out", "a.png"], "expected 0 <= T_LO <= T_HI <= 999"),
    (["sample", "--checkpoint", "mnist-text2img", "--prompt", "a seven", "--cads-window", "0.5", "0.8",
      "--out", "a.png"], "--cads-window needs --cads"),
    (["sample", "--checkpoint", "mnist-uncond", "--sampler", "ddpm", "--eta", "0.5", "--out", "a.png"],
     "--eta is DDIM's noise setting; the ddpm sampler always adds its full noise"),
    (["sample", "--checkpoint", "mnist-uncond", "--sampler", "dpm++2m", "--eta", "0.5", "--out", "a.png"],
     "--eta is DDIM's noise setting; the dpm++2m sampler adds none"),
    (["evaluate", "--checkpoint", "mnist-uncond", "--n", "1", "--out", "r.json"], "--n must be >= 2"),
    (["train", "--dataset", "mnist", "--p-uncond", "0.2", "--steps", "1", "--out", "x"],
     "--p-uncond only applies to text-to-image training: add --text"),
    (["export", "--run", "mnist-clip", "--out", "m"], "is a CLIPModel checkpoint"),
    # a new model under a shipped name would be loaded instead of the shipped one
    (["export", "--run", "mnist-uncond", "--out", "mnist-text2img"], "is the name of a shipped model"),
    (["train", "--dataset", "mnist", "--steps", "1", "--out", "./mnist-uncond"], "is the name of a shipped model"),
    (["train", "--dataset", "mnist", "--steps", "1", "--balanced", "--out", "x"], "--balanced needs --subset K"),
    (["sample", "--checkpoint", "mnist-uncond", "--seed", str(2**64), "--out", "a.png"],
     "expected an integer from 0 to 2**63 - 1"),
    # guidance steers towards a prompt: without one (and without a negative prompt) it would change nothing
    (["sample", "--checkpoint", "mnist-text2img", "--guidance", "5", "--n", "1", "--out", "a.png"],
     "--guidance steers samples towards a prompt, and none was given"),
    (["sample", "--checkpoint", "mnist-uncond", "--eta", "5", "--n", "1", "--steps", "1", "--out", "a.png"],
     "eta must be in [0, 1]"),
])
def test_bad_arguments_are_one_line_errors(args, message, tmp_path):
    if "cuda:7" in args:
        import torch
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    p = subprocess.run([EXE, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr


def test_output_paths_and_prompt_files_are_checked_before_any_work(tmp_path):
    def fails(*args, message):
        p = subprocess.run([EXE, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr, p.stderr

    (tmp_path / "afile").write_text("x", encoding="utf-8")
    (tmp_path / "adir.png").mkdir()
    fails("sample", "--checkpoint", "mnist-uncond", "--out", "afile/x.png", message="afile is a file, so no folder")
    fails("sample", "--checkpoint", "mnist-uncond", "--out", "adir.png", message="adir.png is a folder")
    fails("evaluate", "--checkpoint", "mnist-uncond", "--n", "20", "--out", "afile/r.json", message="is a file")
    fails("train", "--dataset", "mnist", "--steps", "1", "--out", "afile", message="afile is a file; expected a folder")
    fails("sample", "--checkpoint", "mnist-text2img", "--prompts-file", ".", "--out", "a.png", message="is not a file")
    (tmp_path / "latin1.txt").write_bytes(b"the digit \xff\n")
    fails("sample", "--checkpoint", "mnist-text2img", "--prompts-file", "latin1.txt", "--out", "a.png",
          message="latin1.txt is not UTF-8 text")
    (tmp_path / "bad_card.json").write_text("{oops", encoding="utf-8")
    fails("export", "--run", "mnist-uncond", "--card", "bad_card.json", "--out", "m",
          message="--card bad_card.json: expected a JSON file")
    # a byte-order mark (Windows editors) is not read as an unknown word
    (tmp_path / "bom.txt").write_text("\ufeffthe digit one\n", encoding="utf-8")
    p = run("sample", "--checkpoint", "mnist-text2img", "--prompts-file", str(tmp_path / "bom.txt"), "--n", "1",
            "--steps", "1", "--out", str(tmp_path / "b.npz"))
    assert "unknown word" not in p.stderr
    assert list(np.load(tmp_path / "b.npz")["prompts"]) == ["the digit one"]


def test_missing_data_offline_is_a_clear_error(tmp_path):
    p = run("train", "--dataset", "cifar10", "--steps", "1", "--out", str(tmp_path / "r"), check=False,
            env={"DIFFUSION_LITE_DATA": str(tmp_path), "HOME": str(tmp_path)})
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "cifar10" in p.stderr.lower() and "download" in p.stderr.lower()


def test_text_to_image_commands(tmp_path):
    clip = tmp_path / "clip"
    run("train-clip", "--steps", "3", "--batch-size", "16", "--subset", "100", "--out", str(clip), "--threads", "1")
    assert (tmp_path / "clip.json").exists()
    run_dir = tmp_path / "t2i"
    run("train", "--dataset", "mnist", "--text", str(clip), "--steps", "2", "--batch-size", "8", "--subset", "100",
        "--model", "tiny", "--cross-attn", "7", "--out", str(run_dir), "--threads", "1")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# my prompts (a comment)\na thick seven\n\n  # another\nthe digit one\n", encoding="utf-8")
    p = run("sample", "--checkpoint", str(run_dir), "--prompt", "a handwritten 3", "--prompts-file", str(prompts),
            "--n", "2", "--steps", "2", "--guidance", "2", "--negative-prompt", "a thin seven",
            "--out", str(tmp_path / "t.npz"))
    assert "guidance 2, negative prompt 'a thin seven', seed 0" in p.stdout  # the summary says how
    d = np.load(tmp_path / "t.npz")
    assert d["images"].shape == (6, 1, 28, 28)
    assert list(d["prompts"]) == ["a handwritten 3"] * 2 + ["a thick seven"] * 2 + ["the digit one"] * 2
    settings = json.loads(d["settings"][()])  # and the file records it
    assert settings == {"checkpoint": str(run_dir), "sampler": "ddim", "steps": 2, "eta": 0.0, "spacing": "linspace",
                        "seed": 0, "n_per_prompt": 2, "batch_size": 256, "guidance": 2.0, "guidance_interval": None,
                        "negative_prompt": "a thin seven", "cads": None}
    run("sample", "--checkpoint", str(run_dir), "--n", "2", "--steps", "2", "--cads", "0.5", "--cads-window",
        "0.5", "0.8", "--out", str(tmp_path / "c.npz"))  # no prompt: guided by CADS alone
    settings = json.loads(np.load(tmp_path / "c.npz")["settings"][()])
    assert settings["guidance"] == 3.0 and settings["cads"] == {"noise_scale": 0.5, "tau1": 0.5, "tau2": 0.8,
                                                                "psi": 1.0}
    p = run("sample", "--checkpoint", str(run_dir), "--n", "2", "--steps", "2", "--out", str(tmp_path / "e.npz"))
    assert json.loads(np.load(tmp_path / "e.npz")["settings"][()])["guidance"] is None  # "" vs "": no guidance
    assert "guidance" not in p.stdout
    p = run("sample", "--checkpoint", str(clip), "--prompt", "x", "--out", str(tmp_path / "c.png"), check=False)
    assert p.returncode == 2 and "it is a text encoder (CLIP); sample from a U-Net trained with it" in p.stderr
    p = run("sample", "--checkpoint", str(run_dir), "--prompt", "x", "--out", str(tmp_path / "u.png"),
            "--prompts-file", str(tmp_path / "missing.txt"), check=False)
    assert p.returncode == 2 and "does not exist" in p.stderr
    (tmp_path / "empty.txt").write_text("\n  \n# only a comment\n", encoding="utf-8")
    p = run("sample", "--checkpoint", str(run_dir), "--prompts-file", str(tmp_path / "empty.txt"),
            "--out", str(tmp_path / "u.png"), check=False)
    assert p.returncode == 2 and "has no prompts" in p.stderr


def test_text_training_hints_and_warnings(tmp_path):
    """A text model's sampling hint has a prompt; fine-tuning on another text encoder warns; unknown prompt
    words are named in a one-line warning."""
    clip = tmp_path / "clip"
    run("train-clip", "--steps", "2", "--batch-size", "16", "--subset", "100", "--out", str(clip), "--threads", "1")
    p = run("train", "--dataset", "mnist", "--text", str(clip), "--init-from", "mnist-text2img", "--steps", "1",
            "--batch-size", "4", "--subset", "100", "--out", str(tmp_path / "ft"), "--threads", "1")
    assert "trained with another text encoder" in p.stderr
    assert '--prompt "the digit seven"' in p.stdout
    p = run("train", "--dataset", "mnist", "--text", "mnist-clip", "--init-from", "mnist-text2img", "--steps", "1",
            "--batch-size", "4", "--subset", "100", "--out", str(tmp_path / "ft2"), "--threads", "1")
    assert "another text encoder" not in p.stderr
    p = run("sample", "--checkpoint", "mnist-text2img", "--prompt", "a purple seven", "--n", "1", "--steps", "1",
            "--out", str(tmp_path / "p.png"))
    assert "diffusion-lite: warning: unknown word(s) ['purple']" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_guidance_interval_outside_every_step_is_the_conditional_model(tmp_path, text2img):
    """3 DDIM steps visit t = 999, 500, 0: none lies in 600..900, so the interval gives s = 1 everywhere. The API
    computes exactly that; the command line refuses it, as it refuses every option that would change nothing."""
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    kw = dict(steps=3, x_T=x_T, progress=False)
    s1, off, s5 = (text2img.sample(["a thick seven"] * 2, guidance=s, guidance_interval=iv, **kw)
                   for s, iv in ((1.0, None), (5.0, (600, 900)), (5.0, None)))
    assert torch.equal(s1, off) and not torch.equal(s1, s5)
    p = run("sample", "--checkpoint", "mnist-text2img", "--prompt", "a thick seven", "--n", "2", "--steps", "3",
            "--guidance", "5", "--guidance-interval", "600", "900", "--out", str(tmp_path / "off.npz"), check=False)
    assert p.returncode == 2 and "holds none of the 3 timesteps that --steps 3 samples (999, 500, 0)" in p.stderr


def test_cads_noises_the_prompt_reproducibly_and_needs_a_text_model(tmp_path):
    common = ["sample", "--checkpoint", "mnist-text2img", "--prompt", "a thick seven", "--n", "2", "--steps", "3",
              "--threads", "1"]
    run(*common, "--out", str(tmp_path / "plain.npz"))
    run(*common, "--cads", "0.5", "--out", str(tmp_path / "a.npz"))
    run(*common, "--cads", "0.5", "--out", str(tmp_path / "b.npz"))
    plain, a, b = (np.load(tmp_path / f)["images"] for f in ("plain.npz", "a.npz", "b.npz"))
    assert np.array_equal(a, b) and not np.array_equal(plain, a)  # the seed fixes the prompt noise too
    p = run(*common, "--cads", "0.5", "--cads-window", "0.9", "0.6", "--out", str(tmp_path / "c.npz"), check=False)
    assert p.returncode == 2 and "tau1 < tau2" in p.stderr
    p = run("sample", "--checkpoint", "mnist-uncond", "--n", "1", "--steps", "2", "--cads", "0.5",
            "--out", str(tmp_path / "u.npz"), check=False)
    assert p.returncode == 2 and "unconditional" in p.stderr


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
def test_evaluate_scores_a_fashion_model_with_the_fashion_classifier(tmp_path):
    run_dir = tmp_path / "fashion"
    run("train", "--dataset", "fashion-mnist", "--steps", "2", "--batch-size", "8", "--subset", "100", "--model",
        "tiny", "--out", str(run_dir), "--threads", "1")
    p = run("evaluate", "--checkpoint", str(run_dir), "--n", "20", "--steps", "2", "--out", str(tmp_path / "r.json"),
            "--threads", "1")
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["settings"]["classifier"] == "fashion-mnist-classifier"
    assert report["settings"]["reference"] == "fashion-mnist-test" and report["fid"] > 0
    assert "fid" in p.stdout.lower()
    p = run("evaluate", "--checkpoint", str(run_dir), "--n", "20", "--reference", "mnist-test",
            "--out", str(tmp_path / "x.json"), check=False)
    assert p.returncode == 2 and "--reference mnist-test is not fashion-mnist's" in p.stderr


def test_spacing_reaches_the_sampler_and_the_guidance_interval_check(tmp_path):
    """--spacing changes which steps are sampled (the same seed gives other images) and is what the
    --guidance-interval check looks at: 3 steps are 999, 500, 0 on the even-t grid and 999, 705, 0 on the
    log-SNR one, so 600-800 holds a step only on the second."""
    for spacing in ("linspace", "logsnr"):
        run("sample", "--checkpoint", "mnist-uncond", "--n", "2", "--steps", "3", "--sampler", "dpm++2m",
            "--spacing", spacing, "--threads", "1", "--out", str(tmp_path / f"{spacing}.npz"))
    a, b = (np.load(tmp_path / f"{s}.npz")["images"] for s in ("linspace", "logsnr"))
    assert np.abs(a.astype(int) - b.astype(int)).max() > 50
    interval = ["--checkpoint", "mnist-text2img", "--prompt", "a seven", "--n", "1", "--steps", "3",
                "--guidance-interval", "600", "800", "--threads", "1"]
    p = run("sample", *interval, "--out", str(tmp_path / "t.png"), check=False)
    assert p.returncode == 2 and "holds none of the 3 timesteps" in p.stderr
    run("sample", *interval, "--spacing", "logsnr", "--out", str(tmp_path / "t.png"))
