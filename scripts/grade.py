"""Grade students' notebooks: run each one top to bottom and report which exercise checks pass.

    python scripts/grade.py alice/03_unet.ipynb bob/03_unet.ipynb
    python scripts/grade.py --timeout 900 --json submissions/*.ipynb > grades.json   # any file names

Each submission is executed from its first cell in a fresh kernel of this Python environment (the one running
grade.py, which must have ``diffusion_lite`` installed), with errors allowed, in the notebook's own folder
(``--cwd`` to choose another, e.g. notebooks/). Nothing is written: the submission file is left as it was.

The checks graded are the teacher's: those of the same chapter in ``--reference`` (default: this repository's
notebooks/), found by the chapter that student_version.py records in each copy's metadata, else by file name,
else by title (course platforms rename files). Each must appear in the submission with its code unchanged, or
it fails as "edited or deleted", so a check replaced by ``pass`` does not count; cells a student adds, even ones
starting ``# Check``, are listed but not graded. A check passes when it runs without an error; the report gives
the exercise's heading, PASS or FAIL and the first line of the error, and a check never reached (the notebook
ran out of time) fails. A submission whose chapter is not found fails (``--no-reference`` grades its own check
cells: a cell tagged ``check`` or whose first line is ``# Check``). A submission holding the teacher's solution
cells (the handed-in teacher's copy) fails, since they replace the student's answers before the checks run
(``--allow-solutions`` grades it anyway). With ``--json`` each report also holds the code of every "Your turn"
cell (``answers``; ``--show-answers`` prints them), so answers that merely call the package can be spotted, and
of every other code cell the teacher's copy does not have (``added_or_edited_cells``; the text report names them):
such cells run before the checks and could change what a check sees (e.g. redefine the function it calls).

The students' code runs as the user running grade.py, with that user's files and network: grade in a
container or under an account of its own. If the course has changed since the copies were handed out, give
the folder of the copies as ``--reference``.

Exit status: 0 if every check of every submission passed, 1 if any failed, or a submission has no check
cells, holds the teacher's solution cells, or has no teacher's copy; 2 for a usage error (e.g. a file that does
not exist).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

REFERENCE = Path(__file__).resolve().parent.parent / "notebooks"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FIRST_LINE = {"solution": re.compile(r"#\s*Solution\b"), "check": re.compile(r"#\s*Check\b")}


def cell_role(cell) -> str | None:
    """"solution", "check" or None: the cell's tag, else (code cells) its first line."""
    tags = cell.get("metadata", {}).get("tags", [])
    for role in ("solution", "check"):
        if role in tags:
            return role
    if cell.cell_type == "code":
        first = cell.source.lstrip().split("\n", 1)[0]
        for role, pattern in _FIRST_LINE.items():
            if pattern.match(first):
                return role
    return None


def error_text(cell, max_lines: int = 4) -> str | None:
    """'Ename: message' of the cell's first error output, or None. The message keeps its first ``max_lines``
    non-empty lines: a check's "my_x differs from x:" goes on to say by how much (torch's assert_close)."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            lines = [line.rstrip() for line in ANSI.sub("", str(out.get("evalue", ""))).strip().splitlines()
                     if line.strip()][:max_lines]
            value = "\n".join(lines)
            return f"{out.get('ename', 'Error')}: {value}" if value else str(out.get("ename", "Error"))
    return None


def _current_env_kernel_manager():
    """A kernel manager whose 'python3' is this interpreter (as nbval --nbval-current-env), not a kernelspec."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class CurrentEnv(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            if kernel_name == "python3":
                return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                              **ipykernel.kernelspec.get_kernel_dict())
            return super().get_kernel_spec(kernel_name)

    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnv())


async def _execute(nb, cwd: Path, timeout: float, cell_timeout: float) -> tuple[int | None, str | None]:
    """Execute the code cells of ``nb`` in place -> (index of the cell that timed out or None, why)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    client = NotebookClient(nb, km=_current_env_kernel_manager(), allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    deadline = time.monotonic() + timeout
    # the kernel process's own stderr holds only ipykernel's start/stop chatter (cells' output comes by messages)
    async with client.async_setup_kernel(cleanup_kc=True, stderr=subprocess.DEVNULL):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return index, f"the notebook's time limit ({timeout:.0f} s) ran out"
            limited_by_notebook = remaining < cell_timeout
            client.timeout = max(1, int(min(remaining, cell_timeout)))
            try:
                await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except CellTimeoutError:
                if limited_by_notebook:
                    return index, f"the notebook's time limit ({timeout:.0f} s) ran out in cell {index}"
                return index, f"cell {index} ran for more than {cell_timeout:.0f} s"
            except DeadKernelError:
                return index, f"the kernel died in cell {index} (a crash, or out of memory)"
    return None, None


def _headings(nb) -> list[str | None]:
    """For each cell, the last markdown heading above it (or in it), without the '#'s."""
    heading, out = None, []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = [line.lstrip("#").strip() for line in cell.source.splitlines() if re.match(r"#{1,6}\s", line)]
            heading = found[-1] if found else heading
        out.append(heading)
    return out


def _code(cell) -> str:
    """A cell's code as compared with the teacher's: line endings and trailing spaces do not count."""
    return "\n".join(line.rstrip() for line in cell.source.strip().splitlines())  # splitlines: \n, \r\n, \r


def _sources(nb, role: str) -> list[str]:
    return [_code(c) for c in nb.cells if cell_role(c) == role]


def _title(nb) -> str | None:
    """The notebook's first markdown heading: a chapter's title."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if re.match(r"#{1,6}\s", line):
                    return line.lstrip("#").strip()
    return None


def find_reference(path: Path, folder: Path) -> tuple[Path | None, str | None]:
    """The teacher's copy of the submission at ``path`` among the notebooks in ``folder``, and how it was found:
    by the chapter recorded in the copy's metadata by student_version.py, else by the file name, else by the
    title (a course platform may rename what students hand in); (None, None) if there is none. The recorded
    chapter is a plain file name of ``folder``, never a path, so a submission cannot name its own reference."""
    nb = nbformat.read(path, as_version=4)
    chapter = (nb.metadata.get("diffusion_lite") or {}).get("chapter")
    teachers = {p.name: p for p in sorted(folder.glob("*.ipynb"))}
    if isinstance(chapter, str) and f"{chapter}.ipynb" in teachers:
        return teachers[f"{chapter}.ipynb"], "its metadata"
    if path.name in teachers:
        return teachers[path.name], "its file name"
    title = _title(nb)
    same = [p for p in teachers.values() if title and _title(nbformat.read(p, as_version=4)) == title]
    return (same[0], "its title") if len(same) == 1 else (None, None)


def _your_turn(nb, headings) -> list[dict]:
    """The code of every "Your turn" cell: the student's answers, for the teacher to read."""
    return [{"cell": i, "heading": headings[i], "code": c.source} for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and re.match(r"#\s*Your turn\b", c.source.lstrip())]


def _match_checks(nb, roles, headings, expected: list[tuple[str, str | None]]) -> list[int | None]:
    """For each of the teacher's checks, (code, heading) in order, the submission's check cell with the same code,
    or None (edited or deleted). Matching by code, not by position, lets a student add cells of their own; among
    cells with the same code (a check pasted elsewhere as scratch) the one under the same heading wins, else the
    last one, and each cell answers one check only."""
    found, used = [], set()
    for code, heading in expected:
        same = [i for i, c in enumerate(nb.cells) if roles[i] == "check" and i not in used and _code(c) == code]
        pick = ([i for i in same if headings[i] == heading] or same or [None])[-1]
        found.append(pick)
        used.add(pick)
    return found


def grade(path: Path, cwd: Path | None = None, timeout: float = 1800, cell_timeout: float = 600,
          reference: Path | None = None, allow_solutions: bool = False) -> dict:
    """Execute the notebook at ``path`` (the file is not modified) and report its checks (a dict, see --json).

    reference: the teacher's copy of the chapter. Its checks are the ones graded: each must appear in the
    submission with its code unchanged (else it fails as edited), and the submission's other check-like cells
    are only listed. Without it, every check cell of the submission is graded. A submission holding the
    teacher's solution cells (the reference's solution code, or any cell tagged ``solution``; without a
    reference, also a first line ``# Solution``) fails unless ``allow_solutions``: those cells replace the
    student's answers before the checks run."""
    nb = nbformat.read(path, as_version=4)
    headings = _headings(nb)
    roles = [cell_role(c) for c in nb.cells]
    ref_nb = nbformat.read(reference, as_version=4) if reference is not None else None
    if ref_nb is not None:
        expected = _sources(ref_nb, "check")
        ref_headings = [h for c, h in zip(ref_nb.cells, _headings(ref_nb)) if cell_role(c) == "check"]
        matched = _match_checks(nb, roles, headings, list(zip(expected, ref_headings)))
        checks = [i for i in matched if i is not None]
        extra = [i for i, r in enumerate(roles) if r == "check" and i not in checks]
        teacher_solutions = set(_sources(ref_nb, "solution"))
        solutions = [i for i, c in enumerate(nb.cells) if "solution" in c.get("metadata", {}).get("tags", [])
                     or (c.cell_type == "code" and _code(c) in teacher_solutions)]
    else:
        expected, extra = None, []
        checks = matched = [i for i, r in enumerate(roles) if r == "check"]
        solutions = [i for i, r in enumerate(roles) if r == "solution"]
    answers = _your_turn(nb, headings)
    added = []  # code the teacher's copy does not have, outside "Your turn" and check cells: it runs before the
    if ref_nb is not None:  # checks and can change what they see (e.g. redefine assert_close), so it is listed
        known = {_code(c) for c in ref_nb.cells if c.cell_type == "code"}
        theirs = {a["cell"] for a in answers} | set(checks) | set(extra)
        added = [{"cell": i, "heading": headings[i], "code": c.source} for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and i not in theirs and _code(c) and _code(c) not in known]
    for cell in nb.cells:  # outputs stored in the submission must not count
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    t0 = time.monotonic()
    stopped_at, why = (None, None)
    if checks:
        stopped_at, why = asyncio.run(_execute(nb, cwd or path.resolve().parent, timeout, cell_timeout))
    report = {"notebook": str(path), "reference": None if reference is None else str(reference), "checks": [],
              "solution_cells": solutions, "solutions_allowed": allow_solutions, "extra_check_cells": extra,
              "answers": answers, "added_or_edited_cells": added, "errors_outside_checks": [], "stopped": why,
              "not_graded": None,
              "seconds": round(time.monotonic() - t0, 1)}
    for k, i in enumerate(matched):
        if i is None:  # the teacher's check k is not in the submission as it was handed out
            name = expected[k].split("\n", 1)[0].lstrip("#").strip()
            report["checks"].append({"cell": None, "heading": ref_headings[k], "name": name, "status": "fail",
                                     "reason": "edited",
                                     "error": f"edited or deleted: no cell has this check's code as in the teacher's "
                                              f"copy ({reference})"})
            continue
        cell = nb.cells[i]
        name = cell.source.lstrip().split("\n", 1)[0].lstrip("#").strip()
        if stopped_at is not None and i >= stopped_at:
            status, reason, error = "fail", "not run", f"not run: {why}"
        else:
            error = error_text(cell)
            status, reason = ("fail", "error") if error else ("pass", None)
        report["checks"].append({"cell": i, "heading": headings[i], "name": name, "status": status,
                                 "reason": reason, "error": error})
    for i, cell in enumerate(nb.cells):
        if stopped_at is not None and i >= stopped_at:
            break  # the cell stopped (interrupted) and those never run
        if i not in checks and cell.cell_type == "code" and (error := error_text(cell)):
            report["errors_outside_checks"].append({"cell": i, "first_line": cell.source.split("\n", 1)[0],
                                                    "error": error})
    report["passed"] = sum(c["status"] == "pass" for c in report["checks"])
    report["total"] = len(report["checks"])
    report["ok"] = (bool(report["checks"]) and report["passed"] == report["total"]
                    and (allow_solutions or not solutions))
    return report


_LATEX = ((r"\bar\alpha", "alpha_bar"), (r"\mid", "|"), ("$", ""), ("\\", ""))


def plain(heading: str) -> str:
    """A heading as a terminal shows it: the markdown's LaTeX ($q(x_t \\mid x_0)$) as plain text (q(x_t | x_0))."""
    for latex, text in _LATEX:
        heading = heading.replace(latex, text)
    return heading


def print_report(r: dict, file=sys.stdout, show_answers: bool = False) -> None:
    p = lambda *a: print(*a, file=file)
    if r.get("not_graded"):
        p(f"{r['notebook']}\n  FAIL  not graded: {r['not_graded']}")
        return
    found = f" (found by {r['reference_found_by']})" if r.get("reference_found_by") else ""
    p(f"{r['notebook']}  ({r['seconds']:.0f} s)" + (f", checks compared with {r['reference']}{found}"
                                                   if r.get("reference") else
                                                   ", checks not compared with a teacher's copy"))
    if r["solution_cells"]:
        cells = ", ".join(str(i) for i in r["solution_cells"])
        p(f"  {'WARNING' if r.get('solutions_allowed') else 'FAIL'}  {len(r['solution_cells'])} solution cell(s) of "
          f"the teacher's copy present (cell {cells}): they replace the student's answers before the checks run"
          + ("" if r.get("solutions_allowed") else " (--allow-solutions grades the checks anyway)"))
    if not r["checks"] and not r["stopped"]:
        p("  FAIL  no check cells found (tag 'check', or a first line '# Check'): is this a course chapter?")
    for c in r["checks"]:
        where = f"{plain(c['heading'])} > {c['name']}" if c["heading"] else c["name"]
        p(f"  {c['status'].upper()}  {where}")
        if c["error"]:
            p("\n".join(f"        {line}" for line in c["error"].splitlines()))
    if r.get("added_or_edited_cells"):
        added = r["added_or_edited_cells"]
        cells = "; ".join(f"cell {a['cell']}: {a['code'].strip().splitlines()[0][:60]}" for a in added)
        p(f"  note: {len(added)} code cell(s) not in the teacher's copy ran before the checks "
          f"(read them: they can change what a check sees; --json has their code): {cells}")
    if r.get("extra_check_cells"):
        p(f"  note: cell(s) {', '.join(map(str, r['extra_check_cells']))} look like checks but are not the teacher's "
          "(not graded)")
    for e in r["errors_outside_checks"]:
        p(f"  note: cell {e['cell']} ({e['first_line'][:60]}) raised {e['error'].splitlines()[0]}")
    if r["stopped"]:
        p(f"  note: stopped early: {r['stopped']}")
    p(f"  {r['passed']}/{r['total']} checks passed" + (", but FAIL: the teacher's solution cells are present"
                                                       if r["total"] and r["passed"] == r["total"] and not r["ok"]
                                                       else ""))
    if show_answers:
        for a in r.get("answers", []):
            p(f"  --- answer, cell {a['cell']} ({plain(a['heading'] or '')}):")
            p("\n".join("      " + line for line in a["code"].splitlines()))


def _grade_one(path: Path, reference: Path | None, **kw) -> dict:
    """grade() with the teacher's copy looked up in the folder ``reference`` (None: --no-reference); a submission
    that cannot be graded gets a failed report instead of stopping the others."""
    try:
        ref, found_by = (None, None) if reference is None else find_reference(path, reference)
        if ref is None and reference is not None:
            return _failed(path, f"no teacher's copy of this chapter in {reference} (by the chapter its metadata "
                                 "names, its file name or its title): give --reference FOLDER, or --no-reference")
        return {**grade(path, reference=ref, **kw), "reference_found_by": found_by}
    except Exception as e:  # an unreadable file or a kernel that would not start: report it, grade the rest
        return _failed(path, f"could not be graded: {type(e).__name__}: {e}")


def _failed(path: Path, why: str) -> dict:
    """The report of a submission that could not be graded at all (the same keys as grade's, and not_graded)."""
    return {"notebook": str(path), "reference": None, "reference_found_by": None, "checks": [], "solution_cells": [],
            "solutions_allowed": False, "extra_check_cells": [], "answers": [], "added_or_edited_cells": [],
            "errors_outside_checks": [],
            "stopped": None, "not_graded": why, "seconds": 0.0, "passed": 0, "total": 0, "ok": False}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("submissions", nargs="+", help="the students' .ipynb files")
    ap.add_argument("--timeout", type=float, default=1800,
                    help="seconds allowed for each notebook, start to end (default 1800)")
    ap.add_argument("--cell-timeout", type=float, default=600,
                    help="seconds allowed for one cell (default 600): a cell still running is taken for a hang")
    ap.add_argument("--cwd", type=Path, help="working directory of the kernels (default: each notebook's folder)")
    ap.add_argument("--json", action="store_true", help="print the reports as JSON instead of text")
    ap.add_argument("--reference", type=Path, default=REFERENCE,
                    help="folder of the teacher's chapters, whose checks are graded (default: this repository's "
                         "notebooks/; give the folder of the copies you handed out if the course has changed "
                         "since). A submission whose chapter is not found there fails")
    ap.add_argument("--no-reference", action="store_true",
                    help="grade the submission's own check cells, without a teacher's copy (edits go unnoticed)")
    ap.add_argument("--allow-solutions", action="store_true",
                    help="grade a submission that holds the teacher's solution cells instead of failing it")
    ap.add_argument("--jobs", type=int, default=1,
                    help="submissions graded at once, each in its own kernel (default 1; up to the number of cores)")
    ap.add_argument("--show-answers", action="store_true",
                    help="print the code of each 'Your turn' cell under its report (--json always includes it)")
    args = ap.parse_args(argv)

    paths = [Path(s) for s in args.submissions]
    bad = [f"{p}: no such file" for p in paths if not p.is_file()]
    bad += [f"{p}: not a notebook (.ipynb)" for p in paths if p.is_file() and p.suffix != ".ipynb"]
    if not args.no_reference and not args.reference.is_dir():
        bad.append(f"--reference {args.reference}: no such folder")
    if args.jobs < 1:
        bad.append(f"--jobs {args.jobs}: expected at least 1")
    if args.cwd is not None and not args.cwd.is_dir():
        bad.append(f"--cwd {args.cwd}: no such folder")
    if bad:
        for b in bad:
            print(f"grade.py: {b}", file=sys.stderr)
        return 2
    os.environ.setdefault("TQDM_DISABLE", "1")  # the kernels inherit it: no progress bars to wait for
    grade_one = functools.partial(_grade_one, reference=None if args.no_reference else args.reference,
                                  cwd=args.cwd, timeout=args.timeout, cell_timeout=args.cell_timeout,
                                  allow_solutions=args.allow_solutions)
    reports = []
    # --jobs N: N worker processes (threads would share jupyter_client's zmq context, which hangs); results come in
    # the order given, each printed as soon as it and those before it are done
    with ProcessPoolExecutor(max_workers=args.jobs) if args.jobs > 1 else contextlib.nullcontext() as pool:
        futures = [pool.submit(grade_one, path) for path in paths] if pool else None
        for k, path in enumerate(paths):
            try:
                report = futures[k].result() if pool else grade_one(path)
            except Exception as e:  # a worker killed (e.g. out of memory) breaks the pool: report, do not lose all
                report = _failed(path, f"could not be graded: the worker process failed ({type(e).__name__}: {e})")
            reports.append(report)
            if not args.json:
                print_report(report, show_answers=args.show_answers)
    ok = all(r["ok"] for r in reports)
    if args.json:
        print(json.dumps({"ok": ok, "notebooks": reports}, indent=1, ensure_ascii=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
