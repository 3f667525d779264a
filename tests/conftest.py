import os
import signal
import threading

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


@pytest.fixture
def default_stop_signals():
    """Tests that send themselves SIGINT, SIGTERM or SIGHUP start from Python's default handlers, whatever the
    shell that started pytest set: under `nohup` SIGHUP is ignored, in a background job SIGINT is, and training
    leaves an ignored signal ignored (train_state.StopOnInterrupt). Restored afterwards."""
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {n: signal.getsignal(getattr(signal, n)) for n in names}
    for n in names:
        signal.signal(getattr(signal, n), signal.default_int_handler if n == "SIGINT" else signal.SIG_DFL)
    try:
        yield
    finally:
        for n, handler in saved.items():
            if handler is not None:
                signal.signal(getattr(signal, n), handler)
