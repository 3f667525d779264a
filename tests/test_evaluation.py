"""The evaluation protocols (diffusion_lite/evaluation.py) and the ``evaluate`` command, on tiny random models."""

import json
import math

import pytest
import torch

from diffusion_lite import attribute_eval as ae
from diffusion_lite import captions as C
from diffusion_lite import data
from diffusion_lite import evaluation as ev
from diffusion_lite.checkpoints import load_checkpoint
from diffusion_lite.clip import CLIPModel, save_clip
from diffusion_lite.config import ScheduleConfig, UNetConfig
from diffusion_lite.data import load_dataset
from diffusion_lite.metrics import load_eval_classifier
from diffusion_lite.pipeline import DiffusionPipeline
from diffusion_lite.schedules import Schedule
from diffusion_lite.tokenizer import Tokenizer
from diffusion_lite.unet import UNet

TINY = dict(base_channels=8, channel_mults=(1, 2), attn_resolutions=())


def _unzero(model: torch.nn.Module) -> torch.nn.Module:
    """Give the zero-initialised output layers small random weights, so that the prompt changes the output."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


def tiny_text_pipe(tmp_path=None) -> DiffusionPipeline:
    torch.manual_seed(0)
    clip = CLIPModel.for_dataset("mnist", width=16, layers=1, heads=2, embed_dim=16, cnn_channels=(8, 8, 8))
    text_ckpt = None
    if tmp_path is not None:
        text_ckpt = load_checkpoint(save_clip(tmp_path / "clip", clip))
    unet = _unzero(UNet(UNetConfig(**TINY, cross_attn_resolutions=(14,), context_dim=16)))
    return DiffusionPipeline(unet, Schedule.from_config(ScheduleConfig()), text=clip, text_checkpoint=text_ckpt)


def tiny_uncond_pipe() -> DiffusionPipeline:
    torch.manual_seed(0)
    return DiffusionPipeline(_unzero(UNet(UNetConfig(**TINY))), Schedule.from_config(ScheduleConfig()))


@pytest.fixture(scope="module")
def text_pipe():
    return tiny_text_pipe()


@pytest.fixture(scope="module")
def classifier():
    return load_eval_classifier()


def test_eval_prompts_name_each_digit_in_every_template():
    labels = ev.balanced_labels(160)  # 16 per digit: every template twice
    prompts = ev.eval_prompts(labels)
    assert prompts[:3] == ["the digit zero", "the digit one", "the digit two"]
    sevens = [p for p, y in zip(prompts, labels.tolist()) if y == 7]
    assert len(set(sevens)) == len(ev.EVAL_TEMPLATES)
    assert all("seven" in p or "7" in p for p in sevens)
    tok = Tokenizer.for_dataset("mnist")
    assert not [w for p in prompts for w in tok.unknown_words(p)]  # the text encoder knows every word
    with pytest.raises(ValueError, match=r"labels must be digits in \[0, 10\), got \[10\]"):
        ev.eval_prompts(torch.tensor([3, 10]))


@pytest.mark.parametrize("n", [0, 15, 25])
def test_text_evaluation_needs_ten_per_digit_multiples(n):
    with pytest.raises(ValueError, match="multiple of 10"):
        ev.balanced_labels(n)


def test_evaluate_text_pipeline_report(text_pipe, classifier):
    r = ev.evaluate_pipeline(text_pipe, n=40, steps=2, guidance=3.0, classifier=classifier, batch_size=16)
    json.dumps(r)  # JSON-able
    assert r["settings"]["model"] == "text-conditional" and r["settings"]["n"] == 40
    assert r["settings"]["prompt_templates"] == list(ev.EVAL_TEMPLATES)
    assert 0.0 <= r["accuracy"] <= 1.0 and len(r["accuracy_per_class"]) == 10
    assert r["fid"] > r["fid_floor"] > 0  # two steps of a random network are further from the test set than real data
    assert math.isclose(r["fid_ratio"], r["fid"] / r["fid_floor"])
    # a random network makes blobs: far worse than real data at the same n
    assert r["fid_ratio"] > 3
    assert r["diversity"] > 0 and r["diversity_real"] > 0  # 40 different seeds never give 40 equal images
    assert math.isclose(r["diversity_ratio"], r["diversity"] / r["diversity_real"])
    assert math.isclose(sum(r["predicted_class_fraction"]), 1.0)
    assert r["sample_seconds"] > 0 and r["images_per_s"] > 0 and r["wall_time_s"] >= r["sample_seconds"]
    assert r["settings"]["cads"] is None


def test_cads_is_recorded_and_changes_the_samples(text_pipe, classifier):
    from diffusion_lite.guidance import CADS

    kw = dict(n=20, steps=2, guidance=3.0, classifier=classifier)
    plain, cads = ev.evaluate_pipeline(text_pipe, **kw), ev.evaluate_pipeline(text_pipe, cads=CADS(0.5), **kw)
    assert cads["settings"]["cads"] == {"noise_scale": 0.5, "tau1": 0.6, "tau2": 0.9, "psi": 1.0}
    assert cads["fid"] != plain["fid"]  # 2 steps: t = 999 lies past tau2, so the first step sees a noised prompt
    with pytest.raises(ValueError, match="unconditional"):
        ev.generate(tiny_uncond_pipe(), 2, steps=1, cads=CADS(0.5))
    with pytest.raises(ValueError, match="unconditional"):
        tiny_uncond_pipe().sample(n=1, steps=1, cads=CADS(0.5), progress=False)


def test_evaluate_unconditional_pipeline_has_no_accuracy(classifier):
    r = ev.evaluate_pipeline(tiny_uncond_pipe(), n=25, steps=2, sampler="ddpm", classifier=classifier)
    assert r["settings"]["model"] == "unconditional" and "guidance" not in r["settings"]
    assert r["accuracy"] is None and r["accuracy_per_class"] is None
    assert r["n"] == 25 and r["fid"] > 0 and r["kid_subset_size"] == 25
    with pytest.raises(ValueError, match="evaluation needs n >= 2"):
        ev.evaluate_pipeline(tiny_uncond_pipe(), n=1, steps=2, classifier=classifier)


def test_evaluation_rejects_pipelines_without_an_evaluation_classifier(classifier):
    pipe = DiffusionPipeline(UNet(UNetConfig(**{**TINY, "in_channels": 3, "image_size": 32})),
                             Schedule.from_config(ScheduleConfig()))
    with pytest.raises(ValueError, match="MNIST"):
        ev.evaluate_pipeline(pipe, n=20, classifier=classifier)
    pipe.meta["dataset"] = {"name": "cifar10"}  # a trained CIFAR-10 model: named, with what to use instead
    with pytest.raises(ValueError, match="trained on 'cifar10'; for other data, metrics.fid and metrics.kid"):
        ev.evaluate_pipeline(pipe, n=20, classifier=classifier)
    with pytest.raises(ValueError, match="no evaluation classifier is shipped for 'cifar10'"):
        load_eval_classifier(dataset="cifar10")


@pytest.mark.skipif(not (data.DEBIAN_DIR / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
def test_a_fashion_model_is_scored_with_fashion_prompts_classifier_and_references():
    """Same 1x28x28 shape as MNIST, but garments: its own classifier, class prompts and test split, never MNIST's
    (an MNIST classifier would call every garment some digit)."""
    fashion = tiny_uncond_pipe()
    fashion.meta["dataset"] = {"name": "fashion-mnist"}
    r = ev.evaluate_pipeline(fashion, n=20, steps=2)
    assert r["settings"]["classifier"] == "fashion-mnist-classifier" and r["settings"]["reference"] == \
        "fashion-mnist-test"
    assert r["fid"] > r["fid_floor"] > 0  # an untrained model is far from the data
    with pytest.raises(ValueError, match="reference 'mnist-test' is not fashion-mnist's"):
        ev.evaluate_pipeline(fashion, n=20, steps=2, reference="mnist-test")
    with pytest.raises(ValueError, match="needs a text-conditional pipeline"):
        ae.attribute_adherence_report(fashion, n_per_digit=1)
    labels = ev.balanced_labels(80)
    prompts = ev.eval_prompts(labels, "fashion-mnist")
    tok = Tokenizer(C.all_vocabulary("fashion-mnist"))
    assert all(not tok.unknown_words(p) for p in prompts)  # every word is one a Fashion text model was taught
    names = C.class_names("fashion-mnist")
    assert all(names[y] in p for p, y in zip(prompts, labels.tolist())), prompts[:10]
    assert len({p for p, y in zip(prompts, labels.tolist()) if y == 9}) == 8  # eight phrasings per class
    with pytest.raises(ValueError, match="the classifier was trained on 'mnist', this model on 'fashion-mnist'"):
        ev.evaluate_pipeline(fashion, n=20, steps=2, classifier=load_eval_classifier())  # digits' for garments
    with pytest.raises(ValueError, match="is not fashion-mnist's"):  # MNIST digits as the reference, as a dataset
        ev.evaluate_pipeline(fashion, n=20, steps=2, reference=load_dataset("mnist", "test", subset=100))
    with pytest.raises(ValueError, match=r"reference must be one of \['mnist-test'"):  # a typo gets the names
        ev.evaluate_pipeline(fashion, n=20, steps=2, reference="fashion")
    with pytest.raises(ValueError, match="no evaluation prompts for 'cifar10'"):
        ev.eval_prompts(ev.balanced_labels(20), "cifar10")
    # a text-conditional Fashion model: garment prompts, accuracy against the garment classes, the sweeps too
    torch.manual_seed(0)
    clip = CLIPModel.for_dataset("fashion-mnist", width=16, layers=1, heads=2, embed_dim=16, cnn_channels=(8, 8, 8))
    unet = _unzero(UNet(UNetConfig(**TINY, cross_attn_resolutions=(14,), context_dim=16)))
    text = DiffusionPipeline(unet, Schedule.from_config(ScheduleConfig()), text=clip,
                             meta={"dataset": {"name": "fashion-mnist"}})
    r = ev.evaluate_pipeline(text, n=20, steps=1)
    assert r["settings"]["prompt_templates"] == list(ev.TEMPLATES["fashion-mnist"]) and 0 <= r["accuracy"] <= 1
    assert len(r["accuracy_per_class"]) == 10
    rows = ev.guidance_sweep(text, [1.0, 3.0], n=20, steps=1)
    assert [row["guidance"] for row in rows] == [1.0, 3.0] and all(row["fid"] > 0 for row in rows)
    clf = load_eval_classifier(dataset="fashion-mnist")
    assert clf.dataset == "fashion-mnist" and load_eval_classifier().dataset == "mnist"
    test = load_dataset("fashion-mnist", "test", subset=500)
    acc = (clf(test.images).argmax(1) == test.labels).float().mean().item()
    assert acc > 0.85, acc  # it recognises real garments (model card: the test accuracy over all 10,000)


def test_reference_too_small_for_a_floor(classifier):
    small = load_dataset("mnist", "test", subset=30)
    with pytest.raises(ValueError, match="floor"):
        ev.evaluate_pipeline(tiny_uncond_pipe(), n=20, steps=1, classifier=classifier, reference=small)


def test_real_images_score_like_the_floor_and_noise_does_not(classifier):
    """The protocol on real digits (MNIST train, same digits as asked) gives FID ~ the real-vs-real floor and
    ~100% accuracy; the same digits with strong noise are far off."""
    labels = ev.balanced_labels(200)
    ref = ev.prepare_reference(classifier, "mnist-test", 200, labels, seed=0)
    train = load_dataset("mnist", "train", subset=2000)
    idx = torch.cat([torch.nonzero(train.labels == c).flatten()[:20] for c in range(10)])
    samples, sample_labels = train.images[idx], train.labels[idx]
    order = torch.argsort(sample_labels, stable=True)
    real = ev.score_samples(classifier, samples[order], ref, sample_labels[order])
    assert real["accuracy"] > 0.97
    assert real["fid_ratio"] < 2.5
    assert 0.8 < real["diversity_ratio"] < 1.25
    noisy = (samples + 0.8 * torch.randn(samples.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    bad = ev.score_samples(classifier, noisy[order], ref, sample_labels[order])
    assert bad["fid_ratio"] > 5 * real["fid_ratio"]
    # class-balanced draws put KID itself well below 0 (about -4.3 / n), its excess over the floor near 0
    assert real["kid_mean"] < -0.01 and real["kid_floor"] < -0.01
    assert abs(real["kid_excess"]) < 0.005 < bad["kid_excess"]
    assert real["kid_std"] is None  # one subset, the whole set: no spread to report


def test_generate_is_reproducible_and_independent_of_batch_size(text_pipe):
    prompts = ev.eval_prompts(ev.balanced_labels(20))
    a = ev.generate(text_pipe, 20, prompts, steps=2, seed=3, batch_size=20)
    b = ev.generate(text_pipe, 20, prompts, steps=2, seed=3, batch_size=7)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert a.shape == (20, 1, 28, 28) and a.min() >= -1 and a.max() <= 1


def test_guidance_and_steps_sweeps(text_pipe, classifier):
    rows = ev.guidance_sweep(text_pipe, (0, 1, 4), n=20, steps=2, classifier=classifier)
    assert [r["guidance"] for r in rows] == [0.0, 1.0, 4.0]
    assert all(0 <= r["accuracy"] <= 1 and r["fid_ratio"] > 0 for r in rows)
    assert rows[0]["fid"] != rows[2]["fid"]  # the scale changes the samples
    rows = ev.steps_sweep(text_pipe, (1, 2), ("ddpm", "ddim"), n=20, n_for_steps={2: 30}, classifier=classifier)
    assert [(r["sampler"], r["steps"], r["n"]) for r in rows] == [("ddpm", 1, 20), ("ddim", 1, 20), ("ddpm", 2, 30),
                                                                  ("ddim", 2, 30)]
    assert all(r["images_per_s"] > 0 for r in rows)


def test_guidance_sweep_needs_a_text_model(classifier):
    with pytest.raises(ValueError, match="text-conditional"):
        ev.guidance_sweep(tiny_uncond_pipe(), n=20, classifier=classifier)


def test_attribute_prompts():
    assert ae.attribute_prompt("thick", 7) == "a thick seven"
    assert ae.attribute_prompt("slanting right", 7) == "a seven slanting right"
    assert ae.attribute_prompt("large", 8) == "a large eight"
    assert ae.attribute_prompt("slanting left", 8) == "an eight slanting left"
    assert ae.ATTRIBUTE_PAIRS["thickness"] == ("thin", "thick")
    assert ae.attribute_prompt("dark", 4, "fashion-mnist") == "a dark coat"
    assert ae.attribute_prompt("patterned", 9, "fashion-mnist") == "a patterned ankle boot"
    assert ae.ATTRIBUTE_PAIRS["pattern"] == ("plain", "patterned")


def test_attribute_adherence_of_a_garment_model_measures_brightness_and_pattern():
    torch.manual_seed(0)
    clip = CLIPModel.for_dataset("fashion-mnist", width=16, layers=1, heads=2, embed_dim=16, cnn_channels=(8, 8, 8))
    unet = _unzero(UNet(UNetConfig(**TINY, cross_attn_resolutions=(14,), context_dim=16)))
    pipe = DiffusionPipeline(unet, Schedule.from_config(ScheduleConfig()), text=clip)
    pipe.meta["dataset"] = {"name": "fashion-mnist"}
    r = ae.attribute_adherence_report(pipe, n_per_digit=1, digits=(4,), steps=2)  # its own classifier
    assert set(r["attributes"]) == {"brightness", "pattern"} and r["settings"]["dataset"] == "fashion-mnist"
    assert r["attributes"]["brightness"]["example_prompts"] == ["a dark coat", "a light coat"]
    with pytest.raises(ValueError, match=r"expected attributes from \['brightness', 'pattern'\]"):
        ae.attribute_adherence_report(pipe, attributes=("thickness",), steps=2)
    for bad in (dict(attributes=()), dict(digits=(10,)), dict(digits=(-1,))):
        with pytest.raises(ValueError, match=r"classes in \[0, 10\)"):
            ae.attribute_adherence_report(pipe, steps=2, **bad)
    assert set(ae.attribute_adherence_report(pipe, attributes="pattern", n_per_digit=1, digits=(0,), steps=1)[
        "attributes"]) == {"pattern"}  # one name, not its letters
    with pytest.raises(ValueError, match="the classifier was trained on 'mnist'"):
        ae.attribute_adherence_report(pipe, n_per_digit=1, steps=2, classifier=load_eval_classifier())
    # a garment model trained before its captions had attribute words: its encoder never saw them
    clip.tokenizer = Tokenizer([w for w in C.all_vocabulary("fashion-mnist") if w not in ("dark", "light")])
    with pytest.raises(ValueError, match="never saw the attribute words 'dark', 'light'"):
        ae.attribute_adherence_report(pipe, n_per_digit=1, steps=2)


def test_attribute_adherence_report(text_pipe, classifier):
    r = ae.attribute_adherence_report(text_pipe, n_per_digit=2, digits=(1, 7), steps=2, classifier=classifier)
    json.dumps(r)
    assert set(r["attributes"]) == {"thickness", "slant", "size"}
    for a in r["attributes"].values():
        assert 0 <= a["adherence"] <= 1 and 0 <= a["accuracy"] <= 1
        assert set(a["per_digit"]) == {1, 7} and a["n_low"] == a["n_high"] == 4
    with pytest.raises(ValueError, match="attributes"):
        ae.attribute_adherence_report(text_pipe, attributes=("colour",), classifier=classifier)
    with pytest.raises(ValueError, match=r"expected attributes from \['thickness', 'slant', 'size'\]"):
        ae.attribute_adherence_report(text_pipe, attributes=("brightness",), classifier=classifier)  # a garment's


def test_attribute_adherence_leaves_out_pairs_with_an_unrecognised_sample(text_pipe, classifier, monkeypatch):
    """A blank sample measures the least of every attribute, so "a thin seven" drawn blank beside a real thick
    seven "obeys"; adherence_recognised counts only pairs whose two samples are both sevens."""
    from diffusion_lite.attributes import thickness

    test = load_dataset("mnist", "test", subset=200, balanced=True)
    sevens = test.images[test.labels == 7]
    order = thickness(sevens).argsort()
    thin, thick, blank = sevens[order[0]], sevens[order[-1]], -torch.ones(1, 28, 28)
    drawn = {"thin": torch.stack([blank, thick]), "thick": torch.stack([thick, thin])}  # pair 0: blank; 1: disobeyed
    monkeypatch.setattr(ae, "generate", lambda pipe, n, prompts, **kw: drawn[prompts[0].split()[1]].clone())
    r = ae.attribute_adherence_report(text_pipe, attributes="thickness", n_per_digit=2, digits=(7,),
                                      classifier=classifier)["attributes"]["thickness"]
    assert r["adherence"] == 0.5 and r["accuracy"] == 0.75  # the blank pair counts as obeyed
    assert r["recognised_pairs"] == 1 and r["adherence_recognised"] == 0.0
    drawn["thin"] = torch.stack([blank, blank])
    r = ae.attribute_adherence_report(text_pipe, attributes="thickness", n_per_digit=2, digits=(7,),
                                      classifier=classifier)["attributes"]["thickness"]
    assert r["recognised_pairs"] == 0 and r["adherence_recognised"] is None and r["adherence"] == 1.0

# ----------------------------------------------------------------------------------------- the CLI
def _parser():
    """The real command-line parser (the evaluate command, with the options every command shares)."""
    from diffusion_lite import cli

    return cli.build_parser()


def test_evaluate_command_writes_a_report(tmp_path, capsys):
    tiny_uncond_pipe().save(tmp_path / "model")
    out = tmp_path / "r" / "report.json"
    args = _parser().parse_args(["evaluate", "--checkpoint", str(tmp_path / "model"), "--n", "20", "--steps", "2",
                                 "--device", "cpu", "--quiet", "--out", str(out)])
    args.func(args)
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["n"] == 20 and report["settings"]["steps"] == 2 and report["fid_floor"] > 0
    printed = capsys.readouterr().out
    assert "FID / floor" in printed and str(out) in printed and report["settings"]["spacing"] == "linspace"
    seen = []  # --spacing reaches the sampler, and the report records it
    monkey = __import__("diffusion_lite.sampling", fromlist=["timesteps"])
    real = monkey.timesteps
    try:
        monkey.timesteps = lambda s, k, spacing="linspace": seen.append(spacing) or real(s, k, spacing)
        args = _parser().parse_args(["evaluate", "--checkpoint", str(tmp_path / "model"), "--n", "20", "--steps", "3",
                                     "--sampler", "dpm++2m", "--spacing", "logsnr", "--device", "cpu", "--quiet",
                                     "--out", str(out)])
        args.func(args)
    finally:
        monkey.timesteps = real
    assert "logsnr" in seen and json.loads(out.read_text(encoding="utf-8"))["settings"]["spacing"] == "logsnr"


def test_evaluate_command_with_attributes_on_a_text_model(tmp_path):
    tiny_text_pipe(tmp_path).save(tmp_path / "t2i")
    out = tmp_path / "report.json"
    seen = []  # the attribute samples use --spacing too (they once ran on the default grid)
    monkey = __import__("diffusion_lite.sampling", fromlist=["timesteps"])
    real = monkey.timesteps
    try:
        monkey.timesteps = lambda s, k, spacing="linspace": seen.append(spacing) or real(s, k, spacing)
        args = _parser().parse_args(["evaluate", "--checkpoint", str(tmp_path / "t2i"), "--n", "20", "--steps", "2",
                                     "--attributes", "1", "--spacing", "logsnr", "--quiet", "--out", str(out)])
        args.func(args)
    finally:
        monkey.timesteps = real
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["accuracy"] is not None and set(report["attribute_adherence"]["attributes"]) == {
        "thickness", "slant", "size"}
    assert set(seen) == {"logsnr"} and report["attribute_adherence"]["settings"]["spacing"] == "logsnr"


def test_evaluate_attributes_of_a_model_that_never_learned_the_words_is_refused_before_sampling(tmp_path):
    from diffusion_lite.cli import CLIError
    from diffusion_lite.clip import CLIPConfig

    torch.manual_seed(0)
    tok = Tokenizer([w for w in C.all_vocabulary("fashion-mnist") if w not in ("dark", "light")])  # an older encoder
    clip = CLIPModel(CLIPConfig(vocab_size=tok.vocab_size, width=16, layers=1, heads=2, embed_dim=16,
                                cnn_channels=(8, 8, 8)), tok)
    unet = _unzero(UNet(UNetConfig(**TINY, cross_attn_resolutions=(14,), context_dim=16)))
    DiffusionPipeline(unet, Schedule.from_config(ScheduleConfig()), text=clip, text_checkpoint=load_checkpoint(
        save_clip(tmp_path / "clip", clip)), meta={"dataset": {"name": "fashion-mnist"}}).save(tmp_path / "old")
    args = _parser().parse_args(["evaluate", "--checkpoint", str(tmp_path / "old"), "--n", "20", "--steps", "1",
                                 "--attributes", "1", "--quiet", "--out", str(tmp_path / "r.json")])
    with pytest.raises(CLIError, match="--attributes: .*never saw the attribute words 'dark', 'light'"):
        args.func(args)
    assert not (tmp_path / "r.json").exists()


def test_evaluate_command_errors(tmp_path):
    from diffusion_lite.cli import CLIError

    tiny_uncond_pipe().save(tmp_path / "model")
    p = _parser()
    with pytest.raises(CLIError, match=".json"):
        a = p.parse_args(["evaluate", "--checkpoint", str(tmp_path / "model"), "--n", "20", "--out", "r.txt"])
        a.func(a)
    with pytest.raises(CLIError, match="text-conditional"):
        a = p.parse_args(["evaluate", "--checkpoint", str(tmp_path / "model"), "--n", "20", "--attributes", "2",
                          "--out", str(tmp_path / "r.json")])
        a.func(a)
    with pytest.raises(SystemExit):
        p.parse_args(["evaluate", "--checkpoint", "x", "--n", "0", "--out", "r.json"])


def test_evaluate_through_the_console_entry_point(tmp_path):
    """``diffusion-lite evaluate`` end to end (exit code 0)."""
    from diffusion_lite import cli

    tiny_uncond_pipe().save(tmp_path / "model")
    out = tmp_path / "report.json"
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "model"), "--n", "20", "--steps", "1", "--quiet",
                     "--out", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["n"] == 20
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "missing"), "--n", "20", "--out", str(out)]) == 2


def test_a_bfloat16_pipeline_is_sampled_by_the_evaluation_helpers():
    """A pipeline cast to bf16 (as GPU users do for speed) gets its starting noise in its own dtype, drawn in
    float32 as pipe.sample draws it; these helpers used to hand it float32 noise, a TypeError."""
    from diffusion_lite.guidance_viz import guidance_grid

    pipe = tiny_text_pipe()
    pipe.unet.to(torch.bfloat16)
    images = ev.generate(pipe, 2, ["a seven", "a one"], steps=2)
    assert images.shape == (2, 1, 28, 28) and torch.isfinite(images.float()).all()
    r = ae.attribute_adherence_report(pipe, attributes=("thickness",), n_per_digit=1, digits=(7,), steps=2,
                                      classifier=load_eval_classifier())
    assert set(r["attributes"]) == {"thickness"}
    guidance_grid(pipe, ["a seven"], scales=(1, 3), n=1, steps=2)
