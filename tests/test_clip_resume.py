"""train-clip loses nothing: Ctrl-C, SIGTERM or SIGHUP finish the step, save the run (OUT.partial.*, never a
finished-looking OUT.*) and exit with 128 + the signal; the same command resumes it bit-exactly; other settings
are refused by name; a finished encoder is still never overwritten."""

import json
import os
import signal
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffusion_lite.checkpoints import CheckpointError, load
from diffusion_lite.cli import main
from diffusion_lite.clip import CLIPModel
from diffusion_lite.clip_train import RUN_KIND, train_clip
from diffusion_lite.data import load_dataset
from diffusion_lite.train_state import TrainingInterrupted

pytestmark = pytest.mark.usefixtures("default_stop_signals")  # whatever the shell set

TINY = dict(width=16, layers=1, heads=4, embed_dim=16, cnn_channels=(8, 8, 8))
STEPS = 6
KW = dict(steps=STEPS, batch_size=16, warmup_steps=2, progress=False)  # 40 images: a new epoch at step 3
SIGNALS = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
main_thread = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                 reason="signals need the main thread")


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist", "train", subset=40, balanced=True)


def model(**overrides):
    torch.manual_seed(0)
    return CLIPModel.for_dataset("mnist", **{**TINY, **overrides})


def gen():
    return torch.Generator().manual_seed(1)


def signal_at(step, sig=signal.SIGTERM):
    """A callback that sends ``sig`` to this process after ``step``, as a terminal or a scheduler would."""
    def callback(info):
        if info["step"] == step:
            os.kill(os.getpid(), sig)
    return callback


@pytest.fixture(scope="module")
def whole(data):
    """An uninterrupted run: (losses, weights)."""
    m = model()
    return train_clip(m, data, generator=gen(), **KW), m.state_dict()


def assert_same(state, m):
    assert all(torch.equal(a, b) for a, b in zip(state.values(), m.state_dict().values(), strict=True))


# ------------------------------------------------------------------------------------------------- train_clip
@main_thread
@pytest.mark.parametrize("signame", SIGNALS)
def test_a_signal_saves_the_run_and_the_resumed_run_is_bit_identical(tmp_path, data, whole, signame):
    sig, stem = getattr(signal, signame), tmp_path / "run"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    by = "" if signame == "SIGINT" else f" by {signame}"
    with pytest.raises(TrainingInterrupted, match=f"interrupted{by} at step 3 of 6; the run is saved in {stem}") as e:
        train_clip(model(), data, generator=gen(), checkpoint=stem, callback=signal_at(3, sig), **KW)
    assert e.value.signum == sig  # the CLI exits with 128 + signum
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the caller's handlers are back
    saved = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert saved["kind"] == RUN_KIND and saved["train_state"]["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.safetensors"]  # no temporary files left

    m = model(width=32)  # other initial weights: all of them come from the checkpoint
    with pytest.raises(ValueError, match="config width: saved 16, requested 32"):
        train_clip(m, data, generator=gen(), checkpoint=stem, **KW)
    m = model()
    history = train_clip(m, data, generator=torch.Generator().manual_seed(99), checkpoint=stem, **KW)
    assert history == whole[0]  # every step's loss, the saved ones included
    assert_same(whole[1], m)  # as if never interrupted
    assert json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))["train_state"]["step"] == STEPS


def test_periodic_checkpoints_survive_a_crash(tmp_path, data, whole):
    def crash_at_5(info):
        if info["step"] == 5:
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        train_clip(model(), data, generator=gen(), checkpoint=tmp_path / "run", checkpoint_every=2,
                   callback=crash_at_5, **KW)
    assert json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))["train_state"]["step"] == 4
    m = model()
    assert train_clip(m, data, generator=gen(), checkpoint=tmp_path / "run", **KW) == whole[0]
    assert_same(whole[1], m)


def test_resuming_with_other_settings_is_an_error_that_names_them(tmp_path, data):
    stem = tmp_path / "run"
    train_clip(model(), data, generator=gen(), checkpoint=stem, **{**KW, "steps": 2})
    before = (tmp_path / "run.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"batch_size: saved 16, requested 8; lr: saved 0.002, requested 0.001; "
                                         r"positives: saved 'diagonal', requested 'label'.*only steps may change"):
        train_clip(model(), data, generator=gen(), checkpoint=stem, lr=1e-3, positives="label",
                   **{**KW, "batch_size": 8})
    with pytest.raises(ValueError, match=r"p_attribute: saved 0.5, requested 1.0"):  # the captions' attribute share
        train_clip(model(), data, generator=gen(), checkpoint=stem, p_attribute=1.0, **KW)
    with pytest.raises(ValueError, match="n_images: saved 40, requested 32"):
        train_clip(model(), (data.images[:32], data.labels[:32]), dataset_name="mnist", generator=gen(),
                   checkpoint=stem, **KW)
    with pytest.raises(ValueError, match="already trained to step 2, past steps=1"):
        train_clip(model(), data, generator=gen(), checkpoint=stem, **{**KW, "steps": 1})
    assert (tmp_path / "run.safetensors").read_bytes() == before
    with pytest.warns(UserWarning, match="planned for 2 steps and now trains to 3"):  # more steps: allowed
        assert len(train_clip(model(), data, generator=gen(), checkpoint=stem, **{**KW, "steps": 3})) == 3


def test_p_attribute_sets_the_default_captions_share_with_attribute_words(data, monkeypatch):
    """train_clip(p_attribute=1.0): every caption carries attribute words (0.0: none); with a captions function of
    the caller's, p_attribute would be ignored, so it is refused; outside [0, 1] an error."""
    from diffusion_lite import attributes as A
    from diffusion_lite import captions as C

    words = {w for a in A.MEASURES for w in A.WORDS[a]} - {"regular", "medium"}  # the silent ones: never said
    spoken = {part for w in words for syn in C.SYNONYMS.get(w, (w,)) for part in syn.split()} - {"left", "right"}
    seen, make = [], C.make_captions
    monkeypatch.setattr(C, "make_captions", lambda *a, **kw: seen.append(make(*a, **kw)) or seen[-1])
    for p in (1.0, 0.0):
        seen.clear()
        train_clip(model(), data, generator=gen(), p_attribute=p, **{**KW, "steps": 2})
        said = [bool(spoken & set(c.split())) for batch in seen for c in batch]
        assert len(said) == 2 * KW["batch_size"] and all(said) if p else not any(said), (p, seen[0][:4])
    with pytest.raises(ValueError, match="with your own captions function, set it there"):
        train_clip(model(), data, generator=gen(), captions=lambda x, y, g: ["a seven"] * len(y), p_attribute=1.0,
                   **KW)
    for bad in (1.5, -0.1, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match=r"p_attribute must be a number in \[0, 1\]"):
            train_clip(model(), data, generator=gen(), p_attribute=bad, **KW)
    assert C.check_p_attribute(np.float32(0.25), "mnist") == 0.25 == C.check_p_attribute(torch.tensor(0.25), "mnist")


def test_a_run_saved_before_p_attribute_was_recorded_resumes_as_the_default_share(tmp_path, data):
    stem = tmp_path / "old"
    train_clip(model(), data, generator=gen(), checkpoint=stem, **{**KW, "steps": 2})
    meta = json.loads((tmp_path / "old.json").read_text(encoding="utf-8"))
    del meta["train"]["p_attribute"]  # as a run saved before 2026-12-07 has it
    (tmp_path / "old.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ValueError, match=r"p_attribute: saved 0.5, requested 1.0"):
        train_clip(model(), data, generator=gen(), checkpoint=stem, p_attribute=1.0, **{**KW, "steps": 3})
    with pytest.warns(UserWarning, match="planned for 2 steps"):
        assert len(train_clip(model(), data, generator=gen(), checkpoint=stem, **{**KW, "steps": 3})) == 3


def test_a_finished_encoder_is_not_taken_for_a_run(tmp_path, data):
    from diffusion_lite.clip import save_clip

    save_clip(tmp_path / "enc", model())
    with pytest.raises(ValueError, match="is a 'clip' checkpoint, not a train_clip run"):
        train_clip(model(), data, generator=gen(), checkpoint=tmp_path / "enc", **KW)


# --------------------------------------------------------------------------------------------------- the CLI
ARGS = ["train-clip", "--steps", str(STEPS), "--batch-size", "16", "--subset", "40", "--width", "16",
        "--threads", "1"]


def cli(capsys, *args):
    rc = main([*ARGS, *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def interrupt_at_3(monkeypatch):
    """Send SIGTERM during the 3rd step's loss (train-clip has no callback: patch the loss it calls)."""
    import diffusion_lite.clip_train as ct

    calls, loss = [], ct.clip_loss

    def clip_loss(*a):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss(*a)

    monkeypatch.setattr(ct, "clip_loss", clip_loss)
    return lambda: monkeypatch.setattr(ct, "clip_loss", loss)


@main_thread
def test_cli_interrupt_exits_128_plus_signal_and_rerunning_resumes_bit_exactly(tmp_path, capsys, interrupt_at_3):
    out, partial = tmp_path / "c", tmp_path / "c.partial"
    rc, _, err = cli(capsys, "--out", str(out))
    assert rc == 128 + signal.SIGTERM, err
    assert err.strip() == (f"diffusion-lite train-clip: training interrupted by SIGTERM at step 3 of 6; the run is "
                           f"saved in {partial}.safetensors and {partial}.json; rerun the same command to resume it "
                           f"({out}.safetensors and {out}.json are written when training completes)")
    # nothing looks like a finished encoder: a text-to-image run cannot use the partial run by mistake
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.partial.json", "c.partial.safetensors"]
    with pytest.raises(CheckpointError, match="unknown checkpoint kind 'clip-partial'"):
        load(partial)
    rc = main(["train", "--dataset", "mnist", "--steps", "1", "--text", str(partial), "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert rc == 2 and "--text expects a CLIP checkpoint (kind 'clip'), got kind 'clip-partial'" in err

    interrupt_at_3()
    rc, stdout, err = cli(capsys, "--out", str(out))  # the same command
    assert rc == 0, err
    assert f"resuming the interrupted run {partial} from step 3 of 6" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.safetensors"]  # the run is no longer needed
    assert cli(capsys, "--out", str(tmp_path / "whole"))[0] == 0
    a, b = load_file(f"{out}.safetensors"), load_file(str(tmp_path / "whole.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cards = [json.loads((tmp_path / f"{n}.json").read_text(encoding="utf-8"))["card"] for n in ("c", "whole")]
    assert [{**c, "minutes": 0} for c in cards[:1]] == [{**c, "minutes": 0} for c in cards[1:]]
    assert json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))["kind"] == "clip"

    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    rc, stdout, err = cli(capsys, "--out", str(out))  # the same command again: done already, as `train` says
    assert rc == 0 and "already trained with these settings (6 steps): nothing to do" in stdout, err
    rc, _, err = cli(capsys, "--out", str(out), "--steps", "8", "--lr", "1e-3")  # a finished encoder is never
    assert rc == 2 and "c.safetensors is a finished encoder trained with other settings" in err  # overwritten
    assert "--steps: saved 6, requested 8; --lr: saved 0.002, requested 0.001" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@main_thread
def test_cli_resume_conflict_on_a_defaulted_p_attribute_says_it_is_the_default(tmp_path, capsys, interrupt_at_3):
    """A run started with --p-attribute 0.8 and resumed without the option: the 0.5 it would use was never asked
    for, so the message says it is the default (as `train` does) rather than quoting a value the user never typed."""
    out = tmp_path / "c"
    assert cli(capsys, "--out", str(out), "--p-attribute", "0.8")[0] == 128 + signal.SIGTERM
    interrupt_at_3()
    rc, _, err = cli(capsys, "--out", str(out))
    assert rc == 2 and "--p-attribute: saved 0.8, requested 0.5 (the default, as --p-attribute was not given)" in err
    rc, _, err = cli(capsys, "--out", str(out), "--p-attribute", "0.5")  # asked for: no "(the default)"
    assert rc == 2 and "--p-attribute: saved 0.8, requested 0.5." in err


@main_thread
def test_cli_resume_with_other_settings_names_them(tmp_path, capsys, interrupt_at_3):
    out, partial = tmp_path / "c", tmp_path / "c.partial"
    assert cli(capsys, "--out", str(out))[0] == 128 + signal.SIGTERM
    interrupt_at_3()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    rc, stdout, err = cli(capsys, "--out", str(out), "--batch-size", "8", "--lr", "1e-3", "--width", "32",
                          "--subset", "80", "--seed", "1", "--dataset", "fashion-mnist", "--p-attribute", "0.8")
    assert rc == 2 and "resuming" not in stdout and len(err.strip().splitlines()) == 1
    for msg in (f"cannot resume the interrupted run {partial}", "--dataset: saved 'mnist', requested 'fashion-mnist'",
                "--subset: saved 40, requested 80", "--seed: saved 0, requested 1", "--width: saved 16, requested 32",
                "--batch-size: saved 16, requested 8", "--lr: saved 0.002, requested 0.001",
                "--p-attribute: saved 0.5, requested 0.8",
                "only --steps may change", f"or delete {partial}.json and {partial}.safetensors to start afresh"):
        assert msg in err
    rc, _, err = cli(capsys, "--out", str(out), "--steps", "2")
    assert rc == 2 and "already at step 3, past --steps 2: give --steps 6 (the run's), or at least 3" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing touched

    (tmp_path / "c.partial.json").write_text("{not json", encoding="utf-8")
    rc, _, err = cli(capsys, "--out", str(out))
    assert rc == 2 and "c.partial.json is not valid JSON" in err and "cannot be resumed" in err
