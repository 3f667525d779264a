import os

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(1)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def text2img():
    """The shipped text-to-image pipeline (loaded once per test module; sampling does not change it)."""
    from diffusion_lite.checkpoints import load_pretrained

    return load_pretrained("mnist-text2img")
