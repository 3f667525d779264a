# %% [markdown]
# # 07 · Text conditioning with cross-attention
#
# [Chapter 06](06_clip.ipynb) gave us a text encoder that turns a prompt into one vector per token, vectors
# that know what "thick" or "seven" look like. The U-Net of [chapter 03](03_unet.ipynb) knows how to denoise
# images. This chapter connects the two: how does every pixel of a feature map get to read the prompt?
#
# The answer in Stable Diffusion (Rombach et al. 2022), Imagen, SDXL and many text-to-image models since is
# **cross-attention**: the image asks, the text answers. (The newest transformer models, Stable Diffusion 3 and
# FLUX.1, instead attend jointly over the text and image tokens together; chapter 00.) We take the layer apart,
# see where it sits in the U-Net, and then watch it at work in the shipped text-to-image model: which pixels look
# at which word, at every step of the denoising, and what happens to the picture when we change a single word.
#
# ## Learning goals
#
# - Write cross-attention as an equation: queries from image features, keys and values from text tokens
#   (Rombach et al. 2022, sec. 3.3), and read its implementation in `diffusion_lite.layers`.
# - Explain why padding tokens must be masked, and check that the mask works.
# - Find the cross-attention layers in the U-Net and say at which resolutions they work.
# - Record cross-attention maps while sampling, average them over heads and layers, and read them per
#   token and per denoising step.
# - Predict what changes in a sample when one word of the prompt changes and the seed stays fixed.
#
# You should know the U-Net from [chapter 03](03_unet.ipynb), sampling from [chapter 05](05_sampling.ipynb)
# and the text encoder from [chapter 06](06_clip.ipynb).

# %%
import inspect
import math
import os

import matplotlib.pyplot as plt
import torch

from diffusion_lite import captions as C
from diffusion_lite.attention_viz import (
    attention_max,
    attention_steps_figure,
    attention_widget,
    sample_with_attention,
    token_comparison_figure,
    token_labels,
    token_maps,
    token_mass,
)
from diffusion_lite.checkpoints import load, load_pretrained  # noqa: F401 (load: see the next cell)
from diffusion_lite.clip import zero_shot_classify
from diffusion_lite.layers import CrossAttention, SpatialTransformer, attention
from diffusion_lite.utils import get_device, seed_everything
from diffusion_lite.viz import show_grid

FULL = os.environ.get("DIFFUSION_LITE_FULL") == "1"  # full mode: more sampling steps and more seeds
torch.set_num_threads(1)  # small models: one thread is nearly as fast, and robust on a busy machine
g = seed_everything(0)  # one generator for every random draw below
device = get_device()
steps = 50 if FULL else 30  # DDIM steps for every sample in this chapter

# %% [markdown]
# The shipped text-to-image model: a U-Net of about a million parameters trained on MNIST with the
# captions of chapter 06, conditioned on the frozen `mnist-clip` text encoder, which travels inside the
# pipeline (`pipe.text`).

# %%
pipe = load_pretrained("mnist-text2img", device)
# pipe = load("runs/t2i", device)  # or: your own run (`diffusion-lite train ... --text mnist-clip --out runs/t2i`)
tokenizer = pipe.text.tokenizer
print(f"U-Net: {pipe.unet.num_parameters():,} parameters; text encoder: {type(pipe.text).__name__}")

# %% [markdown]
# ## 1. What the U-Net receives
#
# `pipe.encode` runs the text encoder on a list of prompts and returns the **context**, one $D$-dimensional
# vector per token, and the **mask** of real tokens. Prompts are padded to the same length $L = 16$:

# %%
# NBVAL_CHECK_OUTPUT
context, mask = pipe.encode(["a thick seven", ""])  # (2, L, D), (2, L)
print("context:", tuple(context.shape), " mask:", tuple(mask.shape))
for p in ["a thick seven", ""]:
    print(f"{p!r:16} -> tokens {token_labels(tokenizer, p)}")
print("mask:", mask.int().tolist())

# %% [markdown]
# Every token vector has already read the tokens before it (the text encoder is a causal transformer), so
# the vector at "seven" is "seven, in the context of 'a thick'". The U-Net must now let each pixel pick out
# the tokens that concern it.
#
# ## 2. Cross-attention: the image asks, the text answers
#
# Flatten a feature map of the U-Net (computed from $x_t$), $(B, C, H, W)$, into $N = HW$ image tokens
# $X \in \mathbb R^{N \times C}$; write $Z \in \mathbb R^{L \times D}$ for the text tokens, the per-token outputs
# of chapter 06's text encoder for the prompt $y$ (before the pooling that gives its single vector $g(y)$).
# Cross-attention (Rombach et al. 2022, sec. 3.3) is the attention of [chapter 03](03_unet.ipynb) with its
# inputs split:
#
# The image features $X$ have $C$ channels per pixel; with $h$ **heads**, $Q$, $K$ and $V$ are cut into $h$
# slices of width $d = C/h$, and the formula below holds for each head on its own slice:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt d}\right) V,\qquad
# Q = X\, W_Q,\quad K = Z\, W_K,\quad V = Z\, W_V .$$
#
# (The paper writes $\varphi(z_t)$ and $\tau_\theta(y)$: its $z_t$ is a latent image, and its $\tau$ is not
# chapter 06's temperature.)
#
# - The **queries** come from the image: each pixel asks a question, a $d$-dimensional vector.
# - The **keys** come from the text: each token advertises what it is about.
# - The **values** come from the text too: what a token hands over to a pixel that attends to it.
#
# The attention matrix $A = \mathrm{softmax}(QK^\top/\sqrt d)$ has one row per pixel and one column per
# token; each row is a probability distribution over the $L$ tokens. The output for a pixel is the weighted
# mix of the token values, $(N, d)$ per head. The $h$ heads, each with its own $A$, are joined back to $C$
# channels and added to the image features through a residual connection. (In the code $W_Q$ is one
# $C \times C$ matrix, `self.q`, whose output is split into the heads after the projection.) Self-attention is the
# special case where keys and values come from the image as well.
#
# The package's attention function, shared by self- and cross-attention:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(attention))

# %% [markdown]
# and the cross-attention layer. `self.q` maps image channels $C$ to $C$, `self.kv` maps the text width $D$
# to keys and values; the `capture` list records $A$ when asked (section 4):

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(CrossAttention))

# %% [markdown]
# A fresh layer on a $7 \times 7$ feature map with 64 channels and our 16 text tokens:

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
xattn = CrossAttention(c=64, context_dim=pipe.text.context_dim, num_heads=4).to(device)
x_tokens = torch.randn(2, 7 * 7, 64, generator=torch.Generator().manual_seed(0)).to(device)  # (B, N = H*W, C)
xattn.capture = []  # record the attention probabilities
out = xattn(x_tokens, context, mask)
probs = xattn.capture[0]["probs"]  # (B, h, N, L)
xattn.capture = None
print("image tokens", tuple(x_tokens.shape), "+ text", tuple(context.shape), "-> output", tuple(out.shape))
print("attention probabilities (B, heads, N, L):", tuple(probs.shape))
print("each pixel's probabilities sum to 1:", torch.allclose(probs.sum(-1), torch.ones(())))

# %% [markdown]
# ## 3. Masking the padding
#
# The text encoder returns a vector at *every* position, padding included: "a thick seven" has 5 real
# tokens and 11 `<pad>` positions. Those 11 vectors are not blank. The encoder is causal, so every `<pad>`
# position has read the whole prompt (and the padding before it), and its vector depends on the prompt:

# %%
ctx_pair, _ = pipe.encode(["a thick seven", "a thin seven"])  # (2, L, D): same length, one word differs
cos_pair = torch.nn.functional.cosine_similarity(ctx_pair[0], ctx_pair[1], dim=-1)  # (L,) position by position
print("cosine between the two prompts' vectors at each position:")
for name, c in zip(token_labels(tokenizer, "a thick seven"), cos_pair[:5].tolist()):
    print(f"  {name:8s} {c:.2f}")
print(f"  <pad>    {cos_pair[5:].min():.2f} to {cos_pair[5:].max():.2f} (11 positions)")

# %% [markdown]
# Up to "a" the two prompts are the same, and so are their vectors (cosine 1.00): a position cannot see what
# comes after it. From the changed word on they differ, and so do the padded ones (cosines from 0.15 to 0.67):
# they carry the prompt. But nothing in training ever asked the padded positions to mean anything: CLIP's loss
# reads only the output at `<eos>` (chapter 06), so what they hold is a by-product. Without a mask, every pixel
# would spread some of its attention over these untrained vectors, and how much would depend on the prompt's
# length: 11 of 16 positions for "a thick seven", 14 for the empty prompt (2 real tokens out of 16, mostly
# padding). Short prompts would be diluted more than long ones, and the same words would act differently at
# different lengths. The mask sets the scores of padded positions to $-\infty$ before the softmax, so they get
# probability exactly 0:
#
# $$A_{nl} = \frac{\exp(s_{nl})\,[\,l \text{ real}\,]}{\sum_{l'} \exp(s_{nl'})\,[\,l' \text{ real}\,]},
# \qquad s = \frac{QK^\top}{\sqrt d}.$$

# %%
# NBVAL_CHECK_OUTPUT
q = torch.randn(2, 4, 49, 16, generator=g)  # (B, h, N, d): random queries for 2 prompts, 4 heads, 49 pixels
k, v = torch.randn(2, 2, 4, 16, 16, generator=g)  # (B, h, L, d) each: random keys and values for 16 tokens
_, p_masked = attention(q, k, v, mask.cpu(), return_probs=True)  # (B, h, N, L)
_, p_unmasked = attention(q, k, v, None, return_probs=True)
pad = ~mask.cpu()  # (2, L) True at padded positions
for i, p in enumerate(["a thick seven", ""]):
    on_pad_masked = (p_masked[i] * pad[i]).sum(-1)  # (h, N): attention each pixel puts on padding
    on_pad_unmasked = (p_unmasked[i] * pad[i]).sum(-1)
    print(f"{p!r:16} {int(pad[i].sum())} of 16 positions padded; attention on them: "
          f"with mask {on_pad_masked.max():.3f}, without {on_pad_unmasked.mean():.1f} on average")

# %% [markdown]
# And the consequence that matters: with the mask, what is stored in the padded positions cannot change
# the output. Overwrite them with garbage and compare:

# %%
garbage = context.clone()
garbage[~mask] = torch.randn(int((~mask).sum()), context.shape[-1], generator=g).to(device) * 10
with torch.no_grad():
    same = torch.allclose(xattn(x_tokens, context, mask), xattn(x_tokens, garbage, mask), atol=1e-5)
    changed = not torch.allclose(xattn(x_tokens, context), xattn(x_tokens, garbage), atol=1e-5)
print("with mask: output unchanged by the padding ->", same)
print("without mask: output changed by the padding ->", changed)
assert same and changed

# %% [markdown]
# ## 4. Where cross-attention sits in the U-Net
#
# Stable Diffusion does not use the bare layer. It wraps it in a transformer block, `SpatialTransformer`:
# self-attention among the pixels, cross-attention to the text, then a feed-forward layer, each with a
# LayerNorm in front and a residual connection around it; a 1×1 convolution (initialised to zero) projects
# the result back into the feature map, so a fresh block starts as the identity.

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(SpatialTransformer.forward))

# %% [markdown]
# Which blocks of our U-Net have one? Run a single forward pass inside `capture_attention()`; every
# cross-attention layer reports its name, its resolution and the shape of its attention matrix:

# %%
# NBVAL_CHECK_OUTPUT
cfg = pipe.unet.cfg
x_t = torch.randn(1, 1, 28, 28, generator=g).to(device)
with torch.no_grad(), pipe.unet.capture_attention() as records:
    pipe.unet(x_t, torch.tensor([500], device=device), context[:1], mask[:1])
xattn_params = sum(p.numel() for m in pipe.unet.modules() if isinstance(m, CrossAttention) for p in m.parameters())
print(f"cross_attn_resolutions={cfg.cross_attn_resolutions}, num_heads={cfg.num_heads}, context_dim={cfg.context_dim}")
for r in records:
    B, h, N, L = r["probs"].shape
    print(f"{r['layer']:16s} {r['resolution']}x{r['resolution']} feature map: {N} pixels x {L} tokens, {h} heads")
print(f"cross-attention parameters: {xattn_params:,} of {pipe.unet.num_parameters():,}")

# %% [markdown]
# Our U-Net (channel multipliers $1, 2, 4$ on a $28 \to 14 \to 7$ pyramid) has cross-attention only at the
# coarsest level, $7 \times 7$: in the last block of the down path, in the middle, and in the first two
# blocks of the up path. At $7 \times 7$ each pixel of the feature map sees a large part of the digit, which
# is where "seven" or "slanting right" is decided; the finer levels draw strokes that follow. Stable
# Diffusion (v1) puts cross-attention at three of its four levels, $64 \to 32 \to 16$ latent pixels, and in
# its $8 \times 8$ middle block, at much higher cost.
#
# The text reaches the U-Net by a second route as well: the masked mean of the token vectors is projected
# and added to the timestep embedding, which every residual block receives (a pooled text embedding, as in
# Imagen and SDXL). That route carries a global summary of the prompt; cross-attention lets each region
# read the tokens it needs.
#
# ## 5. Watching the attention while sampling
#
# `capture_attention()` records every layer call, so during sampling it collects, at every step, one
# $(2B, h, N, L)$ matrix per layer: classifier-free guidance (chapter 08) runs the prompt and the empty
# prompt as one batch of $2B$, and the first $B$ rows belong to the prompt. (The sampler then mixes the two
# noise predictions, $\hat\epsilon = \hat\epsilon(\varnothing) + s\,(\hat\epsilon(\text{prompt}) -
# \hat\epsilon(\varnothing))$, with guidance scale $s = 3$ below; chapter 08 explains why.) `token_maps` keeps
# those rows, averages over the heads and the four layers and reshapes to $(B, L, 7, 7)$; `sample_with_attention` does
# this after every step:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(token_maps))
print(inspect.getsource(sample_with_attention))

# %%
prompt = "a thick seven"
tokens = token_labels(tokenizer, prompt)  # ['<bos>', 'a', 'thick', 'seven', '<eos>']
images, frames = sample_with_attention(pipe, [prompt] * 4, guidance=3.0, steps=steps, generator=g)
print(f"{len(frames)} steps recorded; maps per step: {tuple(frames[0]['maps'].shape)} (B, L, 7, 7)")
show_grid(images, nrow=4, figsize=(5, 1.6), title=f'"{prompt}", guidance 3, {steps} DDIM steps')
plt.show()
assert torch.allclose(frames[-1]["maps"].sum(1), torch.ones(()), atol=1e-4)  # every pixel: 1 over the tokens

# %% [markdown]
# Now the maps of the first image, per token, at five steps from pure noise ($t = 999$) to the end. The first
# column is the model's current guess of the clean image, $\hat x_0$, and its outline is drawn as white lines
# over every map of the row (at $t = 999$ the guess is still noise, so the first row's outline means
# nothing); the colour is how much each pixel attends to that token, on **one scale for every panel** (the
# colour bar: 0 to the largest value in any map of this run, dark purple to yellow), so a bright panel is a
# token that is read a lot. The number in the corner is the token's share of all attention, the map's mean
# over the pixels:

# %%
show = sorted({0, len(frames) // 6, len(frames) // 3, 2 * len(frames) // 3, len(frames) - 1})
fig = attention_steps_figure(frames, tokens, show)  # vmax=None: one scale, 0 to attention_max of the run
plt.show()
vmax = attention_max(frames, len(tokens))  # the hottest pixel of the run, for image 0
print(f"colour scale 0 to {vmax:.2f} (the largest attention of one pixel to one token in any step)")

# %% [markdown]
# Read it column by column:
#
# - At the start ($t = 999$) $\hat x_0$ is still mostly noise, yet the pixels already attend most to the class word,
#   "seven": the first steps decide *what* to draw, and the class is the most informative token.
# - As the digit takes shape, the class word's share falls and `<bos>` gains weight (the shares are printed
#   above; "a" stays small). Those tokens carry no information: the text encoder is causal, so the vector at `<bos>`
#   is the same for every prompt, and so is the vector at a leading "a". Attending to them means "no text
#   needed here": a *sink* that lets a pixel take (almost) nothing from the prompt, as the first tokens do
#   in large transformers too (Xiao et al. 2024). Late steps only refine strokes; the prompt has done its
#   work.
# - The attribute word "thick" keeps a small share that grows as the strokes form, spread over the whole
#   image, only a little more on the digit than off it: thickness is a property of every stroke, not of one
#   place.
# - The maps are coarse, $7 \times 7$ upsampled to $28 \times 28$: each map pixel covers a $4 \times 4$
#   block of the image.
#
# The same story in numbers: the share of attention each token receives, averaged over all pixels, at
# every step:

# %%
mass = token_mass(frames)[:, : len(tokens)]  # (steps, tokens)
t_axis = [f["t"] for f in frames]
fig, ax = plt.subplots(figsize=(6.5, 3.5))
styles = [("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ("-", "v")]  # told apart without colour, too
for j, tok in enumerate(tokens):
    ls, marker = styles[j % len(styles)]
    ax.plot(t_axis, mass[:, j], ls=ls, marker=marker, ms=4, markevery=3, label=tok)
ax.invert_xaxis()
ax.set_xlabel("timestep t (sampling runs from left to right)")
ax.set_ylabel("share of attention")
ax.set_title(f'Cross-attention per token while sampling "{prompt}"')
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), title="token")
plt.show()
print("share at the first and last step:", {t: f"{mass[0, j]:.2f} -> {mass[-1, j]:.2f}" for j, t in enumerate(tokens)})

# %% [markdown]
# Explore the steps yourself. The static figure shows the middle step; the slider (with a running kernel)
# moves through all of them:

# %%
fig = attention_steps_figure(frames, tokens, [len(frames) // 2])  # same colour scale as above
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
attention_widget(frames, tokens)

# %% [markdown]
# ## 6. Change one word, keep the seed
#
# Fix the starting noise $x_T$ and change a single word. The sampler is deterministic (DDIM with
# $\eta = 0$), so any difference comes from the word alone. Six starting noises (the columns;
# "per seed" below), four prompts:

# %%
n_seeds = 8 if FULL else 6
prompts = ["a thick seven", "a thin seven", "the digit seven", "the digit one"]
x_T = torch.randn(n_seeds, 1, 28, 28, generator=g)  # one starting noise per column, shared by every row
batch = [p for p in prompts for _ in range(n_seeds)]
swap = pipe.sample(batch, guidance=3.0, steps=steps, x_T=x_T.repeat(len(prompts), 1, 1, 1), progress=False)
fig, axes = plt.subplots(len(prompts), 1, figsize=(n_seeds * 0.9, 1.35 * len(prompts)))
for ax, p, imgs in zip(axes, prompts, swap.split(n_seeds)):
    show_grid(imgs, nrow=n_seeds, ax=ax)
    ax.set_title(f'"{p}"', fontsize=9)
fig.suptitle("same x_T in every column", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# Measure what changed: the stroke thickness (chapter 06's `captions.thickness`, in pixels) and the class
# that the CLIP image encoder sees (zero-shot, as in chapter 06):

# %%
thick = C.thickness(swap).reshape(len(prompts), n_seeds)  # (prompts, seeds) in pixels
seen = zero_shot_classify(pipe.text, swap, C.class_prompts("mnist")).reshape(len(prompts), n_seeds)
for i, p in enumerate(prompts):
    print(f"{p!r:18} thickness {thick[i].mean():.2f} px (per seed {[round(v, 1) for v in thick[i].tolist()]}); "
          f"seen as {seen[i].tolist()}")
assert (thick[0] > thick[1]).float().mean() >= 0.8, "'thick' should draw thicker strokes than 'thin' from the same x_T"
assert (seen[3] == 1).float().mean() >= 0.5 and (seen[2] == 7).float().mean() >= 0.5

# %% [markdown]
# "Thick" and "thin" change the stroke width and little else: from the same $x_T$ the two sevens usually
# share their position and pose (rows 1 and 2, column by column). The layout of a sample is settled early,
# by the noise, while an attribute word acts on the strokes. Changing the class word changes much more:
# "seven" to "one" redraws the digit, and even then some columns keep a trace of the seed's pose.
#
# Where does the swapped word act? The attention to the word itself, thick versus thin, at the middle step:

# %%
pair, pair_frames = ["a thick seven", "a thin seven"], []
for p in pair:
    _, fr = sample_with_attention(pipe, [p], guidance=3.0, steps=steps, x_T=x_T[:1])
    pair_frames.append(fr)
mid = len(pair_frames[0]) // 2
fig = token_comparison_figure(pair_frames, pair, [token_labels(tokenizer, p) for p in pair], position=2, step=mid,
                              title="same x_T")  # token 2, the swapped word, on one colour scale for both maps
plt.show()

# %% [markdown]
# On one colour scale for both maps: "thick" is read much more than "thin" at this step (12% of all attention
# against 4%, in the titles), and neither at one spot: "thick" almost evenly over the whole image, background
# included (per pixel, about as much off the stroke as on it), "thin" a little, in the background around the
# stroke and hardly on it. Their maps differ even though $x_T$ is the
# same: by the middle step the pixels themselves differ (a thick stroke is under way in one image, a thin one in
# the other), so they ask different questions. An attention map shows where a word is *read*; it is not a
# segmentation of what the word produced.
#
# Prompt-to-Prompt (Hertz et al. 2022) turned this observation into an editing method: record the
# attention maps of the first prompt and inject them while sampling the edited prompt, so that the layout
# stays exactly the same and only the swapped word's content changes.
#
# ## Exercise
#
# Compute cross-attention probabilities by hand. The next cell takes the first cross-attention layer of the
# trained U-Net, `layer`, some image tokens `x` (random, shaped like its $7 \times 7$ feature map, $(B, N, C)$)
# and the context of two prompts of different lengths, `ctx` $(B, L, D)$ with its mask `ctx_mask` $(B, L)$.
# Build $q$ and $k$ with the layer's own projections (`layer.q`, `layer.kv`), split the $h$ = `layer.h` heads,
# and compute $\mathrm{softmax}(q k^\top / \sqrt d)$ with the padded tokens masked out. Store the result as
# **`my_probs`**, shape $(B, h, N, L)$, then run the **check** cell below the collapsed solution: it records
# the probabilities the layer itself computes (it appends them to `layer.capture` while that is a list, the
# mechanism behind `capture_attention()`) and compares them with yours. Skip the collapsed cell unless you want
# to see a solution: running it replaces your `my_probs` with the solution's.

# %%
# Your turn: compute my_probs (B, h, N, L) in this cell, run it, then run the check cell below the collapsed
# solution. The inputs:
layer = next(m for m in pipe.unet.modules() if isinstance(m, CrossAttention))
ctx, ctx_mask = pipe.encode(["a thick seven slanting right", ""])  # (2, L, D), (2, L)
C_img = layer.q.in_features  # image channels C
x = torch.randn(2, 49, C_img, generator=g).to(device)  # (B, N, C) image tokens
# my_probs = ...


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution (running this cell replaces your my_probs with this one)
B, N, _ = x.shape
L, h = ctx.shape[1], layer.h
d = C_img // h
with torch.no_grad():
    q = layer.q(x).reshape(B, N, h, d).transpose(1, 2)  # (B, h, N, d)
    k, v = layer.kv(ctx).reshape(B, L, 2, h, d).permute(2, 0, 3, 1, 4)  # 2 x (B, h, L, d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, h, N, L)
    scores = scores.masked_fill(~ctx_mask[:, None, None, :], float("-inf"))  # padded tokens: -inf
    my_probs = scores.softmax(dim=-1)  # (B, h, N, L), each row sums to 1

# %% tags=["check"]
# Check: your my_probs against the probabilities the layer computes itself
with torch.no_grad():
    layer.capture = []  # the layer appends {"probs": (B, h, N, L), ...} on every call while this is a list
    layer(x, ctx, ctx_mask)
    ref_probs = layer.capture[0]["probs"]
    layer.capture = None
torch.testing.assert_close(my_probs, ref_probs, msg=lambda m: (
    f"my_probs differs from the layer's own probabilities (scores scaled by 1/sqrt(d)? padding masked?):\n{m}"))
assert (my_probs[1, :, :, 2:] == 0).all(), 'the empty prompt "" has two real tokens: <bos> and <eos>'
print("my_probs matches the layer's own attention probabilities; shape", tuple(my_probs.shape))

# %% [markdown]
# *Going further:* (1) Compute the output `my_probs @ v`, merge the heads back to $(B, N, C)$ and apply
# `layer.out`; compare with `layer(x, ctx, ctx_mask)`. (2) With `sample_with_attention(..., branch="empty")`,
# look at the maps of the *empty* prompt (the second half of the guided batch): where do pixels look when
# there is nothing to read? (3) Sample "a seven slanting right" and plot the attention to "slanting" and
# "right" over the steps.
#
# ## Summary
#
# - Cross-attention lets every pixel of a feature map read the prompt: queries from the image, keys and
#   values from the text tokens, $\mathrm{softmax}(QK^\top/\sqrt d)\,V$ (Rombach et al. 2022, sec. 3.3). Its
#   attention matrix has one probability distribution over the tokens per pixel and head.
# - Padding is masked with $-\infty$ before the softmax, so padded positions get zero attention and cannot
#   influence the output, whatever they contain. Their vectors do depend on the prompt (the encoder is causal),
#   but nothing trained them to mean anything, and without the mask short prompts would be diluted more than
#   long ones. The empty prompt is `<bos> <eos>`.
# - In Stable Diffusion's transformer block (`SpatialTransformer`) cross-attention sits between
#   self-attention and a feed-forward layer. Our U-Net has four such layers, all at the $7 \times 7$ level;
#   a pooled text embedding also joins the timestep embedding.
# - Recorded while sampling, the maps show the class word dominating the early, noisy steps, and `<bos>`
#   acting as a "nothing to read here" sink later on.
# - With the seed fixed, changing an attribute word keeps the layout and changes the strokes; changing the
#   class word redraws the digit. Prompt-to-Prompt builds image editing on this.
#
# Next, [chapter 08](08_guidance.ipynb): how strongly to follow the prompt, with classifier-free guidance.
#
# ## References
#
# - Rombach, Blattmann, Lorenz, Esser & Ommer 2022, "High-Resolution Image Synthesis with Latent Diffusion
#   Models" (CVPR): cross-attention conditioning, sec. 3.3; the transformer block in the U-Net.
# - Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser & Polosukhin 2017, "Attention Is All You Need"
#   (NeurIPS): scaled dot-product and multi-head attention.
# - Hertz, Mokady, Tenenbaum, Aberman, Pritch & Cohen-Or 2022, "Prompt-to-Prompt Image Editing with Cross
#   Attention Control": per-token cross-attention maps, word swaps with a fixed seed.
# - Saharia et al. 2022, "Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding"
#   (Imagen): a pooled text embedding added to the timestep embedding, plus cross-attention.
# - Xiao, Tian, Chen, Han & Lewis 2024, "Efficient Streaming Language Models with Attention Sinks" (ICLR):
#   first tokens as attention sinks.
# - Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision": the CLIP
#   text encoder ([chapter 06](06_clip.ipynb)).
# - Ho & Salimans 2022, "Classifier-Free Diffusion Guidance": the guided batch of prompt and empty prompt.
