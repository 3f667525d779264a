"""Write students' copies of the course chapters: the exercises' solutions removed, everything else kept.

    python scripts/student_version.py                          # every chapter -> student/ next to the repository
    python scripts/student_version.py --out /tmp/class 03 05   # chapters whose file name starts with 03 or 05
    python scripts/student_version.py --py notebooks/02_noise_schedules.ipynb   # also write the .py twin

Every exercise has three cells: a "Your turn" cell, a solution cell (cell tag ``solution``) and a check cell
(tag ``check``) that tests the reader's answer against the package. In the copy, each solution cell is replaced
by a one-line markdown note (``--drop``: removed), and the stored outputs of the check cells and "Your turn" cells
are cleared (they showed the solution passing). All other cells, outputs and figures are kept, so the chapter
still reads as before without running it. Each copy records its chapter in its metadata, which grade.py reads.
A code cell whose first line is ``# Solution`` / ``# Check`` counts as one even if untagged (a warning says so),
so a chapter whose tags are missing never leaks its solutions.

The folder notebooks/ is only read. The chapters find MNIST and the pretrained models through the installed
``diffusion_lite`` package, not through paths relative to the notebook, so the copies run from any folder of a
machine where the package is installed (``pip install -e .`` of this repository). Grade students' returned
notebooks with scripts/grade.py.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTE = ("*The solution is withheld in this copy. Where the text mentions the collapsed solution, there is none "
        "here: write your answer in the cell above, then run the check cell below.*")
NOTE_TAG = "solution-removed"
DROP_NOTE = ("*The exercises' solutions are removed from this copy. Where the text mentions a collapsed solution, "
             "there is none here: write your answer in the \"Your turn\" cell, then run the check cell below it.*")
YOUR_TURN = re.compile(r"#\s*Your turn\b")
_FIRST_LINE = {"solution": re.compile(r"#\s*Solution\b"), "check": re.compile(r"#\s*Check\b")}


def cell_role(cell) -> tuple[str | None, bool]:
    """("solution" | "check" | None, whether the role comes from a cell tag rather than the first line)."""
    tags = cell.get("metadata", {}).get("tags", [])
    for role in ("solution", "check"):
        if role in tags:
            return role, True
    if cell.cell_type == "code":
        first = cell.source.lstrip().split("\n", 1)[0]
        for role, pattern in _FIRST_LINE.items():
            if pattern.match(first):
                return role, False
    return None, False


def student_copy(nb, drop: bool = False, chapter: str | None = None) -> tuple[object, dict]:
    """A student's copy of the notebook ``nb`` (not modified) and counts of what changed. ``chapter`` (the teacher's
    file name without .ipynb) is recorded in the copy's metadata, so that grade.py finds the teacher's copy even
    when a course platform renames the submission."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("jupytext", None)  # else jupytext (in the notebooks extra) pairs the copy with a new .py file
    if chapter is not None:
        nb.metadata["diffusion_lite"] = {"chapter": chapter, "student_copy": True}
    cells, stats = [], {"solutions": 0, "checks": 0, "untagged": 0}
    for cell in nb.cells:
        role, tagged = cell_role(cell)
        stats["untagged"] += role is not None and not tagged
        if role == "solution":
            stats["solutions"] += 1
            if not drop:
                cells.append(nbformat.v4.new_markdown_cell(NOTE, metadata={"tags": [NOTE_TAG]}))
            continue
        if role == "check" or (cell.cell_type == "code" and YOUR_TURN.match(cell.source.lstrip())):
            stats["checks"] += role == "check"
            cell.outputs, cell.execution_count = [], None  # the teacher's run: a check passing, an answer cell "run"
            cell.metadata.pop("execution", None)  # the teacher's run's timestamps
        cells.append(cell)
    if drop and stats["solutions"]:  # one note, after the title, instead of one per solution
        first = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), -1)
        cells.insert(first + 1, nbformat.v4.new_markdown_cell(DROP_NOTE, metadata={"tags": [NOTE_TAG]}))
    nb.cells = cells
    return nb, stats


def resolve(arg: str) -> Path:
    """A notebook named on the command line: a path to an .ipynb (or its .py twin), or a chapter prefix."""
    path = Path(arg)
    if path.suffix == ".py":
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {arg}")
        path = path.with_suffix(".ipynb")
        if not path.is_file():
            raise FileNotFoundError(f"{arg} has no paired {path.name} (the outputs live in the .ipynb): "
                                    f"run `jupytext --sync {arg}`")
        return path
    if path.is_file():
        if path.suffix != ".ipynb":
            raise ValueError(f"not a notebook: {arg} (expected an .ipynb file, its .py twin or a chapter number)")
        return path
    matches = sorted(NB_DIR.glob(f"{arg}*.ipynb")) if "/" not in arg and arg else []
    if len(matches) == 1:
        return matches[0]
    chapters = ", ".join(p.stem for p in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")))
    if matches:
        raise ValueError(f"{arg!r} names several notebooks ({', '.join(p.name for p in matches)}): give more of it")
    raise FileNotFoundError(f"no such notebook: {arg} (the chapters in {NB_DIR}: {chapters})")


def _sources(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("notebooks", nargs="*",
                    help="chapters: .ipynb paths, their .py twins or file-name prefixes (default: every chapter)")
    ap.add_argument("--out", default=str(ROOT.parent / "student"),
                    help="folder for the copies (default: student/ next to the repository, outside it)")
    ap.add_argument("--py", action="store_true", help="also write each copy's jupytext py:percent twin")
    ap.add_argument("--drop", action="store_true",
                    help="remove solution cells entirely instead of leaving a 'solution removed' note")
    args = ap.parse_args(argv)

    try:
        paths = [resolve(a) for a in args.notebooks] or sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
    except (FileNotFoundError, ValueError) as e:
        print(f"student_version.py: {e}", file=sys.stderr)
        return 2
    if not paths:
        print(f"student_version.py: no chapters found in {NB_DIR}", file=sys.stderr)
        return 2
    out = Path(args.out)
    sources = {p.resolve().parent for p in paths}
    if out.resolve() in sources:
        print(f"student_version.py: --out {out} is where the teacher's notebooks are; the copies would "
              "overwrite them. Choose another folder.", file=sys.stderr)
        return 2
    if out.exists() and not out.is_dir():
        print(f"student_version.py: --out {out} exists and is not a folder", file=sys.stderr)
        return 2

    if out.resolve().is_relative_to(ROOT):
        print(f"warning: --out {out} is inside the repository, whose jupytext.toml pairs every notebook with a .py "
              "file when it is saved in Jupyter; for copies to hand out, prefer a folder outside it (--out "
              "../student)", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        twin = path.with_suffix(".py")
        if args.py and twin.is_file():
            if _sources(jupytext.read(twin)) != _sources(nb):
                print(f"warning: {twin.name} and {path.name} differ; copying {path.name} "
                      f"(run `jupytext --sync {path}` first if the .py is the newer)", file=sys.stderr)
        copy_nb, stats = student_copy(nb, drop=args.drop, chapter=path.stem)
        if stats["untagged"]:
            print(f"warning: {path.name}: {stats['untagged']} solution/check cell(s) recognised by their first line "
                  "only: give them the cell tags 'solution' / 'check'", file=sys.stderr)
        if not stats["solutions"]:
            print(f"warning: {path.name} has no solution cells", file=sys.stderr)
        target = out / path.name
        nbformat.write(copy_nb, target)  # the .ipynb first: jupytext refuses a pair whose .py is the older
        written = [target]
        if args.py:
            jupytext.write(copy_nb, target.with_suffix(".py"), fmt="py:percent")
            written.append(target.with_suffix(".py"))
        elif target.with_suffix(".py").exists():
            print(f"warning: {target.with_suffix('.py')} is left from an earlier run and now stale: delete it "
                  "or pass --py", file=sys.stderr)
        print(f"{' + '.join(str(w) for w in written)}: {stats['solutions']} solution(s) removed, "
              f"{stats['checks']} check(s) kept with outputs cleared")
    return 0


if __name__ == "__main__":
    sys.exit(main())
