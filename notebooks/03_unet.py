# %% [markdown]
# # 03 · The U-Net: a network that predicts the noise
#
# Chapters 01 and 02 built the *forward* process: a clean digit $x_0$ becomes the noisy image
# $$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon, \qquad \epsilon \sim \mathcal N(0, I).$$
# To run the process backwards we need a network $\epsilon_\theta(x_t, t)$ that looks at a noisy image and the
# step $t$ and guesses the noise $\epsilon$ that was mixed in. Chapter 04 trains it; this chapter builds it.
#
# The job description already tells us a lot about the architecture:
#
# * **Input and output are images of the same size** (the noise has one value per pixel), so the network maps
#   $(B, 1, 28, 28) \to (B, 1, 28, 28)$.
# * **It must be precise at the pixel level** (noise is independent from pixel to pixel) *and* see the whole
#   image (to know that a blob is "the top of a 7", you need context).
# * **It must know $t$.** At $t = 10$ almost everything in $x_t$ is digit; at $t = 900$ almost everything is
#   noise. The same pixel value means different things at different noise levels.
#
# The answer used by DDPM (Ho et al. 2020) and by Stable Diffusion is a **U-Net** (Ronneberger et al. 2015):
# an encoder that shrinks the image to see more context, a decoder that grows it back, and *skip connections*
# that carry pixel detail across. We build it from its parts, then trace a batch through the whole thing.
#
# ## Learning goals
#
# * Know the parts of a diffusion U-Net and why each is there: 3×3 convolutions, GroupNorm, residual blocks,
#   the sinusoidal timestep embedding, FiLM (scale and shift by the embedding), down/up sampling, skip
#   connections and self-attention.
# * Read a **shape trace** of the network (every block's input and output shape, captured with forward hooks)
#   and count where the parameters are.
# * Follow a noisy digit through a *trained* U-Net and see what its feature maps look like at 28×28, 14×14
#   and 7×7, and how they change with the noise level $t$.
# * Compute a timestep embedding and a block's parameter count by hand and check them against the package.
#
# Who this is for: you know Python and a little PyTorch (`nn.Conv2d`, `nn.Module`), but not diffusion models.
# You need chapter 01 (the noisy image $x_t$ and its closed form); chapter 02 helps but is not required.

# %%
import inspect
import os

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lite.checkpoints import load_pretrained
from diffusion_lite.config import UNetConfig
from diffusion_lite.data import load_dataset
from diffusion_lite.layers import Downsample, ResBlock, SelfAttention2d, Upsample, timestep_embedding
from diffusion_lite.model_widgets import feature_maps_figure, feature_maps_widget
from diffusion_lite.schedules import q_sample
from diffusion_lite.unet import UNet
from diffusion_lite.utils import get_device, seed_everything
from diffusion_lite.viz import format_shape_trace, shape_trace, show_grid

FULL = os.environ.get("DIFFUSION_LITE_FULL") == "1"
torch.set_num_threads(1)  # small models: one thread is nearly as fast, and robust on a busy machine
g = seed_everything(0)
device = get_device()
mnist = load_dataset("mnist", "test", subset=1000, balanced=True)
x0 = mnist.images[:8]  # (8, 1, 28, 28) in [-1, 1]
print(f"device: {device}, digits: {tuple(x0.shape)}")

# %% [markdown]
# ## 1. Convolutions: local, shared, shape-preserving
#
# A 3×3 convolution computes each output pixel from the 3×3 neighbourhood of the input, with the *same*
# weights everywhere in the image. With `padding=1` the height and width do not change, so we can stack as
# many as we like. A convolution from $C_\text{in}$ to $C_\text{out}$ channels has
# $C_\text{in} \cdot C_\text{out} \cdot 3 \cdot 3$ weights plus $C_\text{out}$ biases, however large the
# image is. The first layer of our U-Net, `conv_in`, lifts the single grey channel to 32 feature channels:

# %%
# NBVAL_CHECK_OUTPUT
conv = nn.Conv2d(1, 32, kernel_size=3, padding=1)
print("input :", tuple(x0.shape))
print("output:", tuple(conv(x0).shape))
print("parameters:", sum(p.numel() for p in conv.parameters()), "= 1*32*3*3 weights + 32 biases")

# %% [markdown]
# A trained network's first layer is a bank of little edge detectors. The shipped model is narrower than this
# default (16 channels at 28×28; section 8). Here are 8 of its 16 feature maps that
# the `conv_in` layer of the shipped pretrained model `mnist-uncond` (trained with chapter 04's recipe; its
# model card gives the commands) computes for one
# digit (each map on its own colour scale, white = 0):

# %%
pipe = load_pretrained("mnist-uncond", device)
unet_trained = pipe.unet
with torch.no_grad():
    feats = unet_trained.conv_in(x0[:1].to(device))[0].cpu()  # (C, 28, 28)
fig, axes = plt.subplots(1, 9, figsize=(11, 1.6))
show_grid(x0[:1], ax=axes[0], title="input")
for k, ax in enumerate(axes[1:]):
    v = feats[k].abs().max()  # a symmetric colour scale per map, so white is exactly 0
    ax.imshow(feats[k], cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
    ax.set_title(f"channel {k}", fontsize=9)
    ax.set_axis_off()
fig.suptitle("conv_in of the trained U-Net: one digit -> feature maps (red > 0 > blue)", y=1.05)
plt.show()

# %% [markdown]
# Several channels respond with opposite signs on the two sides of a stroke (red on one side, blue on the
# other), each for a different direction: they detect edges. The flat background of each map is what the channel
# outputs for a uniformly black patch (pixel value $-1$): its bias minus the sum of its nine weights. The thin
# frame around some maps comes from the zero padding: at the border part of the $3 \times 3$ window sees zeros
# instead of the background's $-1$, so those pixels get a different value, even on an empty image.

# %% [markdown]
# ## 2. Normalisation: GroupNorm
#
# Deep networks train better when the activations entering each layer are normalised. Batch normalisation
# averages over the *batch*, which is a poor fit here: a training batch mixes images at $t = 5$ and $t = 950$,
# whose statistics have nothing in common, and at sampling time, when every image of the batch is at the same
# $t$, the running averages it then uses were pooled over all $t$ and fit none of them.
# **GroupNorm** (Wu & He 2018) instead normalises each image on its own, over groups of channels: the $C$
# channels are split into $G$ groups (our U-Net uses $G = 8$) and every group of every image gets mean 0 and
# variance 1, followed by a learned per-channel scale and shift. So an image's output does not depend on the
# rest of the batch:

# %%
gn = nn.GroupNorm(num_groups=8, num_channels=32)
h = conv(x0)  # (8, 32, 28, 28)
out = gn(h)
per_group = out.reshape(out.shape[0], gn.num_groups, -1)  # (B, groups, channels_per_group * H * W)
print(f"per-group mean: max |mean| = {per_group.mean(-1).abs().max():.1e}, std in "
      f"[{per_group.std(-1).min():.3f}, {per_group.std(-1).max():.3f}]")
torch.testing.assert_close(gn(h[:1]), out[:1])  # the same image alone or in a batch: same output
print("image 0 alone == image 0 inside the batch")

# %% [markdown]
# In the U-Net, GroupNorm is always followed by the SiLU non-linearity, $\mathrm{SiLU}(x) = x\,\sigma(x)$
# (Elfwing et al. 2018; "swish"), a smooth relative of ReLU.
#
# ## 3. Telling the network the time: the sinusoidal timestep embedding
#
# The step $t$ is an integer between 0 and 999. Feeding it in as one number would make it hard for the network
# to treat $t = 500$ and $t = 510$ as similar but $t = 10$ and $t = 500$ as very different. DDPM borrows the
# trick the Transformer (Vaswani et al. 2017) used for token positions: represent $t$ by sines and cosines at
# geometrically spaced frequencies. For an embedding of (even) width $d$, with $k = 0, \dots, d/2 - 1$,
# $$
# \mathrm{emb}(t)_k = \cos(t\,f_k), \qquad \mathrm{emb}(t)_{d/2 + k} = \sin(t\,f_k), \qquad
# f_k = 10000^{-k/(d/2)} .
# $$
# The first channels oscillate fast (they tell nearby steps apart), the last ones slowly (they say "early" or
# "late"). Here is the package's implementation:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(timestep_embedding))

# %%
ts = torch.arange(1000)
emb = timestep_embedding(ts, 32)  # (1000, 32), the width our U-Net uses (base_channels = 32)
sim = F.normalize(emb, dim=1) @ F.normalize(emb, dim=1).T  # (1000, 1000) cosine similarity

fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.8))
im = axes[0].imshow(emb.T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
axes[0].set(xlabel="time step t", ylabel="embedding channel", title="timestep_embedding(t, 32)")
fig.colorbar(im, ax=axes[0])
for k, ls in zip((4, 8, 12), ("-", "--", ":")):  # line styles: not colour alone
    axes[1].plot(ts, emb[:, k], ls=ls, label=f"channel {k}: cos(t f), f = {10000 ** (-k / 16):.3g}")
axes[1].set(xlabel="time step t", ylabel="value", title="a few channels: fast to slow", ylim=(-1.1, 1.6))
axes[1].legend(fontsize=9, loc="upper right")
for t0, ls in zip((100, 500, 900), ("-", "--", ":")):  # line styles and labels at the peaks: not colour alone
    axes[2].plot(ts, sim[t0], lw=1, ls=ls, label=f"t' = {t0}")
    axes[2].annotate(f"t' = {t0}", (t0, 1.0), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=9)
axes[2].set(xlabel="time step t", ylabel="cosine similarity", title="similarity of emb(t) to emb(t')",
            ylim=(-0.3, 1.35))
axes[2].legend(fontsize=9, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2), handlelength=2.5, frameon=False)
fig.tight_layout()
plt.show()

# %% [markdown]
# The right panel shows what this buys: every step gets its own code, most similar to those of its immediate
# neighbours (the peaks) and clearly different from steps further away. The fast channels (top of each half in
# the left panel) make the peaks narrow, so nearby steps can be told apart; the slow channels (the smooth bands
# at the bottom of each half) carry a coarse "how far along are we" signal. The U-Net passes this
# fixed embedding through a small MLP (`time_mlp`: Linear, SiLU, Linear, widening 32 to 128 channels), and
# the resulting vector is handed to every residual block.
#
# ## 4. The residual block, and FiLM: how $t$ changes the computation
#
# The workhorse of the U-Net is the residual block (He et al. 2016): two 3×3 convolutions whose result is
# *added* to the input, $y = \mathrm{skip}(x) + F(x)$. Gradients flow through the `+` untouched, which is
# what lets deep networks train. Ours follows guided-diffusion (Dhariwal & Nichol 2021):
#
# $$h = \mathrm{conv}_1(\mathrm{SiLU}(\mathrm{GN}(x))), \qquad
# (\gamma, \beta) = \mathrm{Linear}(\mathrm{SiLU}(\mathrm{emb})), \qquad
# h \leftarrow \mathrm{GN}(h)\,(1 + \gamma) + \beta,$$
# $$y = \mathrm{skip}(x) + \mathrm{conv}_2(\mathrm{dropout}(\mathrm{SiLU}(h))).$$
#
# (FiLM's own names for scale and shift: this $\beta$ has nothing to do with the noise schedule's $\beta_t$.)
# The middle line is **FiLM** (feature-wise linear modulation, Perez et al. 2018): the time embedding does not
# get concatenated to the image, it *scales and shifts every channel*. A channel that detects fine strokes can
# be turned up when little noise is left and turned down when the image is mostly noise. `skip` is the
# identity when the channel count stays the same, otherwise a 1×1 convolution. The source:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(ResBlock))

# %% [markdown]
# Two details are worth a closer look. First, `conv2` is created by `zero_module`, so its weights start at
# zero: the residual branch of a fresh block outputs 0, so a block whose input and output widths match is
# exactly the identity (one that changes the width passes its input through the 1×1 `skip` convolution). Every
# block starts by passing on what it is given and gradually learns what to add.

# %%
block = ResBlock(32, 32, emb_dim=128)
h = torch.randn(4, 32, 28, 28, generator=g)
t_emb = torch.randn(4, 128, generator=g)
torch.testing.assert_close(block(h, t_emb), h)
print("a freshly initialised ResBlock(32 -> 32) returns its input unchanged")

# %% [markdown]
# Second, FiLM in a *trained* network. We listen in on the `Linear` layer that produces $(\gamma, \beta)$ in
# the first residual block of `mnist-uncond`, with a forward hook (a function PyTorch calls with a layer's
# input and output right after its `forward`; section 8 uses them again), while the network looks at one digit
# noised to different steps $t$. The gains depend on $t$ alone (they are computed from the timestep embedding,
# never from the image), so any digit would give the same curves. Each line is one channel's gain
# $1 + \gamma$ as a function of $t$:

# %%
film_block = unet_trained.down[0][0]  # the first ResBlock of the trained U-Net
captured = []
handle = film_block.emb.register_forward_hook(lambda mod, inp, out: captured.append(out.detach().cpu()))
t_grid = torch.arange(0, 1000, 25)
x_t = q_sample(pipe.schedule, x0[:1].expand(len(t_grid), -1, -1, -1).to(device), t_grid.to(device), generator=g)
with torch.no_grad():
    unet_trained(x_t, t_grid.to(device))
handle.remove()
gamma, beta = captured[0].chunk(2, dim=1)  # 2 x (len(t_grid), C_out)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
for c in range(gamma.shape[1]):
    axes[0].plot(t_grid, 1 + gamma[:, c], lw=1)
    axes[1].plot(t_grid, beta[:, c], lw=1)
axes[0].set(xlabel="time step t", ylabel=r"gain $1 + \gamma_c(t)$", title="FiLM scale, one line per channel")
axes[1].set(xlabel="time step t", ylabel=r"shift $\beta_c(t)$", title="FiLM shift, one line per channel")
fig.suptitle(f"first ResBlock of the trained U-Net ({gamma.shape[1]} channels)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The curves vary smoothly with $t$, apart from small wiggles, and differ from channel to channel: the network
# has learned a per-channel volume knob driven by the noise level. Most knobs move fastest at small $t$, where
# little noise is left and fine detail decides the answer; over the noisy second half of the process they
# change only slowly.
#
# ## 5. Going down and coming back up
#
# Convolutions see only a 3×3 neighbourhood. To let information travel across the digit, the U-Net halves the
# resolution twice, 28 → 14 → 7 pixels: after that a 3×3 convolution covers 12×12 input pixels. `Downsample`
# is a stride-2 convolution; `Upsample` repeats every pixel twice in each direction (nearest neighbour) and
# smooths the blockiness with a 3×3 convolution. While the image shrinks the network widens it
# (`channel_mults`), which partly offsets the loss of pixels: a level with twice the channels has a quarter of
# the pixels, so the numbers per image still shrink towards the bottom (for the shipped model 12,544 → 6,272 →
# 3,136), but each remaining pixel carries a richer description of a larger neighbourhood.

# %%
# NBVAL_CHECK_OUTPUT
h = torch.randn(1, 32, 28, 28, generator=g)
down, up = Downsample(32), Upsample(32)
print("Downsample:", tuple(h.shape), "->", tuple(down(h).shape))
print("Upsample  :", tuple(down(h).shape), "->", tuple(up(down(h)).shape))

# %% [markdown]
# ## 6. Skip connections: the "U"
#
# The 7×7 bottleneck knows *what* the digit is but has lost *where exactly* each stroke edge is, and the noise
# we must predict lives at the single-pixel level. So every time the encoder produces a feature map, the U-Net
# keeps a copy; the decoder, on its way back up, **concatenates** the copy of the same resolution to its own
# features along the channel axis: `torch.cat([h, skip], dim=1)`. Each decoder block therefore receives more
# channels than it outputs (you will see `128 -> 64` and `96 -> 32` in the trace below). Drawn with the
# encoder on the left and the decoder on the right, the data flow is a "U":
#
# ```
# 28×28   x_t → conv_in → res ───────────────────────────────────────────→ res → res → conv_out → ε̂
#                            ↓ down                                      ↑ up
# 14×14                       res ──────────────────────────→ res → res ─┘
#                              ↓ down                        ↑ up
#  7×7                          res+attn → mid → res+attn → res+attn
# ```
#
# Every encoder output (conv_in, each ResBlock and each Downsample: 6 feature maps) is kept and concatenated
# into exactly one decoder block, last-in first-out.
#
# ## 7. Self-attention: every position talks to every other
#
# At the 7×7 level the U-Net adds self-attention (Vaswani et al. 2017). The feature map is read as
# $N = H W = 49$ tokens of width $C$; each token forms a query $q$, key $k$ and value $v$ (a 1×1 convolution
# makes all three), and every token takes a weighted average of all values,
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt d}\right) V,$$
# split over 4 heads of width $d = C/4$. Unlike a convolution, one attention layer connects the top of a digit
# with its bottom. The cost grows with $N^2$, which is why attention sits only at low resolution:

# %%
# NBVAL_CHECK_OUTPUT
for side in (28, 14, 7):
    n = side * side
    print(f"{side:>2}x{side:<2} feature map: {n:>4} tokens -> attention matrix of {n * n:>7,} entries per head")

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(SelfAttention2d))

# %% [markdown]
# Like the residual block it is residual (`x + proj(out)`) with a zero-initialised output projection, so it
# also starts as the identity.
#
# ## 8. The whole network: a shape trace
#
# `diffusion_lite.unet.UNet` assembles these parts from a `UNetConfig`. We build the default configuration and
# push a batch of two noisy images through it. `viz.shape_trace` registers a *forward hook* on every block (a
# function PyTorch calls right after the block's `forward`), records the shapes it saw, and removes the hooks
# again. Read it top to bottom: the time MLP, the encoder (`down`), the middle (`mid`), and the decoder (`up`),
# whose blocks receive the concatenated skips.

# %%
# NBVAL_CHECK_OUTPUT
cfg = UNetConfig()
torch.manual_seed(0)
unet = UNet(cfg)
print(cfg)
x_t = torch.randn(2, 1, 28, 28, generator=g)
t = torch.tensor([10, 900])
trace = shape_trace(unet, x_t, t)
print(format_shape_trace(trace))

# %% [markdown]
# Things to notice in the trace:
#
# * The output has exactly the input's shape: one noise value per pixel.
# * `time_mlp` turns the 32-wide sinusoidal code into the 128-wide vector every ResBlock receives.
# * The encoder records 6 feature maps (conv_in, 2 ResBlocks, 2 Downsamples, and the last level), and the
#   decoder has 6 blocks (`up.0` ... `up.5`), each of which concatenates one of them: `up.0.0` gets 64 + 64 =
#   128 channels, `up.4.0` gets 64 + 32 = 96.
# * Spatial size only changes at `Downsample` / `Upsample`.
#
# ### Where are the parameters?

# %%
# NBVAL_CHECK_OUTPUT
by_part: dict[str, int] = {}
by_type: dict[str, int] = {}
for r in trace:
    part = r["name"].split(".")[0]
    by_part[part] = by_part.get(part, 0) + r["params"]
    by_type[r["type"]] = by_type.get(r["type"], 0) + r["params"]
total = unet.num_parameters()
print(f"total: {total:,} parameters")
print("by part:")
for k, v in by_part.items():
    print(f"  {k:<10} {v:>9,}  ({100 * v / total:4.1f}%)")
print("by block type:")
for k, v in sorted(by_type.items(), key=lambda kv: -kv[1]):
    print(f"  {k:<16} {v:>9,}  ({100 * v / total:4.1f}%)")

# %%
fig, ax = plt.subplots(figsize=(11, 3.2))
names = [r["name"] for r in trace]
kinds = {"ResBlock": ("ResBlock", "C0", ""), "SelfAttention2d": ("attention", "C1", "//"),
         "Downsample": ("down/up", "C2", ".."), "Upsample": ("down/up", "C2", "..")}  # (legend, colour, hatch)
for i, r in enumerate(trace):
    label, color, hatch = kinds.get(r["type"], ("other", "C7", "xx"))
    ax.bar(i, r["params"], color=color, hatch=hatch, edgecolor="white", label=label)
by_label = dict(zip(*ax.get_legend_handles_labels()[::-1]))  # one legend entry per kind
order = [k for k in ("ResBlock", "attention", "down/up", "other") if k in by_label]
ax.legend([by_label[k] for k in order], order, fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))
ax.set_xticks(range(len(trace)), names, rotation=60, ha="right", fontsize=8)
ax.set(ylabel="parameters (log scale)", yscale="log", title="parameters per block")
fig.tight_layout()
plt.show()

# %% [markdown]
# Most parameters sit in the residual blocks of the low-resolution levels: a 3×3 convolution costs
# $9\,C_\text{in} C_\text{out}$, so doubling the width quadruples its size, while the image size does not
# enter at all (it only costs compute). The decoder is larger than the encoder because its blocks take the
# concatenated skips as input and because it has one more block per level.
#
# The shipped model `mnist-uncond` is a smaller variant of the same design (the config is stored in its
# checkpoint, so `load_pretrained` can rebuild it):

# %%
# NBVAL_CHECK_OUTPUT
print(unet_trained.cfg)
print(f"{unet_trained.num_parameters():,} parameters")

# %% [markdown]
# ### A sanity check before training
#
# `conv_out`, the last layer, is zero-initialised too. So an untrained U-Net predicts $\hat\epsilon = 0$ for
# every input, and its mean squared error against true noise $\epsilon \sim \mathcal N(0, I)$ is
# $\mathbb E[\epsilon^2] = 1$. When you train your own model (chapter 04), a first loss far from 1 means the
# target is not unit-variance noise (the wrong noise, or the wrong loss). It does not check the pixel range:
# the loss starts at 1 whatever the images are, images in $[0, 1]$ included (chapter 04's checklist; `fit`
# checks the range itself).

# %%
eps_hat = unet(x_t, t)
assert eps_hat.shape == x_t.shape and eps_hat.abs().max() == 0
print("untrained U-Net: eps_hat == 0 everywhere, shape", tuple(eps_hat.shape))

# %% [markdown]
# ## 9. Inside the trained U-Net: a digit's trip down and up
#
# The shape trace says what size the feature maps have; what do they *contain*? We push one noisy digit through
# the trained `mnist-uncond` and capture, with forward hooks again (`model_widgets.unet_features`), the output
# of every block. The figure shows, at the top, the clean digit, the input $x_t$, the network's output
# $\hat\epsilon$ and the noise that was really added; below, one row per stage of the "U": the last block of
# each encoder level (28×28, 14×14, 7×7), the end of the middle, and the last block of each decoder level on
# the way back up. Each row shows the first 6 channels of that block's output, red for positive, blue for
# negative, on one colour scale per row (its maximum $|h|$ is in the row label). This model is narrower than
# the default: 16, 32 and 64 channels at 28, 14 and 7 pixels.
#
# Here is a 7 at $t = 250$ of the model's cosine schedule ($\bar\alpha_t \approx 0.85$, a clearly visible digit
# under moderate noise; under chapter 01's linear schedule it would be 0.52); with a
# running kernel, the widget after it lets you pick the digit and $t$.

# %%
digits10 = torch.stack([mnist.images[mnist.labels == k][0] for k in range(10)])  # one of each 0-9, (10, 1, 28, 28)
noise10 = torch.randn(digits10.shape, generator=g)  # one fixed noise image per digit
fig = feature_maps_figure(unet_trained, pipe.schedule, digits10[7:8], noise10[7:8], t=250)
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
feature_maps_widget(unet_trained, pipe.schedule, digits10, noise10, t=250, index=7, labels=range(10))

# %% [markdown]
# Read the figure from top to bottom, which is the order of the computation:
#
# * **Encoder, 28×28.** The first maps are still pixel-precise: they trace the strokes of the 7, some by their
#   edges, and carry the speckle of the noise around them.
# * **Encoder, 14×14.** Half the resolution, and the speckle is mostly gone: single channels now respond to
#   parts of the digit, such as the diagonal stroke (channel 1) or the top bar (channel 2).
# * **7×7, encoder and middle.** Each position now stands for a 4×4 patch of the image, and attention has mixed
#   information across the whole digit; the maps are coarse blobs that say roughly where the ink is, and the 7
#   is hard to recognise in them. This is the "what and roughly where" level.
# * **Decoder, 14×14.** On the way back up, the skip connection from the encoder's 14×14 level brings the sharp
#   shape of the 7 back into the maps.
# * **Decoder, 28×28.** The last maps look like noise, and they should: from them `conv_out` assembles
#   $\hat\epsilon$, which is a noise image.
#
# Things to try with the widget: move $t$ towards 999 and watch the 28×28 encoder maps fill with noise while the
# 7×7 maps still show a coarse blob where the digit was; move it towards 0 and see which maps go quiet.

# %% [markdown]
# ## Exercise
#
# 1. **The timestep embedding by hand.** Compute the embedding of `t_ex = torch.tensor([0, 1, 250, 999])` (in
#    the next cell) with width 32 using only `torch.arange`, `torch.exp`/`**`, `torch.cos`, `torch.sin` and
#    `torch.cat`, following the formula in section 3; store the result as **`my_emb`**, shape (4, 32). The
#    check cell compares it with `layers.timestep_embedding(t_ex, 32)`.
# 2. **Count the parameters of a ResBlock.** Predict, with pen and paper, the number of parameters of
#    `ResBlock(16, 48, emb_dim=128)` (a block the U-Net above does not use, so the shape trace cannot tell you):
#    two GroupNorms (a scale and a shift per channel), `conv1` (16 → 48, 3×3), the FiLM `Linear` (128 → 2·48),
#    `conv2` (48 → 48, 3×3) and a 1×1 `skip` convolution (16 → 48, because the widths differ). All layers have
#    biases. Store your answer, an `int`, as **`predicted`**. The check cell builds the block and counts its
#    parameters; if you are off, it says whether you counted too many or too few, not the number.
#
# For each, write your answer in its "Your turn" cell and run it, then run the **check** cell below the
# collapsed solution. Skip the collapsed cells unless you want to see a solution: running one replaces your
# answer with the solution's.

# %%
# Your turn 1: compute my_emb (4, 32) in this cell, run it, then run the check cell below the collapsed
# solution. The time steps:
t_ex = torch.tensor([0, 1, 250, 999])
# my_emb = ...


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution 1 (running this cell replaces your my_emb with this one)
half = 32 // 2
freqs = 10000.0 ** (-torch.arange(half, dtype=torch.float32) / half)  # f_k, (16,)
args = t_ex[:, None].float() * freqs[None, :]  # (4, 16)
my_emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # (4, 32)

# %% tags=["check"]
# Check 1: your my_emb against layers.timestep_embedding
assert t_ex.tolist() == [0, 1, 250, 999], f"t_ex should be the time steps handed out, got {t_ex.tolist()}"
ref_emb = timestep_embedding(t_ex, 32)  # (4, 32)
assert my_emb.shape == ref_emb.shape, f"my_emb has shape {tuple(my_emb.shape)}, expected (4, 32)"
torch.testing.assert_close(my_emb, ref_emb, rtol=1e-4, atol=1e-4, check_dtype=False,  # float64 is fine too
                           msg=lambda m: f"my_emb differs from timestep_embedding (cos first, then sin):\n{m}")
print("timestep embedding matches layers.timestep_embedding")

# %%
# Your turn 2: store your prediction (an int) as predicted in this cell, run it, then run the check cell below
# the collapsed solution. The block: ResBlock(c_in, c_out, emb_dim=e) with
c_in, c_out, e = 16, 48, 128
# predicted = ...


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution 2 (running this cell replaces your predicted with this one)
predicted = (2 * c_in  # norm1: scale and shift per input channel
             + c_in * c_out * 9 + c_out  # conv1
             + e * 2 * c_out + 2 * c_out  # FiLM linear -> (gamma, beta)
             + 2 * c_out  # norm2
             + c_out * c_out * 9 + c_out  # conv2
             + c_in * c_out + c_out)  # 1x1 skip

# %% tags=["check"]
# Check 2: your predicted against the parameters of a real ResBlock(16, 48, emb_dim=128)
assert (c_in, c_out, e) == (16, 48, 128), f"the block handed out is ResBlock(16, 48, emb_dim=128), not {c_in, c_out, e}"
actual = sum(p.numel() for p in ResBlock(c_in, c_out, e).parameters())
assert predicted == actual, (f"{predicted:,} is not the parameter count of ResBlock(16, 48, emb_dim=128): "
                             f"{'too many' if predicted > actual else 'too few'}; count each layer's weights "
                             "and biases again")
print(f"ResBlock(16, 48, emb_dim=128): {actual:,} parameters, as predicted")

# %% [markdown]
# Going further (no solution given): build U-Nets with `channel_mults=(1, 2)` (one level fewer) or
# `attn_resolutions=()` (no attention), and compare their shape traces and parameter counts with the default.
# After chapter 04 you can train them and compare the losses.
#
# ## Summary
#
# * The noise predictor $\epsilon_\theta(x_t, t)$ is a **U-Net**: an encoder that halves the resolution
#   (28 → 14 → 7) while widening the channels, a middle, and a decoder that mirrors it; output shape = input
#   shape.
# * Its unit is the **residual block** (GroupNorm, SiLU, 3×3 conv, twice, plus a skip). GroupNorm normalises each
#   image on its own, so mixed-$t$ batches and batch size 1 are fine.
# * The step $t$ enters as a **sinusoidal embedding** (smooth in $t$, multi-scale), passed through an MLP and
#   applied in every residual block as a per-channel **scale and shift (FiLM)**.
# * **Skip connections** concatenate encoder features into the decoder, carrying pixel-level detail across the
#   bottleneck; **self-attention** at 7×7 gives every position a view of the whole digit, at a cost that grows
#   with the square of the number of positions.
# * Zero-initialised output layers make every residual branch start at zero and the whole untrained
#   network predict $\hat\epsilon = 0$ (loss 1).
# * Forward hooks let you look inside: in the trained model, the encoder's 28×28 and 14×14 maps trace the
#   strokes of the digit, the 7×7 maps are coarse blobs, and the decoder's last maps look like the noise it
#   predicts.
# * Next: chapter 04 trains this network to predict the noise.
#
# ## References
#
# * Ronneberger, Fischer & Brox 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation".
# * He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition".
# * Vaswani et al. 2017, "Attention Is All You Need" (sinusoidal position encoding, scaled dot-product
#   attention).
# * Perez, Strub, de Vries, Dumoulin & Courville 2018, "FiLM: Visual Reasoning with a General Conditioning Layer".
# * Wu & He 2018, "Group Normalization".
# * Elfwing, Uchibe & Doya 2018, "Sigmoid-Weighted Linear Units for Neural Network Function Approximation in
#   Reinforcement Learning" (SiLU).
# * Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (the U-Net of Appendix B).
# * Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis" (adaptive GroupNorm, attention at
#   several resolutions).
