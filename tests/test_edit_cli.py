"""`diffusion-lite edit`: images in from `sample` or image files, edits and inpaintings out, and the errors a
user meets (run in this process, as `main(argv)`)."""

import json

import numpy as np
import pytest
from PIL import Image
from test_cli_usability import cli, error  # main(argv) in this process: (rc, stdout, stderr); a one-line error

from diffusion_lite.cli import main

T2I = ["--checkpoint", "mnist-text2img", "--steps", "6", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def sevens(tmp_path_factory):
    """Three samples of the shipped text model, as `sample --out FILE.npz` writes them."""
    path = tmp_path_factory.mktemp("edit") / "sevens.npz"
    assert main(["sample", *T2I, "--prompt", "the digit seven", "--n", "3", "--out", str(path)]) == 0
    return path


def test_inpaint_from_a_sample_file_keeps_the_kept_half_exactly(capsys, sevens, tmp_path):
    out = tmp_path / "nines.npz"
    rc, stdout, _ = cli(capsys, "edit", *T2I, "--images", str(sevens), "--prompt", "the digit nine",
                        "--mask", "bottom", "--resample", "2", "--out", str(out))
    assert rc == 0 and "wrote 3 inpainted images" in stdout and "strength 1," in stdout  # a mask: strength 1
    with np.load(sevens) as f:
        inputs = f["images"]
    with np.load(out) as f:
        images, settings = f["images"], json.loads(f["settings"][()])
        assert np.array_equal(f["inputs"], inputs) and list(f["prompts"]) == ["the digit nine"] * 3
    assert images.shape == inputs.shape == (3, 1, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images[..., :14, :], inputs[..., :14, :])  # the top half, pixel for pixel
    assert not np.array_equal(images[..., 14:, :], inputs[..., 14:, :])
    assert settings["mask"] == "bottom" and settings["resample"] == 2 and settings["strength"] == 1.0
    assert settings["inputs"] == [f"{sevens.name}[{i}]" for i in range(3)]


def test_image_files_in_a_grid_of_pairs_out_and_one_prompt_per_image(capsys, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.full((28, 28), 30, np.uint8)).save(a)
    Image.fromarray(np.full((28, 28, 3), 200, np.uint8)).save(b)  # RGB: read as greyscale for this model
    out = tmp_path / "pairs.png"
    rc, stdout, _ = cli(capsys, "edit", *T2I, "--images", str(a), "--images", str(b), "--prompt", "the digit one",
                        "--prompt", "the digit two", "--strength", "0.5", "--out", str(out))
    assert rc == 0 and "wrote 2 edited images" in stdout and "strength 0.5" in stdout
    grid = np.asarray(Image.open(out).convert("L"))
    assert grid.shape[1] > 2 * grid.shape[0]  # input, edit, input, edit: one row
    tiles = [grid[4:60, 4 + 60 * i:60 + 60 * i] for i in range(4)]  # 28 px tiles, 2 px padding, all doubled
    assert (tiles[0] == 30).all() and (tiles[2] == 200).all()  # the inputs first, in their order
    assert not (tiles[1] == 30).all() and not (tiles[3] == 200).all()  # then each one's edit
    # one prompt per image: the second image's edit follows the second prompt
    both = {}
    for name, second in (("two", "the digit two"), ("one", "the digit one")):
        rc, _, _ = cli(capsys, "edit", *T2I, "--images", str(a), "--images", str(a), "--prompt", "the digit one",
                       "--prompt", second, "--strength", "0.9", "--out", str(tmp_path / f"{name}.npz"))
        with np.load(tmp_path / f"{name}.npz") as f:
            both[name] = f["images"]
            assert list(f["prompts"]) == ["the digit one", second]
    assert np.array_equal(both["two"][0], both["one"][0]) and not np.array_equal(both["two"][1], both["one"][1])
    # a greyscale mask file: white = regenerate
    mask = np.zeros((28, 28), np.uint8)
    mask[:, 14:] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    rc, _, _ = cli(capsys, "edit", *T2I, "--images", str(a), "--prompt", "the digit one",
                   "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "m.npz"))
    with np.load(tmp_path / "m.npz") as f:
        assert rc == 0 and np.array_equal(f["images"][..., :14], f["inputs"][..., :14])
        assert not np.array_equal(f["images"][..., 14:], f["inputs"][..., 14:])
    Image.fromarray(mask // 255).save(tmp_path / "m01.png")  # 0/1: no white pixel
    assert "has no white pixel (values 0-1)" in error(capsys, "edit", *T2I, "--images", str(a), "--prompt", "x",
                                                      "--mask", str(tmp_path / "m01.png"), "--out", str(out))


def test_guidance_options_are_recorded_and_those_that_would_change_nothing_refused(capsys, sevens, tmp_path):
    seven = ["--images", str(sevens), "--prompt", "the digit one"]
    out = tmp_path / "g.npz"
    rc, _, _ = cli(capsys, "edit", *T2I, *seven, "--strength", "0.9", "--negative-prompt", "thick", "--cads", "0.5",
                   "--out", str(out))
    with np.load(out) as f:
        settings, images = json.loads(f["settings"][()]), f["images"]
    assert rc == 0 and settings["negative_prompt"] == "thick" and settings["cads"]["noise_scale"] == 0.5
    cli(capsys, "edit", *T2I, *seven, "--strength", "0.9", "--out", str(tmp_path / "plain.npz"))
    with np.load(tmp_path / "plain.npz") as f:
        assert not np.array_equal(f["images"], images) and json.loads(f["settings"][()])["cads"] is None
    # strength 0.2 of 6 steps runs t = 0 only: an interval above it, or CADS, would never act
    assert "--guidance-interval 500 900 holds none of the 1 timesteps that --strength 0.2 runs of --steps 6 (0)" in \
        error(capsys, "edit", *T2I, *seven, "--strength", "0.2", "--guidance-interval", "500", "900", "--out", str(out))
    assert "none of the 1 timesteps that --strength 0.2 runs of --steps 6 (0) is that noisy" in error(
        capsys, "edit", *T2I, *seven, "--strength", "0.2", "--cads", "0.5", "--out", str(out))
    assert "--negative-prompt given 2 times" in error(
        capsys, "edit", *T2I, *seven, "--negative-prompt", "thick", "--negative-prompt", "thin", "--out", str(out))
    assert "--guidance steers samples towards a prompt, and none was given" in error(
        capsys, "edit", *T2I, "--images", str(sevens), "--prompt", "", "--guidance", "5", "--out", str(out))


def test_edit_errors_name_what_was_expected(capsys, sevens, tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(big)
    (tmp_path / "notes.txt").write_text("hi", encoding="utf-8")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    out = ["--out", str(tmp_path / "o.png")]
    seven = ["--images", str(sevens)]
    assert "is 64x64 pixels; this model edits 28x28 images: resize it first" in error(
        capsys, "edit", *T2I, "--images", str(big), "--prompt", "the digit one", *out)
    assert "expected .npz (from `sample`) or an image file" in error(
        capsys, "edit", *T2I, "--images", str(tmp_path / "notes.txt"), "--prompt", "the digit one", *out)
    assert "has no 'images' array" in error(
        capsys, "edit", *T2I, "--images", str(tmp_path / "other.npz"), "--prompt", "the digit one", *out)
    assert "no such file" in error(capsys, "edit", *T2I, "--images", str(tmp_path / "gone.npz"), *out)
    assert "give --prompt once (for all 3 images) or once per image; got 2" in error(
        capsys, "edit", *T2I, *seven, "--prompt", "a", "--prompt", "b", *out)
    assert "got 0" in error(capsys, "edit", *T2I, *seven, *out)
    assert "--mask middle: expected one of top, bottom, left, right" in error(
        capsys, "edit", *T2I, *seven, "--prompt", "the digit one", "--mask", "middle", *out)
    assert "--resample repeats steps" in error(
        capsys, "edit", *T2I, *seven, "--prompt", "the digit one", "--resample", "3", *out)
    assert "--resample works with --sampler ddim or ddpm" in error(
        capsys, "edit", *T2I, *seven, "--prompt", "the digit one", "--mask", "top", "--resample", "3",
        "--sampler", "dpm++2m", *out)
    assert "unconditional: it takes no --prompt" in error(
        capsys, "edit", "--checkpoint", "mnist-uncond", "--steps", "4", *seven, "--prompt", "the digit one", *out)
    assert "--out must end in .png" in error(capsys, "edit", *T2I, *seven, "--prompt", "x", "--out", "o.jpg")
    with pytest.raises(SystemExit):  # argparse: exit code 2 and the expected range
        main(["edit", *T2I, *seven, "--strength", "1.5", *out])
    assert "expected a number in (0, 1]" in capsys.readouterr().err


def test_an_unconditional_model_edits_without_a_prompt(capsys, sevens, tmp_path):
    out = tmp_path / "u.npz"
    rc, stdout, _ = cli(capsys, "edit", "--checkpoint", "mnist-uncond", "--steps", "4", "--threads", "1", "--quiet",
                        "--images", str(sevens), "--strength", "0.3", "--out", str(out))
    with np.load(out) as f:
        assert rc == 0 and f["images"].shape == (3, 1, 28, 28) and "prompts" not in f.files
        assert json.loads(f["settings"][()])["guidance"] is None
        # a light edit of an unconditional model: the same digits, redrawn a little
        diff = np.abs(f["images"].astype(int) - f["inputs"].astype(int)).mean()
        assert 0 < diff < 40, diff
