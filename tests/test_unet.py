import pytest
import torch

from diffusion_lite.config import UNetConfig, cifar_unet_config
from diffusion_lite.layers import timestep_embedding
from diffusion_lite.unet import UNet


def test_mnist_shapes():
    m = UNet(UNetConfig())
    x = torch.randn(3, 1, 28, 28)
    out = m(x, torch.tensor([0, 10, 999]))
    assert out.shape == x.shape
    assert 0.2e6 < m.num_parameters() < 3e6


def test_cifar_shapes():
    m = UNet(cifar_unet_config(base_channels=32, num_res_blocks=1))
    x = torch.randn(2, 3, 32, 32)
    assert m(x, torch.tensor([1, 2])).shape == x.shape


def test_text_unet_cross_attention_shapes_and_masking(gen):
    cfg = UNetConfig(base_channels=16, channel_mults=(1, 2, 2), attn_resolutions=(), cross_attn_resolutions=(7, 14),
                     context_dim=12)
    m = UNet(cfg)
    for p in m.parameters():  # zero-initialised output layers would hide the effect of the text
        torch.nn.init.normal_(p, std=0.05) if p.dim() > 1 else None
    x = torch.randn(2, 1, 28, 28, generator=gen)
    t = torch.tensor([3, 500])
    ctx = torch.randn(2, 6, 12, generator=gen)
    mask = torch.tensor([[True] * 3 + [False] * 3, [True] * 6])
    with m.capture_attention() as maps:
        out = m(x, t, ctx, mask)
    assert out.shape == x.shape
    resolutions = sorted({r["resolution"] for r in maps})
    assert resolutions == [7, 14]
    for r in maps:
        probs = r["probs"]  # (B, heads, HW, L)
        assert probs.shape[0] == 2 and probs.shape[2] == r["resolution"] ** 2 and probs.shape[3] == 6
        torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))
        assert probs[0, :, :, 3:].abs().max() == 0, "padding tokens must get zero attention"
    # changing a padded token changes nothing; changing a real token changes the output
    ctx2 = ctx.clone()
    ctx2[0, 4] += 10
    torch.testing.assert_close(m(x, t, ctx2, mask)[0], out[0])
    ctx3 = ctx.clone()
    ctx3[0, 1] += 10
    assert (m(x, t, ctx3, mask)[0] - out[0]).abs().max() > 1e-4
    assert all(mod.capture is None for mod in m.modules() if hasattr(mod, "capture"))


def test_bad_inputs_are_clear_errors():
    m = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2, 2), attn_resolutions=()))
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, 1, 28, 28\)"):
        m(torch.randn(2, 3, 32, 32), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="t must have shape"):
        m(torch.randn(2, 1, 28, 28), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="without text conditioning"):
        m(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="cannot be halved"):
        UNetConfig(image_size=30, channel_mults=(1, 2, 2, 2))
    with pytest.raises(ValueError, match="need context_dim"):
        UNetConfig(cross_attn_resolutions=(7,))
    # a resolution the U-Net does not have would silently drop the block (a text model that ignores text)
    with pytest.raises(ValueError, match=r"no level at \[5\] pixels; its levels are \[28, 14, 7\]"):
        UNetConfig(cross_attn_resolutions=(5,), context_dim=64)
    with pytest.raises(ValueError, match="attn_resolutions"):
        UNetConfig(in_channels=3, image_size=32)  # the MNIST default (7,) has no 32-pixel counterpart


def test_timestep_embedding_distinguishes_steps():
    e = timestep_embedding(torch.arange(1000), 32)
    assert e.shape == (1000, 32)
    d = torch.cdist(e[::100], e[::100])
    assert (d + torch.eye(10) * 10).min() > 0.1


def test_config_roundtrip():
    cfg = UNetConfig(cross_attn_resolutions=(7,), context_dim=64, attn_resolutions=())
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown field"):
        UNetConfig.from_dict({"bogus": 1})
