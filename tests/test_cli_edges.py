"""Edges of the command line found by a fuzzing pass (helper 83): a report named after its model, a pipe that
closes under a training run, options that would silently do nothing, and inputs that gave a traceback."""

import io
import json
import os
import shutil
import signal
import threading

import pytest
import torch
from test_cli_usability import SMALL, cli, error

from diffusion_lite import checkpoints
from diffusion_lite.checkpoints import PRETRAINED_DIR, dataset_name
from diffusion_lite.cli import _SafeStream, main

pytestmark = pytest.mark.usefixtures("default_stop_signals")


def copy_model(name, dest):
    for suffix in (".safetensors", ".json"):
        shutil.copy(PRETRAINED_DIR / f"{name}{suffix}", f"{dest}{suffix}")


def test_a_report_named_after_its_model_does_not_replace_the_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    copy_model("mnist-uncond", "my-model")
    before = (tmp_path / "my-model.json").read_bytes()
    err = error(capsys, "evaluate", "--checkpoint", "my-model", "--n", "20", "--out", "my-model.json")
    assert "--out my-model.json is the JSON of the checkpoint my-model" in err and "my-model-report.json" in err
    (tmp_path / "run").mkdir()
    copy_model("mnist-uncond", "run/checkpoint")
    assert "is the JSON of the checkpoint" in error(capsys, "evaluate", "--checkpoint", "run", "--n", "20",
                                                    "--out", "run/checkpoint.json")
    # a sidecar whose weights are elsewhere
    (tmp_path / "lonely.json").write_text(json.dumps({"kind": "clip"}), encoding="utf-8")
    assert "is the JSON of the checkpoint" in error(capsys, "evaluate", "--checkpoint", "my-model", "--n", "20",
                                                    "--out", "lonely.json")
    assert "or would shadow the run run/" in error(capsys, "evaluate", "--checkpoint", "run", "--n", "20",
                                                   "--out", "run.json")
    assert "name of a shipped model" in error(capsys, "evaluate", "--checkpoint", "mnist-text2img", "--n", "20",
                                              "--out", "mnist-text2img.json")
    assert (tmp_path / "my-model.json").read_bytes() == before and not (tmp_path / "mnist-text2img.json").exists()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_training_outlives_a_closed_pipe_and_still_saves_when_stopped(tmp_path, monkeypatch):
    """`train ... 2>&1 | tee log`, then Ctrl-C: tee dies at once, so every progress write fails (BrokenPipeError).
    Training went down with the first write, before the signal was seen: now it runs on and saves at the signal."""
    import diffusion_lite.train as train_module

    class Gone(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

    loss, calls = train_module.diffusion_loss, []

    def loss_then_signal(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss(*a, **k)

    monkeypatch.setattr(train_module, "diffusion_loss", loss_then_signal)
    monkeypatch.setattr("sys.stdout", Gone())
    monkeypatch.setattr("sys.stderr", Gone())
    rc = main(["train", *SMALL, "--steps", "6", "--out", str(tmp_path / "r")])
    assert rc == 128 + signal.SIGTERM
    assert json.loads((tmp_path / "r" / "checkpoint.json").read_text(encoding="utf-8"))["train_state"]["step"] == 3


def test_a_reader_gone_before_the_end_does_not_change_the_exit_code(tmp_path):
    """A real pipe whose reader has closed (`| true`, or tee killed by Ctrl-C): what is still buffered at the end
    failed Python's flush at exit, which then exited 120 with "Exception ignored ... BrokenPipeError"."""
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as a pipe normally is
    p = subprocess.run([sys.executable, "-m", "diffusion_lite", "sample", "--checkpoint", "mnist-uncond", "--n", "2",
                        "--steps", "2", "--threads", "1", "--quiet", "--out", str(tmp_path / "a.png")],
                       stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    os.close(write)
    assert p.returncode == 0 and "BrokenPipe" not in p.stderr, p.stderr
    assert (tmp_path / "a.png").exists()


def test_safe_stream_escapes_what_the_console_cannot_encode_and_drops_writes_to_a_closed_reader():
    raw = io.BytesIO()
    console = io.TextIOWrapper(raw, encoding="cp1252")  # a Windows console redirected to a file
    s = _SafeStream(console)
    s.write("wrote 4 samples to \u4e03.png\n")
    s.flush()
    assert raw.getvalue().decode("cp1252") == "wrote 4 samples to \\u4e03.png\n"
    console.close()
    assert s.write("more") == 4 and s.gone  # a closed stream: dropped, not an error
    assert _SafeStream(None).write("x") == 1  # pythonw, or a daemon without stderr


def test_sampling_with_no_stderr_and_a_console_that_cannot_encode_the_file_name(tmp_path, monkeypatch):
    console = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")
    monkeypatch.setattr("sys.stdout", console)
    monkeypatch.setattr("sys.stderr", None)
    out = tmp_path / "\u4e03.png"
    assert main(["sample", "--checkpoint", "mnist-uncond", "--n", "2", "--steps", "2", "--out", str(out)]) == 0
    console.flush()
    assert out.exists() and "\\u4e03.png" in console.buffer.getvalue().decode("cp1252")


def test_a_guidance_interval_between_the_sampled_steps_is_refused(capsys, tmp_path):
    out = str(tmp_path / "a.png")
    err = error(capsys, "sample", "--checkpoint", "mnist-text2img", "--prompt", "a seven", "--steps", "5",
                "--guidance-interval", "300", "450", "--out", out)  # DDIM 5 samples 999, 749, 500, 250, 0
    assert "holds none of the 5 timesteps that --steps 5 samples (999, 749, 500, 250, 0)" in err
    rc, stdout, _ = cli(capsys, "sample", "--checkpoint", "mnist-text2img", "--prompt", "a seven", "--steps", "5",
                        "--guidance-interval", "250", "450", "--n", "1", "--out", out)
    assert rc == 0 and "guidance 3 in t 250-450" in stdout


def test_an_empty_prompt_is_the_unconditional_branch_which_guidance_cannot_steer(capsys, tmp_path):
    for prompt in ("", "   "):
        err = error(capsys, "sample", "--checkpoint", "mnist-text2img", "--prompt", prompt, "--guidance", "5",
                    "--out", str(tmp_path / "a.png"))
        assert "--guidance steers samples towards a prompt, and none was given" in err
    rc, stdout, _ = cli(capsys, "sample", "--checkpoint", "mnist-text2img", "--prompt", "", "--n", "1", "--steps", "2",
                        "--out", str(tmp_path / "a.npz"))
    import numpy as np

    with np.load(tmp_path / "a.npz") as f:
        settings = json.loads(f["settings"][()])
    assert rc == 0 and "guidance" not in stdout and settings["guidance"] is None


@pytest.mark.filterwarnings("ignore:unknown word")
def test_a_prompt_naming_two_classes_gets_a_note(capsys, tmp_path):
    for prompt, shown in [("seven eight", "seven and eight"), ("7.0", "seven and zero"), ("3 or 3", None),
                          ("a handwritten 7", None)]:
        rc, _, err = cli(capsys, "sample", "--checkpoint", "mnist-text2img", "--prompt", prompt, "--n", "1",
                         "--steps", "2", "--out", str(tmp_path / "a.png"))
        assert rc == 0
        assert (f"names 2 classes ({shown})" in err) if shown else "classes (" not in err, (prompt, err)


def test_non_finite_settings_and_images_are_errors_not_black_pictures(capsys, tmp_path, monkeypatch):
    out = tmp_path / "a.png"
    for bad in ("nan", "inf"):
        assert "noise_scale must be a finite number >= 0" in error(
            capsys, "sample", "--checkpoint", "mnist-text2img", "--prompt", "a seven", "--cads", bad, "--out", str(out))
    from diffusion_lite.pipeline import DiffusionPipeline as Pipeline

    monkeypatch.setattr(Pipeline, "sample", lambda self, *a, n=None, **k: torch.full((n or len(a[0]), 1, 28, 28),
                                                                                   float("nan")))
    err = error(capsys, "sample", "--checkpoint", "mnist-uncond", "--n", "2", "--out", str(out))
    assert "the sampler produced NaN or inf pixels in 1,568 places, so nothing was written" in err
    assert not out.exists()


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_infinite_or_nan_positive_options_are_refused(capsys, value, tmp_path):
    with pytest.raises(SystemExit) as e:  # (the tiny settings only matter if the check is gone)
        main(["train-clip", "--lr", value, "--steps", "1", "--subset", "40", "--batch-size", "8", "--width", "16",
              "--out", str(tmp_path / "c")])
    assert e.value.code == 2 and f"expected a positive number, got {value}" in capsys.readouterr().err


def test_a_huge_integer_option_is_a_usage_error_not_a_crash(capsys, tmp_path):
    """10**400 overflowed math.isfinite (a traceback), and torch's 64-bit sizes after that."""
    with pytest.raises(SystemExit) as e:
        main(["sample", "--checkpoint", "mnist-uncond", "--n", "1" + "0" * 400, "--out", str(tmp_path / "a.png")])
    assert e.value.code == 2 and "expected an integer below 2**63, got one of 401 digits" in capsys.readouterr().err


def test_train_clip_at_a_nan_loss_says_to_start_a_new_run(monkeypatch, capsys, tmp_path):
    import diffusion_lite.clip_train as ct

    monkeypatch.setattr(ct, "clip_loss", lambda *a: torch.tensor(float("nan"), requires_grad=True))
    err = error(capsys, "train-clip", "--steps", "3", "--subset", "40", "--batch-size", "8", "--width", "16",
                "--threads", "1", "--out", str(tmp_path / "c"))
    assert "the contrastive loss became nan at step 1; lower the learning rate (now 0.002), with a new --out" in err
    assert not (tmp_path / "c.safetensors").exists()


def test_train_clip_stops_at_a_nan_loss_instead_of_saving_a_nan_encoder(monkeypatch):
    import diffusion_lite.clip_train as ct
    from diffusion_lite.clip import CLIPModel
    from diffusion_lite.data import load_dataset

    monkeypatch.setattr(ct, "clip_loss", lambda *a: torch.tensor(float("nan"), requires_grad=True))
    model = CLIPModel.for_dataset("mnist", width=16, layers=1, heads=2, embed_dim=16, cnn_channels=(8, 8, 8))
    with pytest.raises(FloatingPointError, match="the contrastive loss became nan at step 1; lower the learning rate"):
        ct.train_clip(model, load_dataset("mnist", "train", subset=40, balanced=True), steps=3, batch_size=8,
                      progress=False)


def test_folder_outputs_refuse_a_file_name_and_a_folder_named_like_a_file_still_loads(tmp_path, capsys):
    assert "drop the '.png' (e.g. --out" in error(capsys, "demo", "--out", str(tmp_path / "demo.png"))
    assert "drop the '.safetensors'" in error(capsys, "train", *SMALL, "--steps", "1",
                                              "--out", str(tmp_path / "tm.safetensors"))
    (tmp_path / "old.safetensors").mkdir()  # a run folder made before that check
    copy_model("mnist-uncond", tmp_path / "old.safetensors" / "checkpoint")
    assert checkpoints.resolve(tmp_path / "old.safetensors") == tmp_path / "old.safetensors" / "checkpoint"


def test_python_memory_error_without_a_message_is_a_one_line_error(capsys, tmp_path, monkeypatch):
    import diffusion_lite.sample_cli as sample_cli

    def oom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(sample_cli, "_read_prompts", oom)
    err = error(capsys, "sample", "--checkpoint", "mnist-text2img", "--n", "2", "--out", str(tmp_path / "a.png"))
    assert "error: out of memory (MemoryError)" in err


def test_out_of_memory_is_a_one_line_error(capsys, tmp_path, monkeypatch):
    import diffusion_lite.sample_cli as sample_cli

    def oom(*a, **k):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 313600000000 bytes.")

    monkeypatch.setattr(sample_cli, "randn", oom, raising=False)
    monkeypatch.setattr("diffusion_lite.utils.randn", oom)
    err = error(capsys, "sample", "--checkpoint", "mnist-uncond", "--n", "100000000", "--out", str(tmp_path / "a.png"))
    assert "error: out of memory (DefaultCPUAllocator: can't allocate memory" in err and "lower --n" in err


def test_a_card_that_is_not_utf8_names_the_option(tmp_path, capsys):
    (tmp_path / "card.json").write_bytes('{"note": "x"}'.encode("utf-16"))
    assert "--card" in error(capsys, "export", "--run", "mnist-uncond", "--card", str(tmp_path / "card.json"),
                             "--out", str(tmp_path / "m"))


def test_dataset_name_reads_both_forms_of_the_meta():
    assert dataset_name({"dataset": {"name": "mnist", "subset": None}}) == "mnist"
    assert dataset_name({"dataset": "fashion-mnist"}) == "fashion-mnist"  # the classifiers' form
    assert dataset_name({}) is None and dataset_name(None) is None
