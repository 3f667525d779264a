# %% [markdown]
# # 00 · Introduction: images from noise
#
# Type "a thick seven" and, a few seconds later, you get a picture of a thick seven that never existed.
# Systems like Stable Diffusion, DALL-E 3 and FLUX.1 do this for photographs and paintings; this course
# builds one that does it for 28×28 handwritten digits, small enough to train and run on a laptop CPU, and
# explains every piece on the way.
#
# ## Learning goals
#
# - Describe how a diffusion model generates an image: it does not *draw*; it starts from pure Gaussian
#   noise and *removes* noise in many small steps, steered by the text.
# - Name the parts inside Stable Diffusion, DALL-E 3 and FLUX.1 (text encoder, denoising network, noise
#   schedule, sampler, guidance) and find the chapter of this course that builds each one.
# - Check your setup: device, versions, the data (offline), the pretrained models.
# - Know the dataset as the course sees it: MNIST digits as tensors with values in $[-1, 1]$.
# - Generate digits from a text prompt with the shipped model `mnist-text2img`, and explore prompts and
#   seeds yourself.
#
# **Who this is for.** You know Python and a little PyTorch (tensors, `nn.Module`, a training loop). You do
# not need to know anything about diffusion models, and the maths is introduced as we need it.

# %%
import inspect
import json
import os
import platform

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

import diffusion_lite
from diffusion_lite.captions import class_prompts, thickness
from diffusion_lite.checkpoints import PRETRAINED_DIR, list_pretrained, load_pretrained
from diffusion_lite.config import ScheduleConfig
from diffusion_lite.data import load_dataset
from diffusion_lite.metrics import conditional_accuracy, load_eval_classifier
from diffusion_lite.schedules import Schedule, q_sample
from diffusion_lite.text_viz import prompt_samples_figure, prompt_widget
from diffusion_lite.utils import from_uint8, get_device, seed_everything, to_uint8
from diffusion_lite.viz import show_grid

FULL = os.environ.get("DIFFUSION_LITE_FULL") == "1"  # full mode: more samples in the teaser
torch.set_num_threads(1)  # small tensors: one thread is as fast, and safe on a shared CPU
g = seed_everything(0)  # seeds Python, NumPy and torch; g is a torch.Generator for our own draws
device = get_device()  # cuda if available, then mps, else cpu
plt.rcParams["image.interpolation"] = "nearest"  # draw pixels as crisp squares

# %% [markdown]
# ## 1. The big picture: generation as denoising
#
# A generative model is a machine that turns random numbers into images. The older idea (GANs, Goodfellow et
# al. 2014) is a network that maps a random vector to an image in one shot. **Diffusion models** (Sohl-Dickstein
# et al. 2015; Ho, Jain & Abbeel 2020) take a detour that turns out to work much better (Dhariwal & Nichol 2021,
# "Diffusion Models Beat GANs on Image Synthesis"):
#
# 1. **Destroy.** Take a real image and add Gaussian noise to it, a little at a time, until nothing is left
#    but noise. This *forward process* is a fixed recipe; nothing is learned.
# 2. **Learn to undo.** Train a network to look at a noisy image and predict the noise in it, for every
#    noise level. That is an ordinary supervised regression problem: we made the noise, so we know the answer.
# 3. **Generate.** Start from an image of *pure* Gaussian noise and apply the network over and over: each
#    time, predict the noise, remove a bit of it, and repeat. After a few dozen steps (the sampler of chapter 05
#    skips most of the 1,000 noise levels) a clean image is left,
#    and it is a new one: it came from random noise, not from the training set.
#
# Here is the forward process applied to one digit (you will build it in chapters 01 and 02). Generation
# runs this film backwards. (The next cell reads a test digit from the MNIST copy in the repository's `data/`
# folder. If it stops with an error instead, the message says where it looked; section 3 checks the rest of
# your setup.)

# %%
schedule = Schedule.from_config(ScheduleConfig())  # the package default: cosine schedule, T = 1000 steps
test = load_dataset("mnist", "test")
digit = test.images[test.labels == 7][:1]  # one "7", (1, 1, 28, 28) in [-1, 1]
eps = torch.randn(digit.shape, generator=g)  # one noise image
ts = [0, 150, 300, 450, 600, 750, 999]
film = torch.cat([q_sample(schedule, digit, t, noise=eps) for t in ts])  # (7, 1, 28, 28)

fig, ax = plt.subplots(figsize=(11, 2.8))
show_grid(film, nrow=len(ts), ax=ax)
arrow = dict(arrowstyle="-|>", lw=2, mutation_scale=15)
ax.annotate("", xy=(0.98, 1.1), xytext=(0.02, 1.1), xycoords="axes fraction", annotation_clip=False,
            arrowprops={**arrow, "color": "C3"})
ax.text(0.5, 1.17, "forward process: add a little noise per step (fixed; chapters 01-02)", color="C3",
        transform=ax.transAxes, ha="center")
ax.annotate("", xy=(0.02, -0.1), xytext=(0.98, -0.1), xycoords="axes fraction", annotation_clip=False,
            arrowprops={**arrow, "color": "C0"})
ax.text(0.5, -0.25, "generation: remove a little noise per step (learned network; chapters 03-05)", color="C0",
        transform=ax.transAxes, ha="center")
for i, t in enumerate(ts):
    ax.text((i + 0.5) / len(ts), 1.0, f"t = {t}", transform=ax.transAxes, ha="center", va="bottom", fontsize=9)
plt.show()

# %% [markdown]
# **Why is this easier than drawing in one go?** Removing a *little* noise is a well-posed problem: given a
# slightly noisy 7, there is essentially one clean 7 it could have come from. Going from pure noise to a
# digit in one jump is not: every digit is equally plausible, and a network trained with squared error to guess would
# output the blurry average of all of them. Chapter 01 makes this precise.
#
# **Where does the text come in?** The network that predicts the noise also reads the prompt. At each step
# it is asked "what noise would you remove if this were *a thick seven*?", so the image that emerges from the
# noise is steered towards the prompt. Classifier-free guidance (chapter 08) exaggerates that steering.
#
# ### What Stable Diffusion, DALL-E 3 and FLUX.1 do inside
#
# All three follow the recipe above; they differ in the parts.
#
# - **Stable Diffusion** (Rombach et al. 2022, "latent diffusion"). A frozen **CLIP text encoder** (Radford et
#   al. 2021) turns the prompt into a sequence of vectors, one per token. A **U-Net** (about 860M parameters
#   in version 1) predicts the noise; its **cross-attention** layers let every image position read the text
#   vectors. To save compute it does not denoise pixels but a compressed **latent** image (a 512×512×3 image
#   is 64×64×4 in the latent space of an autoencoder), decoded to pixels at the end. Sampling uses about
#   20-50 steps with **classifier-free guidance** (Ho & Salimans 2022).
# - **DALL-E 3** (Betker et al. 2023) is also a diffusion model. Its architecture is only partly published; the
#   paper's main lesson is about *data*: training images were re-captioned with long, precise synthetic
#   captions, which made the model follow prompts far better. (In ChatGPT a language model also rewrites your
#   prompt into such a detailed caption.)
# - **FLUX.1** (Black Forest Labs 2024) replaces the U-Net by a large **transformer** (12B parameters) that
#   processes image patches and text tokens together, in a latent space, with text from T5 and CLIP encoders.
#   It is trained as a **rectified flow** (Liu et al. 2023; Lipman et al. 2023; Esser et al. 2024), a close
#   cousin of diffusion: noisy images are straight-line mixtures $(1-t)\,x_0 + t\,\epsilon$ of an image
#   $x_0$ and noise $\epsilon$, the network predicts the direction of that line, and the sampler follows
#   it back towards the data. Generation is still: start from Gaussian noise, take many small steps.
#
# | part | Stable Diffusion 1.x | this course (MNIST scale) | chapter |
# | --- | --- | --- | --- |
# | forward process, schedule | DDPM's, "scaled linear" betas, $T = 1000$ | DDPM's, cosine betas, $T = 1000$ | 01, 02 |
# | noise-predicting network | U-Net, ~860M parameters, 64×64×4 latents | U-Net, ~1M parameters, 28×28 pixels | 03, 04 |
# | sampler | DDIM / DPM-Solver, 20-50 steps | DDPM, DDIM and DPM-Solver++ | 05 |
# | text encoder | CLIP ViT-L/14 text transformer (frozen) | a small CLIP trained on digit captions (frozen) | 06 |
# | text conditioning | cross-attention in the U-Net | cross-attention in the U-Net | 07 |
# | guidance | classifier-free, scale ~7.5 | classifier-free | 08 |
# | editing | image to image ("strength"), inpainting | the same two, with the same U-Net | 08 |
# | evaluation | FID, CLIP score | FID in a digit classifier's features, accuracy | 09 |
# | latent autoencoder | VAE, 8× smaller per side | none: 28×28 pixels are small enough | - |
#
# ## 2. A map of the course
#
# Each chapter is one idea, in the order you need them; each calls the package `diffusion_lite`, where the
# code lives, and shows its source where the code is the lesson.
#
# | chapter | question it answers | package modules |
# | --- | --- | --- |
# | [00 Introduction](00_introduction.ipynb) | what is the plan? is my setup ok? | `data`, `checkpoints`, `text_viz` |
# | [01 The forward process](01_forward_process.ipynb) | how do we turn an image into noise? | `schedules` |
# | [02 Noise schedules](02_noise_schedules.ipynb) | how fast should the noise grow? | `schedules` |
# | [03 The U-Net](03_unet.ipynb) | which network predicts the noise, at every level? | `layers`, `unet` |
# | [04 Training](04_training.ipynb) | what loss teaches it, and what does training look like? | `train` |
# | [05 Sampling](05_sampling.ipynb) | how do we turn noise into an image in few steps? | `sampling` |
# | [06 CLIP](06_clip.ipynb) | how do we turn a sentence into vectors? | `tokenizer`, `clip`, `captions` |
# | [07 Cross-attention](07_cross_attention.ipynb) | how does the text get into the U-Net? | `layers`, `pipeline` |
# | [08 Classifier-free guidance](08_guidance.ipynb) | how do we make the model follow the prompt more? | `guidance` |
# | [09 Measuring a generator](09_evaluation.ipynb) | how good are the samples, in numbers? | `metrics`, `classifier` |
# | [10 Debugging](10_debugging.ipynb) | loss falls, samples are noise: where is the bug? | `train`, `debug_viz` |
#
# ## 3. Setup check
#
# Everything in the course runs offline on a CPU in its default mode; with `DIFFUSION_LITE_FULL=1` a few
# chapters train bigger models (meant for a GPU). The numbers quoted in the text are those of the default mode;
# in full mode the figures and printed values differ. Each chapter runs on the best device it finds (a CUDA GPU,
# then Apple's MPS, then the CPU); start Jupyter with `DIFFUSION_LITE_DEVICE=cpu` to keep it on the CPU, where
# the quoted numbers were measured. The next cells report what this machine has.

# %%
print(f"Python {platform.python_version()} on {platform.machine()}")
print(f"torch {torch.__version__}, numpy {np.__version__}, matplotlib {matplotlib.__version__}, "
      f"diffusion_lite {diffusion_lite.__version__}")
print(f"device: {device}   (torch uses {torch.get_num_threads()} CPU threads)   full mode: {FULL}")

# %% [markdown]
# **The data.** MNIST ships inside the repository (`data/mnist/`, checked against SHA-256 sums), so nothing is
# downloaded. `load_dataset` says where it found the files; if it cannot, its error message lists every folder
# it looked in and how to get the files.

# %%
train = load_dataset("mnist", "train")
print("found in:", train.source)

# %%
# NBVAL_CHECK_OUTPUT
print(f"train: images {tuple(train.images.shape)} {train.images.dtype}, labels {tuple(train.labels.shape)}")
print(f"test:  images {tuple(test.images.shape)} {test.images.dtype}, labels {tuple(test.labels.shape)}")
print("classes:", train.classes)

# %% [markdown]
# **The pretrained models.** Training the good models takes longer than a chapter should, so the package
# ships them (a few MB each, in `diffusion_lite/pretrained/`, each with a model card `NAME.md` that gives the
# exact command, the training time and its metrics). Chapters show the mechanism with short live training
# runs and use these for results.

# %%
USED_IN = {
    "mnist-classifier": "evaluation classifier (chapters 00, 02, 05, 08-10)",
    "mnist-uncond": "unconditional diffusion model (chapters 03-05, 09, 10)",
    "mnist-clip": "CLIP text and image encoders (chapters 06, 07)",
    "mnist-text2img": "text-to-image diffusion model (chapters 00, 07-09)",
}
shipped = list_pretrained()
for name, use in USED_IN.items():
    if name in shipped:
        size = (PRETRAINED_DIR / f"{name}.safetensors").stat().st_size / 1e6
        kind = json.loads((PRETRAINED_DIR / f"{name}.json").read_text(encoding="utf-8"))["kind"]
        print(f"  found    {name:17s} {kind:11s} {size:5.1f} MB   {use}")
    else:
        print(f"  MISSING  {name:17s} {use}")
missing = [name for name in USED_IN if name not in shipped]
assert not missing, (f"pretrained models missing: {missing}; reinstall the package (pip install -e . in the "
                     "repository, or pip install the course's wheel again)")

# %% [markdown]
# ## 4. A tour of MNIST
#
# MNIST (LeCun, Bottou, Bengio & Haffner 1998) holds 70,000 handwritten digits, 60,000 for training and
# 10,000 for testing, each a 28×28 grey image, centred and scaled to fit a 20×20 box. It is small enough that
# a diffusion model learns it in minutes on a CPU, and varied enough (thick and thin strokes, slants, open
# and closed loops) to make text prompts like "a thick seven slanting right" meaningful.

# %%
per_class = 12
rows = torch.cat([train.images[train.labels == k][:per_class] for k in range(10)])  # (120, 1, 28, 28)
show_grid(rows, nrow=per_class, figsize=(7, 6), title=f"the first {per_class} training images of each class")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print("training images per class:", torch.bincount(train.labels).tolist())

# %% [markdown]
# The classes are roughly balanced (between 5,421 fives and 6,742 ones). Now the pixels. On disk each pixel is
# a byte, 0 (black background) to 255 (white ink):

# %%
raw = to_uint8(train.images[:10000])  # back to the stored bytes, uint8 (10000, 1, 28, 28)
fig, ax = plt.subplots(figsize=(7, 3))
ax.hist(raw.flatten().numpy(), bins=np.arange(257) - 0.5, color="C0")
ax.set(yscale="log", xlabel="pixel value (uint8)", ylabel="number of pixels (log scale)",
       title="pixel values of 10,000 training digits")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"pixels that are exactly 0 (background): {(raw == 0).double().mean().item():.1%}")
print(f"pixels >= 250 (solid ink):              {(raw >= 250).double().mean().item():.1%}")

# %% [markdown]
# Most of an MNIST image is background: about a fifth of the pixels carry ink, and of those about 40% are
# (nearly) pure white, the rest greys at the stroke edges. So the distribution of a pixel's value is far from
# Gaussian: a huge spike at black, a smaller one at white, and a thin spread in between.
#
# **Scaling to $[-1, 1]$.** The course (like DDPM) represents images as floats in $[-1, 1]$:
# $x = \text{byte}/127.5 - 1$, so black is $-1$ and white is $+1$. Two reasons. The noise we will add is
# standard Gaussian, centred at 0 with standard deviation 1, so data centred at 0 with a similar spread puts
# signal and noise on the same scale. And the final images have a known range, which the sampler uses to
# clip its predictions (chapter 05). The package converts in `utils`:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(from_uint8))
print(inspect.getsource(to_uint8))

# %%
# NBVAL_CHECK_OUTPUT
x = train.images.double()  # float64 so that the mean does not depend on summation order
print(f"min {x.min().item():.3f}, max {x.max().item():.3f}, mean {x.mean().item():.3f}, std {x.std().item():.3f}")

# %% [markdown]
# The mean is about $-0.74$ (mostly black) and the standard deviation about $0.62$: roughly the scale of
# standard Gaussian noise, which is what we wanted.
#
# ## 5. A teaser: text to image
#
# Here is where the course ends up. `mnist-text2img` is a diffusion model trained in this repository: a U-Net
# with about a million parameters that reads the prompt through cross-attention, the text encoded by the
# small CLIP model `mnist-clip`. One row per prompt, 25 denoising steps (DDIM, a fast sampler: chapter 05),
# guidance scale 3:

# %%
pipe = load_pretrained("mnist-text2img", device)  # U-Net + schedule + frozen text encoder
print(f"U-Net parameters: {pipe.unet.num_parameters():,}; schedule: {pipe.schedule.config.kind}, "
      f"T = {pipe.schedule.T}; text encoder: {type(pipe.text).__name__}")

# %%
prompts = class_prompts("mnist")  # ["the digit zero", ..., "the digit nine"]
n_per = 10 if FULL else 6
targets = torch.arange(10).repeat_interleave(n_per)  # the digit each image should show
images = pipe.sample([p for p in prompts for _ in range(n_per)], guidance=3.0, steps=25, generator=g,
                     progress=False).cpu()  # (60, 1, 28, 28) in [-1, 1]

fig, ax = plt.subplots(figsize=(6, 7))
show_grid(images, nrow=n_per, ax=ax, title="generated from pure noise, one prompt per row")
for r, p in enumerate(prompts):
    ax.text(-4, 2 + 30 * r + 14, f'"{p}"', ha="right", va="center", fontsize=10)
plt.show()

# %% [markdown]
# How often does each sample show the requested digit? The course's evaluation classifier, a small CNN
# trained on MNIST (chapter 09), can tell us:

# %%
classifier = load_eval_classifier(device)
acc = conditional_accuracy(classifier, images, targets)
print(f"the classifier reads the requested digit in {acc:.0%} of {len(images)} samples")
assert images.shape == (10 * n_per, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
assert acc > 0.8, acc

# %% [markdown]
# The captions the model was trained on also describe stroke thickness, slant and size, measured from the
# pixels (chapter 06), so the prompt can ask for more than the digit:

# %%
style_prompts = ["a thick seven", "a thin seven", "a thick zero", "a thin zero"]
styled = pipe.sample([p for p in style_prompts for _ in range(n_per)], guidance=3.0, steps=25, generator=g,
                     progress=False).cpu()
fig, ax = plt.subplots(figsize=(6, 3))
show_grid(styled, nrow=n_per, ax=ax)
for r, p in enumerate(style_prompts):
    ax.text(-4, 2 + 30 * r + 14, f'"{p}"', ha="right", va="center", fontsize=10)
plt.show()
width = thickness(styled).reshape(len(style_prompts), n_per).mean(1)  # mean stroke width per prompt, pixels
for p, w in zip(style_prompts, width.tolist()):
    print(f"{p!r:16} mean stroke width {w:.1f} px")
assert width[0] > width[1] and width[2] > width[3]

# %% [markdown]
# The rows still show sevens and zeros; "thick" and "thin" change the stroke width, which the printout
# measures in pixels (chapter 06 explains how).
#
# Finally, the process itself. We draw the starting noise $x_T$ ourselves, and the sampler calls `callback`
# after every step, where we keep the current image $x_t$. Read each row from left to right: pure noise turns
# into a digit, coarse shape first, details last.

# %%
x_T = torch.randn(4, 1, 28, 28, generator=g)  # the starting point: pure Gaussian noise
frames = []  # frames[i] is the image after step i + 1
steps = 25
final = pipe.sample(["a handwritten eight"] * 4, guidance=3.0, steps=steps, generator=g, progress=False, x_T=x_T,
                    callback=lambda d: frames.append(d["x_t"].cpu()))
after = torch.linspace(1, steps, 7).round().int().tolist()  # steps to display: [1, 5, 9, ..., 25]
strip = torch.stack([x_T] + [frames[i - 1] for i in after], dim=1)  # (4, 8, 1, 28, 28)
show_grid(strip.flatten(0, 1), nrow=len(after) + 1, figsize=(8, 4.5),
          title="denoising 'a handwritten eight': x_T, then after step " + ", ".join(map(str, after)))
plt.show()

# %% [markdown]
# ## 6. Explore: your own prompt
#
# Sampling takes about a second on a CPU with 10 DDIM steps instead of 25, a bit rougher but good enough to
# play with. Pick one of the example prompts or type your own (the model knows about 50 words: digits as
# numerals or names, "thick"/"thin"/"bold"/"slim", "slanting left/right", "small"/"large", "handwritten", ...;
# an unknown word triggers a warning and becomes the placeholder token `<unk>`, which carries no meaning the
# model learned; chapter 06). The **seed** fixes the starting noise: the
# same prompt and seed always give the same images, and sample $i$ of every prompt starts from the same
# noise, so changing only the prompt shows what the words do. The **guidance scale** sets how strongly the
# prompt is followed (chapter 08); the empty prompt `""` shows what the model draws when told nothing. Under
# each image: the digit the evaluation classifier reads. The static figure shows the defaults; the widget after
# it needs a running kernel:

# %%
fig = prompt_samples_figure(pipe, "a thick seven", seed=0, steps=10, guidance=3.0, classifier=classifier)
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
prompt_widget(pipe, prompt="a thick seven", seed=0, steps=10, guidance=3.0, classifier=classifier)

# %% [markdown]
# Things to try: "the digit seven" against "a thin seven" at the same seed; "a seven slanting left" and
# "a seven slanting right"; the empty prompt at several seeds (some samples are not clean digits: without a
# prompt, nothing steers them); guidance 0, 1 and 8 for one prompt.
#
# By the end of the course you will have built every part of this: the noise, the network, the training,
# the sampler, the text encoder, the cross-attention and the guidance.
#
# ## Exercise: pixels to $[-1, 1]$ and back
#
# Define two functions: `my_from_uint8(b)`, which turns bytes 0-255 (a `uint8` tensor of any shape) into
# `float32` values in $[-1, 1]$ of the same shape, and `my_to_uint8(x)`, which turns floats back into bytes,
# clipping values outside $[-1, 1]$ (generated images can have them) and rounding to the nearest byte. Write
# them in the next cell and run it, then run the **check** cell below the collapsed solution: it compares your
# functions with `from_uint8` and `to_uint8` of `diffusion_lite.utils` on the 16 digits `some_bytes`
# (uint8, (16, 1, 28, 28)) and on a noisy copy of them with values outside $[-1, 1]$, and checks that the round
# trip bytes → floats → bytes loses nothing. Skip the collapsed cell unless you want to see a solution: running
# it replaces your functions with the solution's.

# %%
# Your turn: define my_from_uint8 and my_to_uint8 here, run this cell, then run the check cell below the
# collapsed solution. The digits the check uses:
some_bytes = raw[:16]  # uint8 (16, 1, 28, 28)
# def my_from_uint8(b: torch.Tensor) -> torch.Tensor:
#     """uint8 bytes 0-255 -> float32 values in [-1, 1], same shape."""
#     ...
#
#
# def my_to_uint8(x: torch.Tensor) -> torch.Tensor:
#     """floats -> uint8 bytes: clip to [-1, 1], scale to 0-255, round to the nearest byte."""
#     ...


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution (running this cell replaces your my_from_uint8 and my_to_uint8 with these)
def my_from_uint8(b):
    return b.float() / 127.5 - 1.0


def my_to_uint8(x):
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# %% tags=["check"]
# Check: your my_from_uint8 and my_to_uint8 against from_uint8 and to_uint8 of diffusion_lite.utils
floats = my_from_uint8(some_bytes)
torch.testing.assert_close(floats, from_uint8(some_bytes),  # also compares shape and dtype (float32)
                           msg=lambda m: f"my_from_uint8 differs from from_uint8 (0 -> -1, 255 -> 1):\n{m}")
back = my_to_uint8(floats)
assert back.dtype == torch.uint8, f"my_to_uint8 must return uint8 bytes, got {back.dtype}"
assert torch.equal(back, some_bytes), "my_to_uint8(my_from_uint8(b)) must give back b exactly: round, do not truncate"
noisy = q_sample(schedule, from_uint8(some_bytes), 300, generator=g)  # values outside [-1, 1]
assert torch.equal(my_to_uint8(noisy), to_uint8(noisy)), "my_to_uint8 differs from to_uint8 on values outside [-1, 1]"
print("my conversions match diffusion_lite.utils")

# %% [markdown]
# ## Summary
#
# - A diffusion model generates by **denoising**: start from pure Gaussian noise and remove a little noise at a
#   time with a network trained to predict the noise in noisy images. The text prompt steers each step.
# - Stable Diffusion, DALL-E 3 and FLUX.1 share this recipe; they differ in the network (U-Net or
#   transformer), where they denoise (latents), the text encoders, and the training data. This course builds
#   the same parts at MNIST scale: forward process and schedule (01-02), U-Net (03), training (04), sampling
#   (05), CLIP (06), cross-attention (07), guidance (08), evaluation (09).
# - MNIST images are 28×28 bytes; the course uses floats in $[-1, 1]$ (`from_uint8`, `to_uint8`), on the
#   scale of the Gaussian noise.
# - The shipped `mnist-text2img` model turns prompts like "a thick seven" into digits in seconds on a CPU;
#   the prompt picks the digit and its style, the seed picks the starting noise.
#
# Next: [chapter 01](01_forward_process.ipynb), the forward process.
#
# ## References
#
# - Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli 2015, "Deep Unsupervised Learning using Nonequilibrium
#   Thermodynamics" (ICML).
# - Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (NeurIPS).
# - Goodfellow et al. 2014, "Generative Adversarial Nets" (NeurIPS).
# - Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis" (NeurIPS).
# - Rombach, Blattmann, Lorenz, Esser & Ommer 2022, "High-Resolution Image Synthesis with Latent Diffusion
#   Models" (CVPR): Stable Diffusion.
# - Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision" (ICML): CLIP.
# - Ho & Salimans 2022, "Classifier-Free Diffusion Guidance" (NeurIPS 2021 workshop; arXiv 2207.12598).
# - Betker et al. 2023, "Improving Image Generation with Better Captions" (OpenAI technical report): DALL-E 3.
# - Esser et al. 2024, "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis" (ICML):
#   Stable Diffusion 3, the architecture family of FLUX.1 (Black Forest Labs 2024, model release).
# - Liu, Gong & Liu 2023, "Flow Straight and Fast: Learning to Generate and Transfer Data with Rectified Flow"
#   (ICLR); Lipman, Chen, Ben-Hamu, Nickel & Le 2023, "Flow Matching for Generative Modeling" (ICLR).
# - LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based Learning Applied to Document Recognition"
#   (Proc. IEEE): MNIST.
