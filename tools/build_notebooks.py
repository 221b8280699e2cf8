"""Build the course notebooks (notebooks/00_...08_*.ipynb) from the readable cell lists in tools/nb_cells/.

Why a script: notebooks are JSON, which is hard to review; the cell lists are plain Python strings, so a change to a
notebook is a readable diff here. The committed .ipynb files carry no outputs and no execution counts, and their cell
ids are deterministic, so rebuilding an unchanged list gives a byte-identical file.

    .venv/bin/python tools/build_notebooks.py            # (re)write every notebook
    .venv/bin/python tools/build_notebooks.py --check    # exit 1 when a committed notebook differs from its list

The exercise cells at the end of each notebook are generated from ``cdimlab.exercises.EXERCISES`` (one source for the
question, the checker and the answers in INSTRUCTORS.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CELLS = Path(__file__).resolve().parent / "nb_cells"
sys.path.insert(0, str(ROOT))

from cdimlab.exercises import exercises_for  # noqa: E402

KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _load_spec(path: Path) -> dict:
    """Import one ``tools/nb_cells/NN_name.py`` file; it defines ``CELLS``: a list of ``(kind, source)``."""
    spec = importlib.util.spec_from_file_location(f"nb_cells_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return {"cells": module.CELLS}


def exercise_cells(number: str) -> list[tuple[str, str]]:
    """Markdown question + code cell per exercise of notebook ``number``; the answer starts as ``None``."""
    cells: list[tuple[str, str]] = [
        (
            "md",
            "## Exercises\n\nReplace each `None` with your answer and run the cell: `check(...)` says whether it is "
            "right, and gives a hint when it is not. (Answers for instructors: `notebooks/INSTRUCTORS.md`.)",
        ),
        ("code", "from cdimlab.exercises import check"),
    ]
    for i, ex in enumerate(exercises_for(number), start=1):
        cells.append(("md", f"**Exercise {i}** (`{ex.key}`). {ex.question}"))
        if ex.kind == "function":
            name = ex.signature.split("(", 1)[0]
            src = (
                f"def {ex.signature}:\n"
                "    return None  # replace with your code (see the question above)\n\n\n"
                f'check("{ex.key}", {name});'
            )
        else:
            src = f'answer_{i} = None  # your answer here\ncheck("{ex.key}", answer_{i});'
        cells.append(("code", src))
    return cells


def make_notebook(stem: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A v4.5 notebook without outputs; ``("params", src)`` becomes a code cell tagged ``parameters``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": KERNEL, "language_info": {"name": "python"}}
    number = stem[:2]
    all_cells = list(cells)
    marker = [i for i, (kind, _) in enumerate(all_cells) if kind == "exercises"]
    if len(marker) != 1:
        raise ValueError(f"{stem}: the cell list needs exactly one ('exercises', '') marker")
    all_cells[marker[0] : marker[0] + 1] = exercise_cells(number)
    for i, (kind, src) in enumerate(all_cells):
        src = src.strip("\n")
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(src)
        elif kind in ("code", "params"):
            cell = nbformat.v4.new_code_cell(src)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
        else:
            raise ValueError(f"{stem}: unknown cell kind {kind!r}")
        cell.id = f"c{number}-{i:03d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def build_all(out_dir: Path = ROOT / "notebooks") -> dict[Path, str]:
    """Render every cell list to notebook JSON text: ``{path: text}``."""
    out = {}
    for spec_path in sorted(CELLS.glob("[0-9][0-9]_*.py")):
        nb = make_notebook(spec_path.stem, _load_spec(spec_path)["cells"])
        out[out_dir / f"{spec_path.stem}.ipynb"] = nbformat.writes(nb) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the notebooks, or with ``--check`` report the ones that differ from their cell lists."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    stale = []
    for path, text in build_all().items():
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"out of date (run tools/build_notebooks.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
