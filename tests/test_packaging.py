"""The project installs from its own files: pyproject.toml and environment.yml name the same packages,
and the README opens with the two commands CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]

# conda names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_names() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + [r for extra in meta["optional-dependencies"].values() for r in extra]
    return {_name(r) for r in reqs}


def _environment_names() -> set[str]:
    names: set[str] = set()
    text = (ROOT / "environment.yml").read_text()
    deps = text.split("dependencies:", 1)[1]  # skip the channels list
    for line in deps.splitlines():
        m = re.match(r"^\s+-\s+([A-Za-z0-9_.\-]+)", line)
        if not m or line.strip().startswith("- pip:"):
            continue
        name = _name(m.group(1))
        if name in {"python", "pip"}:
            continue
        names.add(CONDA_TO_PYPI.get(name, name))
    return names


def test_environment_and_pyproject_name_the_same_packages() -> None:
    py, env = _pyproject_names(), _environment_names()
    assert py == env, (
        f"only in pyproject.toml: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"
    )


def test_dependencies_are_ranges_not_pins() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = [r for r in meta["dependencies"] if "==" in r]
    assert not pinned, f"pin-free ranges expected, got {pinned}"


def test_readme_opens_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()[:20]
    code = [ln.split("#")[0].strip() for ln in lines if ln.strip().startswith("make ")]
    assert code[:2] == ["make reproduce", "make test"], code


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must call the README's test command"
