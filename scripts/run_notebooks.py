"""Execute course notebooks top to bottom in the default (CI-sized) mode and save their outputs.

    python scripts/run_notebooks.py                 # all chapters
    python scripts/run_notebooks.py 03 05           # chapters whose file name starts with 03 or 05
    python scripts/run_notebooks.py notebooks/05_sampling.py   # a path names its chapter too

The .py twin is the source: it is converted to .ipynb (keeping nothing stale), executed with the
repository's Python in notebooks/ (as nbval runs it), saved, and the pair is re-synced with jupytext.
"""

from __future__ import annotations

import difflib
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"


# No cell of the CI-sized default mode takes more than a minute or two here, so a cell still running after
# CELL_TIMEOUT seconds is taken for a hang: nbclient sometimes never receives the reply of a cell that
# displays an ipywidget (jupyter/nbclient#312; seen on chapters 03, 08 and 10 with both processes idle). The notebook is
# then executed once more from the start in a fresh kernel.
CELL_TIMEOUT = 240


def _keep_cell_ids(nb, old_path: Path) -> None:
    """Give each cell the id of its counterpart in the committed notebook, so that a re-run does not rewrite
    every id and the diff shows only what changed: cells with the same type and source keep their id, and the
    edited cells between two such matches take the ids of the old cells there, in order."""
    if not old_path.is_file():
        return
    old = nbformat.read(old_path, as_version=4).cells
    key = [(c.cell_type, c.source) for c in old], [(c.cell_type, c.source) for c in nb.cells]
    used = set()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, *key, autojunk=False).get_opcodes():
        if op in ("equal", "replace"):
            for i, j in zip(range(i1, i2), range(j1, j2)):
                if old[i].cell_type == nb.cells[j].cell_type and "id" in old[i] and old[i]["id"] not in used:
                    nb.cells[j]["id"] = old[i]["id"]
                    used.add(old[i]["id"])


def _execute(py: Path):
    nb = jupytext.read(py)
    _keep_cell_ids(nb, py.with_suffix(".ipynb"))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    nb.metadata["jupytext"].pop("text_representation", None)  # as `jupytext --sync` stores an .ipynb: no churn
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(NB_DIR)}}).execute()
    return nb


def run(py: Path) -> float:
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.pop("DIFFUSION_LITE_FULL", None)
    # MPLBACKEND=agg (as the test commands set it) would reach the kernels and store every figure as nothing
    os.environ.pop("MPLBACKEND", None)
    t0 = time.perf_counter()
    try:
        nb = _execute(py)
    except CellTimeoutError:
        print(f"  a cell ran for more than {CELL_TIMEOUT} s (taken for a hang); running {py.name} again", flush=True)
        t0 = time.perf_counter()
        nb = _execute(py)
    dt = time.perf_counter() - t0
    out = py.with_suffix(".ipynb")
    nbformat.write(nb, out)
    jupytext.write(jupytext.read(out), py, fmt="py:percent")  # keep the twin byte-identical to the pair
    return dt


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    pys = sorted(p for p in NB_DIR.glob("[0-9][0-9]_*.py"))
    if argv:  # "05", "05_sampling", or a path such as notebooks/05_sampling.ipynb
        keys = {a: Path(a).stem if a.endswith((".py", ".ipynb")) else a for a in argv}
        if not all(keys.values()):  # an unset shell variable: "" would match every chapter
            print("an empty argument names no chapter (an unset variable?)", file=sys.stderr)
            return 2
        unmatched = [a for a, k in keys.items() if not any(p.name.startswith(k) for p in pys)]
        if unmatched:
            print(f"no chapter matches {', '.join(map(repr, unmatched))}: give the start of a file name in "
                  f"notebooks/ (e.g. 05 or 05_sampling), one of: {', '.join(p.stem for p in pys)}", file=sys.stderr)
            return 2
        pys = [p for p in pys if any(p.name.startswith(k) for k in keys.values())]
    for py in pys:
        print(f"running {py.name} ...", flush=True)
        print(f"  {run(py):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
