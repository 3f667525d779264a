"""`sample` and `evaluate` from a user report: guidance options that do nothing (or the opposite of what they
say) at s = 0 and s = 1 are refused, several batches show one bar that says so, and the evaluate table says
why a number is missing."""

import json

import pytest
import torch
from test_cli_usability import cli, error

from diffusion_lite.eval_cli import format_report

TEXT = ["sample", "--checkpoint", "mnist-text2img", "--prompt", "a seven", "--n", "1", "--steps", "3",  # t 999 500 0
        "--threads", "1", "--out", "x.png"]


def test_a_negative_prompt_at_guidance_0_is_refused_as_it_alone_would_make_the_images(capsys):
    """s = 0 is the unconditional branch, which the negative prompt replaces: "a seven" guided away from "a three"
    at s = 0 would be threes."""
    err = error(capsys, *TEXT, "--negative-prompt", "a three", "--guidance", "0")
    assert "which is all that guidance 0 uses" in err and "from the negative prompt alone" in err
    assert "pass it as --prompt" in err
    err = error(capsys, *TEXT[:3], "--n", "1", "--out", "x.png", "--negative-prompt", "a three", "--guidance", "0")
    assert "from the negative prompt alone" in err  # without --prompt too
    assert "which guidance 1 does not use" in error(capsys, *TEXT, "--negative-prompt", "a three", "--guidance", "1")


def test_a_guidance_interval_at_guidance_1_is_refused_in_sample_and_evaluate(capsys, tmp_path):
    """Inside the interval s = 1, outside it s = 1: the interval would change nothing."""
    err = error(capsys, *TEXT, "--guidance", "1", "--guidance-interval", "200", "700")
    assert "with guidance 1 it changes nothing" in err and "drop --guidance-interval" in err
    err = error(capsys, "evaluate", "--checkpoint", "mnist-text2img", "--n", "20", "--steps", "1", "--threads", "1",
                "--guidance", "1", "--guidance-interval", "200", "700", "--out", str(tmp_path / "r.json"))
    assert "with guidance 1 it changes nothing" in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("extra", [["--guidance", "0", "--guidance-interval", "200", "700"],  # s = 0 inside, 1 out
                                   ["--guidance", "3", "--guidance-interval", "200", "700"],
                                   ["--guidance", "1", "--cads", "0.5"],  # CADS noises the conditional branch
                                   ["--guidance", "2", "--negative-prompt", "a three"],
                                   # with an interval, s = 0 inside it and the prompt (s = 1) outside, which CADS
                                   # noises; the negative prompt makes the images only inside the interval
                                   ["--guidance", "0", "--guidance-interval", "200", "700", "--cads", "0.5"],
                                   ["--guidance", "0", "--guidance-interval", "200", "700", "--negative-prompt",
                                    "a three"]])
def test_guidance_options_that_act_are_still_accepted(capsys, tmp_path, extra):
    rc, _, err = cli(capsys, *TEXT[:-1], str(tmp_path / "x.npz"), *extra)
    assert rc == 0, err


def test_the_python_api_still_takes_what_the_cli_refuses(text2img, gen):
    """pipeline.model_fn / sample stay permissive: a notebook may compare s = 0 with a negative prompt on purpose."""
    x_T = torch.randn((1, 1, 28, 28), generator=gen)
    kw = dict(steps=1, x_T=x_T, progress=False)
    three = text2img.sample(["a three"], guidance=1, **kw)
    assert torch.equal(text2img.sample(["a seven"], guidance=0, negative_prompt="a three", **kw), three)
    s1 = text2img.sample(["a seven"], guidance=1, **kw)
    assert torch.equal(text2img.sample(["a seven"], guidance=1, guidance_interval=(200, 700), **kw), s1)


def test_an_unknown_word_of_the_negative_prompt_is_said_to_come_from_it(text2img):
    with pytest.warns(UserWarning, match=r"^negative prompt: unknown word\(s\) \['blurry'\]") as caught:
        text2img.model_fn(["a seven"], negative_prompt="a blurry seven")
    assert len(caught) == 1  # the prompt itself has no unknown word
    with pytest.warns(UserWarning, match=r"^unknown word\(s\) \['sevn'\]"):  # one of the prompt: no prefix
        text2img.model_fn(["a sevn"], negative_prompt="a thin seven")


def test_several_batches_show_one_bar_that_says_so(capsys, tmp_path, monkeypatch):
    """Was: three "DDIM 0/3" bars, nothing saying which batch. Now one bar over all 9 steps, named as evaluate's."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    common = ["sample", "--checkpoint", "mnist-uncond", "--steps", "3", "--threads", "1"]
    rc, _, err = cli(capsys, *common, "--n", "6", "--batch-size", "2", "--out", str(tmp_path / "x.png"))
    assert rc == 0, err
    assert "DDIM 3 steps x 3 batches of <= 2:" in err and "0/9" in err
    assert "/3 " not in err  # no per-batch bar
    rc, _, err = cli(capsys, *common, "--n", "2", "--out", str(tmp_path / "y.png"))  # one batch: the sampler's bar
    assert rc == 0 and "DDIM:" in err and "0/3" in err and "batches" not in err, err
    rc, _, err = cli(capsys, *common, "--n", "6", "--batch-size", "2", "--quiet", "--out", str(tmp_path / "z.png"))
    assert rc == 0 and "DDIM" not in err and "steps x" not in err, err


def test_evaluate_names_its_bar_as_sample_does_and_says_why_kid_minus_floor_is_missing(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    out = tmp_path / "r.json"
    rc, stdout, err = cli(capsys, "evaluate", "--checkpoint", "mnist-uncond", "--n", "4", "--batch-size", "2",
                          "--steps", "1", "--threads", "1", "--out", str(out))
    assert rc == 0, err
    assert "DDIM 1 steps x 2 batches of <= 2:" in err
    line = next(k for k in stdout.splitlines() if k.startswith("KID - floor"))
    assert "n/a (unconditional model: read KID itself" in line, stdout  # was a bare "-"
    assert json.loads(out.read_text(encoding="utf-8"))["kid_excess"] is None  # the JSON keeps null


def test_a_text_model_report_shows_kid_minus_floor_as_a_number():
    report = {"settings": {"model": "text-conditional"}, "n": 20, "accuracy": 0.9, "fid": 10.0, "fid_floor": 5.0,
              "fid_ratio": 2.0, "kid_mean": 0.01, "kid_floor": 0.002, "kid_excess": 0.008, "diversity": 5.0,
              "diversity_real": 6.0, "images_per_s": 100.0, "wall_time_s": 1.0}
    text = format_report(report)
    assert "KID - floor               0.008" in text and "n/a" not in text
    report.update(kid_excess=None, settings={})  # an older report without settings: a dash, as before
    assert next(k for k in format_report(report).splitlines() if k.startswith("KID - floor")).endswith("  -")


def test_words_from_another_dataset_are_met_with_what_the_model_was_trained_on(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match=r"unknown word\(s\) \['sneaker'\]"):  # the tokenizer's, beside the note
        rc, out, err = cli(capsys, *TEXT[:3], "--prompt", "a sneaker", *TEXT[5:])
    assert rc == 0 and "note: 'a sneaker' names none of the classes mnist-text2img was trained on (mnist: zero," in err
    assert "wrote 1 sample to" in out
    rc, out, err = cli(capsys, *TEXT)  # every word known: no note
    assert rc == 0 and "note:" not in err, err
    with pytest.warns(UserWarning, match="purple"):  # about a seven, with a word it never saw: the warning alone
        rc, out, err = cli(capsys, *TEXT[:3], "--prompt", "a purple seven", *TEXT[5:])
    assert rc == 0 and "note:" not in err, err
    with pytest.warns(UserWarning, match="sneaker"):  # a word of the templates is not a class name
        rc, out, err = cli(capsys, *TEXT[:3], "--prompt", "a handwritten sneaker", *TEXT[5:])
    assert rc == 0 and "note: 'a handwritten sneaker' names none of the classes" in err, err
    with pytest.warns(UserWarning, match="smudge"):  # a negative prompt is steered away from: no note
        rc, out, err = cli(capsys, *TEXT, "--negative-prompt", "a smudge")
    assert rc == 0 and "note:" not in err, err
    # fine-tuning a model of one dataset on another is allowed, and said
    rc, out, err = cli(capsys, "train", "--dataset", "fashion-mnist", "--init-from", "mnist-uncond", "--steps", "1",
                       "--batch-size", "4", "--subset", "20", "--threads", "1", "--out", "ft")
    assert rc == 0 and "note: --init-from mnist-uncond was trained on mnist; fine-tuning it on fashion-mnist" in err
