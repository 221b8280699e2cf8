"""Static checks of the course notebooks (running them is nbval's job: `pytest --nbval-lax notebooks`).

A notebook fails here when it has stored outputs or execution counts, lacks a `parameters` cell of literals, learning
goals, a summary or at least two checked exercises, or differs from its cell list in tools/nb_cells/; and every
notebook named in the README / INSTRUCTORS.md must exist.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cdimlab.exercises import EXERCISES

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
EXPECTED = [
    "00_welcome_and_setup",
    "01_metrics",
    "02_vanilla_fgsbir",
    "03_vanilla_reid",
    "04_fusion_fgsbir",
    "05_fusion_reid",
    "06_ablations",
    "07_explorer",
    "08_reproduce_paper",
]
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def test_the_course_has_its_nine_notebooks():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stored_outputs(path):
    nb = _read(path)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} has stored outputs: strip them"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


def _parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    return tagged[0]


def literal_assignments(source: str) -> dict[str, object]:
    """``{name: value}`` of a parameters cell; AssertionError unless every statement is ``name = <literal>``."""
    out = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, (
            f"not a plain assignment: {ast.unparse(node)}"
        )
        target = node.targets[0]
        assert isinstance(target, ast.Name), f"assign to a plain name: {ast.unparse(node)}"
        out[target.id] = ast.literal_eval(node.value)  # ValueError for anything but a literal
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_literals_with_the_smoke_profile(path):
    nb = _read(path)
    cell = _parameters_cell(nb)
    assert cell.cell_type == "code"
    params = literal_assignments(cell.source)
    assert params.get("profile") == "smoke", "smoke is the default profile"
    assert isinstance(params.get("seed"), int)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code.index(cell) == 0, "the parameters cell comes before any other code"


def test_literal_check_rejects_computation():
    assert literal_assignments("a = 1\nb = (1, 'x')\nc = None") == {"a": 1, "b": (1, "x"), "c": None}
    with pytest.raises(ValueError):
        literal_assignments("a = len('x')")
    with pytest.raises(AssertionError):
        literal_assignments("import os")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_goals_summary_and_exercises(path):
    nb = _read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "Learning goals" in first.source, "the first cell states the learning goals"
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"^## Summary", md, re.M), "a '## Summary' section"
    assert re.search(r"^## Exercises", md, re.M), "a '## Exercises' section"
    keys = re.findall(r'check\("([^"]+)"', "\n".join(c.source for c in nb.cells if c.cell_type == "code"))
    assert len(keys) >= 2, "at least two exercises checked by cdimlab.exercises.check"
    assert all(k in EXERCISES and k.startswith(path.name[:2]) for k in keys), keys
    summary_at = max(
        i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Summary" in c.source
    )
    exercises_at = min(
        i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in c.source
    )
    assert summary_at < exercises_at, "the summary comes before the exercises at the end"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_stay_short(path):
    for i, cell in enumerate(_read(path).cells):
        if cell.cell_type == "code":
            n = len(cell.source.splitlines())
            assert n <= 16, f"{path.name} cell {i} has {n} lines: move the logic into cdimlab"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_computes_through_cdimlab_and_asserts(path):
    code = "\n".join(c.source for c in _read(path).cells if c.cell_type == "code")
    assert "from cdimlab" in code or "import cdimlab" in code
    assert code.count("assert ") >= 2, "results are checked with asserts, not just printed"


def test_notebooks_match_their_cell_lists():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_notebooks.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("doc", ["README.md", "INSTRUCTORS.md"])
def test_every_notebook_named_in_the_guides_exists(doc):
    text = (NB_DIR / doc).read_text(encoding="utf-8")
    named = set(re.findall(r"\b(\d\d_[a-z0-9_]+?)(?:\.ipynb)?\b", text))
    assert named, f"{doc} names no notebook"
    missing = sorted(n for n in named if not (NB_DIR / f"{n}.ipynb").is_file())
    assert not missing, f"{doc} names notebooks that do not exist: {missing}"
    assert set(EXPECTED) <= named, (
        f"{doc} should list every notebook; missing {sorted(set(EXPECTED) - named)}"
    )
