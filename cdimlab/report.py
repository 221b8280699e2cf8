"""Paper vs here: the tables 3-11 rendered from result JSONs (markdown + HTML) with one plot per table.

Introduced in notebook 08 (reproducing the tables) and written by ``python -m cdimlab reproduce``. Numbers come
from ``results/full/<name>.json`` (committed GPU runs of the paper's schedule) when present, else from the
requested profile (``results/smoke/``: tiny CPU runs on synthetic data, which only show the pipeline runs);
every row says which profile and which data (synthetic or real) its number came from.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from cdimlab.experiments import PAPER_TABLES
from cdimlab.utils import REPO_ROOT, atomic_write_bytes, atomic_write_text

DASH = "—"
METRIC_LABEL = {"acc@1": "acc@1", "acc@10": "acc@10", "mAP": "mAP", "rank1": "R1", "mq_mAP": "MQ mAP",
                "mq_rank1": "MQ R1"}  # fmt: skip


def load_results(
    results_dir: str | os.PathLike | None = None, profile: str = "smoke", prefer_full: bool = True
) -> dict[str, dict[str, Any]]:
    """``{experiment: record}`` from ``<results_dir>/<profile>/*.json``; records from ``full/`` win when
    ``prefer_full``. Each record gets ``"_source"``: the profile folder it came from.

    A file that is unreadable (invalid JSON, not UTF-8) or malformed (``metrics`` not a mapping of numbers) is
    skipped with a warning naming it. When two files of one folder claim the same ``"experiment"``, the one whose
    file name is that experiment (``<name>.json``, else ``<name>.seed<k>.json``) is kept and the other named in a
    warning, so a stray copy never silently replaces a record."""
    import warnings

    root = Path(results_dir) if results_dir is not None else REPO_ROOT / "results"
    folders = [profile] + (["full"] if prefer_full and profile != "full" else [])
    out: dict[str, dict[str, Any]] = {}
    for folder in folders:
        kept: dict[str, tuple[int, Path]] = {}  # experiment -> (rank of its file name, file)
        for path in sorted((root / folder).glob("*.json")):
            rec, problem = _read_record(path)
            if problem:
                warnings.warn(f"skipping result file {path}: {problem}", stacklevel=2)
                continue
            if rec is None:
                continue
            name = rec.get("experiment", path.stem)
            rank = 0 if path.stem == name else 1 if path.stem.split(".seed")[0] == name else 2
            if name in kept:
                old_rank, old_path = kept[name]
                loser = path if rank >= old_rank else old_path
                if max(rank, old_rank) == 2:  # seed records beside seed 0's are expected; strays are not
                    warnings.warn(
                        f"{loser} repeats experiment {name!r} of another file; ignored", stacklevel=2
                    )
                if rank >= old_rank:
                    continue
            kept[name] = (rank, path)
            rec["_source"] = folder
            out[name] = rec
    return out


def _read_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """One results file as ``(record, None)``; ``(None, why)`` when it is unusable; ``(None, None)`` for a JSON
    file that is not a results record at all (no ``metrics``)."""
    try:
        rec = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        return None, f"not UTF-8 text ({err})"
    except (OSError, json.JSONDecodeError) as err:
        return None, f"unreadable ({err})"
    if not isinstance(rec, dict) or "metrics" not in rec:
        return None, None
    metrics = rec["metrics"]
    if not isinstance(metrics, dict):
        return None, f'"metrics" is {type(metrics).__name__}, not a mapping of metric names to numbers'
    bad = [k for k, v in metrics.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        return None, f"metric(s) {bad} are not numbers"
    return rec, None


def _pct(v: float | None) -> str:
    return DASH if v is None else f"{100 * v:.2f}"


def _delta(here: float | None, paper: float | None) -> str:
    return DASH if here is None or paper is None else f"{100 * (here - paper):+.2f}"


def table_rows(table: Any, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows of one paper table: label, group, source, and per metric paper / here / delta (strings)."""
    rows = []
    for row in table.rows:
        rec = results.get(row.experiment) if row.experiment else None
        r: dict[str, Any] = {"group": row.group, "label": row.label, "experiment": row.experiment or ""}
        if row.cited:
            r["source"] = f"cited {row.cited}, not re-run"
        elif rec is None:
            r["source"] = "not run yet"
        else:
            data = "synthetic" if rec.get("data", {}).get("synthetic") else "real"
            r["source"] = f"{rec['_source']} ({data} data)"
        for m in table.metrics:
            paper = row.paper.get(m)
            here = rec["metrics"].get(m) if rec else None
            r[m] = (paper, here)
        r["floor"] = floor_text(rec, table.metrics[0]) if rec else DASH
        rows.append(r)
    return rows


def floor_text(rec: dict[str, Any], metric: str) -> str:
    """``untrained U / chance C (n=N)`` for ``metric`` of one record: what a trained number must clear."""
    u = (rec.get("untrained") or {}).get(metric)
    c = (rec.get("chance") or {}).get(metric)
    n = rec.get("n_queries")
    return f"{_pct(u)} / {_pct(c)}" + (f" (n={n})" if n else "")


def render_markdown(table: Any, results: dict[str, dict[str, Any]]) -> str:
    """One table as markdown: per metric the paper's number, ours, and the difference (percentage points)."""
    head = (
        ["", "row"]
        + [f"{METRIC_LABEL[m]} {w}" for m in table.metrics for w in ("paper", "here", "Δ")]
        + [f"{METRIC_LABEL[table.metrics[0]]} untrained / chance (n queries)", "source"]
    )
    lines = [f"### Table {table.number}. {table.title}", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]  # fmt: skip
    for r in table_rows(table, results):
        cells = [r["group"], r["label"] + (f" (`{r['experiment']}`)" if r["experiment"] else "")]
        for m in table.metrics:
            p, h = r[m]
            cells += [_pct(p), _pct(h), _delta(h, p)]
        lines.append("| " + " | ".join(cells + [r["floor"], r["source"]]) + " |")
    return "\n".join(lines) + "\n"


def render_html(table: Any, results: dict[str, dict[str, Any]]) -> str:
    """One table as an HTML <table> (cited rows greyed)."""
    head = (
        ["", "row"]
        + [f"{METRIC_LABEL[m]} {w}" for m in table.metrics for w in ("paper", "here", "Δ")]
        + [f"{METRIC_LABEL[table.metrics[0]]} untrained / chance (n queries)", "source"]
    )
    out = [f"<h3>Table {table.number}. {html.escape(table.title)}</h3>", "<table>",
           "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]  # fmt: skip
    for r in table_rows(table, results):
        cells = [r["group"], r["label"] + (f" <code>{r['experiment']}</code>" if r["experiment"] else "")]
        for m in table.metrics:
            p, h = r[m]
            cells += [_pct(p), _pct(h), _delta(h, p)]
        cells.append(html.escape(r["floor"]))
        cls = ' class="cited"' if r["source"].startswith("cited") else ""
        cells.append(html.escape(r["source"]))
        out.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def plot_table(
    table: Any, results: dict[str, dict[str, Any]], path: str | os.PathLike | None = None, ax=None
):
    """Grouped bars, paper vs here, for the re-run rows of ``table`` (first two metrics). Saved as PNG if ``path``."""
    import matplotlib

    if path is not None and ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in table_rows(table, results) if r["experiment"] and not r["source"].startswith("cited")]
    metrics = table.metrics[:2]
    fig = None
    if ax is None:
        width = min(12.5, 3 + 0.9 * len(rows) * len(metrics))  # <= 1,125 px at 90 dpi: fits the 1,200 px page
        fig, axes = plt.subplots(1, len(metrics), figsize=(width, 3.6), squeeze=False)
        axes = axes[0]
    else:
        axes = [ax]
        metrics = metrics[:1]
    labels = [(r["group"] + " " if r["group"] else "") + r["label"] for r in rows]
    x = np.arange(len(rows))
    for a, m in zip(axes, metrics, strict=False):
        paper = [100 * (r[m][0] if r[m][0] is not None else np.nan) for r in rows]
        here = [100 * (r[m][1] if r[m][1] is not None else np.nan) for r in rows]
        a.bar(x - 0.2, paper, 0.4, label="paper", color="#999999")
        here_label = (
            "+".join(sorted({r["source"].split(" (")[0] for r in rows if r[m][1] is not None})) or "here"
        )
        a.bar(x + 0.2, here, 0.4, label=here_label, color="#1f77b4")
        a.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
        a.set_ylabel(f"{METRIC_LABEL[m]} (%)")
        a.set_ylim(0, 100)
        a.set_title(f"Table {table.number}: {METRIC_LABEL[m]}", fontsize=9)
        a.legend(fontsize=7)
    if fig is not None:
        fig.tight_layout()
        if path is not None:
            import io

            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=90)
            plt.close(fig)
            atomic_write_bytes(path, buf.getvalue())
    return axes


def write_report(
    results_dir: str | os.PathLike | None = None,
    profile: str = "smoke",
    tables: list[int] | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``<results_dir>/<profile>/REPORT.md``, ``report.html`` and ``plots/table_<n>.png``; return the paths."""
    results_dir = Path(results_dir) if results_dir is not None else REPO_ROOT / "results"
    results = load_results(results_dir, profile)
    out = results_dir / profile
    nums = sorted(tables) if tables else sorted(PAPER_TABLES)
    sources = sorted({r["_source"] for r in results.values()})
    title = f"The Devil is in the Middle: paper vs here ({profile} profile)"
    intro = (
        f"Numbers are percentages. 'here' comes from results/&lt;profile&gt;/*.json; profiles used: "
        f"{', '.join(sources) or 'none yet'}. Rows from `full` are GPU runs of the paper's schedule; rows from "
        "`smoke` are tiny CPU runs (usually on synthetic data) that only show the pipeline works and are NOT "
        "comparable to the paper. Each trained row shows the same network's untrained score and chance for the "
        "first metric, with the number of test queries. Cited rows are the paper's competitor numbers, not "
        "re-run. — = not available (no run, or no such number: the HOG row is our own baseline, not the paper's "
        "Dense-HOG). FG-SBIR acc@K uses the protocol in each run's config (`eval_protocol`: 10view or center). "
        "The laptop track (real data, CPU) has its own page: results/laptop/SUMMARY.md."
    )
    md, body = [f"# {title}\n\n" + intro.replace("&lt;", "<").replace("&gt;", ">") + "\n"], []
    for n in nums:
        t = PAPER_TABLES[n]
        md.append(render_markdown(t, results))
        body.append(render_html(t, results))
        if plots:
            png = out / "plots" / f"table_{n}.png"
            plot_table(t, results, png)
            md.append(f"![Table {n}](plots/table_{n}.png)\n")
            body.append(f'<img src="plots/table_{n}.png" alt="Table {n} paper vs here">')
    style = ("<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;"
             "margin-bottom:1em}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
             "tr.cited{color:#888}img{max-width:100%}</style>")  # fmt: skip
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>cdimlab report ({profile})</title>{style}"
            f"</head><body><h1>{html.escape(title)}</h1><p>{intro.replace('`', '')}</p>" + "\n".join(body)
            + "</body></html>\n")  # fmt: skip
    paths = {"markdown": out / "REPORT.md", "html": out / "report.html"}
    atomic_write_text(paths["markdown"], "\n".join(md))
    atomic_write_text(paths["html"], page)
    return paths
