"""DPM-Solver++(2M) (dpm_solver.py): its first-order step is DDIM's, it recovers x0 from the exact noise, and on
data whose probability-flow ODE has a closed-form solution it is far more accurate than DDIM at the same steps."""

import pytest
import torch

from diffusion_lite.config import ScheduleConfig
from diffusion_lite.dpm_solver import dpmpp_2m_step, sample_dpmpp_2m
from diffusion_lite.sampling import ddim_step, sample, sample_ddim
from diffusion_lite.schedules import Schedule, predict_eps_from_x0


def _t(value: int, n: int) -> torch.Tensor:
    return torch.full((n,), value, dtype=torch.long)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("clip", [True, False])
def test_the_first_order_step_is_ddims_deterministic_step(kind, clip, gen):
    """Without a previous prediction (the first step), or into t = 0, the update is DDIM's with eta = 0."""
    s = Schedule.from_config(ScheduleConfig(kind, T=1000))
    x_t = torch.randn(3, 1, 8, 8, generator=gen) * 1.5
    eps_hat = torch.randn(3, 1, 8, 8, generator=gen)
    for t, t_prev in ((999, 899), (500, 450), (40, 0), (0, -1)):
        ours = dpmpp_2m_step(s, x_t, _t(t, 3), _t(t_prev, 3), eps_hat, clip_x0=clip)
        ddim = ddim_step(s, x_t, _t(t, 3), _t(t_prev, 3), eps_hat, clip_x0=clip)
        torch.testing.assert_close(ours, ddim, atol=1e-5, rtol=1e-5)
    x0_last = torch.randn(3, 1, 8, 8, generator=gen)  # into t = 0 the previous prediction is not used
    torch.testing.assert_close(dpmpp_2m_step(s, x_t, _t(40, 3), _t(0, 3), eps_hat, x0_last, _t(80, 3), clip),
                               ddim_step(s, x_t, _t(40, 3), _t(0, 3), eps_hat, clip_x0=clip))
    second = dpmpp_2m_step(s, x_t, _t(500, 3), _t(450, 3), eps_hat, x0_last, _t(550, 3), clip)[0]
    assert (second - ddim_step(s, x_t, _t(500, 3), _t(450, 3), eps_hat, clip_x0=clip)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("steps", [2, 10, 25])
def test_recovers_x0_from_the_exact_noise(gen, steps):
    s = Schedule.from_config(ScheduleConfig("cosine", T=1000))
    x0 = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1
    fn = lambda x_t, t: predict_eps_from_x0(s, x_t, t, x0)  # noqa: E731
    out = sample_dpmpp_2m(fn, s, shape=x0.shape, steps=steps, generator=gen, progress=False)
    torch.testing.assert_close(out, x0, atol=1e-3, rtol=0)
    torch.testing.assert_close(sample(fn, s, sampler="dpm++2m", shape=x0.shape, steps=steps, generator=gen,
                                      progress=False), x0, atol=1e-3, rtol=0)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_second_order_is_far_more_accurate_than_ddim_on_gaussian_data(kind):
    """Data x0 ~ N(mu, sd^2): the exact eps is known, and the probability-flow ODE maps x_T to the state at t = 0
    in closed form (an affine map of quantiles), so each solver's error can be measured. In float64."""
    s = Schedule.from_config(ScheduleConfig(kind, T=1000))
    ab, mu, sd = s.alpha_bar.double(), 0.3, 0.5

    def eps_fn(x_t, t):  # E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mu) / (ab sd^2 + 1 - ab)
        a = ab[t].view(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x_t - a.sqrt() * mu) / (a * sd**2 + 1 - a)

    x_T = torch.randn(2000, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    std = lambda t: (ab[t] * sd**2 + 1 - ab[t]).sqrt()  # noqa: E731
    exact = ab[0].sqrt() * mu + std(0) * (x_T - ab[-1].sqrt() * mu) / std(-1)  # the ODE's solution at t = 0

    def error(sampler, steps):  # both on DDIM's grid, even in t: the update rule alone is compared
        at_0 = {}
        sampler(eps_fn, s, x_T=x_T, steps=steps, clip_x0=False, progress=False, spacing="linspace",
                callback=lambda d: at_0.update(x=d["x_t"]) if d["t_next"] == 0 else None)
        return float((at_0["x"] - exact).abs().max())

    # DDIM's error halves as the steps double (first order); DPM-Solver++'s falls faster, down to the floor its
    # first-order step into t = 0 leaves (linear / cosine, max error: 20 steps 0.083 / 0.006 against DDIM's
    # 0.25 / 0.14; 80 steps 0.005 / 0.002 against 0.06 / 0.03)
    for steps in (40, 80):
        assert error(sample_dpmpp_2m, steps) < error(sample_ddim, steps) / 10, steps
    assert error(sample_dpmpp_2m, 20) < error(sample_ddim, 20) / 2
    assert error(sample_dpmpp_2m, 10) < error(sample_ddim, 10)


def _gaussian_ode_error(kind: str, mu: float, sd: float, steps: int, spacing: str) -> float:
    """Max error at t = 0 of DPM-Solver++ on data N(mu, sd^2), against the closed-form ODE solution (float64)."""
    s = Schedule.from_config(ScheduleConfig(kind, T=1000))
    ab = s.alpha_bar.double()

    def eps_fn(x_t, t):
        a = ab[t].view(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x_t - a.sqrt() * mu) / (a * sd**2 + 1 - a)

    x_T = torch.randn(2000, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    std = lambda t: (ab[t] * sd**2 + 1 - ab[t]).sqrt()  # noqa: E731
    exact = ab[0].sqrt() * mu + std(0) * (x_T - ab[-1].sqrt() * mu) / std(-1)
    at_0 = {}
    sample_dpmpp_2m(eps_fn, s, x_T=x_T, steps=steps, clip_x0=False, progress=False, spacing=spacing,
                    callback=lambda d: at_0.update(x=d["x_t"]) if d["t_next"] == 0 else None)
    return float((at_0["x"] - exact).abs().max())


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_the_log_snr_grid_is_far_more_accurate_on_narrow_data(kind):
    """Data N(0, 0.1^2), closer to MNIST's narrow pixel distributions than N(0.3, 0.5^2): on the log-SNR grid
    DPM-Solver++'s error is 20-140x smaller than on the default grid, even in t (measured: linear
    0.004 / 0.0006 against 0.16 / 0.08 at 20 / 40 steps; cosine 0.004 / 0.0014 against 0.087 / 0.031). On the
    wider N(0.3, 0.5^2) with the cosine schedule the even-t grid is the better one (20 steps: 0.006 against
    0.034): the grid's benefit depends on the data, and was chosen on the shipped models (chapter 05)."""
    for steps in (20, 40):
        assert _gaussian_ode_error(kind, 0.0, 0.1, steps, "logsnr") < \
            _gaussian_ode_error(kind, 0.0, 0.1, steps, "linspace") / 10, steps


def test_every_sampler_steps_on_the_grid_it_is_given():
    """Each sampler defaults to DDIM's grid, even in t, and visits the log-SNR grid when asked."""
    from diffusion_lite.sampling import sample_ddpm, timesteps

    s = Schedule.from_config(ScheduleConfig("cosine", T=1000))
    fn = lambda x_t, t: torch.zeros_like(x_t)  # noqa: E731
    for sampler in (sample_ddpm, sample_ddim, sample_dpmpp_2m):
        for spacing in (None, "linspace", "logsnr"):
            seen = []
            kw = {} if spacing is None else {"spacing": spacing}
            sampler(fn, s, shape=(1, 1, 2, 2), steps=10, progress=False, generator=torch.Generator().manual_seed(0),
                    callback=lambda d, seen=seen: seen.append(d["t"]), **kw)
            assert seen == timesteps(s, 10, spacing or "linspace"), (sampler.__name__, spacing)
    assert timesteps(s, 10, "logsnr") == [999, 995, 986, 953, 836, 517, 177, 45, 8, 0]


def test_multistep_arguments_are_checked(gen):
    s = Schedule.from_config()
    x, e = torch.randn(2, 1, 4, 4, generator=gen), torch.randn(2, 1, 4, 4, generator=gen)
    with pytest.raises(ValueError, match="give x0_last and t_last together"):
        dpmpp_2m_step(s, x, _t(500, 2), _t(400, 2), e, x0_last=x)
    with pytest.raises(ValueError, match=r"t_last \(400\) must be a larger, noisier step than t \(500\)"):
        dpmpp_2m_step(s, x, _t(500, 2), _t(300, 2), e, x, _t(400, 2))


def test_half_precision_chains_are_updated_in_float32(gen):
    s = Schedule.from_config(ScheduleConfig("cosine", T=1000))
    x0 = torch.rand(2, 1, 4, 4, generator=gen) * 2 - 1
    fn = lambda x_t, t: predict_eps_from_x0(s, x_t.float(), t, x0).to(x_t.dtype)  # noqa: E731
    out = sample_dpmpp_2m(fn, s, shape=x0.shape, steps=10, generator=gen, progress=False, dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    torch.testing.assert_close(out.float(), x0, atol=2e-2, rtol=0)


def test_samples_do_not_depend_on_the_batch_size():
    """Deterministic given x_T (drawn once for all batches): what `sample --batch-size` and `evaluate` rely on."""
    from diffusion_lite.checkpoints import load_pretrained
    from diffusion_lite.evaluation import generate

    pipe = load_pretrained("mnist-uncond")
    one, two = (generate(pipe, 4, None, steps=4, sampler="dpm++2m", batch_size=b, progress=False) for b in (4, 2))
    # float rounding differs between batch sizes, and the first step's 1 / sqrt(alpha_bar) amplifies it: about
    # 1e-3 at most, the same for DDIM (eta 0); DDPM's fresh noise is drawn per batch, so its images change
    torch.testing.assert_close(one, two, atol=1e-2, rtol=0)  # (at 10 steps up to 7e-3)
    one, two = (generate(pipe, 4, None, steps=4, sampler="ddpm", batch_size=b, progress=False) for b in (4, 2))
    assert (one - two).abs().max() > 0.1
