"""Captions, measured attributes (thickness, slant, size; brightness, pattern) and the word-level tokenizer."""

import json

import pytest
import torch
import torch.nn.functional as F

from diffusion_lite import captions as C
from diffusion_lite import data
from diffusion_lite.data import load_dataset
from diffusion_lite.tokenizer import BOS, EOS, PAD, UNK, Tokenizer, split_words


def canvas(n=1, size=28):
    return -torch.ones(n, 1, size, size)


def bar(width, height=16, x0=10, y0=6):
    """A vertical bar of ``width`` pixels on a 28x28 canvas, ink = +1."""
    x = canvas()
    x[0, 0, y0:y0 + height, x0:x0 + width] = 1
    return x


def line(x_top, x_bottom, width=2):
    """A straight stroke from (x_top, 4) down to (x_bottom, 23)."""
    x = canvas()
    for y in range(4, 24):
        cx = round(x_top + (x_bottom - x_top) * (y - 4) / 19)
        x[0, 0, y, cx:cx + width] = 1
    return x


def shear(images, s):
    """Shift each row horizontally by s * (distance above the centre): s > 0 leans the top right."""
    theta = torch.tensor([[1.0, s, 0.0], [0.0, 1.0, 0.0]]).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, images.shape, align_corners=False)
    return F.grid_sample(images + 1, grid, align_corners=False) - 1  # background stays -1


@pytest.fixture(scope="module")
def mnist_test():
    return load_dataset("mnist", "test", subset=500, balanced=True)


# ----------------------------------------------------------------------------------------- attributes
def test_thickness_measures_stroke_width_in_pixels():
    t = C.thickness(torch.cat([bar(w) for w in (1, 2, 3, 4, 6)]))
    assert (t.diff() > 0).all()
    assert t[1] == pytest.approx(2 * 32 / 36, rel=0.05)  # 2A/P: 16x2 bar, edge 2*16 + 2*2 (corners rounded)
    thin, thick = C.thickness(torch.cat([line(8, 18, width=1), line(8, 18, width=4)]))
    assert thin < 1.5 and thick > 2.5  # the 4-pixel rows of a 28-degree stroke are 3.5 pixels across


def test_thickness_grows_when_real_digits_are_dilated(mnist_test):
    x = mnist_test.images
    dilated = F.max_pool2d(x, 3, stride=1, padding=1)
    assert (C.thickness(dilated) > C.thickness(x)).float().mean() > 0.98


def test_slant_sign_follows_the_lean():
    right, upright, left = C.slant(torch.cat([line(18, 8), line(13, 13), line(8, 18)])).tolist()
    assert right > 0.3 and left < -0.3 and abs(upright) < 1e-4
    assert right == pytest.approx(10 / 19, rel=0.1)  # horizontal pixels per vertical pixel
    assert right == pytest.approx(-left, rel=1e-4)


def test_slant_follows_a_shear_of_real_digits(mnist_test):
    x = mnist_test.images[:100]
    base, right, left = C.slant(x), C.slant(shear(x, 0.3)), C.slant(shear(x, -0.3))
    assert (right > base).all() and (left < base).all()
    assert (right - base).mean() == pytest.approx(0.3, abs=0.06)


def test_size_is_bounding_box_fraction_and_ignores_a_stray_pixel():
    small, big = canvas(2), None
    small[0, 0, 10:15, 10:15] = 1
    small[1, 0, 4:24, 6:20] = 1
    s = C.size(small)
    assert s[0] == pytest.approx(25 / 784) and s[1] == pytest.approx(20 * 14 / 784)
    big = small[1:].clone()
    big[0, 0, 0, 0] = 0.0  # a faint speck in the corner
    assert C.size(big)[0] == pytest.approx(s[1])


def test_attributes_of_empty_images_are_zero_not_nan():
    for fn in (C.thickness, C.slant, C.size):
        v = fn(canvas(3))
        assert v.shape == (3,) and (v == 0).all()


def test_attributes_reject_wrong_shapes():
    with pytest.raises(ValueError, match="N, C, H, W"):
        C.thickness(torch.zeros(28, 28))


def test_thresholds_are_the_quantiles_of_mnist_train():
    train = load_dataset("mnist", "train")
    glob = C.compute_thresholds(train.images)
    per_class = C.compute_thresholds(train.images, train.labels)
    for name, (lo, hi) in C.THRESHOLDS["mnist"].items():
        assert glob[name] == pytest.approx((lo, hi), abs=2e-3)
    for name, table in C.CLASS_THRESHOLDS["mnist"].items():
        assert torch.tensor(per_class[name]) == pytest.approx(torch.tensor(table), abs=2e-3)


def test_attribute_words_bucket_extremes():
    words = C.attribute_words(torch.cat([line(13, 13, width=1), line(13, 13, width=5), line(20, 6, width=2)]))
    assert words[0]["thickness"] == "thin" and words[1]["thickness"] == "thick"
    assert words[0]["slant"] == "upright" and words[2]["slant"] == "slanting right"


# ------------------------------------------------------------------------------------------- captions
def test_captions_name_the_class(mnist_test):
    g = torch.Generator().manual_seed(0)
    caps = C.make_captions(mnist_test.images, mnist_test.labels, generator=g)
    assert len(caps) == len(mnist_test.labels) and len(set(caps)) > 200  # varied
    for cap, y in zip(caps, mnist_test.labels.tolist()):
        words = split_words(cap)
        assert str(y) in words or C.class_names("mnist")[y] in words, cap
    by_hand = [c for c in caps if "written by hand" in c]
    assert by_hand and not any("handwritten" in c for c in by_hand)  # never "a handwritten 7 written by hand"


def test_caption_attributes_agree_with_the_measurement(mnist_test):
    x, y = mnist_test.images, mnist_test.labels
    caps = C.make_captions(x, y, generator=torch.Generator().manual_seed(1), p_attribute=1.0)
    words = C.attribute_words(x, y)
    opposite = {"thickness": {"thin": "thick", "thick": "thin"}, "size": {"small": "large", "large": "small"},
                "slant": {"slanting left": "right", "slanting right": "left"}}
    n_with = 0
    for cap, w in zip(caps, words):
        for attr, table in opposite.items():
            if w[attr] in table:
                wrong = table[w[attr]]
                assert not any(s in cap.split() for s in C.SYNONYMS.get(wrong, (wrong,))), (cap, w)
        n_with += any(s in cap for ss in C.SYNONYMS.values() for s in ss) or "upright" in cap
    assert n_with > 0.6 * len(caps)  # middle words (regular, medium) are left out


_ATTRIBUTE_TOKENS = {w for ws in C.SYNONYMS.values() for s in ws for w in s.split()} | {"upright"}


def test_attribute_free_captions_do_not_depend_on_the_attributes(mnist_test):
    # p(attribute-free caption | x) must be 1 - p_attribute for every image, else "a seven" would teach the
    # text-to-image model a tilted distribution (more middling sevens than real)
    x, y = mnist_test.images, mnist_test.labels
    words = C.attribute_words(x, y)
    n_spoken = torch.tensor([sum(w[a] not in ("regular", "medium") for a in C.ATTRIBUTES) for w in words])
    free = torch.zeros(len(y))
    for seed in range(20):
        caps = C.make_captions(x, y, generator=torch.Generator().manual_seed(seed), p_attribute=0.5)
        free += torch.tensor([not (_ATTRIBUTE_TOKENS & set(split_words(c))) for c in caps], dtype=torch.float)
    free /= 20
    for k in (1, 2, 3):  # images with 1, 2 or 3 attributes that have a word (slant always has one)
        group = free[n_spoken == k]
        assert len(group) > 50 and abs(group.mean().item() - 0.5) < 0.05, (k, len(group), group.mean().item())


def test_captions_are_reproducible_with_a_generator(mnist_test):
    x, y = mnist_test.images[:50], mnist_test.labels[:50]
    a = C.make_captions(x, y, generator=torch.Generator().manual_seed(3))
    b = C.caption_fn("mnist")(x, y, torch.Generator().manual_seed(3))
    assert a == b
    assert C.make_captions(x[:0], y[:0]) == []


def test_fashion_captions_use_garment_names():
    x, y = canvas(10), torch.arange(10)
    caps = C.make_captions(x, y, dataset="fashion-mnist", generator=torch.Generator().manual_seed(0))
    for cap, names in zip(caps, C.NOUNS["fashion-mnist"]):
        assert any(n in cap for n in names), cap
    assert C.class_prompts("fashion-mnist")[9] == "a photo of an ankle boot"
    with pytest.raises(ValueError, match="no attribute thresholds"):  # CIFAR-10 captions carry no attributes
        C.make_captions(torch.zeros(2, 3, 32, 32), torch.arange(2), dataset="cifar10", p_attribute=0.5)
    with pytest.raises(ValueError, match="no attribute thresholds"):  # when the function is made, not at a batch
        C.caption_fn("cifar10", 0.5)
    assert C.default_p_attribute("cifar10") == 0.0 and C.default_p_attribute("fashion-mnist") == 0.5
    with pytest.raises(ValueError, match="unknown dataset"):
        C.make_captions(x, y, dataset="svhn")


def garment(value=0.6, stripes=0.0):
    """A 16x12 rectangle of ink ``value`` (in [0, 1]) on a black 28x28 canvas; ``stripes`` > 0 alternates the
    rows between value and value - stripes."""
    x = canvas()
    ink = torch.full((16, 12), value)
    ink[::2] -= stripes
    x[0, 0, 6:22, 8:20] = ink * 2 - 1
    return x


def test_brightness_and_pattern_oracles():
    plain, striped = garment(0.6), garment(0.6, stripes=0.4)
    assert C.brightness(plain).item() == pytest.approx(0.6, abs=1e-6)  # the object's mean ink, whatever its size
    assert C.pattern(plain).item() == pytest.approx(0.0, abs=1e-6)  # its outline does not count
    # rows 0.6 / 0.2: inside, each pixel's Laplacian is |4 v - 2 v - 2 (other row)| = 2 * 0.4 = 0.8
    assert C.pattern(striped).item() == pytest.approx(0.8, abs=1e-5)
    assert C.brightness(canvas()).item() == C.pattern(canvas()).item() == 0  # no object: 0, not NaN
    words = C.attribute_words(torch.cat([garment(0.3), garment(0.9), striped]), dataset="fashion-mnist")
    assert [w["brightness"] for w in words[:2]] == ["dark", "light"] and words[0]["pattern"] == "plain"
    assert words[2]["pattern"] == "patterned" and set(words[0]) == {"brightness", "pattern"}
    with pytest.raises(ValueError, match="no attributes for 'cifar10'"):
        C.measure(garment(), "cifar10")


def test_garment_pattern_words_use_the_thresholds_of_the_labelled_class():
    """Pattern is bucketed per class: the same stripes are "patterned" on a t-shirt (class 0, high threshold
    0.276) and "plain" on a sandal (class 5, whose straps make even plain ones measure above 0.379)."""
    x = garment(0.6, stripes=0.17).repeat(2, 1, 1, 1)  # pattern 2 * 0.17 = 0.34
    assert C.pattern(x[:1]).item() == pytest.approx(0.34, abs=1e-5)
    words = C.attribute_words(x, torch.tensor([0, 5]), dataset="fashion-mnist")
    assert [w["pattern"] for w in words] == ["patterned", "plain"]
    assert C.attribute_words(x[:1], dataset="fashion-mnist")[0]["pattern"] == "regular"  # no label: 0.19-0.38
    with pytest.warns(UserWarning, match=r"are they in \[0, 1\]") as caught:  # every pixel would be the garment
        C.attribute_words((x + 1) / 2, dataset="fashion-mnist")
    assert caught[0].filename == __file__  # the warning points at the caller's line
    assert C.attribute_words(x, [0, 5], dataset="fashion-mnist") == words  # labels as a list
    for bad in (torch.tensor([0, 10]), torch.tensor([-1, 0])):
        with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 10\)"):
            C.attribute_words(x, bad, dataset="fashion-mnist")


@pytest.mark.skipif(not (data.DEBIAN_DIR / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
def test_fashion_thresholds_are_the_quantiles_of_fashion_train_and_captions_agree():
    train = load_dataset("fashion-mnist", "train")
    glob = C.compute_thresholds(train.images, dataset="fashion-mnist")
    per_class = C.compute_thresholds(train.images, train.labels, dataset="fashion-mnist")
    for name, (lo, hi) in C.THRESHOLDS["fashion-mnist"].items():
        assert glob[name] == pytest.approx((lo, hi), abs=2e-3)
    for name, table in C.CLASS_THRESHOLDS["fashion-mnist"].items():
        assert torch.tensor(per_class[name]) == pytest.approx(torch.tensor(table), abs=2e-3)
    x, y = train.images[:2000], train.labels[:2000]
    words = C.attribute_words(x, y, "fashion-mnist")
    caps = C.make_captions(x, y, "fashion-mnist", generator=torch.Generator().manual_seed(1), p_attribute=1.0)
    opposite = {"dark": "light", "light": "dark", "plain": "patterned", "patterned": "plain"}
    said = 0
    for cap, w in zip(caps, words):
        for word in (w["brightness"], w["pattern"]):
            if word in opposite:
                wrong = opposite[word]
                assert not set(C.SYNONYMS[wrong]) & set(split_words(cap)), (cap, w)
        said += any(s in split_words(cap) for word in opposite for s in C.SYNONYMS[word]) or "grey" in cap
    assert said == len(caps)  # brightness always has a spoken word ("grey" in the middle), as slant has "upright"


def test_class_prompts_fix_articles():
    assert C.class_prompts("mnist", "a handwritten {digit}")[8] == "a handwritten 8"
    assert C.class_prompts("mnist", "a photo of a {name}")[8] == "a photo of an eight"
    assert C.class_prompts("mnist", "a {digit}")[8] == "an 8"
    for template in ("an image of {}", "a {label}"):
        with pytest.raises(ValueError, match=r"use \{name\} for the class name"):
            C.class_prompts("fashion-mnist", template)
    assert [C.fix_articles(f"a {n} and a {n}") for n in (1, 11, 18, 100)] == [
        "a 1 and a 1", "an 11 and an 11", "an 18 and an 18", "a 100 and a 100"]
    assert C.class_prompts("mnist")[7] == "the digit seven"


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "cifar10"])
def test_vocabulary_covers_every_caption(dataset):
    size = 32 if dataset == "cifar10" else 28
    x = torch.rand(400, 1, size, size) * 2 - 1
    y = torch.arange(400) % 10
    tok = Tokenizer.for_dataset(dataset)
    p = 0.0 if dataset == "cifar10" else 1.0
    caps = C.make_captions(x, y, dataset, generator=torch.Generator().manual_seed(0), p_attribute=p)
    tok.encode(caps + C.class_prompts(dataset), on_unknown="error")  # no unknown word, nothing too long


# ------------------------------------------------------------------------------------------ tokenizer
@pytest.fixture
def tok():
    return Tokenizer.for_dataset("mnist")


def test_encode_pads_and_masks(tok):
    ids, mask = tok.encode(["a thick seven", "the digit 7 slanting right"])
    assert ids.shape == mask.shape == (2, tok.max_length) and ids.dtype == torch.long and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [5, 7]
    assert ids[0, 0] == BOS and ids[0, 4] == EOS and (ids[~mask] == PAD).all()


def test_empty_prompt_is_bos_eos(tok):
    ids, mask = tok.encode([""])
    assert ids[0, :2].tolist() == [BOS, EOS] and mask[0].sum() == 2
    assert tok.decode(ids) == [""]


def test_round_trip_lowercases_and_splits_punctuation(tok):
    texts = ["A Thick SEVEN  slanting right", "the digit 7", "an image of a small 8"]
    ids, _ = tok.encode(texts)
    assert tok.decode(ids) == ["a thick seven slanting right", "the digit 7", "an image of a small 8"]
    assert split_words("A T-shirt, 42!") == ["a", "t", "-", "shirt", ",", "42", "!"]
    fashion = Tokenizer.for_dataset("fashion-mnist")
    assert fashion.decode(fashion.encode(["a photo of a T-shirt"])[0]) == ["a photo of a t-shirt"]


def test_middle_attribute_words_are_known_but_untrained_and_warn(tok):
    """ "regular" and "medium" are in the caption vocabulary (every bucket word is) but no caption says them:
    a prompt using them gets a warning like an unknown word's; a vocabulary of one's own does not."""
    assert tok.unspoken == {"regular", "medium"}
    with pytest.warns(UserWarning, match=r"word\(s\) \['regular'\] are in the vocabulary but no training caption"):
        ids, _ = tok.encode(["a regular seven"])
    assert ids[0, 2] == tok.index["regular"]  # still encoded as itself
    assert Tokenizer.for_dataset("fashion-mnist").unspoken == {"regular"}  # its middle brightness word "grey" is said
    assert not Tokenizer(["a", "regular", "seven"]).unspoken


def test_unknown_words_warn_error_or_map(tok):
    assert tok.unknown_words("two sevens and a sevens") == ["sevens", "and"]
    with pytest.warns(UserWarning, match="sevens"):
        ids, _ = tok.encode(["two sevens"])
    assert ids[0, 2] == UNK
    with pytest.raises(ValueError, match="sevens"):
        tok.encode(["two sevens"], on_unknown="error")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok.encode(["two sevens"], on_unknown="unk")
    with pytest.raises(ValueError, match="on_unknown"):
        Tokenizer(["a"], on_unknown="ignore")


def test_unknown_word_messages_say_what_the_vocabulary_holds(tok):
    with pytest.warns(UserWarning) as caught:
        tok.encode(["a seven, please."])
    message = str(caught[0].message)
    assert "[',', 'please', '.']" in message and "punctuation (, .) is not in the vocabulary" in message
    assert all(w in message.split() for w in ("seven", "thick", "slanting"))  # the words one may use instead
    with pytest.warns(UserWarning, match="did you mean 'handwritten' for 'handwriten', 'seven' for 'sevn'"):
        tok.encode(["a handwriten sevn"])  # likely typos get a suggestion; 'please' above has none
    assert "did you mean" not in message
    fashion = Tokenizer(C.all_vocabulary("fashion-mnist"))
    with pytest.warns(UserWarning, match="did you mean 't-shirt' for 'tshirt', 'ankle boot' for 'ankleboot'"):
        fashion.encode(["a tshirt", "an ankleboot"])  # not 'shirt' (another class) for 'tshirt'
    with pytest.warns(UserWarning, match="did you mean 'a shirt' for 'ashirt', 't-shirt' for 'tshirts'?") as caught:
        fashion.encode(["at ashirt", "tshirts"])  # 'a' is an article, a plural splits too
    assert "'a t'" not in str(caught[0].message)  # no split with a one-letter second half
    with pytest.warns(UserWarning) as caught:
        tok.encode(["a 12"])
    assert "'1 2'" not in str(caught[0].message)  # a number is not two digits run together
    with pytest.raises(ValueError, match=r"\['please'\] not in the .*vocabulary; rephrase.*; the vocabulary: .* seven"):
        tok.encode(["a seven please"], on_unknown="error")


def test_too_long_prompt_errors_naming_the_limit(tok):
    long = " ".join(["seven"] * 20)
    with pytest.raises(ValueError, match="max_length=16"):
        tok.encode([long])
    ids, mask = tok.encode([long], truncate=True)
    assert mask.all() and ids[0, -1] == EOS
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "zebra" is cut off with the rest, so it is not reported as unknown
        tok.encode([long + " zebra"], truncate=True)


def test_non_ascii_text_is_normalised_and_unknown_words_are_named_whole(tok):
    assert split_words("Café ７, ＳＥＶＥＮ") == ["café", "7", ",", "seven"]  # NFKC: full-width is plain
    assert tok.encode(["ＳＥＶＥＮ ７"])[0].tolist() == tok.encode(["seven 7"])[0].tolist()
    with pytest.warns(UserWarning, match=r"\['café'\]"):
        tok.encode(["a café seven"])


def test_decode_rejects_ids_outside_the_vocabulary(tok):
    with pytest.raises(ValueError, match=r"token ids must be in \[0, "):
        tok.decode(torch.tensor([[1, -1, 2]]))
    with pytest.raises(ValueError, match="token ids"):
        tok.decode(torch.tensor([[len(tok.vocab)]]))


def test_encode_rejects_a_bare_string(tok):
    with pytest.raises(ValueError, match="list of strings"):
        tok.encode("a seven")


def test_tokenizer_dict_round_trip(tok):
    again = Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.vocab == tok.vocab and again.max_length == tok.max_length
    assert torch.equal(again.encode(["a bold 3"])[0], tok.encode(["a bold 3"])[0])
    assert len(tok) == 4 + len(C.all_vocabulary("mnist"))
