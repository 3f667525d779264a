"""diffusion_lite.viz and trajectory_viz: grids, shape traces, loss curves, trajectory frames, animations."""

import base64
import io
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from diffusion_lite.config import ScheduleConfig, UNetConfig
from diffusion_lite.sampling import sample_ddim
from diffusion_lite.schedules import Schedule
from diffusion_lite.trajectory_viz import (
    TrajectoryRecorder,
    animate_trajectory,
    animation_html,
    select_frames,
    show_trajectory,
    trajectory_frame,
)
from diffusion_lite.unet import UNet
from diffusion_lite.viz import format_shape_trace, make_grid, plot_loss_curve, shape_trace, show_grid

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(14,), groups=4)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_make_grid_tiles_images_with_padding():
    x = -torch.ones(5, 1, 4, 4)  # black images on a white (255) background
    g = make_grid(x, nrow=3, padding=1)
    assert g.shape == (2 * 5 + 1, 3 * 5 + 1) and g.dtype == np.uint8
    assert g[1:5, 1:5].max() == 0 and g[0].min() == 255
    assert g[6:10, 11:15].min() == 255, "the 6th cell is empty"
    with pytest.raises(ValueError, match="B, C, H, W"):
        make_grid(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="batch of 0"):
        make_grid(torch.zeros(0, 1, 4, 4))


def test_shape_trace_follows_the_unet_and_removes_its_hooks():
    torch.manual_seed(0)
    unet = UNet(TINY)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0, 999])
    recs = shape_trace(unet, x, t)
    names = [r["name"] for r in recs]
    assert names[:2] == ["time_mlp", "conv_in"] and names[-2:] == ["norm_out", "conv_out"]
    by = {r["name"]: r for r in recs}
    assert by["time_mlp"]["out_shape"] == (2, 32)
    assert by["conv_in"]["out_shape"] == (2, 8, 28, 28)
    assert by["down.1.0"]["type"] == "Downsample" and by["down.1.0"]["out_shape"] == (2, 8, 14, 14)
    assert any(r["type"] == "SelfAttention2d" and r["out_shape"][-1] == 14 for r in recs)
    # the up path eats the skip connections: its first ResBlock sees twice the channels it outputs
    assert by["up.0.0"]["in_shape"][1] == 2 * by["up.0.0"]["out_shape"][1]
    assert recs[-1]["out_shape"] == tuple(x.shape)
    assert sum(r["params"] for r in recs) == unet.num_parameters()  # every parameter sits in one block
    assert all(not m._forward_hooks for m in unet.modules()), "hooks must be removed"
    table = format_shape_trace(recs)
    assert table.splitlines()[0].split() == ["block", "type", "input", "output", "params"]
    assert "(2, 1, 28, 28)" in table and len(table.splitlines()) == len(recs) + 2


def test_shape_trace_removes_hooks_when_the_forward_pass_fails():
    unet = UNet(TINY)
    with pytest.raises(ValueError):
        shape_trace(unet, torch.randn(2, 1, 20, 20), torch.tensor([0, 1]))
    assert all(not m._forward_hooks for m in unet.modules())


def test_plot_loss_curve_draws_one_labelled_line_per_history():
    ax = plot_loss_curve({"raw": [(10, 1.0), (20, 0.5)], "ema": [(10, 0.9), (20, 0.4)]})
    assert [ln.get_label() for ln in ax.get_lines()] == ["raw", "ema"]
    assert list(ax.get_lines()[1].get_xdata()) == [10, 20]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "training step"
    ax = plot_loss_curve([(1, 2.0), (2, 1.0)], logy=False)
    assert ax.get_legend() is None and ax.get_yscale() == "linear"
    with pytest.raises(ValueError, match="empty"):
        plot_loss_curve([])


def test_select_frames_spreads_evenly_and_keeps_the_ends():
    assert select_frames(50, 5) == [0, 12, 24, 37, 49]
    assert select_frames(3, 10) == [0, 1, 2]
    assert select_frames(7, 1) == [6]
    with pytest.raises(ValueError):
        select_frames(0, 3)


def _records():
    torch.manual_seed(0)
    s = Schedule.from_config(ScheduleConfig("cosine", T=100))
    rec = TrajectoryRecorder(max_images=3)
    out = sample_ddim(lambda x, t: torch.zeros_like(x), s, shape=(5, 1, 28, 28), steps=6,
                      generator=torch.Generator().manual_seed(0), callback=rec, progress=False)
    return rec, out


def test_trajectory_recorder_keeps_every_step_on_the_cpu():
    rec, out = _records()
    assert [r["i"] for r in rec.records] == list(range(6))
    assert rec.records[0]["t"] == 99 and rec.records[-1]["t"] == 0
    assert rec.records[-1]["x_t"].shape == (3, 1, 28, 28)
    torch.testing.assert_close(rec.records[-1]["x_t"], out[:3])


def test_trajectory_frame_and_static_figure():
    rec, _ = _records()
    f = trajectory_frame(rec.records[0], n_images=3, nrow=3, gap=4)
    grid = make_grid(rec.records[0]["x_t"], nrow=3)
    assert f.shape == (grid.shape[0], 2 * grid.shape[1] + 4) and f.dtype == np.uint8
    np.testing.assert_array_equal(f[:, : grid.shape[1]], grid)
    fig = show_trajectory(rec.records, num_frames=4, n_images=3)
    assert len(fig.axes) == 8
    # a column is one step: x0_hat predicted at t, and the state x_t it moved to (the sample after the last step)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    steps = [(rec.records[k]["t"], rec.records[k]["t_next"]) for k in select_frames(6, 4)]
    assert titles[:-1] == [f"t = {t} \u2192 {t_next}" for t, t_next in steps[:-1]]
    assert titles[-1] == "t = 0 \u2192 end" and steps[-1] == (0, -1)
    with pytest.raises(ValueError, match="no records"):
        show_trajectory([])


def test_show_trajectory_wraps_frames_into_pairs_of_rows():
    rec, _ = _records()
    fig = show_trajectory(rec.records, num_frames=5, n_images=2, ncols=3)  # frames 0-2 in rows 0-1, 3-4 in rows 2-3
    axes = np.array(fig.axes).reshape(4, 3)
    steps = [rec.records[k]["t"] for k in select_frames(6, 5)]
    assert [ax.get_title().split(" \u2192")[0] for ax in axes[[0, 0, 0, 2, 2], [0, 1, 2, 0, 1]]] == \
        [f"t = {t}" for t in steps]
    assert [len(ax.images) for ax in axes.flat] == [1] * 6 + [1, 1, 0] * 2  # the last pair of rows: one place empty
    assert not axes[2, 2].axison and not axes[3, 2].axison
    assert [ax.texts[0].get_text() for ax in axes[:, 0]] == ["$x_t$", r"$\hat{x}_0$"] * 2


def test_animation_html_is_a_javascript_player():
    rec, _ = _records()
    html = animate_trajectory(rec.records, num_frames=3, n_images=2)
    assert "<script" in html.data and "animation" in html.data.lower()
    # the title fits the frame (its text was clipped at both edges when it was one long line): at the default
    # size, the leftmost and rightmost pixel columns of the title band above the images are blank
    html = animate_trajectory(rec.records, num_frames=3, n_images=4)
    for png in re.findall(r"data:image/png;base64,([^\"]+)\"", html.data):
        with Image.open(io.BytesIO(base64.b64decode(png))) as im:
            frame = np.asarray(im.convert("L"))
        band = frame[: frame.shape[0] - 2 * trajectory_frame(rec.records[0], 4).shape[0]]  # above the images
        assert band.shape[0] >= 20 and band.min() < 128, "a title is drawn"
        assert band[:, :3].min() > 250 and band[:, -3:].min() > 250, "the title runs off the frame"
    frames = [np.zeros((8, 10), np.uint8), np.full((8, 10), 255, np.uint8)]
    pngs = re.findall(r"data:image/png;base64,([^\"]+)\"", animation_html(frames, scale=3).data)
    assert len(pngs) == 2
    with Image.open(io.BytesIO(base64.b64decode(pngs[0]))) as im:
        assert im.size == (30, 24), "one frame pixel -> scale x scale screen pixels"
    with pytest.raises(ValueError, match="titles"):
        animation_html(frames, ["only one"])
    with pytest.raises(ValueError, match="same shape"):
        animation_html([np.zeros((8, 8), np.uint8), np.zeros((9, 8), np.uint8)])


def test_show_grid_labels_sit_over_their_tiles():
    x = torch.zeros(6, 1, 28, 28)
    ax = show_grid(x, nrow=3, labels=["a", "b", "c"])
    assert [t.get_text() for t in ax.texts] == ["a", "b", "c"]
    # make_grid: 2 px padding before each 28 px tile, so tile c's centre is at 2 + c * 30 + 14
    assert [t.get_position()[0] for t in ax.texts] == [16, 46, 76]
    assert all(t.get_position()[1] < 2 for t in ax.texts)  # above the first row (image y grows downwards)


def test_save_grid_writes_the_format_of_its_extension_atomically(tmp_path, monkeypatch):
    from diffusion_lite.viz import save_grid

    imgs = torch.zeros(4, 1, 8, 8)
    assert save_grid(imgs, tmp_path / "a.JPG", nrow=2, scale=1).exists()
    with Image.open(tmp_path / "a.JPG") as im:
        assert im.format == "JPEG" and im.size == (2 * 10 + 2, 2 * 10 + 2)
    with pytest.raises(ValueError, match="cannot tell the image format of 'a.txt'"):
        save_grid(imgs, tmp_path / "a.txt")
    (tmp_path / "b.png").write_bytes(b"kept")
    monkeypatch.setattr(Image.Image, "save", lambda self, *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_grid(imgs, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes() == b"kept"  # a failed write leaves the old file, and no temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.JPG", "b.png"]
