"""Structure of the course notebooks (nbval executes them separately, see the Makefile)."""

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_pair_is_in_sync(path):
    twin = path.with_suffix(".py")
    assert twin.exists(), f"{path.name} has no py:percent twin (run: jupytext --sync {path})"
    a = [(c.cell_type, c.source.strip()) for c in nbformat.read(path, as_version=4).cells]
    b = [(c.cell_type, c.source.strip()) for c in jupytext.read(twin).cells]
    assert a == b, f"{path.name} and {twin.name} differ: run `jupytext --sync {path}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_source_listings_are_output_checked(path):
    """A cell that prints package source is compared by nbval, so a listing the package has outgrown fails CI."""
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    unchecked = [c.source.splitlines()[0] for c in cells
                 if "inspect.getsource" in c.source and not c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert not unchecked, f"give these cells the first line # NBVAL_CHECK_OUTPUT: {unchecked}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_structure(path):
    nb = nbformat.read(path, as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "learning goals" in md, "every chapter starts with its learning goals"
    assert "summary" in md and "references" in md
    assert "exercise" in md and "assert" in code, "every chapter has an exercise checked by an assert"
    assert "import diffusion_lite" in code or "from diffusion_lite" in code
    assert re.search(r"_widget\(|\binteractive\(|\binteract\(", code), "every chapter has an ipywidgets explorer"
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert all(c is not None for c in counts) and counts == sorted(counts), "outputs must come from a full run"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert figures, "the stored outputs hold no figure (executed with MPLBACKEND=agg?)"
