"""The command line keeps a user's runs and checkpoints: nothing trained is overwritten or loaded by mistake,
resumes check what they resume, and --quiet logs say how a run goes (from a review as a pip-installed user)."""

import json
import shutil

import pytest
from test_cli_usability import SMALL, cli, error

from diffusion_lite.clip import CLIPModel, save_clip


def _run(capsys, out, *extra, steps="1"):
    rc, stdout, err = cli(capsys, "train", *SMALL, "--steps", steps, "--out", str(out), *extra)
    assert rc == 0, err
    return stdout


def test_export_keeps_an_existing_checkpoint_unless_told_to_overwrite(tmp_path, capsys):
    _run(capsys, tmp_path / "run")
    assert cli(capsys, "export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "m"))[0] == 0
    err = error(capsys, "export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "m"))
    assert "m.json exists (a 'diffusion' checkpoint); export to another --out, or add --overwrite" in err
    clip = save_clip(tmp_path / "enc", CLIPModel.for_dataset("mnist", width=16))  # a user's trained encoder
    before = {p: p.read_bytes() for p in tmp_path.glob("enc.*")}
    assert "(a 'clip' checkpoint)" in error(capsys, "export", "--run", str(tmp_path / "run"), "--out", str(clip))
    assert {p: p.read_bytes() for p in tmp_path.glob("enc.*")} == before
    assert cli(capsys, "export", "--run", str(tmp_path / "run"), "--out", str(clip), "--overwrite")[0] == 0
    assert json.loads((tmp_path / "enc.json").read_text(encoding="utf-8"))["kind"] == "diffusion"


def test_train_refuses_an_out_that_a_checkpoint_of_the_same_name_would_shadow(tmp_path, capsys):
    save_clip(tmp_path / "mm", CLIPModel.for_dataset("mnist", width=16))
    err = error(capsys, "train", *SMALL, "--steps", "1", "--out", str(tmp_path / "mm"))
    assert f"{tmp_path / 'mm.json'} exists beside it, so `--checkpoint {tmp_path / 'mm'}` would load that file" in err
    assert not (tmp_path / "mm").exists()


def test_a_run_folder_with_weights_but_no_json_is_not_overwritten(tmp_path, capsys):
    _run(capsys, tmp_path / "run")
    (tmp_path / "lost").mkdir()
    shutil.copy(tmp_path / "run" / "checkpoint.safetensors", tmp_path / "lost")
    before = (tmp_path / "lost" / "checkpoint.safetensors").read_bytes()
    assert "has no checkpoint.json beside it" in error(capsys, "train", *SMALL, "--steps", "2", "--out",
                                                       str(tmp_path / "lost"))
    assert (tmp_path / "lost" / "checkpoint.safetensors").read_bytes() == before


def test_corrupt_run_weights_are_reported_before_resuming_or_saying_done(tmp_path, capsys):
    _run(capsys, tmp_path / "run", steps="2")
    weights = tmp_path / "run" / "checkpoint.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a truncated copy
    for steps in ("2", "3"):  # "nothing to do", and "resuming"
        rc, out, err = cli(capsys, "train", *SMALL, "--steps", steps, "--out", str(tmp_path / "run"))
        assert rc == 2 and "does not match the sha256 recorded in checkpoint.json" in err, (out, err)
        assert "nothing to do" not in out and "resuming" not in out


def test_resume_accepts_another_spelling_of_the_same_init_from_and_names_defaults(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run(capsys, "src")
    assert cli(capsys, "export", "--run", "src", "--out", "base")[0] == 0
    fine = ["--dataset", "mnist", "--batch-size", "8", "--subset", "64", "--threads", "1", "--out", "ft"]
    assert cli(capsys, "train", *fine, "--steps", "1", "--init-from", "base")[0] == 0
    for spelling, steps in (("./base", "2"), (str(tmp_path / "base.json"), "3")):
        rc, out, err = cli(capsys, "train", *fine, "--steps", steps, "--init-from", spelling)
        assert rc == 0 and "resuming ft from step" in out, err
    err = error(capsys, "train", *fine, "--steps", "4", "--init-from", "mnist-uncond")
    assert "--init-from: saved 'base', requested 'mnist-uncond'" in err
    err = error(capsys, "train", *SMALL[:-2], "--steps", "2", "--out", "src")  # without --model tiny
    assert "--model: saved 'tiny', requested 'small' (the default, as --model was not given)" in err


def test_quiet_training_logs_a_line_every_five_percent(tmp_path, capsys):
    out = _run(capsys, tmp_path / "run", "--quiet", steps="40")
    lines = [line for line in out.splitlines() if line.startswith("train: step ")]
    assert len(lines) == 20 and lines[0].startswith("train: step 2/40 (5%), loss ")
    assert lines[-1].startswith("train: step 40/40 (100%), loss ") and "over steps 39-40" in lines[-1]
    out = _run(capsys, tmp_path / "run", "--quiet", steps="50")  # resumed: the remaining 10 steps, still every 5%
    lines = [line for line in out.splitlines() if line.startswith("train: step ")]  # of the run (was: every step)
    assert len(lines) == 5 and lines[0].startswith("train: step 42/50 (84%)") and "over steps 41-42" in lines[0]
    rc, out, _ = cli(capsys, "train-clip", "--steps", "20", "--batch-size", "16", "--subset", "40", "--width", "16",
                     "--threads", "1", "--quiet", "--out", str(tmp_path / "c"))
    assert rc == 0 and sum(line.startswith("train-clip: step ") for line in out.splitlines()) == 20


def test_train_clip_says_its_subset_must_be_a_multiple_of_ten(capsys, tmp_path):
    err = error(capsys, "train-clip", "--steps", "1", "--subset", "15", "--out", str(tmp_path / "c"))
    assert "--subset 15: train-clip takes the same number of images of each class (K / 10)" in err
    assert "use 10 or 20" in err and not list(tmp_path.iterdir())


def test_demo_writes_its_pictures_and_the_prompt_of_each_row(tmp_path, capsys):
    """`make demo` is a newcomer's first command: three pictures from the shipped models, and the prompts' files."""
    rc, out, err = cli(capsys, "demo", "--threads", "1", "--quiet", "--out", str(tmp_path / "demo"))
    assert rc == 0, err
    names = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert names == ["demo_fashion.png", "demo_fashion_prompts.txt", "demo_text2img.png", "demo_text2img_prompts.txt",
                     "demo_uncond.png"]
    rows = (tmp_path / "demo" / "demo_text2img_prompts.txt").read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("Rows, top to bottom") and len(rows) == 11 and "a thick five" in rows
    assert "an ankle boot" in (tmp_path / "demo" / "demo_fashion_prompts.txt").read_text(encoding="utf-8")
    assert str(tmp_path / "demo" / "demo_uncond.png") in out and str(tmp_path / "demo" / "demo_fashion.png") in out


def test_train_into_the_current_folder_and_export_beside_a_run_of_that_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run(capsys, ".")  # `--out .` trains here
    assert (tmp_path / "checkpoint.json").exists()
    (tmp_path / "runs").mkdir()
    _run(capsys, "runs/x")
    err = error(capsys, "export", "--run", "runs/x", "--out", "runs/x.json")  # would shadow the run folder
    assert "--out runs/x.json: runs/x is a folder (a run?), and runs/x.json beside it would shadow it" in err


def test_help_shows_examples_and_what_quiet_does_for_each_command(capsys):
    with pytest.raises(SystemExit):
        cli(capsys, "--help")
    out = capsys.readouterr().out
    assert "examples (each command's --help lists its options):" in out and "diffusion-lite demo" in out
    for command, lines in (("train", True), ("train-clip", True), ("sample", False), ("evaluate", False)):
        with pytest.raises(SystemExit):
            cli(capsys, command, "--help")
        text = " ".join(capsys.readouterr().out.split())
        assert ("a plain line every 5% of the run instead" in text) == lines, command
