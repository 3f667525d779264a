import pytest
import torch

from diffusion_lite.config import ScheduleConfig
from diffusion_lite.schedules import (
    Schedule,
    cosine_betas,
    forward_chain,
    linear_betas,
    predict_eps_from_x0,
    predict_x0_from_eps,
    q_posterior_mean_variance,
    q_sample,
)
from diffusion_lite.utils import randn


@pytest.mark.parametrize("kind", ["linear", "cosine", "sigmoid"])
@pytest.mark.parametrize("T", [10, 1000])
def test_alpha_bar_monotone_in_unit_interval(kind, T):
    s = Schedule.from_config(ScheduleConfig(kind, T=T))
    ab = s.alpha_bar.double()
    assert ab.shape == (T,)
    assert (ab > 0).all() and (ab < 1).all()
    assert (ab[1:] < ab[:-1]).all(), "alpha_bar must strictly decrease"
    assert s.betas.dtype == torch.float32
    assert ab[-1] < 0.05, "the last step should be (almost) pure noise"


def test_cosine_vs_linear_endpoints():
    lin = Schedule.from_config(ScheduleConfig("linear", T=1000))
    cos = Schedule.from_config(ScheduleConfig("cosine", T=1000))
    # both start almost noise-free and end almost pure noise ...
    assert lin.alpha_bar[0] > 0.999 and cos.alpha_bar[0] > 0.999
    assert lin.alpha_bar[-1] < 1e-4 and cos.alpha_bar[-1] < 1e-4
    # ... but cosine destroys information more slowly in the middle (Nichol & Dhariwal, fig. 5)
    assert cos.alpha_bar[500] > lin.alpha_bar[500] + 0.3
    assert torch.allclose(linear_betas(1000)[[0, -1]], torch.tensor([1e-4, 0.02], dtype=torch.float64))
    assert cosine_betas(1000).max() <= 0.999


def test_unknown_schedule_kind():
    with pytest.raises(ValueError, match="unknown schedule kind 'quadratic'"):
        Schedule.from_config(ScheduleConfig("quadratic"))


def test_q_sample_matches_closed_form_statistics(gen):
    s = Schedule.from_config(ScheduleConfig("linear", T=1000))
    x0 = torch.full((20000, 1, 1, 1), 0.6)
    for t_val in (10, 300, 900):
        t = torch.full((x0.shape[0],), t_val)
        x_t = q_sample(s, x0, t, generator=gen)
        mean, var = s.sqrt_alpha_bar[t_val] * 0.6, 1 - s.alpha_bar[t_val]
        assert abs(x_t.mean() - mean) < 0.02
        assert abs(x_t.var() - var) < 0.03 * max(var, 0.05)


def test_markov_chain_agrees_with_closed_form(gen):
    s = Schedule.from_config(ScheduleConfig("cosine", T=100))
    x0 = torch.full((20000, 1, 1, 1), -0.8)
    chain = forward_chain(s, x0, keep=[20, 60], generator=gen)
    for t_val, x_t in chain.items():
        closed = q_sample(s, x0, t_val, generator=gen)
        assert abs(x_t.mean() - closed.mean()) < 0.03
        assert abs(x_t.std() - closed.std()) < 0.03


def test_posterior_coefficients(gen):
    s = Schedule.from_config(ScheduleConfig("linear", T=1000))
    ab, ab_prev, b = s.alpha_bar.double(), s.alpha_bar_prev.double(), s.betas.double()
    # beta~_t = (1 - ab_{t-1}) / (1 - ab_t) * beta_t   (DDPM eq. 7)
    torch.testing.assert_close(s.posterior_variance.double(), (1 - ab_prev) / (1 - ab) * b, rtol=1e-5, atol=1e-7)
    # the posterior mean of x_{t-1} given x_t, x_0 is consistent with the marginal of x_{t-1}:
    # E[x_{t-1} | x_0] = sqrt(ab_{t-1}) x_0 = c1 E[x_0] + c2 E[x_t | x_0]
    c1, c2 = s.posterior_mean_coef1.double(), s.posterior_mean_coef2.double()
    torch.testing.assert_close(c1 + c2 * ab.sqrt(), ab_prev.sqrt(), rtol=1e-5, atol=1e-6)
    # and its variance: Var[x_{t-1}] = c2^2 (1 - ab_t) + beta~_t = 1 - ab_{t-1}
    torch.testing.assert_close(c2**2 * (1 - ab) + s.posterior_variance.double(), 1 - ab_prev, rtol=1e-4, atol=1e-6)
    x0 = torch.randn(4, 1, 8, 8, generator=gen)
    t = torch.tensor([0, 5, 500, 999])
    x_t = q_sample(s, x0, t, generator=gen)
    mean, var, logvar = q_posterior_mean_variance(s, x0, x_t, t)
    assert mean.shape == x0.shape and var.shape == (4, 1, 1, 1)
    torch.testing.assert_close(mean[0], x0[0], atol=1e-4, rtol=0)  # t = 0: the posterior mean is x_0


def test_x0_eps_inversions_roundtrip(gen):
    s = Schedule.from_config()
    x0 = torch.rand(3, 1, 4, 4, generator=gen) * 2 - 1
    eps = torch.randn(3, 1, 4, 4, generator=gen)
    t = torch.tensor([1, 400, 950])
    x_t = q_sample(s, x0, t, noise=eps)
    torch.testing.assert_close(predict_x0_from_eps(s, x_t, t, eps), x0, atol=2e-3, rtol=0)
    torch.testing.assert_close(predict_eps_from_x0(s, x_t, t, x0), eps, atol=2e-3, rtol=0)


def test_bad_t_is_a_clear_error():
    s = Schedule.from_config(ScheduleConfig("linear", T=50))
    x0 = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"t must be in \[0, 50\)"):
        q_sample(s, x0, torch.tensor([0, 50]))
    with pytest.raises(ValueError, match="t must have shape"):
        q_sample(s, x0, torch.tensor([1, 2, 3]))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32])
def test_any_integer_dtype_of_t_gives_the_same_x_t(dtype, gen):
    s = Schedule.from_config(ScheduleConfig("linear", T=200))
    x0, noise = torch.randn(3, 1, 4, 4, generator=gen), torch.randn(3, 1, 4, 4, generator=gen)
    t = torch.tensor([0, 1, 120])  # a uint8 index tensor would otherwise be read as a boolean mask
    assert torch.equal(q_sample(s, x0, t.to(dtype), noise), q_sample(s, x0, t, noise))


def test_schedule_moves_between_devices():
    s = Schedule.from_config().to("cpu")
    assert s.alpha_bar.device.type == "cpu"


# ------------------------------------------------------------------ noise follows the generator's device
def _strict_randn(monkeypatch):
    """Make torch.randn as strict as on CUDA: a generator must live on the device it draws on."""
    real = torch.randn

    def randn(*shape, generator=None, device=None, **kw):
        if generator is not None and device is not None and torch.device(device) != generator.device:
            raise RuntimeError(f"Expected a '{torch.device(device).type}' device type for generator but found "
                               f"'{generator.device.type}'")
        return real(*shape, generator=generator, device=device, **kw)
    monkeypatch.setattr(torch, "randn", randn)


def test_randn_draws_on_the_generators_device_then_moves(monkeypatch):
    _strict_randn(monkeypatch)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(RuntimeError, match="device type for generator"):
        torch.randn((2, 3), generator=g, device="meta")  # what a CPU generator + CUDA tensor does on a GPU
    x = randn((2, 3), g, "meta", torch.float16)  # "meta" stands in for a GPU: another device than g's
    assert x.device.type == "meta" and x.dtype == torch.float16 and x.shape == (2, 3)
    y = randn((2, 3), torch.Generator().manual_seed(0))  # the same numbers on whichever device
    assert torch.equal(y, torch.randn((2, 3), generator=torch.Generator().manual_seed(0)))


def test_package_draws_noise_from_a_generator_only_through_utils_randn():
    """A direct torch.randn(..., generator=g, device=x.device) works on the CPU and fails on a GPU with
    the CPU generators the course uses (chapters 03, 05, 08 with get_device() == cuda)."""
    import re
    from pathlib import Path

    import diffusion_lite

    pkg = Path(diffusion_lite.__file__).parent
    offenders = [f"{p.name}:{i}" for p in sorted(pkg.glob("*.py")) if p.name != "utils.py"
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"torch\.randn\(.*generator=(?!torch\.Generator\(\))", line)]
    assert not offenders, f"draw noise with utils.randn (generator's device, then move): {offenders}"
