"""The install story: pyproject.toml, environment.yml and the README agree."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = (ROOT / "environment.yml").read_text()
    py_min = re.search(r'requires-python = ">=(\d+\.\d+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"python>={py_min}" in env
    for dep in project["dependencies"]:
        name = re.split(r"[<>=\[ ]", dep)[0]
        if name in ("torch", "torchvision"):  # pinned the same way in both
            assert f'"{dep}"' in env, f"environment.yml must request {dep} like pyproject.toml"
    assert '-e .[all]' in env and "all" in project["optional-dependencies"]
    extras = project["optional-dependencies"]
    for group in ("notebooks", "dev"):
        assert set(extras[group]) <= set(extras["all"]), f"extra 'all' must include '{group}'"


def test_readme_quick_start_and_ci_use_the_same_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_no_exact_torch_pins():
    text = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r'"torch(vision)?==', text)


def test_constraints_pin_every_dependency_within_pyproject_ranges():
    """constraints.txt (the versions CI last passed with) pins each direct dependency, inside pyproject's range."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
    for dep in map(Requirement, deps):
        name = canonicalize_name(dep.name)
        assert name in pins, f"constraints.txt has no pin for {dep.name} (pyproject.toml asks for {dep})"
        assert dep.specifier.contains(pins[name]), f"constraints.txt pins {dep.name}=={pins[name]}, outside {dep}"
