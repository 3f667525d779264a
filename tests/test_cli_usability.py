"""What a user of the command line runs into (from a CLI audit): Ctrl-C keeps the run, --seed reproduces it,
mistakes are one-line errors before any work, options that would do nothing are refused, long sampling runs
in batches, and the grid keeps one row per prompt."""

import argparse
import json
import os
import pickle
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diffusion_lite.cli import main
from diffusion_lite.clip import CLIPModel, save_clip
from diffusion_lite.config import ScheduleConfig, TrainConfig, UNetConfig
from diffusion_lite.data import DATASETS, load_dataset
from diffusion_lite.schedules import Schedule
from diffusion_lite.train import fit
from diffusion_lite.unet import UNet

pytestmark = pytest.mark.usefixtures("default_stop_signals")  # whatever the shell set

SMALL = ["--dataset", "mnist", "--batch-size", "8", "--subset", "64", "--threads", "1", "--model", "tiny"]


def cli(capsys, *args):
    """Run `diffusion-lite ARGS` in this process: (exit code, stdout, stderr)."""
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def error(capsys, *args) -> str:
    rc, _, err = cli(capsys, *args)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
@pytest.mark.parametrize("signame", [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)])
def test_ctrl_c_or_a_scheduler_stop_ends_training_between_steps_with_the_run_saved(tmp_path, signame):
    """Ctrl-C, and the SIGTERM/SIGHUP of `timeout`, SLURM, `docker stop` or a closed terminal: nothing is lost."""
    sig = getattr(signal, signame)
    images = load_dataset("mnist", "train", subset=30, balanced=True).images
    schedule = Schedule.from_config(ScheduleConfig("linear", T=100))
    cfg = TrainConfig(steps=6, batch_size=4, checkpoint_every=100, log_every=1)
    tiny = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(), groups=4)

    torch.manual_seed(0)
    whole = fit(UNet(tiny), schedule, images, cfg, run_dir=tmp_path / "whole", progress=False)["ema"].model

    def signal_at_3(info):
        if info["step"] == 3:
            os.kill(os.getpid(), sig)  # as the terminal or a scheduler sends it: fit finishes the step, saves, stops

    handlers = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    torch.manual_seed(0)
    by = "" if signame == "SIGINT" else f" by {signame}"
    with pytest.raises(KeyboardInterrupt, match=f"interrupted{by} at step 3; the run is saved in") as e:
        fit(UNet(tiny), schedule, images, cfg, run_dir=tmp_path / "cut", progress=False, callback=signal_at_3)
    assert e.value.signum == sig  # the CLI exits with 128 + signum, as a shell reports it
    assert {n: signal.getsignal(n) for n in handlers} == handlers  # the caller's handlers are back
    saved = json.loads((tmp_path / "cut" / "checkpoint.json").read_text(encoding="utf-8"))
    assert saved["train_state"]["step"] == 3
    resumed = fit(UNet(tiny), schedule, images, cfg, run_dir=tmp_path / "cut", progress=False)["ema"].model
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)  # as if never interrupted


@pytest.mark.skipif(not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread(),
                    reason="SIGHUP and the main thread")
def test_a_signal_ignored_at_the_start_as_by_nohup_does_not_stop_training(tmp_path):
    """`nohup diffusion-lite train ... &` sets SIGHUP to be ignored: closing the ssh session must not stop the
    run (it would be saved, but the job would be over)."""
    images = load_dataset("mnist", "train", subset=30, balanced=True).images
    schedule = Schedule.from_config(ScheduleConfig("linear", T=100))
    cfg = TrainConfig(steps=4, batch_size=4, checkpoint_every=100, log_every=1)
    tiny = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(), groups=4)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        try:
            res = fit(UNet(tiny), schedule, images, cfg, run_dir=tmp_path / "hup", progress=False,
                      callback=lambda info: info["step"] == 2 and os.kill(os.getpid(), signal.SIGHUP))
        except KeyboardInterrupt as e:  # (a KeyboardInterrupt would end the whole pytest session)
            pytest.fail(f"training stopped at a SIGHUP that nohup had set to be ignored: {e}")
        assert res["step"] == 4  # trained to the end
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN  # and still ignored afterwards
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_a_second_ctrl_c_during_the_save_waits_until_the_checkpoint_is_whole(tmp_path, monkeypatch):
    """The impatient double Ctrl-C: the second one lands while the run is written. It waits until the save is
    complete (cut between the weights and their JSON, the next load would have to finish the save)."""
    import diffusion_lite.train as train_module
    from diffusion_lite import files

    images = load_dataset("mnist", "train", subset=30, balanced=True).images
    schedule = Schedule.from_config(ScheduleConfig("linear", T=100))
    cfg = TrainConfig(steps=6, batch_size=4, checkpoint_every=100, log_every=1)
    tiny = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(), groups=4)
    real_fsync_dir, calls = files.fsync_dir, []

    def second_ctrl_c_after_the_weights(folder):
        real_fsync_dir(folder)
        calls.append(folder)
        if len(calls) == 1:  # save_checkpoint's first: the new weights are in place, their JSON not yet
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(files, "fsync_dir", second_ctrl_c_after_the_weights)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt) as e:
        fit(UNet(tiny), schedule, images, cfg, run_dir=tmp_path / "cut", progress=False,
            callback=lambda info: info["step"] == 3 and os.kill(os.getpid(), signal.SIGINT))
    assert not isinstance(e.value, train_module.TrainingInterrupted)  # the second Ctrl-C's: no message, at once
    monkeypatch.undo()
    saved = json.loads((tmp_path / "cut" / "checkpoint.json").read_text(encoding="utf-8"))
    assert saved["train_state"]["step"] == 3 and len(calls) == 2  # the save completed, JSON and weights agree
    assert fit(UNet(tiny), schedule, images, cfg, run_dir=tmp_path / "cut", progress=False)["step"] == 6


def test_seed_reproduces_a_training_run_and_a_clip_model(tmp_path, capsys):
    for name in ("a", "b"):
        assert cli(capsys, "train", *SMALL, "--steps", "1", "--seed", "5", "--out", str(tmp_path / name))[0] == 0
        assert cli(capsys, "train-clip", "--steps", "1", "--batch-size", "16", "--subset", "40", "--width", "16",
                   "--seed", "5", "--threads", "1", "--out", str(tmp_path / f"clip_{name}"))[0] == 0
    for a, b in [("a/checkpoint", "b/checkpoint"), ("clip_a", "clip_b")]:
        wa, wb = load_file(str(tmp_path / f"{a}.safetensors")), load_file(str(tmp_path / f"{b}.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_diverging_run_is_a_one_line_error_that_says_how_to_restart(tmp_path, capsys):
    with pytest.warns(UserWarning, match="training is diverging"):  # the warning comes first, then the error
        err = error(capsys, "train", *SMALL, "--steps", "30", "--lr", "50", "--out", str(tmp_path / "r"))
    assert "lower the learning rate (now 50.0), with a new --out" in err


def test_train_clip_keeps_existing_checkpoints_and_shipped_names(tmp_path, capsys):
    (tmp_path / "c.json").write_text("{}", encoding="utf-8")
    assert "c.json already exist" in error(capsys, "train-clip", "--steps", "1", "--out", str(tmp_path / "c"))
    assert "name of a shipped model" in error(capsys, "train-clip", "--steps", "1", "--out", "mnist-clip")
    assert "drop the '.png'" in error(capsys, "train-clip", "--steps", "1", "--out", str(tmp_path / "c.png"))
    assert "is a folder" in error(capsys, "train-clip", "--steps", "1", "--out", str(tmp_path) + "/")


def test_clip_for_cifar10_takes_its_colour_images():
    model = CLIPModel.for_dataset("cifar10", width=16, layers=1, heads=2, embed_dim=16, cnn_channels=(8, 8, 8))
    assert (model.cfg.image_channels, model.cfg.image_size) == (3, 32)
    assert model.encode_image(-torch.ones(2, 3, 32, 32)).shape == (2, 16)


def test_train_mistakes_are_caught_before_training(tmp_path, capsys, monkeypatch):
    run = tmp_path / "r"
    run.mkdir()
    (run / "checkpoint.json").write_text('{"unet": {"a": 1,}}', encoding="utf-8")
    assert "checkpoint.json is not valid JSON" in error(capsys, "train", *SMALL, "--steps", "2", "--out", str(run))
    # weights lost
    (run / "checkpoint.json").write_text('{"kind": "diffusion", "train_state": {"step": 1}}', encoding="utf-8")
    rc, out, err = cli(capsys, "train", *SMALL, "--steps", "2", "--out", str(run))
    assert rc == 2 and "resuming" not in out and "has no checkpoint.safetensors beside it" in err
    err = error(capsys, "train", *SMALL, "--steps", "1", "--text", "mnist-clip", "--cross-attn", "7", "7",
                "--out", str(tmp_path / "d"))
    assert "--cross-attn lists a resolution twice" in err
    torch.manual_seed(0)
    save_clip(tmp_path / "clip32", CLIPModel.for_dataset("mnist", width=32, layers=1, heads=2, embed_dim=16))
    err = error(capsys, "train", *SMALL[:-2], "--steps", "1", "--text", str(tmp_path / "clip32"), "--init-from",
                "mnist-text2img", "--out", str(tmp_path / "w"))
    assert "its cross-attention takes 64-wide token embeddings, but --text" in err and "gives 32-wide" in err
    # cifar10 has its own U-Net: a --model preset would be ignored (fake CIFAR-10 files, as torchvision writes them)
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [0, 1]}
        (folder / name).write_bytes(pickle.dumps(data))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(DATASETS["cifar10"].classes)}))
    monkeypatch.setenv("DIFFUSION_LITE_DATA", str(tmp_path / "data"))
    err = error(capsys, "train", "--dataset", "cifar10", "--model", "tiny", "--steps", "1", "--out",
                str(tmp_path / "c"))
    assert "the presets are MNIST-sized; cifar10 uses its own U-Net" in err
    # text-to-image on CIFAR-10: the default cross-attention levels are its own (8 16), not MNIST's (7 14)
    save_clip(tmp_path / "cclip", CLIPModel.for_dataset("cifar10", width=16, layers=1, heads=2, embed_dim=16,
                                                        cnn_channels=(8, 8, 8)))
    text = ["train", "--dataset", "cifar10", "--text", str(tmp_path / "cclip"), "--steps", "1", "--batch-size", "2",
            "--threads", "1"]
    err = error(capsys, *text, "--cross-attn", "7", "--out", str(tmp_path / "c7"))
    assert "--cross-attn 7: this U-Net has no level at 7 pixels; choose among its levels 32 16 8 4" in err
    rc, out, err = cli(capsys, *text, "--out", str(tmp_path / "ct"))
    assert rc == 0, err
    saved = json.loads((tmp_path / "ct" / "checkpoint.json").read_text(encoding="utf-8"))
    assert sorted(saved["unet"]["cross_attn_resolutions"]) == [8, 16]
    err = error(capsys, "train-clip", "--dataset", "cifar10", "--steps", "1", "--out", str(tmp_path / "cc"))
    assert "the zero-shot check after training uses 2,000 cifar10 test images, but its test split has only 2" in err


def test_init_from_a_text_model_compares_cross_attention_levels(tmp_path, capsys):
    """mnist-text2img attends at 7 px: --cross-attn 7 agrees with it, 7 14 does not, on a fresh fine-tune and on
    its resume; the error spells the levels as they are typed."""
    fine = ["train", "--dataset", "mnist", "--text", "mnist-clip", "--init-from", "mnist-text2img", "--batch-size",
            "4", "--subset", "20", "--threads", "1", "--out", str(tmp_path / "ft")]
    err = error(capsys, *fine, "--steps", "1", "--cross-attn", "7", "14")
    assert "--cross-attn 7 14: mnist-text2img has 7. Fine-tuning keeps the U-Net and schedule" in err
    assert not (tmp_path / "ft").exists()
    rc, out, err = cli(capsys, *fine, "--steps", "1", "--cross-attn", "7")
    assert rc == 0 and "initialising the U-Net from mnist-text2img" in out and "note:" not in err, err
    err = error(capsys, *fine, "--steps", "2", "--cross-attn", "14")
    assert "--cross-attn: saved [7], requested [14]" in err


def test_cross_attention_levels_are_a_set_on_resume(tmp_path, capsys):
    run = str(tmp_path / "t")
    text = ["--text", "mnist-clip", "--batch-size", "4"]
    assert cli(capsys, "train", *SMALL, *text, "--steps", "1", "--cross-attn", "14", "7", "--out", run)[0] == 0
    rc, out, err = cli(capsys, "train", *SMALL, *text, "--steps", "2", "--out", run)  # default: 7 14
    assert rc == 0 and "resuming" in out, err


def test_p_attribute_reaches_the_captions_is_recorded_and_resumes_only_unchanged(tmp_path, capsys, monkeypatch):
    """train --text --p-attribute 1: every training caption carries attribute words; the run records the share,
    and a resume with another share (or the default, 0.5) names it."""
    from diffusion_lite import captions as C

    seen, make = [], C.make_captions
    monkeypatch.setattr(C, "make_captions", lambda *a, **kw: seen.append(kw.get("p_attribute")) or make(*a, **kw))
    run = str(tmp_path / "t")
    text = ["--text", "mnist-clip", "--batch-size", "4", "--out", run]
    assert cli(capsys, "train", *SMALL, *text, "--steps", "1", "--p-attribute", "1")[0] == 0
    saved = json.loads((tmp_path / "t" / "checkpoint.json").read_text(encoding="utf-8"))
    assert seen == [1.0] and saved["captions"] == {"p_attribute": 1.0}
    err = error(capsys, "train", *SMALL, *text, "--steps", "2")
    assert "--p-attribute: saved 1.0, requested 0.5 (the default, as --p-attribute was not given)" in err
    assert cli(capsys, "train", *SMALL, *text, "--steps", "2", "--p-attribute", "1.0")[0] == 0 and seen == [1.0] * 2
    old = ["--text", "mnist-clip", "--batch-size", "4", "--out", str(tmp_path / "old")]  # a run from before: no
    assert cli(capsys, "train", *SMALL, *old, "--steps", "1")[0] == 0                   # record, so the default
    record = tmp_path / "old" / "checkpoint.json"
    saved = json.loads(record.read_text(encoding="utf-8"))
    record.write_text(json.dumps({k: v for k, v in saved.items() if k != "captions"}), encoding="utf-8")
    assert "--p-attribute: saved 0.5, requested 1.0" in error(capsys, "train", *SMALL, *old, "--steps", "2",
                                                              "--p-attribute", "1")
    assert cli(capsys, "train", *SMALL, *old, "--steps", "2")[0] == 0
    from diffusion_lite.clip_cli import RUN_OPTIONS, _option_diffs  # train-clip: the same for its partial runs
    args = argparse.Namespace(dataset="mnist", subset=None, seed=0, width=64, batch_size=256, lr=2e-3, p_attribute=1.0)
    saved = {"dataset": {"name": "mnist", "subset": None}, "seed": 0, "config": {"width": 64},
             "train": {"batch_size": 256, "lr": 2e-3}}
    assert _option_diffs(saved, args, RUN_OPTIONS) == ["--p-attribute: saved 0.5, requested 1.0"]
    assert _option_diffs(saved, argparse.Namespace(**{**vars(args), "p_attribute": 0.5}), RUN_OPTIONS) == []
    with pytest.raises(SystemExit):  # argparse: exit 2 with usage
        main(["train", *SMALL, *text, "--steps", "3", "--p-attribute", "1.5"])
    assert "expected a probability in [0, 1], got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --p-uncond: the same check, before any data or checkpoint is read
        main(["train", *SMALL, *text, "--steps", "3", "--p-uncond", "2"])
    assert "argument --p-uncond: expected a probability in [0, 1], got 2" in capsys.readouterr().err
    assert "--p-attribute only applies to text-to-image training" in error(
        capsys, "train", *SMALL, "--steps", "1", "--p-attribute", "0.2", "--out", str(tmp_path / "u"))
    assert "--p-attribute: 'cifar10' has no attribute thresholds (its captions name only the class); drop " \
           "--p-attribute or give 0" in error(capsys, "train-clip", "--dataset", "cifar10", "--p-attribute", "0.5",
                                             "--out", str(tmp_path / "c"))


def test_sampling_in_batches_gives_the_same_images(tmp_path, capsys):
    common = ["sample", "--checkpoint", "mnist-text2img", "--prompt", "the digit one", "--prompt", "a thin two",
              "--n", "3", "--steps", "2", "--threads", "1"]
    for b in ("2", "256"):
        assert cli(capsys, *common, "--batch-size", b, "--out", str(tmp_path / f"b{b}.npz"))[0] == 0
    one, many = np.load(tmp_path / "b2.npz"), np.load(tmp_path / "b256.npz")
    assert one["images"].shape == (6, 1, 28, 28)
    assert np.array_equal(one["images"], many["images"]) and list(one["prompts"]) == list(many["prompts"])


def test_grid_keeps_one_row_per_prompt_above_16_images(tmp_path, capsys):
    out = tmp_path / "g.PNG"  # the extension in any case
    rc, _, err = cli(capsys, "sample", "--checkpoint", "mnist-text2img", "--prompt", "7", "--prompt", "a thin two",
                     "--n", "17", "--steps", "1", "--threads", "1", "--out", str(out))
    assert rc == 0, err
    with Image.open(out) as im:
        w, h = im.size
    assert (w, h) == (2 * (16 * 30 + 2), 2 * (4 * 30 + 2))  # 16 per row; each prompt 2 rows (17 = 16 + 1)


@pytest.mark.parametrize("prompts, n, cols, rows", [([], 16, 4, 4), (["7"], 16, 4, 4), (["7"], 10, 4, 3),
                                                    (["7", "2"], 5, 5, 2), (["7", "2"], 32, 16, 4)])
def test_one_prompt_fills_a_square_grid_several_get_a_row_each(tmp_path, capsys, prompts, n, cols, rows):
    out = tmp_path / "g.png"
    ckpt = ["--checkpoint", "mnist-text2img", *[a for p in prompts for a in ("--prompt", p)]] if prompts else \
        ["--checkpoint", "mnist-uncond"]
    rc, _, err = cli(capsys, "sample", *ckpt, "--n", str(n), "--steps", "1", "--threads", "1", "--out", str(out))
    assert rc == 0, err
    with Image.open(out) as im:
        assert im.size == (2 * (cols * 30 + 2), 2 * (rows * 30 + 2))  # 28 px tiles, 2 px padding, scale 2


def test_an_unwritable_out_is_refused_before_sampling(tmp_path, capsys, monkeypatch):
    import diffusion_lite.checkpoints as ckpt
    from diffusion_lite import files

    monkeypatch.setattr(ckpt, "load", lambda *a: pytest.fail("sampled although --out cannot be written"))
    base = ["sample", "--checkpoint", "mnist-text2img", "--prompt", "7", "--n", "1", "--steps", "1"]
    (tmp_path / "x.png").mkdir()
    assert f"--out {tmp_path / 'x.png'} is a folder" in error(capsys, *base, "--out", str(tmp_path / "x.png"))
    locked = tmp_path / "locked"
    locked.mkdir()

    def refuse(folder, name):  # what a read-only disk, or /proc, does even for root (whom os.access lets through)
        raise PermissionError(13, "Read-only file system")
    monkeypatch.setattr(files, "create_temp", refuse)
    err = error(capsys, *base, "--out", str(locked / "g.png"))
    assert f"cannot write in {locked} (Read-only file system)" in err
    assert list(locked.iterdir()) == []


def test_sample_replaces_an_existing_output_whole(tmp_path, capsys):
    out = tmp_path / "s.npz"
    out.write_bytes(b"an older run's samples")
    rc, _, err = cli(capsys, "sample", "--checkpoint", "mnist-text2img", "--prompt", "7", "--n", "2", "--steps", "1",
                     "--threads", "1", "--out", str(out))
    assert rc == 0, err
    assert np.load(out)["images"].shape == (2, 1, 28, 28)
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temporary file left behind


def test_an_extreme_guidance_scale_is_a_warning(tmp_path, capsys):
    with pytest.warns(UserWarning, match="--guidance 50 is far above the usual 1-10"):
        rc, _, err = cli(capsys, "sample", "--checkpoint", "mnist-text2img", "--prompt", "7", "--n", "1", "--steps",
                         "1", "--threads", "1", "--guidance", "50", "--out", str(tmp_path / "x.png"))
    assert rc == 0, err


def test_options_that_would_do_nothing_are_refused(capsys):
    base = ["sample", "--checkpoint", "mnist-text2img", "--prompt", "7", "--n", "1", "--steps", "1", "--out", "x.png"]
    assert "which guidance 1 does not use" in error(capsys, *base, "--guidance", "1", "--negative-prompt", "thick")
    assert "which guidance 0 does not use" in error(capsys, *base, "--guidance", "0", "--cads", "0.5")
    err = error(capsys, *base, "--negative-prompt", "thick", "--negative-prompt", "slanting")  # not: keep the last
    assert "--negative-prompt given 2 times ('thick', 'slanting')" in err and "'thick slanting'" in err
    for empty in ("", "  "):  # the empty prompt is already the unconditional branch, with or without a prompt
        assert "is the empty prompt, which is already the unconditional" in error(capsys, *base, "--negative-prompt",
                                                                                  empty)
        assert "changes nothing" in error(capsys, *base[:3], "--prompt", "", *base[5:], "--guidance", "5",
                                          "--negative-prompt", empty)


def test_text_model_without_prompt_says_what_it_samples(tmp_path, capsys):
    rc, _, err = cli(capsys, "sample", "--checkpoint", "mnist-text2img", "--n", "1", "--steps", "1",
                     "--out", str(tmp_path / "u.npz"))
    assert rc == 0 and "no --prompt: sampling with the empty prompt, this text model's unconditional branch" in err
    rc, _, err = cli(capsys, "sample", "--checkpoint", "mnist-text2img", "--n", "1", "--steps", "1",
                     "--negative-prompt", "a seven", "--out", str(tmp_path / "u.npz"))
    assert rc == 0 and "guided away from the negative prompt 'a seven'" in err
    # CADS noises the empty prompt's tokens in the conditional branch, so guidance does act with it
    rc, _, err = cli(capsys, "sample", "--checkpoint", "mnist-text2img", "--n", "1", "--steps", "1", "--guidance", "3",
                     "--cads", "0.5", "--out", str(tmp_path / "u.npz"))
    assert rc == 0, err


def test_out_may_not_shadow_a_shipped_model_in_this_folder(tmp_path, monkeypatch):
    from diffusion_lite.cli import CLIError, check_not_shipped

    monkeypatch.chdir(tmp_path)
    for out in ("mnist-uncond", "./mnist-uncond/", str(tmp_path / "mnist-text2img.json"), "mnist-clip.safetensors"):
        with pytest.raises(CLIError, match="is the name of a shipped model"):
            check_not_shipped(out)
    for out in ("runs/mnist-uncond", "my-mnist-uncond", str(tmp_path / "sub" / "mnist-clip")):
        check_not_shipped(out)  # elsewhere, or another name: loaded only by its path


def test_bench_checks_its_checkpoints_and_budget_first(capsys):
    assert "no checkpoint at 'nothere'" in error(capsys, "bench", "--quick", "--uncond", "nothere")
    err = error(capsys, "bench", "--quick", "--uncond", "mnist-text2img")
    assert "--uncond mnist-text2img is a text-to-image checkpoint; --uncond expects an unconditional" in err
    assert "--text mnist-clip is a 'clip' checkpoint" in error(capsys, "bench", "--quick", "--text", "mnist-clip")
    with pytest.raises(SystemExit) as e:  # argparse: exit 2 with usage
        main(["bench", "--minutes", "-1"])
    assert e.value.code == 2 and "expected a positive number" in capsys.readouterr().err


def test_bench_in_a_wheel_install_says_where_the_benchmarks_are(capsys, monkeypatch):
    from diffusion_lite import bench_cli

    monkeypatch.setattr(bench_cli, "REPO_ROOT", None)  # what source_checkout() gives in a wheel install
    err = error(capsys, "bench", "--quick")
    assert "this is a wheel install" in err and "git checkout" in err


def test_version(capsys):
    from diffusion_lite import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"diffusion-lite {__version__}"


@pytest.mark.parametrize("command, default", [("sample", "(default: 50)"), ("train", "(default: 128)"),
                                              ("train-clip", "(default: 1500)"), ("sample", "(default: ddim)")])
def test_help_shows_defaults(capsys, command, default):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert default in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("module", ["diffusion_lite", "diffusion_lite.cli"])
def test_python_dash_m_gives_the_same_one_line_errors_as_the_command(module):
    """`python -m diffusion_lite.cli` once ran a second copy of the module, whose CLIError the subcommands did not
    raise: their errors escaped as tracebacks."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", module, "bench", "--quick", "--device", "mps"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "bench runs on cpu or cuda" in r.stderr and "Traceback" not in r.stderr


def test_npz_output_keeps_the_name_given(tmp_path, capsys):
    rc, out, err = cli(capsys, "sample", "--checkpoint", "mnist-uncond", "--n", "2", "--steps", "1",
                       "--out", str(tmp_path / "x.NPZ"))
    assert rc == 0, err
    assert [p.name for p in tmp_path.iterdir()] == ["x.NPZ"] and f"to {tmp_path / 'x.NPZ'}" in out
    assert np.load(tmp_path / "x.NPZ")["images"].shape == (2, 1, 28, 28)


def test_ctrl_c_outside_training_says_interrupted(capsys, monkeypatch):
    def interrupt(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("diffusion_lite.sample_cli.cmd_sample", interrupt)
    rc, _, err = cli(capsys, "sample", "--checkpoint", "mnist-uncond", "--out", "never.png")
    assert rc == 130 and err.strip() == "diffusion-lite sample: interrupted"


def test_out_inside_the_pretrained_folder_is_refused_unless_replacing_on_purpose(tmp_path, monkeypatch, capsys):
    from diffusion_lite.checkpoints import PRETRAINED_DIR
    from diffusion_lite.cli import CLIError, check_not_shipped

    monkeypatch.chdir(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in PRETRAINED_DIR.iterdir()}
    for out in (PRETRAINED_DIR / "mnist-text2img", PRETRAINED_DIR / "new-model", PRETRAINED_DIR):
        with pytest.raises(CLIError, match="inside the package's pretrained folder"):
            check_not_shipped(str(out))
    check_not_shipped(str(PRETRAINED_DIR / "mnist-text2img"), replace_shipped=True)  # the maintainers' way
    (tmp_path / "link").symlink_to(PRETRAINED_DIR)
    with pytest.raises(CLIError, match="inside the package's pretrained folder"):
        check_not_shipped("link/mnist-uncond")  # relative, through a symlink
    # each command also names a missing input, so a broken guard fails the test before anything is written
    missing, shipped = str(tmp_path / "missing"), str(PRETRAINED_DIR / "mnist-text2img")
    for args in (["export", "--run", missing, "--out", shipped],
                 ["train", "--dataset", "no-such", "--steps", "1", "--out", str(PRETRAINED_DIR)],
                 ["train-clip", "--dataset", "no-such", "--steps", "1", "--out", shipped],
                 ["sample", "--checkpoint", missing, "--out", shipped + ".png"],
                 ["evaluate", "--checkpoint", missing, "--n", "20", "--out", shipped + ".json"]):
        err = error(capsys, *args)
        assert "inside the package's pretrained folder" in err
        assert ("--replace-shipped" in err) == (args[0] == "export")  # only export can replace a shipped model
    assert {p.name: p.stat().st_mtime_ns for p in PRETRAINED_DIR.iterdir()} == before


@pytest.mark.parametrize("script", ["train_classifier", "train_mnist_clip"])
def test_retraining_scripts_write_into_the_pretrained_folder_only_when_asked(script, capsys, monkeypatch, tmp_path):
    """The scripts behind mnist-classifier and mnist-clip default to the shipped files: without --replace-shipped
    they stop before loading data or training (a broken guard would reach the data loader, which raises here)."""
    import importlib.util

    from diffusion_lite.checkpoints import PRETRAINED_DIR

    path = Path(__file__).parents[1] / "scripts" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(script, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Reached(Exception):
        pass

    def no_data(*a, **k):
        raise Reached
    monkeypatch.setattr(mod, "load_dataset", no_data)
    before = {p.name: p.stat().st_mtime_ns for p in PRETRAINED_DIR.iterdir()}
    with pytest.raises(SystemExit) as e:
        mod.main([])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "inside the package's pretrained folder" in err and "add --replace-shipped" in err
    with pytest.raises(Reached):  # the maintainers' way passes the guard
        mod.main(["--replace-shipped"])
    monkeypatch.chdir(tmp_path)  # a shipped model's bare name here would shadow it; the flag does not change that
    shipped = {"train_classifier": "mnist-classifier", "train_mnist_clip": "mnist-clip"}[script]
    with pytest.raises(SystemExit):
        mod.main(["--out", shipped, "--replace-shipped"])
    err = capsys.readouterr().err
    assert "is the name of a shipped model" in err and "--replace-shipped" not in err.split("error:")[-1]
    # run from a second checkout with this one's environment: its own pretrained folder is guarded too
    other = tmp_path / "checkout" / "diffusion_lite" / "pretrained"
    other.mkdir(parents=True)
    monkeypatch.setattr(mod, "DEFAULT_OUT", other / shipped)
    with pytest.raises(SystemExit):
        mod.main(["--out", str(other / shipped)])
    err = capsys.readouterr().err
    assert f"inside the package's pretrained folder ({other})" in err and "add --replace-shipped" in err
    assert {p.name: p.stat().st_mtime_ns for p in PRETRAINED_DIR.iterdir()} == before


def test_out_of_range_values_name_their_option(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a broken check must not leave files in the repository
    assert "--steps 5000: expected at most 1000" in error(
        capsys, "sample", "--checkpoint", "mnist-uncond", "--steps", "5000", "--n", "1", "--out", "a.png")
    assert "--cads -1: CADS noise_scale must be a finite number >= 0" in error(
        capsys, "sample", "--checkpoint", "mnist-text2img", "--prompt", "a seven", "--cads", "-1", "--out", "a.png")
    assert "--width 7: expected a multiple of 4" in error(capsys, "train-clip", "--width", "7", "--out", "c")
    assert "--batch-size 256 is larger than the 100 training images" in error(
        capsys, "train-clip", "--subset", "100", "--steps", "1", "--out", "c")


@pytest.mark.parametrize("command", [["train", *SMALL, "--steps", "3"],
                                     ["sample", "--checkpoint", "mnist-uncond", "--n", "2", "--steps", "3"]])
def test_quiet_turns_the_progress_bars_off_for_that_command_only(tmp_path, capsys, monkeypatch, command):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # the test suite sets it; a user's shell does not
    out = ["--out", str(tmp_path / ("r" if command[0] == "train" else "s.png"))]
    rc, _, loud = cli(capsys, *command, *out)
    assert rc == 0 and "it/s" in loud  # a bar was drawn
    out = ["--out", str(tmp_path / ("r2" if command[0] == "train" else "s2.png"))]
    rc, _, quiet = cli(capsys, *command, "--quiet", *out)
    assert rc == 0 and "it/s" not in quiet and "%|" not in quiet
    assert "TQDM_DISABLE" not in os.environ  # put back: the caller's later bars still show
