"""The Python API round trip: what train.fit and DiffusionPipeline.save write loads back as the same model
(prediction, text encoder), and arguments the pipeline would silently ignore are errors."""

import json
import re

import pytest
import torch

from diffusion_lite.checkpoints import CheckpointError, load, load_checkpoint
from diffusion_lite.clip import CLIPModel
from diffusion_lite.config import ScheduleConfig, TrainConfig, UNetConfig
from diffusion_lite.data import load_dataset
from diffusion_lite.guidance import CADS
from diffusion_lite.pipeline import DiffusionPipeline
from diffusion_lite.schedules import Schedule
from diffusion_lite.train import fit
from diffusion_lite.unet import UNet

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(), groups=4)
TINY_TEXT = TINY.replace(cross_attn_resolutions=(14,), context_dim=16)
S = dict(steps=2, progress=False)


@pytest.fixture(scope="module")
def images():
    return load_dataset("mnist", "train", subset=30, balanced=True).images


@pytest.fixture(scope="module")
def schedule():
    return Schedule.from_config(ScheduleConfig("linear", T=100))


def tiny_clip() -> CLIPModel:
    torch.manual_seed(0)
    return CLIPModel.for_dataset("mnist", width=16, layers=1, heads=2, embed_dim=16, cnn_channels=(8, 8, 8))


def _saved(run):
    return json.loads((run / "checkpoint.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------ fit's checkpoints
@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_fit_without_meta_writes_a_loadable_checkpoint_with_its_prediction(tmp_path, images, schedule, prediction):
    cfg = TrainConfig(steps=2, batch_size=4, warmup_steps=1, prediction=prediction)
    res = fit(UNet(TINY), schedule, images, cfg, run_dir=tmp_path, progress=False)
    pipe = load(tmp_path)
    assert pipe.prediction == prediction and pipe.unet.cfg == TINY and pipe.schedule.config == schedule.config
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    want = DiffusionPipeline(res["ema"].model, schedule, prediction=prediction).sample(n=2, generator=g1, **S)
    assert torch.equal(pipe.sample(n=2, generator=g2, **S), want)


def test_resuming_without_meta_keeps_the_runs_entries(tmp_path, images, schedule):
    cfg = TrainConfig(steps=2, batch_size=4, warmup_steps=1, prediction="v")
    meta = {"unet": TINY.to_dict(), "schedule": schedule.config.to_dict(), "dataset": {"name": "mnist", "n": 32}}
    extra = {"notes.w": torch.arange(3.0)}
    fit(UNet(TINY), schedule, images, cfg, run_dir=tmp_path, meta=meta, extra_tensors=extra, progress=False)
    with pytest.warns(UserWarning, match="planned for 2 steps and now trains to 3"):
        fit(UNet(TINY), schedule, images, cfg.replace(steps=3), run_dir=tmp_path, progress=False)  # no meta, no extra
    saved = _saved(tmp_path)
    assert saved["train_state"]["step"] == 3 and saved["dataset"] == meta["dataset"]
    assert torch.equal(load_checkpoint(tmp_path / "checkpoint")[0]["notes.w"], extra["notes.w"])
    assert load(tmp_path).prediction == "v"
    with pytest.raises(ValueError, match=r"schedule: saved .*'linear'.*requested .*'cosine'"):  # still detected
        fit(UNet(TINY), Schedule.from_config(ScheduleConfig("cosine", T=100)), images, cfg.replace(steps=4),
            run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"extra tensor notes.w: saved"):
        fit(UNet(TINY), schedule, images, cfg.replace(steps=4), run_dir=tmp_path, extra_tensors={"notes.w": -extra[
            "notes.w"]}, progress=False)
    assert _saved(tmp_path)["train_state"]["step"] == 3


@pytest.mark.parametrize("meta, match", [
    ({"prediction": "eps"}, r"meta\['prediction'\] = 'eps' contradicts cfg.prediction, 'v'"),
    ({"unet": TINY.replace(base_channels=16).to_dict()}, r"meta\['unet'\] = .* contradicts the model's config"),
    ({"schedule": ScheduleConfig("cosine").to_dict()}, r"meta\['schedule'\] = .* contradicts the schedule's"),
    ({"train": {}}, r"meta may not set 'train'"),
])
def test_meta_contradicting_what_fit_knows_is_an_error(tmp_path, images, schedule, meta, match):
    cfg = TrainConfig(steps=1, batch_size=4, warmup_steps=1, prediction="v")
    with pytest.raises(ValueError, match=match):
        fit(UNet(TINY), schedule, images, cfg, run_dir=tmp_path / "run", meta=meta, progress=False)
    assert not (tmp_path / "run").exists()


def test_checkpoints_with_the_prediction_only_under_train_load_with_it(tmp_path, schedule):
    DiffusionPipeline(UNet(TINY), schedule).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    del meta["prediction"]  # what fit wrote for a v run given meta={"unet": ..., "schedule": ...}
    meta["train"] = TrainConfig(prediction="v").to_dict()
    (tmp_path / "m.json").write_text(json.dumps(meta), encoding="utf-8")
    assert load(tmp_path / "m").prediction == "v"
    meta["prediction"] = "eps"
    (tmp_path / "m.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"prediction is ambiguous: 'eps', but it was trained with 'v'"):
        load(tmp_path / "m")


def test_fit_leaves_the_callers_global_rng_alone(images, schedule):
    model = UNet(TINY)
    torch.manual_seed(123)
    want = torch.rand(4)
    torch.manual_seed(123)
    fit(model, schedule, images, TrainConfig(steps=2, batch_size=4, warmup_steps=1, seed=7), progress=False)
    assert torch.equal(torch.rand(4), want)


# ------------------------------------------------------------------------------------ text encoders
def test_pipeline_save_keeps_its_clip_text_encoder(tmp_path, schedule):
    torch.manual_seed(1)
    pipe = DiffusionPipeline(UNet(TINY_TEXT), schedule, text=tiny_clip())
    pipe.save(tmp_path / "t2i")
    loaded = load(tmp_path / "t2i")
    assert loaded.text is not None and loaded.meta["text"]["kind"] == "clip"
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(loaded.sample("the digit one", n=2, generator=g1, **S),
                       pipe.sample("the digit one", n=2, generator=g2, **S))
    loaded.save(tmp_path / "again")  # and once more, from the loaded pipeline
    assert load(tmp_path / "again").text is not None


def test_text_conditional_unet_without_text_encoder_is_a_clear_error(tmp_path, schedule):
    with pytest.raises(ValueError, match=r"U-Net is text-conditional .* no text encoder"):
        DiffusionPipeline(UNet(TINY_TEXT), schedule).save(tmp_path / "a")

    class ToyText:  # an encoder with text_tokens but no checkpoint format
        def text_tokens(self, prompts):
            return torch.zeros(len(prompts), 2, 16), torch.ones(len(prompts), 2, dtype=torch.bool)

    with pytest.raises(ValueError, match=r"cannot save the pipeline's text encoder, a ToyText"):
        DiffusionPipeline(UNet(TINY_TEXT), schedule, text=ToyText()).save(tmp_path / "b")
    DiffusionPipeline(UNet(TINY_TEXT), schedule, text=tiny_clip()).save(tmp_path / "c")
    meta = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    meta["text"] = None
    (tmp_path / "c.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"U-Net is text-conditional .* no text encoder is stored"):
        load(tmp_path / "c")


# ------------------------------------------------------------------------------------ ignored arguments
@pytest.fixture(scope="module")
def uncond(schedule):
    return DiffusionPipeline(UNet(TINY), schedule)


@pytest.fixture(scope="module")
def text_pipe(schedule):
    torch.manual_seed(1)
    return DiffusionPipeline(UNet(TINY_TEXT), schedule, text=tiny_clip())


@pytest.mark.parametrize("call, match", [
    (lambda p: p.sample(n=1, sampler="ddpm", eta=0.5, **S), r"eta is DDIM's noise setting"),
    (lambda p: p.sample(n=1, sampler="dpm++2m", eta=0.5, **S), r"eta is DDIM's noise setting; the 'dpm\+\+2m'"),
    (lambda p: p.sample(n=1, sampler="euler", **S), r"unknown sampler 'euler'; expected one of ddpm, ddim, dpm\+\+2m"),
    (lambda p: p.sample(n=1, sampler="euler", eta=0.5, **S), r"unknown sampler 'euler'"),  # not "adds none"
    (lambda p: p.sample(n=1, sampler="ddim", spacing="even", **S), r"unknown spacing 'even'; expected one of"),
    (lambda p: p.sample(n=1, guidance=5.0, **S), r"unconditional: guidance only applies"),
    (lambda p: p.model_fn(negative_prompt="x", guidance=7.0), r"unconditional: guidance, negative_prompt"),
    (lambda p: p.sample(n=1, guidance=3.0, **S), r"unconditional: guidance only applies"),  # the default value too
    (lambda p: p.model_fn(guidance_interval=(0, 10)), r"unconditional: guidance_interval"),
])
def test_unconditional_pipeline_refuses_arguments_it_would_ignore(uncond, call, match):
    with pytest.raises(ValueError, match=match):
        call(uncond)


def test_text_pipeline_checks_the_interval_and_takes_a_number_for_cads(text_pipe):
    with pytest.raises(ValueError, match=r"guidance_interval must be .* t_hi <= 99 .* got \(2000, 3000\)"):
        text_pipe.sample("a seven", guidance=5.0, guidance_interval=(2000, 3000), **S)
    with pytest.raises(ValueError, match=r"eta is DDIM's"):
        text_pipe.sample("a seven", sampler="ddpm", eta=0.5, **S)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(text_pipe.sample("a seven", n=2, cads=0.5, generator=g1, **S),
                       text_pipe.sample("a seven", n=2, cads=CADS(0.5), generator=g2, **S))


def test_text_encoder_of_the_wrong_width_is_refused_when_the_pipeline_is_built(schedule):
    wide = CLIPModel.for_dataset("mnist", width=32, layers=1, heads=2, embed_dim=16, cnn_channels=(8, 8, 8))
    with pytest.raises(ValueError, match="32-wide token embeddings .* context_dim 16"):
        DiffusionPipeline(UNet(TINY_TEXT), schedule, text=wide)


def test_bfloat16_sampling_gives_finite_images_close_to_float32(schedule):
    """In bfloat16, alpha_bar near t = 0 rounds to 1 and the posterior ratio is 0/0: the sampler keeps its
    state in float32 (cosine schedule, where this happened), whether the weights or only x_T are bf16."""
    cosine = Schedule.from_config(ScheduleConfig("cosine", T=1000))
    torch.manual_seed(0)
    pipe = DiffusionPipeline(UNet(TINY), cosine)
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ref = pipe.sample(n=2, x_T=x_T, steps=50, progress=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = pipe.sample(n=2, x_T=x_T.bfloat16(), steps=50, progress=False)
    pipe.unet.to(torch.bfloat16)
    low = pipe.sample(n=2, generator=torch.Generator().manual_seed(0), steps=50, progress=False)
    for out in (mixed, low):
        assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
        assert (out.float() - ref).abs().mean() < 0.05
    with pytest.raises(TypeError, match="x_T must have the U-Net's dtype torch.bfloat16, got torch.float64"):
        pipe.sample(n=2, x_T=x_T.double(), steps=2, progress=False)


def test_a_compiled_unet_saves_a_loadable_checkpoint(tmp_path, schedule):
    pipe = DiffusionPipeline(UNet(TINY), schedule)
    want = pipe.sample(n=2, generator=torch.Generator().manual_seed(0), **S)
    pipe.unet = torch.compile(pipe.unet)  # not run: only its state_dict's "_orig_mod." keys matter here
    pipe.save(tmp_path / "c")
    got = load(tmp_path / "c").sample(n=2, generator=torch.Generator().manual_seed(0), **S)
    assert torch.equal(got, want)


def test_the_readme_own_images_example_runs(tmp_path, monkeypatch):
    """README's "Training on your own images" block, run as written on 8 random 16x16 RGB images, with the run
    shortened (steps=2000 -> 2) so that it takes a second."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = re.search(r"Training on your own images.*?```python\n(.*?)```", readme, re.S).group(1)
    assert "steps=2000, batch_size=64" in block
    code = block.replace("steps=2000, batch_size=64", "steps=2, batch_size=4, warmup_steps=1")
    monkeypatch.chdir(tmp_path)
    scope = {"images": torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1}  # no torch
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["samples"].shape == (16, 3, 16, 16) and (tmp_path / "runs" / "mine" / "checkpoint.json").exists()


def test_pipeline_spacing_reaches_the_sampler():
    """pipe.sample(spacing=...) reaches every sampler (the steps visited say which grid ran); the default is the
    grid even in t."""
    from diffusion_lite.checkpoints import load_pretrained
    from diffusion_lite.sampling import timesteps

    pipe = load_pretrained("mnist-uncond")
    for sampler, spacing in (("dpm++2m", None), ("dpm++2m", "logsnr"), ("ddim", "logsnr"), ("ddpm", "logsnr")):
        seen = []
        kw = {} if spacing is None else {"spacing": spacing}
        pipe.sample(n=1, steps=5, sampler=sampler, progress=False, generator=torch.Generator().manual_seed(0),
                    callback=lambda d, seen=seen: seen.append(d["t"]), **kw)
        assert seen == timesteps(pipe.schedule, 5, spacing or "linspace"), (sampler, spacing)
