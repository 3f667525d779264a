"""Resuming a run: only --steps (and settings that do not change the result) may differ from the run's;
the text encoder must be the run's and must know the dataset's caption words; --ema-decay in [0, 1)."""

import json

import pytest
import torch

from diffusion_lite.cli import main
from diffusion_lite.config import ScheduleConfig, TrainConfig, UNetConfig
from diffusion_lite.data import load_dataset
from diffusion_lite.schedules import Schedule
from diffusion_lite.train import EMA, fit
from diffusion_lite.unet import UNet

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(), groups=4)
SMALL = ["--dataset", "mnist", "--batch-size", "8", "--subset", "64", "--threads", "1"]


def train(capsys, *args):
    """Run `diffusion-lite train` in this process: (exit code, stdout, stderr)."""
    rc = main(["train", *SMALL, *args])
    out, err = capsys.readouterr()
    return rc, out, err


def saved(run):
    return json.loads((run / "checkpoint.json").read_text(encoding="utf-8"))


def test_cli_resume_with_other_settings_is_an_error(tmp_path, capsys):
    run = tmp_path / "v"
    rc, _, _ = train(capsys, "--steps", "2", "--model", "tiny", "--prediction", "v", "--out", str(run))
    assert rc == 0
    # the audit's command: no --model, no --prediction
    rc, out, err = train(capsys, "--steps", "3", "--out", str(run))
    assert rc == 2 and "resuming" not in out
    assert "--prediction: saved 'v', requested 'eps'" in err and "--model: saved 'tiny', requested 'small'" in err
    assert "choose a new --out" in err and len(err.strip().splitlines()) == 1
    rc, _, err = train(capsys, "--steps", "3", "--model", "tiny", "--prediction", "v", "--out", str(run),
                       "--lr", "1e-3", "--batch-size", "4", "--loss-weighting", "min_snr",
                       "--ema-decay", "0.99", "--schedule", "linear", "--seed", "1", "--subset", "32")
    assert rc == 2
    for msg in ["--lr: saved 0.002, requested 0.001", "--batch-size: saved 8, requested 4",
                "--loss-weighting: saved 'none', requested 'min_snr'",
                "--ema-decay: saved 0.999, requested 0.99", "--schedule: saved 'cosine', requested 'linear'",
                "--seed: saved 0, requested 1", "--subset: saved 64, requested 32"]:
        assert msg in err
    assert saved(run)["train_state"]["step"] == 2 and saved(run)["prediction"] == "v"
    # the same command with more --steps (and other operational settings) resumes
    rc, out, err = train(capsys, "--steps", "3", "--model", "tiny", "--prediction", "v", "--out", str(run),
                         "--checkpoint-every", "1")
    assert rc == 0, err
    assert "resuming" in out and "done: step 3" in out
    meta = saved(run)
    assert meta["train_state"]["step"] == 3 and meta["prediction"] == meta["train"]["prediction"] == "v"


def test_cli_resume_of_a_fine_tune_needs_its_init_from(tmp_path, capsys):
    run = tmp_path / "ft"
    src = ["--model", "tiny", "--steps", "1", "--out", str(tmp_path / "src")]
    assert train(capsys, *src)[0] == 0
    ft = ["--init-from", str(tmp_path / "src" / "checkpoint"), "--out", str(run)]
    assert train(capsys, "--steps", "1", *ft)[0] == 0
    rc, out, err = train(capsys, "--steps", "2", *ft)  # the same command with more --steps resumes
    assert rc == 0 and "resuming" in out, err
    rc, out, err = train(capsys, "--steps", "3", "--model", "base", *ft)  # refused on resume too, not ignored
    assert rc == 2 and "--model: saved 'tiny', requested 'base'" in err and "resuming" not in out
    rc, out, err = train(capsys, "--steps", "3", "--schedule", "linear", *ft)
    assert rc == 2 and "--schedule: saved 'cosine', requested 'linear'" in err and "resuming" not in out
    rc, out, err = train(capsys, "--steps", "3", "--model", "tiny", "--schedule", "cosine", *ft)  # equal: accepted
    assert rc == 0 and "resuming" in out, err
    rc, _, err = train(capsys, "--steps", "3", "--model", "tiny", "--out", str(run))
    assert rc == 2 and "--init-from: saved" in err and "requested not given" in err


@pytest.fixture(scope="module")
def other_clip(tmp_path_factory):
    """mnist-clip with one weight changed: another text encoder with the same vocabulary."""
    from diffusion_lite.checkpoints import load_pretrained
    from diffusion_lite.clip import save_clip

    clip = load_pretrained("mnist-clip")
    with torch.no_grad():
        next(clip.parameters()).add_(0.01)
    return str(save_clip(tmp_path_factory.mktemp("clip") / "other-clip", clip))


def test_cli_resume_needs_the_runs_text_encoder(tmp_path, capsys, other_clip):
    run = tmp_path / "t2i"
    common = ["--model", "tiny", "--cross-attn", "7", "--out", str(run)]
    assert train(capsys, "--steps", "1", "--text", "mnist-clip", *common)[0] == 0
    sha = saved(run)["text"]["weights_sha256"]
    rc, _, err = train(capsys, "--steps", "2", *common)
    assert rc == 2 and "is a text-to-image run (trained with --text mnist-clip); pass --text mnist-clip" in err
    assert "context (B, L, D)" not in err
    rc, _, err = train(capsys, "--steps", "2", "--text", other_clip, *common)
    assert rc == 2 and "trained with the text encoder mnist-clip" in err and f"--text {other_clip} is another" in err
    assert saved(run)["text"]["weights_sha256"] == sha and saved(run)["train_state"]["step"] == 1
    rc, out, err = train(capsys, "--steps", "2", "--text", "mnist-clip", *common)
    assert rc == 0 and "resuming" in out, err

    uncond = tmp_path / "uncond"
    assert train(capsys, "--steps", "1", "--model", "tiny", "--out", str(uncond))[0] == 0
    rc, _, err = train(capsys, "--steps", "2", "--model", "tiny", "--text", "mnist-clip", "--out", str(uncond))
    assert rc == 2 and "is an unconditional run (trained without --text); drop --text mnist-clip" in err


def test_cli_text_encoder_must_know_the_dataset_vocabulary(tmp_path, capsys):
    rc = main(["train", "--dataset", "fashion-mnist", "--text", "mnist-clip", "--steps", "1", "--batch-size", "8",
               "--subset", "64", "--model", "tiny", "--out", str(tmp_path / "f"), "--threads", "1"])
    out, err = capsys.readouterr()
    assert rc == 2 and "training" not in out and "warning" not in err
    assert "--text mnist-clip does not know 47 of the 56 words of the fashion-mnist captions" in err
    assert "ankle" in err and "diffusion-lite train-clip --dataset fashion-mnist" in err
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("value", ["2", "-1", "1", "nan"])
def test_cli_ema_decay_must_be_below_one(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as e:
        main(["train", *SMALL, "--steps", "1", "--ema-decay", value, "--out", str(tmp_path / "r")])
    assert e.value.code == 2
    assert f"ema_decay must be in [0, 1), got {value}" in capsys.readouterr().err


@pytest.fixture(scope="module")
def images():
    return load_dataset("mnist", "train", subset=60, balanced=True).images


def test_fit_refuses_to_resume_with_other_settings(tmp_path, images):
    s = Schedule.from_config()
    cfg = TrainConfig(steps=2, batch_size=4, prediction="v", log_every=1)
    meta = {"unet": TINY.to_dict(), "schedule": s.config.to_dict()}
    fit(UNet(TINY), s, images, cfg, run_dir=tmp_path, meta=meta, progress=False)
    with pytest.raises(ValueError, match=r"lr: saved 0.002, requested 0.001; prediction: saved 'v', requested 'eps'"):
        fit(UNet(TINY), s, images, cfg.replace(steps=3, prediction="eps", lr=1e-3), run_dir=tmp_path, meta=meta,
            progress=False)
    with pytest.raises(ValueError, match=r"schedule: saved .*'cosine'.*requested .*'linear'"):
        fit(UNet(TINY), Schedule.from_config(ScheduleConfig("linear")), images, cfg.replace(steps=3),
            run_dir=tmp_path, meta=meta, progress=False)
    assert saved(tmp_path)["train_state"]["step"] == 2
    res = fit(UNet(TINY), s, images, cfg.replace(steps=3, log_every=5, checkpoint_every=1), run_dir=tmp_path,
              meta=meta, progress=False)
    assert res["step"] == 3 and saved(tmp_path)["train"]["prediction"] == "v"


def test_extending_a_finished_run_warns_that_the_learning_rate_jumps_back_up(tmp_path, images):
    s = Schedule.from_config()
    cfg = TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, log_every=1)
    meta = {"unet": TINY.to_dict(), "schedule": s.config.to_dict()}
    fit(UNet(TINY), s, images, cfg, run_dir=tmp_path, meta=meta, progress=False)  # decays towards 10% of lr
    # the 4th update used lr_at(3) = 0.325 lr; the 5th, on a decay recomputed for 8 steps, lr_at(4) = 0.650 lr
    with pytest.warns(UserWarning, match=r"planned for 4 steps and now trains to 8: .* goes from 0.00033 at step 4 "
                                         r"to 0.00065 at step 5") as record:
        fit(UNet(TINY), s, images, cfg.replace(steps=8), run_dir=tmp_path, meta=meta, progress=False)
    assert record[0].filename == __file__  # names the caller's line, not the package's internals
    assert saved(tmp_path)["train"]["steps"] == 8


@pytest.mark.parametrize("decay", [2.0, -1.0, 1.0])
def test_ema_decay_out_of_range_is_an_error(images, decay):
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        fit(UNet(TINY), Schedule.from_config(), images, TrainConfig(steps=1, batch_size=4, ema_decay=decay),
            progress=False)
    with pytest.raises(ValueError, match=r"EMA decay must be in \[0, 1\)"):
        EMA(UNet(TINY), decay)


def test_cifar_text_model_gets_cross_attention_at_its_levels():
    from diffusion_lite.train_cli import _unet_config

    u = _unet_config("small", 3, 32, 16, [8, 16])
    assert u.context_dim == 16 and u.cross_attn_resolutions == (8, 16) and u.attn_resolutions == ()
    assert _unet_config("small", 3, 32, None, [7, 14]).context_dim is None  # unconditional: CIFAR's preset
    with pytest.raises(ValueError, match=r"no level at \[7, 14\] pixels; its levels are \[32, 16, 8, 4\]"):
        _unet_config("small", 3, 32, 16, [7, 14])


def test_a_run_folder_holding_an_exported_model_is_not_resumed(tmp_path, images):
    from diffusion_lite.checkpoints import load

    load("mnist-uncond").save(tmp_path / "checkpoint")  # an inference checkpoint where a run's would be
    s = Schedule.from_config()
    meta = {"unet": TINY.to_dict(), "schedule": s.config.to_dict()}
    with pytest.raises(ValueError, match="without a training state .* cannot be resumed"):
        fit(UNet(TINY), s, images, TrainConfig(steps=1, batch_size=4), run_dir=tmp_path, meta=meta, progress=False)


def test_cli_names_an_exported_model_in_the_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["export", "--run", "mnist-uncond", "--out", str(run / "checkpoint")]) == 0
    rc, _, err = train(capsys, "--steps", "1", "--out", str(run))
    assert rc == 2 and "'diffusion' checkpoint without a training state" in err and f"--init-from {run}" in err


def test_cli_resume_says_which_steps_remain(tmp_path, capsys):
    run = str(tmp_path / "run")
    rc, out, _ = train(capsys, "--steps", "2", "--out", run)
    assert rc == 0 and "for 2 steps on" in out
    rc, out, _ = train(capsys, "--steps", "3", "--out", run)
    assert rc == 0 and "for step 3 of 3 (resumed)" in out
    rc, out, _ = train(capsys, "--steps", "5", "--out", run)
    assert rc == 0 and "for steps 4-5 of 5 (resumed)" in out
