"""Checkpoint names with dots, devices, incomplete JSON, and DiffusionPipeline's input checks."""

import json
import os
import shutil
import warnings

import pytest
import torch

from diffusion_lite import checkpoints, files
from diffusion_lite.checkpoints import CheckpointError, load, load_checkpoint, load_pretrained, save_checkpoint
from diffusion_lite.config import ScheduleConfig, UNetConfig
from diffusion_lite.pipeline import DiffusionPipeline, pipeline_from_checkpoint
from diffusion_lite.schedules import Schedule
from diffusion_lite.unet import UNet

PRETRAINED_DIR = checkpoints.PRETRAINED_DIR

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(), groups=4)


@pytest.fixture(scope="module")
def uncond():
    torch.manual_seed(0)
    return DiffusionPipeline(UNet(TINY), Schedule.from_config(ScheduleConfig("linear", T=100)))


def _copy_pretrained(name, dest):
    for suffix in (".safetensors", ".json"):
        shutil.copy(PRETRAINED_DIR / f"{name}{suffix}", dest.with_name(dest.name + suffix))
    return dest


# ------------------------------------------------------------------------------------ names with dots
def test_dotted_names_keep_every_dot(tmp_path):
    a = save_checkpoint(tmp_path / "model-v1.5", {"w": torch.zeros(2)}, {"kind": "diffusion"})
    b = save_checkpoint(tmp_path / "model-v1.6", {"w": torch.ones(2)}, {"kind": "diffusion"})
    assert (a, b) == (tmp_path / "model-v1.5", tmp_path / "model-v1.6")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-v1.5.json", "model-v1.5.safetensors",
                                                         "model-v1.6.json", "model-v1.6.safetensors"]
    for name, value in (("model-v1.5", 0.0), ("model-v1.6", 1.0)):
        for given in (name, f"{name}.json", f"{name}.safetensors"):
            assert load_checkpoint(tmp_path / given)[0]["w"].tolist() == [value, value]
    # only .safetensors / .json are stripped, once; the stem that comes back names the real files
    assert save_checkpoint(tmp_path / "c5.png", {"w": torch.zeros(1)}, {"kind": "x"}) == tmp_path / "c5.png"
    assert (tmp_path / "c5.png.safetensors").exists() and (tmp_path / "c5.png.json").exists()
    assert save_checkpoint(tmp_path / "plain.safetensors", {"w": torch.zeros(1)}, {"kind": "x"}) == tmp_path / "plain"
    assert (tmp_path / "plain.json").exists() and not (tmp_path / "plain.safetensors.json").exists()


def test_pipeline_with_dotted_name_roundtrips_and_old_names_still_load(tmp_path, uncond):
    stem = uncond.save(tmp_path / "tiny.v2")
    assert stem == tmp_path / "tiny.v2" and (tmp_path / "tiny.v2.json").exists()
    assert load(tmp_path / "tiny.v2").unet.cfg == TINY
    (tmp_path / "run").mkdir()
    uncond.save(tmp_path / "run" / "checkpoint")
    assert load(tmp_path / "run").unet.cfg == TINY and load(tmp_path / "run" / "checkpoint").unet.cfg == TINY
    assert load_checkpoint("mnist-uncond")[1]["kind"] == "diffusion"
    assert load_checkpoint(PRETRAINED_DIR / "mnist-uncond")[1]["kind"] == "diffusion"


def test_missing_dotted_name_points_at_where_older_versions_saved_it(tmp_path, uncond):
    uncond.save(tmp_path / "old")  # what save("old.7") used to write
    with pytest.raises(CheckpointError, match=r"old\.json exists.*'old\.7'"):
        load(tmp_path / "old.7")


# ------------------------------------------------------------------------------------ devices
@pytest.mark.parametrize("device", ["gpu", "", None, "auto", "CUDA"])
def test_unknown_device_is_reported_as_such_not_as_corrupt(device):
    for call in (lambda: load_checkpoint("mnist-uncond", device), lambda: load_pretrained("mnist-uncond", device)):
        with pytest.raises(ValueError, match="unknown device") as err:
            call()
        assert not isinstance(err.value, CheckpointError) and "corrupt" not in str(err.value)


def test_cpu_with_an_index_is_a_valid_device():
    tensors, _ = load_checkpoint("mnist-uncond", "cpu:0")
    assert all(t.device.type == "cpu" for t in tensors.values())
    assert load_pretrained("mnist-uncond", torch.device("cpu", 0)).device.type == "cpu"


def test_the_device_environment_variable_chooses_for_get_device(monkeypatch):
    """Notebooks call get_device() with no argument: DIFFUSION_LITE_DEVICE=cpu keeps a Mac's chapters off MPS;
    an explicit argument (the CLI's --device) still wins, and a bad value names the variable."""
    from diffusion_lite.utils import get_device

    monkeypatch.setenv("DIFFUSION_LITE_DEVICE", " cpu ")
    assert get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # "best available" would now say cuda
    assert get_device() == torch.device("cpu") and get_device("auto") == torch.device("cuda")
    for bad, message in (("gpu", "unknown device 'gpu'"), ("mps:x", "unknown device"),
                         ("mps", "MPS is not available")):
        monkeypatch.setenv("DIFFUSION_LITE_DEVICE", bad)
        if bad == "mps":
            monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
        with pytest.raises(ValueError, match=f"{message}.*environment variable DIFFUSION_LITE_DEVICE"):
            get_device()
    assert get_device("cpu") == torch.device("cpu")  # an explicit choice ignores the variable
    monkeypatch.setenv("DIFFUSION_LITE_DEVICE", "")
    assert get_device() == torch.device("cuda")  # empty: unset


def test_unreadable_weights_still_say_corrupt(tmp_path):
    save_checkpoint(tmp_path / "x", {"w": torch.zeros(3)}, {"kind": "diffusion"})
    (tmp_path / "x.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "x", "cpu", verify=False)


# ------------------------------------------------------------------------------------ incomplete JSON
def test_json_without_required_keys_names_the_file_and_the_keys(tmp_path, uncond):
    uncond.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    for drop, expected in ((["unet"], "'unet'"), (["unet", "schedule"], "'unet', 'schedule'")):
        (tmp_path / "m.json").write_text(json.dumps({k: v for k, v in meta.items() if k not in drop}), encoding="utf-8")
        with pytest.raises(CheckpointError, match=rf"m\.json lacks {expected}"):
            load(tmp_path / "m")
    tensors, _ = load_checkpoint(tmp_path / "m")
    with pytest.raises(CheckpointError, match="lacks 'schedule'"):
        pipeline_from_checkpoint(tensors, {k: v for k, v in meta.items() if k != "schedule"})


def test_text_encoder_inside_a_diffusion_checkpoint_is_checked_too(tmp_path):
    stem = _copy_pretrained("mnist-text2img", tmp_path / "t2i")
    meta = json.loads((tmp_path / "t2i.json").read_text(encoding="utf-8"))
    del meta["text"]["tokenizer"]
    (tmp_path / "t2i.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"t2i\.json \(its 'text' encoder\) lacks 'tokenizer'"):
        load(stem)
    meta["text"] = {"config": {}}
    (tmp_path / "t2i.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match="has no 'kind' field"):
        load(stem)


# ------------------------------------------------------------------------------------ DiffusionPipeline inputs
def test_unconditional_model_refuses_prompts():
    pipe = load_pretrained("mnist-uncond")
    for kw in ({"prompts": "seven"}, {"prompts": ["seven"]}, {"n": 1, "negative_prompt": "thick"},
               {"n": 1, "guidance_interval": (200, 700)}):
        with pytest.raises(ValueError, match="unconditional"):
            pipe.sample(**kw, steps=2, progress=False)


def test_the_number_of_images_may_come_first_for_an_unconditional_model(uncond, text2img):
    g = lambda: torch.Generator().manual_seed(0)
    a = uncond.sample(3, steps=2, progress=False, generator=g())
    b = uncond.sample(n=3, steps=2, progress=False, generator=g())
    assert a.shape == (3, 1, 28, 28) and torch.equal(a, b)
    with pytest.raises(ValueError, match="give the number of images once"):
        uncond.sample(3, n=3, steps=2, progress=False)
    with pytest.raises(ValueError, match=r"takes prompts first .* sample\('a prompt', n=4\)"):
        text2img.sample(4, steps=2, progress=False)


@pytest.mark.parametrize("n", [0, -1, 2.0])
def test_n_below_one_or_not_an_integer_is_refused(uncond, text2img, n):
    with pytest.raises(ValueError, match=f"n must be an integer >= 1, got {n}"):
        text2img.sample("seven", n=n, steps=2, progress=False)
    with pytest.raises(ValueError, match=f"n must be an integer >= 1, got {n}"):
        uncond.sample(n=n, steps=2, progress=False)
    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, \d+\], got 5.5"):
        uncond.sample(n=1, steps=5.5, progress=False)


def test_encode_takes_one_string_as_one_prompt(text2img):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "unknown words ['s', 'e', 'v', 'n']"
        ctx, mask = text2img.encode("seven")
    ref_ctx, ref_mask = text2img.encode(["seven"])
    assert ctx.shape[0] == 1 and torch.equal(ctx, ref_ctx) and torch.equal(mask, ref_mask)
    with pytest.raises(ValueError, match="prompts must be a str or a list of str"):
        text2img.encode(["seven", 7])
    x = torch.zeros(1, 1, 28, 28)
    t = torch.tensor([500])
    torch.testing.assert_close(text2img.model_fn("seven")(x, t), text2img.model_fn(["seven"])(x, t))


def test_x_T_of_the_wrong_shape_is_reported_in_the_callers_terms(uncond, text2img):
    with pytest.raises(ValueError, match=r"x_T must have shape \(1, 1, 28, 28\).*got \(1, 1, 32, 32\)"):
        text2img.sample(["one"], x_T=torch.randn(1, 1, 32, 32), steps=2, progress=False)
    with pytest.raises(ValueError, match=r"x_T must have shape \(2, 1, 28, 28\).*got \(3, 1, 28, 28\)"):
        uncond.sample(n=2, x_T=torch.randn(3, 1, 28, 28), steps=2, progress=False)
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert text2img.sample(["one", "two"], x_T=x_T, steps=2, progress=False).shape == (2, 1, 28, 28)


def test_an_unknown_prompt_word_is_named_at_the_callers_line(text2img):
    """The warning comes from deep inside (pipeline -> text encoder -> tokenizer) but points at the user's call."""
    with pytest.warns(UserWarning, match=r"unknown word\(s\) \['sevens'\] mapped to <unk>") as record:
        text2img.sample(["two sevens"], steps=1, progress=False, generator=torch.Generator().manual_seed(0))
    assert [w.filename for w in record] == [__file__]


def test_a_save_with_bad_metadata_keeps_the_previous_checkpoint(tmp_path):
    stem = tmp_path / "model"
    save_checkpoint(stem, {"w": torch.ones(3)}, {"kind": "test", "step": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for bad in ({"bad": object()}, {0: 1.0}):  # not JSON; keys that sort_keys cannot order
        with pytest.raises(TypeError, match="JSON-serialisable"):
            save_checkpoint(stem, {"w": torch.zeros(3)}, {"kind": "test", "step": 2, **bad})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp files left either
    tensors, meta = load_checkpoint(stem)
    assert meta["step"] == 1 and torch.equal(tensors["w"], torch.ones(3))

@pytest.mark.parametrize("step", ["weights", "json"])
def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch, step):
    """Ctrl-C half-way through writing either file: no temp file is left, no half-written file replaces a whole
    one, and the previous pair still loads (both files are written whole before either is renamed into place)."""
    stem = tmp_path / "model"
    save_checkpoint(stem, {"w": torch.ones(3)}, {"kind": "test", "step": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def crash_half_way(path):
        with open(path, "wb") as f:
            f.write(b"\x00garbage, half of a file")
        raise KeyboardInterrupt

    if step == "weights":
        monkeypatch.setattr(checkpoints, "save_file", lambda tensors, path: crash_half_way(path))
    else:
        monkeypatch.setattr(checkpoints.Path, "write_text", lambda self, text, **kw: crash_half_way(self))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(stem, {"w": torch.zeros(3)}, {"kind": "test", "step": 2})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing of the new save is left
    tensors, meta = load_checkpoint(stem)
    assert meta["step"] == 1 and torch.equal(tensors["w"], torch.ones(3))


def test_a_kill_between_the_two_renames_loses_neither_checkpoint(tmp_path, monkeypatch):
    """Killed (no clean-up runs) after the new weights are renamed into place and before their JSON is: the old
    JSON no longer matches, but the pending JSON does, and the next load (or save) finishes the save with a
    warning. Killed before the weights are renamed, the stale pending JSON is ignored and the old pair loads."""
    stem = tmp_path / "model"
    save_checkpoint(stem, {"w": torch.ones(3)}, {"kind": "test", "step": 1})
    real_replace = os.replace

    def killed_before(target_suffix):
        def replace(src, dst):
            if str(dst).endswith(target_suffix):
                raise SystemExit("killed")  # stands for SIGKILL: below, nothing is cleaned up
            real_replace(src, dst)
        return replace

    def killed_save(path, step, before):
        monkeypatch.setattr(files, "remove_if_exists", lambda path: None)  # a killed process cleans nothing
        monkeypatch.setattr(checkpoints.os, "replace", killed_before(before))
        with pytest.raises(SystemExit):
            save_checkpoint(path, {"w": torch.full((3,), float(step))}, {"kind": "test", "step": step})
        monkeypatch.undo()

    killed_save(stem, 2, ".safetensors")
    assert (tmp_path / ".model.json.pending").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old pair is whole: no warning
        tensors, meta = load_checkpoint(stem)
    assert meta["step"] == 1 and torch.equal(tensors["w"], torch.ones(3))

    killed_save(stem, 3, ".json")
    # the old JSON, for the new weights
    assert json.loads((tmp_path / "model.json").read_text(encoding="utf-8"))["step"] == 1
    with pytest.warns(UserWarning, match="a save was interrupted after writing model.safetensors; finished it"):
        tensors, meta = load_checkpoint(stem)
    assert meta["step"] == 3 and torch.equal(tensors["w"], torch.full((3,), 3.0))
    assert not (tmp_path / ".model.json.pending").exists() and load_checkpoint(stem)[1]["step"] == 3

    killed_save(stem, 4, ".json")  # then the next save fails early (a full disk): step 4 must survive it
    monkeypatch.setattr(checkpoints, "save_file", lambda tensors, path: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.warns(UserWarning, match="finished it"), pytest.raises(OSError, match="disk full"):
        save_checkpoint(stem, {"w": torch.zeros(3)}, {"kind": "test", "step": 5})
    monkeypatch.undo()
    assert load_checkpoint(stem)[1]["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp")) == ["model.json",
                                                                                           "model.safetensors"]

    run = tmp_path / "run"  # a run folder whose very first save was killed between the renames: no JSON yet
    killed_save(run / "checkpoint", 1, ".json")
    assert not (run / "checkpoint.json").exists()
    with pytest.warns(UserWarning, match="finished it"):
        assert checkpoints.resolve(run) == run / "checkpoint"  # found as a run folder, as load(run) needs
    assert load_checkpoint(run)[1]["step"] == 1


@pytest.mark.skipif(not hasattr(os, "umask") or os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_files_get_the_usual_permissions_and_no_temporary_file_is_left(tmp_path, umask):
    old = os.umask(umask)
    try:
        stem = save_checkpoint(tmp_path / "m", {"w": torch.zeros(2)}, {"kind": "diffusion"})
        save_checkpoint(stem, {"w": torch.ones(2)}, {"kind": "diffusion"})  # overwrite in place
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p.name
    assert load_checkpoint(stem)[0]["w"].tolist() == [1.0, 1.0]


def test_saving_never_touches_the_process_umask(tmp_path, monkeypatch):
    # reading the umask means setting it, which races with threads creating files meanwhile
    def no_umask(mask):
        raise AssertionError("save_checkpoint changed the process umask")

    monkeypatch.setattr(os, "umask", no_umask)
    stem = save_checkpoint(tmp_path / "m", {"w": torch.zeros(2)}, {"kind": "diffusion"})
    assert load_checkpoint(stem)[0]["w"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("version", [2, "1", 1.5, True])
def test_a_checkpoint_from_a_newer_format_is_refused_not_misread(tmp_path, version):
    stem = save_checkpoint(tmp_path / "m", {"w": torch.zeros(2)}, {"kind": "diffusion"})
    meta = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == checkpoints.FORMAT_VERSION
    (tmp_path / "m.json").write_text(json.dumps({**meta, "format_version": version}), encoding="utf-8")
    with pytest.raises(CheckpointError, match=f"format version {version!r}, but diffusion_lite .* reads versions "
                                              f"up to {checkpoints.FORMAT_VERSION}"):
        load_checkpoint(stem)


def test_a_mistyped_checkpoint_name_gets_the_closest_existing_one(tmp_path):
    """runs/ft2j for runs/ft2i, a file stem or a pretrained name one letter off: the error names the likely one."""
    (tmp_path / "runs" / "ft2i").mkdir(parents=True)
    (tmp_path / "runs" / "ft2i" / "checkpoint.json").write_text("{}", encoding="utf-8")
    for suffix in (".json", ".safetensors"):
        (tmp_path / f"my-clip{suffix}").write_text("{}", encoding="utf-8")
    for typo, meant in ((tmp_path / "runs" / "ft2j", tmp_path / "runs" / "ft2i"), (tmp_path / "my-clp",
                        tmp_path / "my-clip"), ("mnist-tex2img", "mnist-text2img")):
        with pytest.raises(CheckpointError, match=f"did you mean '{meant}'"):
            checkpoints.resolve(typo)
    with pytest.raises(CheckpointError) as e:
        checkpoints.resolve(tmp_path / "something-else")
    assert "did you mean" not in str(e.value)  # no suggestion when nothing is close
