"""The teacher's tools: exercise cell tags in the chapters, scripts/student_version.py and scripts/grade.py.

No real chapter is executed here (nbval does that); grade.py runs only a tiny synthetic notebook.
"""

import hashlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
SCRIPTS = ROOT / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def _first_line(cell):
    return cell.source.lstrip().split("\n", 1)[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_has_one_solution_and_one_check_tag(path):
    cells = nbformat.read(path, as_version=4).cells
    turns = [i for i, c in enumerate(cells) if c.cell_type == "code" and _first_line(c).startswith("# Your turn")]
    assert turns, "no exercise ('# Your turn' cell) found"
    for n, start in enumerate(turns):
        end = turns[n + 1] if n + 1 < len(turns) else len(cells)
        solutions = [i for i in range(start + 1, end) if "solution" in _tags(cells[i])]
        checks = [i for i in range(start + 1, end) if "check" in _tags(cells[i])]
        where = f"exercise at cell {start} ({_first_line(cells[start])[:50]})"
        assert len(solutions) == 1 and len(checks) == 1, f"{where}: {len(solutions)} solution, {len(checks)} check"
        sol, chk = cells[solutions[0]], cells[checks[0]]
        assert solutions[0] < checks[0], f"{where}: the check comes before the solution"
        assert _first_line(sol).startswith("# Solution") and _first_line(chk).startswith("# Check"), where
        assert sol.metadata.get("jupyter", {}).get("source_hidden"), f"{where}: the solution is not collapsed"
    for i, c in enumerate(cells):  # no untagged solution or check cell anywhere else
        if c.cell_type == "code" and _first_line(c).startswith("# Solution"):
            assert "solution" in _tags(c), f"cell {i} is a solution without the tag"
        if c.cell_type == "code" and _first_line(c).startswith("# Check"):
            assert "check" in _tags(c), f"cell {i} is a check without the tag"
    nb_meta = nbformat.read(path, as_version=4).metadata.get("jupytext", {})
    assert "tags" in nb_meta.get("cell_metadata_filter", "").split(","), "ipynb -> py sync would drop the tags"


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_student_version_of_a_chapter(tmp_path):
    chapter = NB_DIR / "02_noise_schedules.ipynb"
    before = _digest(NB_DIR)
    out = tmp_path / "student"
    res = subprocess.run([sys.executable, str(SCRIPTS / "student_version.py"), "--out", str(out), "--py",
                          str(chapter)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert _digest(NB_DIR) == before, "student_version.py changed notebooks/"
    assert sorted(p.name for p in out.iterdir()) == ["02_noise_schedules.ipynb", "02_noise_schedules.py"]

    teacher = nbformat.read(chapter, as_version=4).cells
    student = nbformat.read(out / chapter.name, as_version=4).cells
    assert not [c for c in student if "solution" in _tags(c) or _first_line(c).startswith("# Solution")]
    notes = [c for c in student if "solution-removed" in _tags(c)]
    solutions = [c for c in teacher if "solution" in _tags(c)]
    assert len(notes) == len(solutions) == 2 and all(c.cell_type == "markdown" for c in notes)
    assert all("write your answer in the cell above" in c.source for c in notes)
    meta = nbformat.read(out / chapter.name, as_version=4).metadata["diffusion_lite"]
    assert meta == {"chapter": "02_noise_schedules", "student_copy": True}  # what grade.py looks up
    kept = [c for c in student if "solution-removed" not in _tags(c)]
    rest = [c for c in teacher if "solution" not in _tags(c)]
    assert [(c.cell_type, c.source) for c in kept] == [(c.cell_type, c.source) for c in rest], "cells lost or moved"
    for t, s in zip(rest, kept):
        if "check" in _tags(t):
            assert "check" in _tags(s) and s.outputs == [] and s.execution_count is None
        elif _first_line(t).startswith("# Your turn"):  # not shown as run: the teacher ran it, not the student
            assert t.cell_type == "code" and s.outputs == [] and s.execution_count is None
        elif t.cell_type == "code":
            assert s.outputs == t.outputs and s.execution_count == t.execution_count
    assert sum("check" in _tags(c) for c in kept) == sum("check" in _tags(c) for c in teacher) == 2
    assert any("image/png" in o.get("data", {}) for c in kept if c.cell_type == "code" for o in c.outputs)

    import jupytext

    twin = jupytext.read(out / "02_noise_schedules.py")
    assert [(c.cell_type, c.source.strip()) for c in twin.cells] == [(c.cell_type, c.source.strip()) for c in student]


def test_student_version_refuses_bad_arguments(tmp_path):
    script = str(SCRIPTS / "student_version.py")
    res = subprocess.run([sys.executable, script, "--out", str(tmp_path), "no_such_chapter.ipynb"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "no such notebook: no_such_chapter.ipynb" in res.stderr
    assert not list(tmp_path.iterdir())
    before = _digest(NB_DIR)
    res = subprocess.run([sys.executable, script, "--out", str(NB_DIR), "02"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "overwrite" in res.stderr
    assert _digest(NB_DIR) == before


def test_student_copy_recognises_untagged_cells_by_their_first_line():
    sv = _load("student_version")
    nb = new_notebook(cells=[new_code_cell("# Your turn\n"), new_code_cell("# Solution\nx = 1"),
                             new_code_cell("# Check\nassert x == 1", execution_count=3)])
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="ok\n")]
    copy, stats = sv.student_copy(nb)
    assert stats == {"solutions": 1, "checks": 1, "untagged": 2}
    assert [c.cell_type for c in copy.cells] == ["code", "markdown", "code"]
    assert copy.cells[2].outputs == [] and nb.cells[2].outputs  # the original is not modified
    dropped = sv.student_copy(nb, drop=True)[0].cells  # one note for the whole copy, where the text reads first
    assert [c.cell_type for c in dropped] == ["markdown", "code", "code"]
    assert "solutions are removed" in dropped[0].source


def _synthetic(path, answer_cell, solution=False):
    cells = [
        new_markdown_cell("# A chapter\n\n## Exercise 1: two"),
        new_code_cell("# Your turn 1\nanswer = 2"),
        new_code_cell("# Check 1: your answer\nassert answer == 2, 'answer should be 2'", metadata={"tags": ["check"]}),
        new_markdown_cell("## Exercise 2: three"),
        new_code_cell(answer_cell),
        new_code_cell("# Check 2: your other\nassert other == 3, f'other is {other}, expected 3'",
                      metadata={"tags": ["check"]}),
    ]
    if solution:
        cells.insert(5, new_code_cell("# Solution 2\nother = 3", metadata={"tags": ["solution"]}))
    nbformat.write(new_notebook(cells=cells), path)
    return path


def test_grade_prints_headings_without_latex():
    """The terminal report shows a heading's LaTeX as plain text (the JSON keeps the markdown as written)."""
    grade = _load("grade")
    assert grade.plain(r"Exercise 1: $\bar\alpha$ from the betas") == "Exercise 1: alpha_bar from the betas"
    assert grade.plain(r"3. The closed form $q(x_t \mid x_0)$") == "3. The closed form q(x_t | x_0)"
    report = {"notebook": "ch.ipynb", "seconds": 1.0, "solution_cells": [], "stopped": None, "passed": 1, "total": 1,
              "ok": True, "errors_outside_checks": [],
              "checks": [{"heading": r"Exercise: pixels to $[-1, 1]$", "name": "Check", "status": "pass",
                          "error": None}]}
    out = io.StringIO()
    grade.print_report(report, file=out)
    assert "PASS  Exercise: pixels to [-1, 1] > Check" in out.getvalue()


def _grade(*args):
    res = subprocess.run([sys.executable, str(SCRIPTS / "grade.py"), "--timeout", "120", *map(str, args)],
                         capture_output=True, text=True, timeout=300)
    return res


def test_grade_reports_pass_and_fail(tmp_path):
    wrong = _synthetic(tmp_path / "wrong.ipynb", "# Your turn 2\nother = 4")
    missing = _synthetic(tmp_path / "missing.ipynb", "# Your turn 2\n# other = ...")
    before = wrong.read_bytes()
    res = _grade("--json", "--no-reference", "--jobs", "2", wrong, missing)  # two at once, reported in order
    assert res.returncode == 1, res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] is False
    for nb, error in zip(report["notebooks"], ["AssertionError: other is 4, expected 3",
                                                "NameError: name 'other' is not defined"]):
        assert [c["status"] for c in nb["checks"]] == ["pass", "fail"]
        assert [c["heading"] for c in nb["checks"]] == ["Exercise 1: two", "Exercise 2: three"]
        assert nb["checks"][0]["error"] is None and nb["checks"][1]["error"] == error
        assert nb["checks"][1]["name"] == "Check 2: your other"
        assert (nb["passed"], nb["total"], nb["solution_cells"]) == (1, 2, [])
    assert wrong.read_bytes() == before, "grade.py wrote into the submission"


def test_grade_keeps_the_lines_that_say_how_an_answer_differs(tmp_path):
    """A check's "my_x differs from x:" is followed by the numbers (torch's assert_close): the report keeps them."""
    nb = _synthetic(tmp_path / "ch.ipynb", "# Your turn 2\nother = 4")
    book = nbformat.read(nb, as_version=4)
    book.cells[5].source = "# Check 2: your other\nassert other == 3, f'other differs from 3:\\n\\n  got {other}'"
    nbformat.write(book, nb)
    res = _grade("--json", "--no-reference", nb)
    error = json.loads(res.stdout)["notebooks"][0]["checks"][1]["error"]
    assert error == "AssertionError: other differs from 3:\n  got 4"
    assert "        AssertionError: other differs from 3:\n          got 4" in _grade("--no-reference", nb).stdout


def test_grade_fails_a_handed_in_teachers_copy_unless_solutions_are_allowed(tmp_path):
    """The teacher's solution cells replace the student's answers before the checks run, so a submission holding
    them fails even though every check passes; --allow-solutions grades it anyway (with a warning)."""
    sub = _synthetic(tmp_path / "teacher.ipynb", "# Your turn 2\n# other = ...", solution=True)
    res = _grade("--no-reference", sub)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [line.strip() for line in res.stdout.splitlines()]
    assert sum(line.startswith("PASS") for line in lines) == 2 and "2/2 checks passed" in res.stdout
    assert any(line.startswith("FAIL  1 solution cell(s) of the teacher's copy present (cell 5)") for line in lines)
    res = _grade("--no-reference", "--allow-solutions", sub)
    assert res.returncode == 0 and any(line.strip().startswith("WARNING  1 solution cell") for line in
                                       res.stdout.splitlines())
    # against the teacher's copy, the solution's code is recognised even with its tag and first line gone,
    # and a student's own cell that happens to start with "# Solution" is not
    (tmp_path / "teacher").mkdir()
    _synthetic(tmp_path / "teacher" / "ch.ipynb", "# Your turn 2\n# other = ...", solution=True)
    nb = nbformat.read(sub, as_version=4)
    nb.cells[5] = new_code_cell("other = 3")
    nb.cells.insert(2, new_code_cell("# Solution of mine: the same as above\nanswer = 2"))
    nbformat.write(nb, tmp_path / "ch.ipynb")
    report = json.loads(_grade("--json", "--reference", tmp_path / "teacher", tmp_path / "ch.ipynb").stdout)
    report = report["notebooks"][0]
    assert report["solution_cells"] == [] and report["ok"] is True  # "other = 3" alone is not the teacher's cell
    nb.cells[6] = new_code_cell("# Solution 2\nother = 3")
    nbformat.write(nb, tmp_path / "ch.ipynb")
    report = json.loads(_grade("--json", "--reference", tmp_path / "teacher", tmp_path / "ch.ipynb").stdout)
    assert report["notebooks"][0]["solution_cells"] == [6] and report["ok"] is False


def test_grade_usage_errors(tmp_path):
    res = _grade(tmp_path / "nope.ipynb")
    assert res.returncode == 2 and "no such file" in res.stderr
    res = _grade("--jobs", "0", _synthetic(tmp_path / "ch.ipynb", "other = 3"))
    assert res.returncode == 2 and "--jobs 0: expected at least 1" in res.stderr


def test_grade_fails_a_check_that_differs_from_the_teachers_copy(tmp_path):
    (tmp_path / "teacher").mkdir()
    _synthetic(tmp_path / "teacher" / "ch.ipynb", "# Your turn 2\nother = 3")
    edited = _synthetic(tmp_path / "ch.ipynb", "# Your turn 2\nother = 4")
    nb = nbformat.read(edited, as_version=4)
    nb.cells[5].source = "# Check 2: your other\npass  # the assert removed"
    nbformat.write(nb, edited)
    res = _grade("--json", "--reference", tmp_path / "teacher", edited)
    report = json.loads(res.stdout)["notebooks"][0]
    assert res.returncode == 1 and [c["status"] for c in report["checks"]] == ["pass", "fail"]
    assert report["checks"][1]["reason"] == "edited" and report["checks"][1]["name"] == "Check 2: your other"
    assert report["checks"][1]["error"].startswith("edited or deleted: no cell has this check's code")
    assert report["extra_check_cells"] == [5]  # the edited cell is listed, not graded
    del nb.cells[5]  # a check deleted
    nbformat.write(nb, edited)
    report = json.loads(_grade("--json", "--reference", tmp_path / "teacher", edited).stdout)["notebooks"][0]
    assert [c["status"] for c in report["checks"]] == ["pass", "fail"] and report["total"] == 2
    assert report["checks"][1]["reason"] == "edited"
    assert "no such folder" in _grade("--reference", tmp_path / "nope", edited).stderr


def test_grade_lists_cells_the_teachers_copy_does_not_have(tmp_path):
    """From a teacher's review: a cell a student adds runs before the checks and can switch one off (here by
    redefining the answer the check reads, as `torch.testing.assert_close = lambda *a, **k: None` would). It is
    not graded, but the report names it, and --json gives its code; scratch cells the student only edited too."""
    (tmp_path / "teacher").mkdir()
    _synthetic(tmp_path / "teacher" / "ch.ipynb", "# Your turn 2\nother = 3")
    sub = _synthetic(tmp_path / "ch.ipynb", "# Your turn 2\nother = 4")  # wrong
    nb = nbformat.read(sub, as_version=4)
    nb.cells.insert(5, new_code_cell("other = 3  # after my answer, before the check"))
    nb.cells.insert(1, new_code_cell(""))  # an empty cell is nothing to read
    nbformat.write(nb, sub)
    report = json.loads(_grade("--json", "--reference", tmp_path / "teacher", sub).stdout)["notebooks"][0]
    assert report["ok"] is True  # the check passes: what the added cell did
    assert [(a["cell"], a["code"]) for a in report["added_or_edited_cells"]] == [
        (6, "other = 3  # after my answer, before the check")]
    assert [a["cell"] for a in report["answers"]] == [2, 5]  # answers are not listed twice
    res = _grade("--reference", tmp_path / "teacher", sub)
    assert ("note: 1 code cell(s) not in the teacher's copy ran before the checks (read them: they can change what "
            "a check sees; --json has their code): cell 6: other = 3") in res.stdout
    del nb.cells[7]  # check 2 deleted: its failure names the teacher's heading
    nbformat.write(nb, sub)
    report = json.loads(_grade("--json", "--reference", tmp_path / "teacher", sub).stdout)["notebooks"][0]
    assert report["checks"][1]["heading"] == "Exercise 2: three" and report["checks"][1]["reason"] == "edited"


def test_student_copies_are_not_paired_with_py_files():
    """A copy keeping the chapter's jupytext metadata would get a .py twin on its first save in Jupyter."""
    sv = _load("student_version")
    nb = nbformat.read(sv.NB_DIR / "01_forward_process.ipynb", as_version=4)
    assert "jupytext" in nb.metadata
    assert "jupytext" not in sv.student_copy(nb, chapter="01_forward_process")[0].metadata


def test_grade_finds_the_teachers_copy_of_a_renamed_submission(tmp_path):
    """Course platforms rename files: the chapter comes from the copy's metadata (student_version.py writes it),
    else from the title. The recorded chapter is a file name among the teacher's, never a path (a submission must
    not name itself as its reference), and a submission whose chapter is nowhere fails rather than going
    unchecked."""
    sv = _load("student_version")
    ref = tmp_path / "teacher"
    ref.mkdir()
    teacher = _synthetic(ref / "02_ch.ipynb", "# Your turn 2\n# other = ...", solution=True)
    _synthetic(ref / "03_other.ipynb", "# Your turn 2\n# other = ...")  # the same title: a title alone is ambiguous
    copy, _ = sv.student_copy(nbformat.read(teacher, as_version=4), chapter="02_ch")
    assert copy.metadata["diffusion_lite"]["chapter"] == "02_ch"
    copy.cells[4].source = "# Your turn 2\nother = 3"
    nbformat.write(copy, tmp_path / "bob_1234.ipynb")
    res = _grade("--json", "--reference", ref, tmp_path / "bob_1234.ipynb")
    report = json.loads(res.stdout)["notebooks"][0]
    assert res.returncode == 0, res.stdout
    assert (report["reference"], report["reference_found_by"]) == (str(teacher), "its metadata")
    assert [c["status"] for c in report["checks"]] == ["pass", "pass"]
    assert [a["code"] for a in report["answers"]] == ["# Your turn 1\nanswer = 2", "# Your turn 2\nother = 3"]
    res = _grade("--show-answers", "--reference", ref, tmp_path / "bob_1234.ipynb")
    assert "(found by its metadata)" in res.stdout and "      other = 3" in res.stdout
    copy.metadata["diffusion_lite"]["chapter"] = "../bob_1234"  # pointing at itself
    nbformat.write(copy, tmp_path / "sneaky.ipynb")
    res = _grade("--reference", ref, tmp_path / "sneaky.ipynb")
    assert res.returncode == 1 and "FAIL  not graded: no teacher's copy of this chapter" in res.stdout
    (ref / "03_other.ipynb").unlink()
    del copy.metadata["diffusion_lite"]  # an older copy: found by its title, now unique
    nbformat.write(copy, tmp_path / "renamed.ipynb")
    report = json.loads(_grade("--json", "--reference", ref, tmp_path / "renamed.ipynb").stdout)["notebooks"][0]
    assert (report["reference"], report["reference_found_by"], report["ok"]) == (str(teacher), "its title", True)


def test_grade_matches_the_teachers_checks_by_code_not_position(tmp_path):
    """A student's own cells, even ones starting '# Check' or a scratch copy of a check pasted above the answer
    (failing there), neither count nor shift the teacher's checks; their errors are listed."""
    (tmp_path / "teacher").mkdir()
    _synthetic(tmp_path / "teacher" / "ch.ipynb", "# Your turn 2\nother = 3")
    sub = _synthetic(tmp_path / "ch.ipynb", "# Your turn 2\nother = 3")
    nb = nbformat.read(sub, as_version=4)
    nb.cells.insert(4, new_code_cell(nb.cells[5].source))  # the scratch copy of check 2, before the answer
    nb.cells.insert(1, new_code_cell("# Check my values first\nraise ValueError('mine')"))
    nb.cells[7].source = nb.cells[7].source.replace("\n", "   \r\n")  # line endings and trailing spaces do not count
    nbformat.write(nb, sub)
    res = _grade("--json", "--reference", tmp_path / "teacher", sub)
    report = json.loads(res.stdout)["notebooks"][0]
    assert res.returncode == 0, res.stdout
    assert [(c["cell"], c["status"]) for c in report["checks"]] == [(3, "pass"), (7, "pass")]
    assert report["extra_check_cells"] == [1, 5]
    assert [(e["cell"], e["error"].split(":")[0]) for e in report["errors_outside_checks"]] == [
        (1, "ValueError"), (5, "NameError")]
