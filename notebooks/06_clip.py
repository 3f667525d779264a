# %% [markdown]
# # 06 · CLIP: teaching a text encoder what images look like
#
# Up to [chapter 05](05_sampling.ipynb) our diffusion model drew digits, but we could not say *which*
# digit. From here on we want to type a prompt, "a thick seven slanting right", and get that picture. The
# U-Net works with tensors, so the prompt must first become numbers, and not just any numbers: numbers that
# carry what the words *look like*. "Thick" should point to the same visual property whether it describes a
# seven or a zero.
#
# Stable Diffusion gets these numbers from the text encoder of **CLIP** (Radford et al. 2021), a model
# trained on 400 million (image, caption) pairs from the web to tell which caption belongs to which image.
# We cannot download it here, and we do not need to: MNIST digits and simple captions are enough to train a
# tiny CLIP on a CPU. This chapter builds one and takes it apart; [chapter 07](07_cross_attention.ipynb)
# plugs its text encoder into the U-Net.
#
# ## Learning goals
#
# - Explain contrastive pre-training: two encoders, one shared embedding space, and a loss that asks every
#   image to find its caption in a batch (and every caption its image).
# - Build captions from labels and from attributes measured on the pixels (thickness, slant, size).
# - Tokenize text with a word-level tokenizer and say what happens to a word it does not know.
# - Write the symmetric InfoNCE loss with a learnable temperature, and explain what the temperature does to
#   the softmax.
# - Use a trained CLIP for zero-shot classification, read a similarity matrix, and look at the joint
#   embedding space.
# - Explain why the wording of a prompt matters, and when it does not.
#
# You need Python and a little PyTorch, and for section 3 the self-attention of chapter 03, section 7 (section
# 3 explains the rest of a transformer block). The rest of chapters 00-05 is not needed here: CLIP has nothing to do
# with noise.

# %%
import inspect
import math
import os
import warnings

import matplotlib.pyplot as plt
import torch

from diffusion_lite import captions as C
from diffusion_lite.checkpoints import load_pretrained
from diffusion_lite.clip import (
    CLIPModel,
    clip_loss,
    retrieval_recall,
    zero_shot_accuracy,
    zero_shot_classify,
)
from diffusion_lite.clip_train import train_clip
from diffusion_lite.data import load_dataset
from diffusion_lite.text_viz import (
    caption_grid_figure,
    embedding_space_figure,
    similarity_matrix_figure,
    softmax_temperature_figure,
    temperature_widget,
    zero_shot_by_wording,
)
from diffusion_lite.tokenizer import Tokenizer
from diffusion_lite.utils import get_device, seed_everything
from diffusion_lite.viz import show_grid

FULL = os.environ.get("DIFFUSION_LITE_FULL") == "1"  # full mode: train the mini CLIP longer, on all digits
torch.set_num_threads(1)  # these models are tiny: one thread is nearly as fast, and robust on a busy machine
g = seed_everything(0)  # one generator for every random draw below
device = get_device()
train = load_dataset("mnist", "train", subset=None if FULL else 2000, balanced=not FULL)
test = load_dataset("mnist", "test", subset=None if FULL else 2000, balanced=not FULL)
print(train)
print(test)

# %% [markdown]
# ## 1. Captions from labels and from the pixels
#
# CLIP learns from (image, caption) pairs. MNIST has labels, not captions, so we write captions ourselves
# (`diffusion_lite.captions`). A label alone gives "a handwritten 7", "the digit seven", "a sketch of a
# seven", ...: many wordings of one fact. To give the text more to say, we also **measure** three
# properties of every digit from its pixels (`diffusion_lite.attributes`; `captions` re-exports its functions,
# so `C.thickness` below is `attributes.thickness`). With ink $I = (x+1)/2 \in [0, 1]$:
#
# - **thickness** $= 2A/P$, ink area over half the length of the ink's edge: a stroke of width $w$ and
#   length $\ell$ has $A = w\ell$ and $P \approx 2\ell$, so $2A/P = w$, in pixels;
# - **slant** $= -\mu_{11}/\mu_{02}$, from the central moments of the ink
#   $\mu_{pq} = \sum_{x,y} (x - \bar x)^p\,(y - \bar y)^q\, I(x, y)$, where $x$ is the column, $y$ the row
#   counted *downwards* (as in an image array) and $(\bar x, \bar y)$ the ink's centre of mass. The ratio
#   $\mu_{11}/\mu_{02}$ is the slope $b$ of the least-squares line $x \approx \bar x + b\,(y - \bar y)$ through
#   the ink: how far the digit shifts sideways per pixel *down*. Because $y$ points down, the minus sign turns it
#   into the shift per pixel *up*: slant $> 0$ when the top leans right, $< 0$ when it leans left;
# - **size**: the area of the ink's bounding box as a fraction of the image.
#
# The lowest 20% of training digits get the low word ("thin", "slanting left", "small"), the top 20% the high
# word ("thick", "slanting right", "large"). Size is bucketed within each digit's class (a typical 1's
# bounding box is about half the area of a 0's, so a "small zero" and a "small one" have different sizes);
# thickness and slant use one cut-off for all digits. Most MNIST digits lean a little to the right, so the slant
# cut-offs are not symmetric: "slanting left" below $-0.12$, "slanting right" above $0.34$; a slant of 0.3 is
# still "upright". Let's measure the first twelve test digits:

# %%
# NBVAL_CHECK_OUTPUT
x12, y12 = test.images[:12], test.labels[:12]  # (12, 1, 28, 28) in [-1, 1], (12,)
values = C.measure(x12)  # {"thickness": (12,), "slant": (12,), "size": (12,)}
words = C.attribute_words(x12, y12)  # one {"thickness": "thin", ...} per image
print("label  thickness (px)  slant   size   words")
for i in range(12):
    print(f"{int(y12[i]):5d}  {values['thickness'][i]:14.2f}  {values['slant'][i]:5.2f}  {values['size'][i]:5.2f}   "
          + ", ".join(words[i].values()))

# %% [markdown]
# A caption picks a random template, a random name for the class and, half of the time, one to three of
# the measured words it can say (the middle words "regular" and "medium" are left out, they read badly;
# "upright" is kept, so every digit has at least one). Drawing only among the words it can say keeps the
# other half fair: a plain "a seven" is as likely for a thin seven as for a regular one, so a model that
# learns from these captions (chapter 07) learns what sevens look like, not what unremarkable sevens look like.
# (The shipped `mnist-clip` and `mnist-text2img` were trained before this fix, on captions that said nothing
# more often for middling digits; their model cards say so, and BENCHMARKS.md section 4 measures the difference.)

# %%
captions12 = C.make_captions(x12, y12, "mnist", generator=g)
fig = caption_grid_figure(x12, captions12, ncols=4)
plt.show()

# %% [markdown]
# Check a few against the pictures: "thick" digits have heavy strokes, "slanting left" ones lean left. The
# words are coarse (three buckets per attribute) and sometimes debatable, as real captions are.
#
# Fashion-MNIST gets attributes of its own (CIFAR-10's captions have none), measured the same way. Garments have no
# strokes to measure, so Fashion-MNIST's captions describe **brightness** (the mean ink over the garment: "dark",
# "grey", "light") and **pattern** (the mean size of the 5-point Laplacian inside it, which stripes and prints make
# large: "plain", "patterned"): "a dark patterned t-shirt". `C.attribute_words(images, labels, "fashion-mnist")`
# returns them.
#
# ## 2. The tokenizer: from text to integer ids
#
# A text encoder reads integers, one per **token**. CLIP uses byte-pair encoding (sub-words); our captions
# use fewer than 60 distinct words, so `diffusion_lite.tokenizer` gives every word its own id. The
# vocabulary is every word any caption can contain, plus four special tokens:

# %%
# NBVAL_CHECK_OUTPUT
tok = Tokenizer.for_dataset("mnist")
print(tok)
print("special tokens:", tok.vocab[:4])
print("words:", " ".join(tok.vocab[4:]))

# %% [markdown]
# Every prompt becomes `<bos> words... <eos>`, padded with `<pad>` to a fixed length of 16. The **mask**
# says which positions are real; the empty prompt `""` is `<bos> <eos>`, two real tokens. (That empty prompt
# will be the "unconditional" input of classifier-free guidance in [chapter 08](08_guidance.ipynb).)

# %%
# NBVAL_CHECK_OUTPUT
ids, mask = tok.encode(["a thick seven", ""])  # (2, 16) long, (2, 16) bool
print("ids: ", ids)
print("mask:", mask.int())
print("decoded:", tok.decode(ids))

# %% [markdown]
# **Unknown words.** A word-level vocabulary is closed: "skinny" was never in a caption, so it has no id. It
# becomes `<unk>`, a token the model never saw during training. By default the tokenizer warns; with
# `on_unknown="error"` it refuses. Both messages list the whole vocabulary (57 tokens with the four special
# ones), so a user can pick a word the model knows ("thin", "slim").

# %%
# NBVAL_CHECK_OUTPUT
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ids_unk, _ = tok.encode(["a skinny seven"])
print("warning:", caught[0].message)
print("decoded:", tok.decode(ids_unk))
try:
    tok.encode(["a skinny seven"], on_unknown="error")
except ValueError as e:
    print("error:  ", e)

# %% [markdown]
# We will see in section 6 what the trained model makes of "a skinny seven". (A sub-word tokenizer would
# split "skinny" into known pieces, but the pieces would still be ones the text encoder never saw
# describing a digit; no tokenizer creates meaning the training data did not contain.)
#
# ## 3. Two encoders, one space
#
# CLIP has two networks that never see each other's input:
#
# - an **image encoder** $f$: a small CNN here (three stages of convolutions, global average pooling, a
#   linear projection), $(B, 1, 28, 28) \to (B, E)$;
# - a **text encoder** $g$: a small transformer (token + position embeddings, blocks of causal
#   self-attention and MLP: 2 in the model trained below, 3 in the shipped one). Attention alone ignores
#   word order, so a learned **position embedding**, one vector per position, is added to each token's
#   embedding. A **transformer block** is LayerNorm, then self-attention, then the input added back; then
#   LayerNorm, a two-layer MLP (the *feed-forward* layer), and the input added back again. Causal attention lets
#   token $i$ see only tokens $\le i$, so `<eos>` is the first position that has read the whole prompt. The
#   `<pad>` positions after it have read it too, but the loss below only ever looks at `<eos>`: its output,
#   projected to $(B, E)$, is the *pooled* text embedding, so `<eos>` is the one position trained to sum up
#   the prompt.
#
# Both outputs are normalised to unit length, $u_i = f(x_i)/\lVert f(x_i)\rVert$ and
# $v_j = g(y_j)/\lVert g(y_j)\rVert$ ($f$ the image encoder, $g$ the text encoder; not the random generator
# `g` of the code), so $u_i^\top v_j = \cos(u_i, v_j) \in [-1, 1]$. The text encoder also
# returns its per-token outputs $(B, L, D)$: those are what the diffusion U-Net will attend to in
# [chapter 07](07_cross_attention.ipynb).

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
mini = CLIPModel.for_dataset("mnist", width=32, layers=2, heads=4, embed_dim=32, cnn_channels=(8, 16, 32)).to(device)
count = lambda m: sum(p.numel() for p in m.parameters())
print(f"text encoder {count(mini.text):,} parameters, image encoder {count(mini.image):,}, total {count(mini):,}")
ids, mask = mini.tokenizer.encode(captions12[:4])
tokens, pooled = mini.text(ids.to(device))
print("text:  ids", tuple(ids.shape), "-> per-token", tuple(tokens.shape), "and pooled at <eos>", tuple(pooled.shape))
print("image:", tuple(x12[:4].shape), "->", tuple(mini.image(x12[:4].to(device)).shape))

# %% [markdown]
# ## 4. The contrastive loss (symmetric InfoNCE)
#
# Take a batch of $B$ pairs $(x_i, y_i)$. Compute all $B \times B$ similarities and divide them by a
# temperature $\tau$, learned through the scalar $\kappa = \log(1/\tau)$, `logit_scale` in the code (the CLIP
# paper calls it $t$, a letter this course keeps for the diffusion time step); the *logit scale*
# $e^{\kappa} = 1/\tau$ multiplies the cosines:
#
# $$\ell_{ij} = u_i^\top v_j / \tau = e^{\kappa}\, u_i^\top v_j .$$
#
# Row $i$ of this matrix scores every caption for image $i$; the right answer is caption $i$. Reading the
# row as the logits of a $B$-way classification gives a cross-entropy; reading column $j$ the same way asks
# caption $j$ to pick its image. CLIP averages the two (Radford et al. 2021, Fig. 3):
#
# $$\mathcal L = \frac{1}{2}\left[ \frac{1}{B}\sum_{i=1}^B -\log \frac{e^{\ell_{ii}}}{\sum_{j} e^{\ell_{ij}}}
# \;+\; \frac{1}{B}\sum_{j=1}^B -\log \frac{e^{\ell_{jj}}}{\sum_{i} e^{\ell_{ij}}} \right].$$
#
# Each half is the **InfoNCE** loss of van den Oord, Li & Vinyals (2018): the other $B-1$ captions in the
# batch serve as negatives (the "N-pair" idea of Sohn 2016), so a bigger batch is a harder and more
# informative test. Guessing gives $\log B$; the model has to beat that. Here is the package's version; it also accepts
# a mask of several correct captions per image, which we will not need:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(clip_loss))

# %% [markdown]
# Two sanity checks. If every image is far more similar to its own caption than to the others, the loss is
# near zero; if all similarities are equal, it is $\log B$:

# %%
# NBVAL_CHECK_OUTPUT
B = 4
print(f"confident and right: {clip_loss(10 * torch.eye(B)):.4f}")
print(f"all equal:           {clip_loss(torch.zeros(B, B)):.4f}  (log B = {math.log(B):.4f})")
print(f"confident and wrong: {clip_loss(10 * torch.eye(B).roll(1, dims=1)):.4f}")

# %% [markdown]
# **Why a learnable temperature?** Cosines live in $[-1, 1]$. Fed to a softmax directly, even a perfect
# model (cosine 1 with its own caption, 0 with the others) could only put $e^1/(e^1 + B - 1)$ on the right
# answer, 1% for $B = 256$: the loss could never get small, and its gradient would keep pushing everything.
# Dividing by a small $\tau$ lets the model decide how peaked its softmax should be. CLIP starts at
# $\tau = 0.07$ (a logit scale $1/\tau \approx 14$), learns $\kappa = \log(1/\tau)$ (so $\tau$ stays positive),
# and caps the logit scale at 100, i.e. $\tau \ge 0.01$. We come back to what $\tau$ does in section 6.
#
# ## 5. A live training run
#
# Let's train the mini CLIP from section 3 on 2,000 digits for a short while (the default mode; the captions
# and numbers quoted below are from it): batches of 128 pairs, fresh
# random captions every time a digit is drawn, AdamW. `train_clip` is a plain loop around `clip_loss`
# (`run` is bookkeeping: Ctrl-C stops the loop after the current step, and with `checkpoint=` the run is saved
# there and a later call resumes it exactly where it stopped):

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(train_clip)[inspect.getsource(train_clip).index("    model.train()"):])

# %%
steps, batch_size = (1500, 256) if FULL else (150, 128)
history = train_clip(mini, train, steps=steps, batch_size=batch_size, generator=g)
final = sum(history[-10:]) / 10
print(f"loss: first {history[0]:.2f}, last 10 steps {final:.2f}; chance log B = {math.log(batch_size):.2f}")
print(f"learned logit scale 1/tau = {mini.logit_scale.exp().item():.1f} (temperature tau = "
      f"{1 / mini.logit_scale.exp().item():.3f})")
assert final < 0.75 * math.log(batch_size), "the mini CLIP should clearly beat chance"

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(history, lw=1, label="loss per batch")
ax.axhline(math.log(batch_size), color="gray", ls="--", label=f"chance: log B = {math.log(batch_size):.2f}")
ax.set_xlabel("step")
ax.set_ylabel("symmetric InfoNCE loss")
ax.set_title(f"Training a mini CLIP ({count(mini):,} parameters) on {len(train):,} digits")
ax.legend()
plt.show()

# %% [markdown]
# The loss sits at chance, $\log 128 \approx 4.85$, for the first few dozen steps (the learning rate is
# still warming up, and the two encoders have to find any common signal at all), then falls steadily. It
# cannot reach zero. A batch of 128 holds about 13 images of each digit, and many of their
# captions are interchangeable ("the digit seven" fits every seven), so several captions in a row are
# equally right and the softmax must share its probability among them: a model that knew only the class
# would sit near $\log 13 \approx 2.6$. Below that, what is left to learn is the attribute words, the fine
# print that tells one seven from another. After these few steps our mini model is still above that level
# (see the zero-shot accuracy below); the shipped model of section 6 ends below its own class-only level
# (loss 2.80 against $\log 26 \approx 3.2$ for its batches of 256; model card).
#
# Already this mini model can classify digits it has never seen, using only text (the method is explained
# in section 7):

# %%
mini_acc = zero_shot_accuracy(mini, test.images, test.labels, C.class_prompts("mnist"))
print(f"mini CLIP zero-shot accuracy on {len(test):,} test digits: {mini_acc:.1%}")
assert mini_acc > 0.5

# %% [markdown]
# ## 6. The shipped model: similarities and temperature
#
# The package ships a CLIP trained the same way for longer (1,500 steps of 256 pairs on all 60,000 digits)
# and bigger throughout (3 text layers of width 64, CNN channels 16/32/64, a joint space of 64 dimensions:
# 235,249 parameters against the mini model's 48,153); its model card is
# `diffusion_lite/pretrained/mnist-clip.md`. This is the text encoder the text-to-image model of the next
# chapters uses.

# %%
clip = load_pretrained("mnist-clip", device)
print(clip.cfg)
print(f"{count(clip):,} parameters; learned logit scale 1/tau = {clip.logit_scale.exp().item():.1f} "
      f"(temperature tau = {1 / clip.logit_scale.exp().item():.3f})")

# %% [markdown]
# **A similarity matrix.** Eight test digits, one of each of eight classes, each with a caption that
# names its measured attributes. Row $i$ is image $i$, column $j$ caption $j$, entries are cosines
# $u_i^\top v_j$:

# %%
pick = torch.stack([torch.nonzero(test.labels == k)[0, 0] for k in range(8)])  # first test image of 0..7
x8, y8 = test.images[pick], test.labels[pick]
caps8 = C.make_captions(x8, y8, "mnist", generator=g, p_attribute=1.0)
with torch.no_grad():
    sim8 = clip.encode_image(x8) @ clip.encode_text(caps8).T  # (8 images, 8 captions)
fig = similarity_matrix_figure(sim8, x8, caps8)
plt.show()
assert (sim8.argmax(1).cpu() == torch.arange(8)).all(), "each digit should match its own caption"

# %% [markdown]
# The diagonal wins in every row: the class name does most of the work. The harder test is within one
# class. Eight sevens, each with its own attribute caption:

# %%
sevens = torch.nonzero(test.labels == 7)[:, 0]
attr = C.attribute_buckets(test.images[sevens], test.labels[sevens])
distinct = (attr["thickness"] != 1) | (attr["slant"] != 1)  # sevens with a non-middle thickness or slant
x7 = test.images[sevens[distinct][:8]]
caps7 = C.make_captions(x7, torch.full((len(x7),), 7), "mnist", generator=g, p_attribute=1.0)
with torch.no_grad():
    sim7 = clip.encode_image(x7) @ clip.encode_text(caps7).T
fig = similarity_matrix_figure(sim7, x7, caps7, title="eight sevens: image i vs caption j")
plt.show()
print(f"rows whose own caption wins: {(sim7.argmax(1).cpu() == torch.arange(len(x7))).sum()} of {len(x7)}")

# %% [markdown]
# Now the similarities are much closer together and the diagonal wins less often: several captions fit an
# image equally well ("a thick seven" fits every thick seven), and the measured words are coarse. This is
# the signal the attribute words add, and the reason the loss in section 5 cannot reach zero.
#
# **What the temperature does.** During training each row is turned into probabilities with
# $\mathrm{softmax}_j(u_i^\top v_j / \tau)$ over the captions $j$. Take the first row of the sevens' matrix,
# image 0, and try three temperatures. The right answer is image 0's own caption, caption 0 (highlighted in gold:
# `target=0`); the red bar is the caption with the highest probability, which here is a different one:

# %%
labels7 = [f"{j}: {c}" for j, c in enumerate(caps7)]
tau = 1 / clip.logit_scale.exp().item()  # the learned temperature
temperatures = (1.0, tau, 0.01)
fig = softmax_temperature_figure(sim7[0], labels7, temperatures, target=0)  # target: image 0's own caption
plt.show()
probs7 = {temp: (sim7[0].cpu() / temp).softmax(0) for temp in temperatures}  # tau -> (8,) over the captions
for temp, p in probs7.items():
    print(f"tau = {temp:.3f}: own caption (0) {p[0]:.3f}, top caption ({int(p.argmax())}) {p.max():.3f}; "
          f"loss term -log p(own) = {-p[0].log():.2f}")

# %% [markdown]
# At $\tau = 1$ the softmax is nearly uniform (0.13 for the own caption, 0.14 for the top one): cosines
# differ by a few tenths, and $e^{0.1}$ is barely more than $e^0$. The highest cosine in this row is not the
# right caption but caption 3, "a sketch of a slim upright digit seven", written for another seven. It fits
# image 0 at least as well as its own: image 0 is itself measured thin (2.20 px, just under the cut-off) and
# upright, and its own caption, which drew only "upright" of its words, leaves "thin" out. For the loss,
# caption 3 is a wrong answer all the same: a *false negative*, which a batch of captions written for other
# images cannot avoid (captions 0 and 6, and 4 and 5, say nearly the same thing too). At the learned $\tau \approx 1/24
# \approx 0.04$ the probability goes to the few captions that fit this seven: 0.54 to caption 3, 0.19 to the right
# caption 0 and about as much to caption 6, "a scan of the upright digit seven". At $\tau = 0.01$ (CLIP's lower limit)
# the false negative, caption 3, takes 0.97 and the right caption gets about nothing, 0.014: the softmax has become a
# vote for the single best match, and every caption that fits nearly as well, the right one included, is pushed to zero.
# In training, this row's loss term $-\log p(\text{own caption})$ would be 4.26 instead of 1.64 at the learned
# $\tau$, worse even than the uniform guess of $\tau = 1$ (2.01, close to $\log 8 \approx 2.08$): every near
# miss is punished hard. The learned value balances the two: peaked enough to tell the ten digits apart with
# confidence, soft enough to share probability among captions that all fit.
# In the widget, too, gold marks the right caption (caption 0 for this row) and red the most probable one.
# Move the slider (it needs a running kernel):

# %%
# NBVAL_IGNORE_OUTPUT
temperature_widget(sim7[0], labels7, tau=tau, target=0)

# %% [markdown]
# And the unknown word from section 2: "skinny" became `<unk>`. How close is "a skinny seven" to the
# prompts the model knows?

# %%
probe = ["a skinny seven", "a seven", "a thin seven", "a thick seven"]
with warnings.catch_warnings(), torch.no_grad():
    warnings.simplefilter("ignore")  # we know "skinny" is unknown
    emb = clip.encode_text(probe)  # (4, E), unit length
    cos_unk = emb[0] @ emb[1:].T
for p, c in zip(probe[1:], cos_unk.tolist()):
    print(f'cos("a skinny seven", "{p}") = {c:.2f}')

# %% [markdown]
# "A skinny seven" has practically the same embedding as "a seven": the unknown word has vanished. The
# `<unk>` embedding never appeared in a training caption, so nothing tied it to a look; the encoder treats
# it like a filler word such as "a" or "the", which also barely move the embedding, while the known word
# "thin" moves it clearly. The prompt does not fail, it quietly means less than the user wrote. A warning
# is the only way a user learns that part of the prompt was ignored; that is why our tokenizer warns by
# default.
#
# ## 7. Zero-shot classification
#
# A trained CLIP classifies without a classifier: write one prompt per class ("the digit zero", ..., "the
# digit nine"), embed them once, and give each image the class of its most similar prompt. Nothing was
# trained for this task; the class names are just text (Radford et al. call it *zero-shot*).

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(zero_shot_classify))

# %%
prompts = C.class_prompts("mnist")  # ["the digit zero", ..., "the digit nine"]
pred = zero_shot_classify(clip, test.images, prompts)  # (N,) class indices
acc = (pred == test.labels).float().mean().item()
print(f"prompts: {prompts[:3]} ...")
print(f"zero-shot accuracy on {len(test):,} test digits: {acc:.2%}")
assert acc > 0.95

# %% [markdown]
# About 99%, close to a supervised CNN of the same size. The mistakes are mostly digits a person would
# hesitate over too:

# %%
wrong = torch.nonzero(pred != test.labels)[:, 0][:10]
show_grid(test.images[wrong], nrow=10, figsize=(10, 1.8), title="misclassified (true -> predicted)",
          labels=[f"{int(test.labels[i])} -> {int(pred[i])}" for i in wrong], fontsize=9)
plt.show()

# %% [markdown]
# ## 8. The shared embedding space
#
# Images and prompts live in the same 64-dimensional space. To look at it, project 1,000 image embeddings
# and the ten class prompts onto the two directions of largest variance (PCA, fitted on both together):

# %%
with torch.no_grad():
    img_emb = clip.encode_image(test.images[:1000])  # (1000, E), unit length
    txt_emb = clip.encode_text(prompts)  # (10, E)
fig = embedding_space_figure(img_emb, test.labels[:1000], txt_emb, list(range(10)), prompts,
                             title="mnist-clip embeddings, PCA")
plt.show()
cos_matched = (img_emb @ txt_emb.T).gather(1, test.labels[:1000, None].to(device)).mean().item()
gap = img_emb.mean(0) - txt_emb.mean(0)  # (E,): from the centre of the prompts to the centre of the images
side = (torch.cat([img_emb, txt_emb]) - (img_emb.mean(0) + txt_emb.mean(0)) / 2) @ gap > 0  # (1010,) image side?
print(f"mean cosine between an image and its class prompt: {cos_matched:.2f}")
print(f"modality gap |mean(images) - mean(prompts)| = {gap.norm():.2f}; the plane halfway between puts "
      f"{side[:1000].float().mean():.0%} of the images and {(~side[1000:]).float().mean():.0%} of the prompts on "
      "their own side")

# %% [markdown]
# Images form one cluster per digit, and each prompt lies on the way from the centre towards its digit's
# cluster, not inside it. A matched image and prompt have a cosine around 0.6, far from 1: the two kinds of
# embedding occupy different regions of the sphere, offset from each other, and a plane separates the
# images from the prompts. This **modality gap** (Liang et al. 2022) is typical of CLIP models, large ones
# included. The loss only asks that the right caption be *more* similar than the wrong ones, not that an
# image and its caption coincide, so nothing closes the gap. The ranking, which is all that zero-shot
# classification and text conditioning need, comes out right.
#
# ## 9. Does the wording of the prompt matter?
#
# Radford et al. found that the bare label ("dog") works worse than a sentence like "a photo of a dog": web
# captions are rarely a single word, and a bare word can be ambiguous ("boxer": a dog or an athlete?). The
# template added 1.3 points of ImageNet accuracy, and averaging the embeddings of 80 templates 3.5 more.
# Let's measure several wordings with our model:

# %%
wordings = ["{digit}", "{name}", "the digit {name}", "a handwritten {digit}", "a photo of a {name}",
            "a drawing of the digit {digit}", "a thin {name}", "a large {name}"]
table = {w: C.class_prompts("mnist", w) for w in wordings}
table["digit (no class name)"] = ["digit"] * 10
accs = zero_shot_by_wording(clip, test.images, test.labels, table)
for w, a in accs.items():
    print(f"{w:32s} {a:.1%}   e.g. {table[w][7]!r}")
assert max(accs.values()) - min(a for w, a in accs.items() if "{" in w) < 0.05

# %% [markdown]
# Every wording that names the class works about equally well, and "digit" alone is at chance (10%): the
# class name carries the information. Our model shows no template gain because its training captions
# *already* contained every one of these wordings, bare names included: nothing here is out of
# distribution, and "seven" is not ambiguous. A wording that describes most images *wrongly* costs a
# little: most digits are not "large", and "a large ..." loses a couple of points, spread over several
# classes ("a thin ..." costs almost nothing here).
#
# Where description pays off is in telling apart images *of the same class*, which is exactly the job of a
# prompt for a text-to-image model. Give each test image one caption without attribute words and one with
# them, and ask for the caption's own image among all 2,000 (text-to-image retrieval, recall@k = fraction of
# captions whose image is among the k most similar):

# %%
plain = C.make_captions(test.images, test.labels, "mnist", generator=g, p_attribute=0.0)
described = C.make_captions(test.images, test.labels, "mnist", generator=g, p_attribute=1.0)
print("e.g.", repr(plain[0]), "vs", repr(described[0]))
r_plain = retrieval_recall(clip, test.images, plain, ks=(1, 10, 100))
r_desc = retrieval_recall(clip, test.images, described, ks=(1, 10, 100))
for k in (1, 10, 100):
    print(f"recall@{k:<3d}: class only {r_plain[k]:6.1%}   with attributes {r_desc[k]:6.1%}")
assert r_desc[10] > 2 * r_plain[10]

# %% [markdown]
# With the class alone, about a tenth of the test images (200 in the default mode) fit each caption
# equally, so finding the right one is luck (recall@10 near $10/200 = 5\%$ here). A word like "thick" or
# "small", true of about one digit in five or six, cuts the candidates about five-fold ("upright", true of most, far
# less), and the recall rises several-fold. A descriptive prompt is better because it carries more of the image's
# information, in words the encoder has learned. The same holds for generation: "a thick seven slanting right"
# constrains the picture more than "seven", provided the model was trained on such words.
#
# ## Exercise
#
# Write the symmetric contrastive loss yourself, from the formula in section 4: define a function
# `my_clip_loss(logits_per_image)` that takes the $(B, B)$ matrix $\ell_{ij}$ (image $i$, caption $j$; the
# matching pairs on the diagonal) and returns the loss as a scalar tensor, using only
# `torch.nn.functional.cross_entropy` (or `log_softmax`). Write it in the next cell and run it, then run the
# **check** cell below the collapsed solution: it compares your `my_clip_loss` with the package's `clip_loss`
# on random logits and on the logits of the shipped model for the 8-digit batch of section 6. Skip the
# collapsed cell unless you want to see a solution: running it replaces your function with the solution's.

# %%
# Your turn: define my_clip_loss here, run this cell, then run the check cell below the collapsed solution.
# def my_clip_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
#     """logits_per_image (B, B): cos(image_i, text_j) / tau; the matching pairs are on the diagonal."""
#     ...


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution (running this cell replaces your my_clip_loss with this one)
def my_clip_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """logits_per_image (B, B): cos(image_i, text_j) / tau; the matching pairs are on the diagonal."""
    target = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    image_to_text = torch.nn.functional.cross_entropy(logits_per_image, target)  # each row picks its caption
    text_to_image = torch.nn.functional.cross_entropy(logits_per_image.T, target)  # each column picks its image
    return (image_to_text + text_to_image) / 2


# %% tags=["check"]
# Check: your my_clip_loss against the package's clip_loss
random_logits = torch.randn(16, 16, generator=g) * 5  # (16, 16), not symmetric: a one-sided loss fails here
with torch.no_grad():
    real_logits = clip(x8, caps8)  # (8, 8): the shipped model's cosines / tau for the batch of section 6
for name, logits in [("random", random_logits), ("shipped model", real_logits)]:
    mine, ref = my_clip_loss(logits), clip_loss(logits)
    assert torch.allclose(mine, ref, atol=1e-5), f"{name} logits: my_clip_loss {mine:.4f}, clip_loss {ref:.4f}"
print(f"my_clip_loss matches clip_loss; the shipped model's loss on the 8-digit batch: {clip_loss(real_logits):.3f}")

# %% [markdown]
# *Going further:* (1) Make the loss one-sided (image-to-text only) and train a fresh mini CLIP
# (`torch.manual_seed(0)` and `CLIPModel.for_dataset(...)` as in section 3): `train_clip` takes no loss
# argument, so write your own loop after `clip_train.py` (about 15 lines: batch, captions, `clip_loss`, step),
# or temporarily replace `diffusion_lite.clip_train.clip_loss` with a function of the same signature
# (`train_clip` passes `positives` as a second argument), e.g. `def one_sided(logits, positives=None):`
# `return torch.nn.functional.cross_entropy(logits, torch.arange(len(logits), device=logits.device))`.
# Does the text-to-image recall suffer? (2) In a fresh mini CLIP, fix the temperature at $\tau = 1$ (set
# `logit_scale` to 0, then `.requires_grad_(False)`) and watch the loss plateau. (3) Train with `positives="label"`,
# which counts every same-class pair as a match, and compare the sevens' similarity matrix.
#
# ## Summary
#
# - CLIP trains an image encoder and a text encoder so that matching (image, caption) pairs have similar
#   unit-length embeddings; the symmetric InfoNCE loss is a $B$-way classification in each direction, with
#   the rest of the batch as negatives and chance level $\log B$.
# - The cosines are divided by a learned temperature $\tau$ before the softmax: too high and no prediction
#   can be confident, too low and every near miss is punished; the model picks $\tau \approx 1/24$.
# - Our captions come from labels plus attributes measured on the pixels; a word-level tokenizer turns them
#   into ids and maps unknown words to `<unk>`, which carries no meaning.
# - A trained CLIP classifies zero-shot with one prompt per class (about 99% on MNIST); images and prompts
#   share a space, with a gap between the two modalities.
# - Wording matters when it changes what a prompt says about the image, or moves it out of the training
#   distribution; descriptive prompts narrow down *which* image is meant. The per-token outputs of this
#   text encoder are what the U-Net attends to in [chapter 07](07_cross_attention.ipynb).
#
# ## References
#
# - Radford, Kim, Hallacy, Ramesh, Goh, Agarwal, Sastry, Askell, Mishkin, Clark, Krueger & Sutskever 2021,
#   "Learning Transferable Visual Models From Natural Language Supervision" (ICML): CLIP, the symmetric loss
#   (Fig. 3), the learned temperature, zero-shot classification and prompt engineering (section 3.1.4).
# - van den Oord, Li & Vinyals 2018, "Representation Learning with Contrastive Predictive Coding": the
#   InfoNCE loss.
# - Sohn 2016, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective" (NeurIPS): the batch of
#   other pairs as negatives.
# - Liang, Zhang, Kwon, Yeung & Zou 2022, "Mind the Gap: Understanding the Modality Gap in Multi-modal
#   Contrastive Representation Learning" (NeurIPS).
# - Rombach, Blattmann, Lorenz, Esser & Ommer 2022, "High-Resolution Image Synthesis with Latent Diffusion
#   Models" (CVPR): latent diffusion. Its public release as Stable Diffusion v1 (CompVis/stable-diffusion,
#   2022; model card) conditions on the frozen text encoder of OpenAI's CLIP ViT-L/14; the paper's own
#   text-to-image model trained its text transformer jointly.
# - LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based Learning Applied to Document Recognition": MNIST.
