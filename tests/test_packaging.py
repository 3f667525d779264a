"""The install story: pyproject.toml, environment.yml and the README agree."""

import re
from pathlib import Path

import pytest

try:
    import tomllib  # novermin: the except branch is 3.10's
except ImportError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    env = (ROOT / "environment.yml").read_text(encoding="utf-8")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    py_min = re.search(r'requires-python = ">=(\d+\.\d+)"', pyproject).group(1)
    pinned = re.search(r"- python=(\d+\.\d+)\b", env).group(1)  # conda would otherwise pick its newest Python
    tested = re.search(r"# Python (\d+\.\d+),", (ROOT / "constraints.txt").read_text(encoding="utf-8")).group(1)
    assert pinned == tested, f"environment.yml pins Python {pinned}; constraints.txt was tested with {tested}"
    assert tuple(map(int, pinned.split("."))) >= tuple(map(int, py_min.split(".")))
    for dep in project["dependencies"]:
        name = re.split(r"[<>=\[ ]", dep)[0]
        if name in ("torch", "torchvision"):  # pinned the same way in both
            assert f'"{dep}"' in env, f"environment.yml must request {dep} like pyproject.toml"
    assert '-e .[all]' in env and "all" in project["optional-dependencies"]
    extras = project["optional-dependencies"]
    for group in ("notebooks", "dev"):
        assert set(extras[group]) <= set(extras["all"]), f"extra 'all' must include '{group}'"


def test_readme_quick_start_and_ci_use_the_same_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci


def test_no_exact_torch_pins():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert not re.search(r'"torch(vision)?==', text)


def _pins(filename: str) -> dict[str, str]:
    """{canonical name: version} of a constraints file, every line an exact pin (name==version)."""
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / filename).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{filename}: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_dependency_within_pyproject_ranges():
    """constraints.txt (the versions CI last passed with) pins each direct dependency, inside pyproject's range."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _pins("constraints.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    deps = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
    for dep in map(Requirement, deps):
        name = canonicalize_name(dep.name)
        assert name in pins, f"constraints.txt has no pin for {dep.name} (pyproject.toml asks for {dep})"
        assert dep.specifier.contains(pins[name]), f"constraints.txt pins {dep.name}=={pins[name]}, outside {dep}"


def test_constraints_min_holds_each_listed_package_at_its_lower_bound():
    """constraints-min.txt (`make test-min`) pins packages to the lowest versions pyproject.toml allows: each pin is
    inside the range and in the release series of its lower bound (torch>=2.4 -> 2.4.x), and every runtime
    dependency is pinned, so raising a bound without re-testing it fails here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins = {name: Version(v) for name, v in _pins("constraints-min.txt").items()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {canonicalize_name(Requirement(d).name) for d in project["dependencies"]}
    assert runtime <= set(pins), f"constraints-min.txt has no pin for {sorted(runtime - set(pins))}"
    deps = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
    bounds = {}
    for dep in map(Requirement, deps):
        lows = [Version(s.version) for s in dep.specifier if s.operator == ">="]
        if lows:
            bounds[canonicalize_name(dep.name)] = (dep, lows[0])
    for name, pin in pins.items():
        assert name in bounds, f"constraints-min.txt pins {name}, which pyproject.toml gives no lower bound"
        dep, low = bounds[name]
        assert dep.specifier.contains(pin) and pin.release[:len(low.release)] == low.release, \
            f"constraints-min.txt pins {name}=={pin}, not in the release series of its bound {dep}"


def test_wheel_carries_the_models_and_license_and_no_checkout_only_files(tmp_path):
    """A wheel (what `pip install diffusion-lite` gets) holds the package, the six shipped models with their cards
    and the license; data/, notebooks/, tests/ and benchmarks/ stay in the repository, and the installed package
    knows it is not a source checkout (so it never reads site-packages/data or site-packages/benchmarks)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    from diffusion_lite.utils import source_checkout

    pytest.importorskip("setuptools", minversion="77")  # the build backend pyproject.toml asks for
    src = tmp_path / "src"  # build from a copy, so the checkout gets no build/ or egg-info
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "diffusion_lite", src / "diffusion_lite", ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "dist").glob("diffusion_lite-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        z.extractall(tmp_path / "site")
    for model in ("mnist-uncond", "mnist-text2img", "mnist-clip", "mnist-classifier", "fashion-mnist-classifier",
                  "fashion-text2img"):
        for ext in ("safetensors", "json", "md"):
            assert f"diffusion_lite/pretrained/{model}.{ext}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in meta
    assert not [n for n in names if n.split("/")[0] in ("data", "notebooks", "tests", "benchmarks", "scripts")]
    assert source_checkout(tmp_path / "site" / "diffusion_lite") is None
    assert source_checkout(src / "diffusion_lite") == src.resolve()
    assert source_checkout() == ROOT  # the tests run from a checkout


def test_demo_points_to_the_notebooks_only_where_they_are(tmp_path, monkeypatch):
    from diffusion_lite.demo import next_steps

    monkeypatch.chdir(ROOT)
    assert "jupyter lab notebooks/" in next_steps(ROOT)  # `make demo` runs in the checkout's root
    monkeypatch.chdir(tmp_path)
    assert f"jupyter lab {ROOT / 'notebooks'}/" in next_steps(ROOT)
    wheel = next_steps(None)
    assert "jupyter lab" not in wheel and "source repository" in wheel and "diffusion-lite sample" in wheel
