"""Grade students' notebooks: run each one top to bottom and report which exercise checks pass.

    python scripts/grade.py alice/03_unet.ipynb bob/03_unet.ipynb
    python scripts/grade.py --timeout 900 --json submissions/*.ipynb > grades.json

Each submission is executed from its first cell in a fresh kernel of this Python environment (the one running
grade.py, which must have ``diffusion_lite`` installed), with errors allowed, in the notebook's own folder
(``--cwd`` to choose another, e.g. notebooks/). Nothing is written: the submission file is left as it was.

A check cell is one tagged ``check`` (scripts/student_version.py keeps them), or a code cell whose first line
is ``# Check``. It passes when it runs without an error. For each check the report gives the exercise's
heading, PASS or FAIL and the first line of the error; a check never reached (the notebook ran out of time)
counts as failed. A submission still holding solution cells (tag ``solution``, or a first line
``# Solution``) gets a WARNING line: those cells overwrite the student's answers before the checks run.

The checks are compared with the teacher's copy of the same chapter (``--reference``, default this
repository's notebooks/): a check cell whose code differs from the teacher's, or a missing one, fails as
"edited", so a check replaced by ``pass`` does not count.

Exit status: 0 if every check of every submission passed, 1 if any failed or a submission has no check
cells, 2 for a usage error (e.g. a file that does not exist).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
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


def first_error_line(cell) -> str | None:
    """'Ename: first line of the message' of the cell's first error output, or None."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            value = ANSI.sub("", str(out.get("evalue", ""))).strip().split("\n", 1)[0]
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


def _check_sources(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells if cell_role(c) == "check"]


def grade(path: Path, cwd: Path | None = None, timeout: float = 1800, cell_timeout: float = 600,
          reference: Path | None = None) -> dict:
    """Execute the notebook at ``path`` (the file is not modified) and report its checks (a dict, see --json).
    reference: the teacher's copy of the chapter; checks whose code differs from its checks fail as edited."""
    nb = nbformat.read(path, as_version=4)
    headings = _headings(nb)
    roles = [cell_role(c) for c in nb.cells]
    checks = [i for i, r in enumerate(roles) if r == "check"]
    expected = _check_sources(nbformat.read(reference, as_version=4)) if reference is not None else None
    solutions = [i for i, r in enumerate(roles) if r == "solution"]
    for cell in nb.cells:  # outputs stored in the submission must not count
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    t0 = time.monotonic()
    stopped_at, why = (None, None)
    if checks:
        stopped_at, why = asyncio.run(_execute(nb, cwd or path.resolve().parent, timeout, cell_timeout))
    report = {"notebook": str(path), "reference": None if reference is None else str(reference), "checks": [],
              "solution_cells": solutions, "errors_outside_checks": [], "stopped": why,
              "seconds": round(time.monotonic() - t0, 1)}
    for k, i in enumerate(checks):
        cell = nb.cells[i]
        name = cell.source.lstrip().split("\n", 1)[0].lstrip("#").strip()
        if expected is not None and (k >= len(expected) or cell.source.strip() != expected[k]):
            status, error = "fail", f"edited: this check's code differs from the teacher's copy ({reference})"
        elif stopped_at is not None and i >= stopped_at:
            status, error = "fail", f"not run: {why}"
        else:
            error = first_error_line(cell)
            status = "fail" if error else "pass"
        report["checks"].append({"cell": i, "heading": headings[i], "name": name, "status": status, "error": error})
    for k in range(len(checks), len(expected or [])):  # checks the submission no longer has
        name = expected[k].split("\n", 1)[0].lstrip("#").strip()
        report["checks"].append({"cell": None, "heading": None, "name": name, "status": "fail",
                                 "error": f"missing: the teacher's copy ({reference}) has this check"})
    for i, cell in enumerate(nb.cells):
        if stopped_at is not None and i >= stopped_at:
            break  # the cell stopped (interrupted) and those never run
        if roles[i] != "check" and cell.cell_type == "code" and (error := first_error_line(cell)):
            report["errors_outside_checks"].append({"cell": i, "first_line": cell.source.split("\n", 1)[0],
                                                    "error": error})
    report["passed"] = sum(c["status"] == "pass" for c in report["checks"])
    report["total"] = len(report["checks"])
    report["ok"] = bool(checks) and report["passed"] == report["total"]
    return report


def print_report(r: dict, file=sys.stdout) -> None:
    p = lambda *a: print(*a, file=file)
    p(f"{r['notebook']}  ({r['seconds']:.0f} s)" + (f", checks compared with {r['reference']}" if r.get("reference")
                                                   else ", checks not compared with a teacher's copy"))
    if r["solution_cells"]:
        cells = ", ".join(str(i) for i in r["solution_cells"])
        p(f"  WARNING: {len(r['solution_cells'])} solution cell(s) present (cell {cells}): the teacher's solutions, "
          "which replace the student's answers before the checks run?")
    if not r["checks"] and not r["stopped"]:
        p("  FAIL  no check cells found (tag 'check', or a first line '# Check'): is this a course chapter?")
    for c in r["checks"]:
        where = f"{c['heading']} > {c['name']}" if c["heading"] else c["name"]
        p(f"  {c['status'].upper()}  {where}")
        if c["error"]:
            p(f"        {c['error']}")
    for e in r["errors_outside_checks"]:
        p(f"  note: cell {e['cell']} ({e['first_line'][:60]}) raised {e['error']}")
    if r["stopped"]:
        p(f"  note: stopped early: {r['stopped']}")
    p(f"  {r['passed']}/{r['total']} checks passed")


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
                    help="folder of the teacher's chapters, to detect edited checks (default: this repository's "
                         "notebooks/; a submission with no chapter of its name there is not compared)")
    ap.add_argument("--no-reference", action="store_true", help="do not compare the checks with a teacher's copy")
    args = ap.parse_args(argv)

    paths = [Path(s) for s in args.submissions]
    bad = [f"{p}: no such file" for p in paths if not p.is_file()]
    bad += [f"{p}: not a notebook (.ipynb)" for p in paths if p.is_file() and p.suffix != ".ipynb"]
    if not args.no_reference and not args.reference.is_dir():
        bad.append(f"--reference {args.reference}: no such folder")
    if args.cwd is not None and not args.cwd.is_dir():
        bad.append(f"--cwd {args.cwd}: no such folder")
    if bad:
        for b in bad:
            print(f"grade.py: {b}", file=sys.stderr)
        return 2
    os.environ.setdefault("TQDM_DISABLE", "1")  # the kernels inherit it: no progress bars to wait for
    reports = []
    for path in paths:
        try:
            ref = None if args.no_reference else args.reference / path.name
            reports.append(grade(path, cwd=args.cwd, timeout=args.timeout, cell_timeout=args.cell_timeout,
                                 reference=ref if ref is not None and ref.is_file() else None))
        except Exception as e:  # an unreadable file or a kernel that would not start: report it, grade the rest
            reports.append({"notebook": str(path), "checks": [], "solution_cells": [], "errors_outside_checks": [],
                            "stopped": f"could not be graded: {type(e).__name__}: {e}", "seconds": 0.0,
                            "passed": 0, "total": 0, "ok": False})
        if not args.json:
            print_report(reports[-1])
    ok = all(r["ok"] for r in reports)
    if args.json:
        print(json.dumps({"ok": ok, "notebooks": reports}, indent=1, ensure_ascii=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
