"""Image to image and inpainting (editing.py): what strength and mask do, with exact denoisers whose right
answers are known, and the errors a user meets."""

import numpy as np
import pytest
import torch

from diffusion_lite import edit, img2img, inpaint, load_pretrained
from diffusion_lite.config import ScheduleConfig
from diffusion_lite.editing import edit_timesteps
from diffusion_lite.sampling import SAMPLERS, timesteps
from diffusion_lite.schedules import Schedule, predict_eps_from_x0, q_sample
from diffusion_lite.utils import randn

S = Schedule.from_config(ScheduleConfig("cosine", T=1000))
# two 1x4x4 images, opposite in both halves: a is light on the left, b on the right
A = torch.cat([torch.full((1, 1, 4, 2), 0.8), torch.full((1, 1, 4, 2), -0.8)], dim=-1)
B = -A
LEFT_KNOWN = torch.cat([torch.zeros(1, 1, 4, 2), torch.ones(1, 1, 4, 2)], dim=-1)  # 1 = regenerate the right half


def two_image_denoiser(schedule, data=(A, B)):
    """The exact denoiser of a dataset of two images: E[x_0 | x_t] is their posterior-weighted mean."""
    data = torch.cat(data)  # (2, 1, 4, 4)

    def fn(x_t, t):
        ab = schedule.alpha_bar[t].view(-1, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
        d2 = ((x_t[:, None] - ab.sqrt() * data[None]) ** 2).flatten(2).sum(-1)  # (B, 2)
        w = torch.softmax(-d2 / (2 * (1 - ab.flatten(1))), dim=1)  # (B, 2)
        x0_hat = torch.einsum("bk,kchw->bchw", w, data)
        return predict_eps_from_x0(schedule, x_t, t, x0_hat)

    return fn


def dist(x, y):
    return (x - y).flatten(1).abs().amax(1)  # (B,): the largest pixel difference per image


def test_edit_timesteps_is_the_end_of_the_samplers_grid():
    full = timesteps(S, 10)
    assert edit_timesteps(S, 10, 1.0) == full
    assert edit_timesteps(S, 10, 0.5) == full[-5:] == [444, 333, 222, 111, 0]
    assert edit_timesteps(S, 10, 0.01) == [0]  # at least one step
    assert len(edit_timesteps(S, 10, 0.75)) == 7 and len(edit_timesteps(S, 10, 0.7)) == 7  # int(), as diffusers
    assert edit_timesteps(S, 20, 0.5, "logsnr") == timesteps(S, 20, "logsnr")[-10:]
    for bad in (0, 0.0, 1.5, -0.2, True, "0.5", None):
        with pytest.raises(ValueError, match=r"strength must be in \(0, 1\]"):
            edit_timesteps(S, 10, bad)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("strength", [0.3, 1.0])
def test_an_exact_denoiser_of_the_image_itself_gives_it_back(sampler, strength):
    """If the model knows the image is the only data, every sampler returns it from any strength."""
    x0 = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model_fn = lambda x_t, t: predict_eps_from_x0(S, x_t, t, x0)
    out = img2img(model_fn, S, x0, strength=strength, steps=20, sampler=sampler,
                  generator=torch.Generator().manual_seed(1), progress=False)
    torch.testing.assert_close(out, x0, atol=1e-3, rtol=0)


def test_strength_decides_how_much_of_the_image_survives():
    """From image a: a weak edit always returns a; a full one (strength 1, pure noise) forgets it and lands on b
    about as often as on a."""
    x0 = A.expand(64, 1, 4, 4)
    weak = img2img(two_image_denoiser(S), S, x0, strength=0.3, steps=20, generator=torch.Generator().manual_seed(0),
                   progress=False)
    assert (dist(weak, A) < 0.05).all()
    full = img2img(two_image_denoiser(S), S, x0, strength=1.0, steps=20, generator=torch.Generator().manual_seed(0),
                   progress=False)
    to_a, to_b = (dist(full, A) < 0.05).sum().item(), (dist(full, B) < 0.05).sum().item()
    assert to_a + to_b == 64 and 16 <= to_b <= 48, (to_a, to_b)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_inpainting_keeps_the_known_pixels_and_mostly_completes_the_rest_consistently(sampler):
    """Known left half of a: the output's left half is a's exactly; the right half becomes a's (the only image
    of the data with that left half) from most starting noises (replacement alone, these 64: DDIM and DPM++
    87.5%, DDPM 97%); without the mask about half go to b."""
    x0 = A.expand(64, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    out = inpaint(two_image_denoiser(S), S, x0, LEFT_KNOWN, steps=20, sampler=sampler, generator=g, progress=False)
    assert torch.equal(out[..., :2], x0[..., :2])  # exactly, not approximately
    consistent = (dist(out, A) < 0.05).float().mean().item()
    assert consistent >= 0.75, consistent
    free = inpaint(two_image_denoiser(S), S, x0, torch.ones(1, 1, 4, 4), steps=20, sampler=sampler,
                   generator=torch.Generator().manual_seed(0), progress=False)
    assert 0.25 <= (dist(free, B) < 0.05).float().mean().item() <= 0.75


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_resampling_harmonises_the_fill_with_the_known_pixels(sampler):
    """RePaint's resampling: the completions that replacement alone gets wrong are fixed with r = 5, at 5x the
    model calls of every step but the last."""
    x0 = A.expand(64, 1, 4, 4)
    calls = []
    denoiser = two_image_denoiser(S)
    counted = lambda x_t, t: calls.append(1) or denoiser(x_t, t)
    kw = dict(steps=20, sampler=sampler, progress=False)
    plain = inpaint(denoiser, S, x0, LEFT_KNOWN, generator=torch.Generator().manual_seed(0), **kw)
    out = inpaint(counted, S, x0, LEFT_KNOWN, resample=5, generator=torch.Generator().manual_seed(0), **kw)
    assert (dist(plain, A) >= 0.05).any()  # the failure resampling is for
    assert (dist(out, A) < 0.05).all() and torch.equal(out[..., :2], x0[..., :2])
    assert len(calls) == 19 * 5 + 1


def test_runs_round_strength_times_steps_model_calls_and_the_callback_sees_the_kept_pixels():
    calls, states = [], []
    model_fn = lambda x_t, t: calls.append(int(t[0])) or torch.zeros_like(x_t)
    x0 = A.expand(2, 1, 4, 4)
    img2img(model_fn, S, x0, strength=0.4, steps=25, mask=LEFT_KNOWN, progress=False,
            callback=lambda d: states.append(d["x_t"].clone()), generator=torch.Generator().manual_seed(0))
    assert calls == timesteps(S, 25)[-10:]
    assert torch.equal(states[-1][..., :2], x0[..., :2])


def test_bad_inputs_are_named():
    fn = two_image_denoiser(S)
    with pytest.raises(ValueError, match=r"x0 must be in \[-1, 1\].*got values in \[0.2, 1.8\]"):
        img2img(fn, S, A + 1, progress=False)
    with pytest.raises(TypeError, match="float tensor .B, C, H, W.*torch.uint8 .uint8 images: utils.from_uint8"):
        img2img(fn, S, torch.zeros(1, 1, 4, 4, dtype=torch.uint8), progress=False)
    with pytest.raises(TypeError, match="float tensor .B, C, H, W. in .-1, 1., got list$"):
        img2img(fn, S, [[0.0]], progress=False)
    with pytest.raises(ValueError, match=r"x0 must be \(B, C, H, W\), got shape \(1, 4, 4\) \(one image: x0\[None\]\)"):
        img2img(fn, S, A[0], progress=False)
    with pytest.raises(ValueError, match=r"must be \(B, C, H, W\), got shape \(4, 4\)$"):
        img2img(fn, S, A[0, 0], progress=False)
    with pytest.warns(UserWarning, match=r"no pixel of x0 is below 0 .*are the images in \[0, 1\]") as caught:
        img2img(fn, S, (A + 1) / 2, progress=False)
    assert caught[0].filename == __file__  # the warning names the caller's line
    with pytest.raises(ValueError, match=r"mask must broadcast to the image's shape \(1, 1, 4, 4\).*\(1, 1, 2, 2\)"):
        inpaint(fn, S, A, torch.ones(1, 1, 2, 2), progress=False)
    with pytest.raises(ValueError, match="mask must broadcast"):
        inpaint(fn, S, A, torch.ones(4, 4), progress=False)
    with pytest.raises(ValueError, match=r"mask values must be in \[0, 1\].*got \[0, 255\] \(a 0/255 image mask: "
                       r"mask / 255\)"):
        inpaint(fn, S, A, LEFT_KNOWN * 255, progress=False)
    with pytest.raises(TypeError, match="mask must be a tensor"):
        inpaint(fn, S, A, [[1]], progress=False)
    with pytest.raises(ValueError, match="inpaint needs a mask"):
        inpaint(fn, S, A, None)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        img2img(fn, S, A, sampler="euler", progress=False)
    with pytest.raises(ValueError, match="eta is DDIM's noise setting"):
        img2img(fn, S, A, sampler="ddpm", eta=0.5, progress=False)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="resample must be an integer >= 1"):
            inpaint(fn, S, A, LEFT_KNOWN, resample=bad, progress=False)
    with pytest.raises(ValueError, match="resample > 1 needs a mask"):
        img2img(fn, S, A, resample=2, progress=False)
    with pytest.raises(ValueError, match="and sampler 'ddim' or 'ddpm'"):
        inpaint(fn, S, A, LEFT_KNOWN, resample=2, sampler="dpm++2m", progress=False)


def test_edit_with_the_shipped_text_model():
    """pipe-level edit: prompts per image, a mask keeps its pixels, and the checks of pipe.model_fn apply."""
    pipe = load_pretrained("mnist-text2img")
    x0 = torch.zeros(2, 1, 28, 28) - 1
    x0[:, :, 8:20, 12:16] = 1  # a vertical bar: a "1"
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 14:, :] = 1  # regenerate the bottom half
    kw = dict(steps=6, generator=torch.Generator().manual_seed(0), progress=False)
    out = edit(pipe, x0, ["the digit seven", "the digit four"], strength=0.8, mask=mask, **kw)
    assert out.shape == x0.shape and torch.equal(out[..., :14, :], x0[..., :14, :])
    assert not torch.equal(out[0], out[1])  # different prompts, different bottoms
    assert edit(pipe, x0, "the digit seven", strength=0.5, **kw).shape == x0.shape  # one prompt for both
    with pytest.raises(ValueError, match="give one prompt for all 2 image.s., or one per image; got 3"):
        edit(pipe, x0, ["a", "b", "c"], **kw)
    with pytest.raises(ValueError, match="got none"):
        edit(pipe, x0, **kw)
    with pytest.raises(ValueError, match="prompt"):
        edit(load_pretrained("mnist-uncond"), x0, "the digit seven", **kw)
    assert edit(load_pretrained("mnist-uncond"), x0, strength=0.2, **kw).shape == x0.shape


def test_the_start_and_the_kept_pixels_are_at_the_noise_level_of_their_step():
    """The chain starts from x0 noised to the grid's first t, and after each step the kept pixels are x0 noised
    to the step just reached (t_next), both with the eps drawn first from the generator."""
    x0 = A.expand(8, 1, 4, 4)
    seen, states = [], []
    fn = lambda x, t: seen.append(x.clone()) or torch.zeros_like(x)
    img2img(fn, S, x0, strength=0.5, steps=10, mask=LEFT_KNOWN, progress=False,
            generator=torch.Generator().manual_seed(0), callback=lambda d: states.append((d["t_next"], d["x_t"])))
    eps = randn(x0.shape, torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen[0], q_sample(S, x0, edit_timesteps(S, 10, 0.5)[0], noise=eps))
    for t_next, x in states[:-1]:
        torch.testing.assert_close(x[..., :2], q_sample(S, x0, t_next, noise=eps)[..., :2])
    assert states[-1][0] == -1 and torch.equal(states[-1][1][..., :2], x0[..., :2])


def test_resampling_noises_the_step_forward_to_its_own_t():
    """Between two takes of a step t -> t_prev, x_{t_prev} is noised forward to t: the kept pixels the network
    sees then have the mean and variance of x0 noised to t (4,096 samples)."""
    x0 = A.expand(4096, 1, 4, 4)
    seen, denoiser = [], two_image_denoiser(S)
    fn = lambda x, t: seen.append((int(t[0]), x.clone())) or denoiser(x, t)
    inpaint(fn, S, x0, LEFT_KNOWN, steps=5, resample=2, progress=False, generator=torch.Generator().manual_seed(0))
    assert [t for t, _ in seen] == [t for t in timesteps(S, 5) for _ in range(2 if t > 0 else 1)]
    for t, x in seen[1:-1:2]:  # the second take of each step: the re-noised inputs
        ab, kept = S.alpha_bar[t], x[..., :2]
        assert abs(kept.mean() - ab.sqrt() * 0.8) < 0.02 and abs(kept.var() - (1 - ab)) < 0.03, (t, kept.mean())


def test_a_mask_makes_strength_1_the_default_and_no_graph_is_kept():
    calls = []
    fn = lambda x, t: calls.append(int(t[0])) or torch.zeros_like(x)
    x0 = A.clone().requires_grad_(True)
    out = img2img(fn, S, x0, steps=10, mask=LEFT_KNOWN, progress=False)
    assert calls == timesteps(S, 10) and not out.requires_grad
    calls.clear()
    img2img(fn, S, x0, steps=10, progress=False)  # without a mask: 0.6
    assert calls == timesteps(S, 10)[-6:]


def test_half_masks_regenerate_the_named_half():
    from diffusion_lite.editing import HALVES, half_mask

    for name, region in zip(HALVES, [(slice(0, 2), slice(None)), (slice(2, 4), slice(None)),
                                     (slice(None), slice(0, 2)), (slice(None), slice(2, 4))]):
        m = half_mask(name, 4)
        assert m.shape == (1, 1, 4, 4) and m[0, 0][region].min() == 1 and m.sum() == 8, name
    with pytest.raises(ValueError, match="unknown half 'middle'; expected one of top, bottom, left, right"):
        half_mask("middle", 4)


def test_the_editing_figure_and_widget_edit_again_on_every_change():
    """Chapter 08's widget: the title names what was done, and moving a control edits the images again."""
    from diffusion_lite.editing_viz import edit_figure, edit_widget
    from diffusion_lite.metrics import load_eval_classifier

    pipe = load_pretrained("mnist-text2img")
    x0 = torch.zeros(2, 1, 28, 28) - 1
    x0[:, :, 6:22, 12:16] = 1
    fig = edit_figure(pipe, x0, "the digit seven", 0.5, steps=4, classifier=load_eval_classifier())
    title = fig.axes[0].get_title()
    assert title.startswith('"the digit seven", strength 0.5 (t_start = 333), image to image\nread as: ')
    assert len(title.split("read as: ")[1].split(", ")) == 2
    w = edit_widget(pipe, x0, steps=4)
    box, slider, drop = w.children[:3]
    assert (box.description, slider.description, drop.description) == ("prompt", "strength", "mask")
    assert w.result.axes[0].get_title() == '"the digit eight", strength 0.6 (t_start = 333), image to image'
    drop.value = "bottom"  # a mask: the slider moves to 1, where inpainting starts
    assert slider.value == 1.0
    assert w.result.axes[0].get_title() == '"the digit eight", strength 1 (t_start = 999), bottom half regenerated'
    shown = np.asarray(w.result.axes[0].images[0].get_array())  # inputs (hole grey), then edits; 2 px padding
    assert np.array_equal(shown[2:16], shown[32:46]) and not np.array_equal(shown[16:30], shown[46:60])
    assert (shown[16:30, 2:30] == 128).all()  # the regenerated half of an input is shown grey
    with pytest.raises(ValueError, match="unknown mask 'middle'"):
        edit_widget(pipe, x0, mask="middle")
