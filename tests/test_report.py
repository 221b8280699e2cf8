"""Report: paper-vs-here tables (markdown + HTML) and plots render from result JSONs; full runs win over smoke."""

from __future__ import annotations

import pytest

from cdimlab.experiments import EXPERIMENTS, PAPER_TABLES
from cdimlab.report import load_results, render_markdown, write_report
from cdimlab.utils import atomic_write_json


def _fake(root, profile, name, metrics, synthetic=True, **extra):
    rec = {"experiment": name, "metrics": metrics, "paper": EXPERIMENTS[name].paper,
           "data": {"synthetic": synthetic, "path": "x"}} | extra  # fmt: skip
    atomic_write_json(root / profile / f"{name}.json", rec)


def test_report_renders_paper_vs_here(tmp_path):
    _fake(tmp_path, "smoke", "shoes_ours", {"acc@1": 0.5, "acc@10": 0.9}, untrained={"acc@1": 0.2},
          chance={"acc@1": 1 / 30}, n_queries=30)  # fmt: skip
    _fake(tmp_path, "smoke", "market_ours", {"mAP": 0.1, "rank1": 0.2, "mq_mAP": 0.3, "mq_rank1": 0.4})
    _fake(
        tmp_path, "full", "market_ours", {"mAP": 0.7, "rank1": 0.8, "mq_mAP": 0.75, "mq_rank1": 0.85}, False
    )
    (tmp_path / "smoke" / "broken.json").write_text("{not json")
    with pytest.warns(UserWarning, match="broken.json"):
        paths = write_report(tmp_path, "smoke")
    md = paths["markdown"].read_text()
    # Table 7 row conv5 (Ours): paper 64.35, here 50.00, delta -14.35 ; cited rows marked ; missing runs as a dash
    assert (
        "| conv5 (Ours) (`shoes_ours`) | 64.35 | 50.00 | -14.35 | 93.04 | 90.00 | -3.04 | 20.00 / 3.33 (n=30) "
        "| smoke (synthetic data) |" in md
    )
    assert str(tmp_path) not in md and str(tmp_path) not in paths["html"].read_text()  # no machine paths
    assert "<h1>The Devil is in the Middle" in paths["html"].read_text()  # a heading, not raw Markdown
    assert (
        "| HOG + linear ranking (course baseline) (`shoes_hog`) | — |" in md
    )  # no Dense-HOG number beside it
    assert "cited [27], not re-run" in md
    assert "| conv3 (`shoes_conv3`) | 60.00 | — | — |" in md
    # the full (GPU, real data) record wins over the smoke one, and says so
    assert "| 75.55 | 70.00 | -5.55 |" in md and "full (real data)" in md
    html = paths["html"].read_text()
    assert "<table>" in html and 'class="cited"' in html
    for n in PAPER_TABLES:
        png = tmp_path / "smoke" / "plots" / f"table_{n}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_results_marks_source(tmp_path):
    _fake(tmp_path, "smoke", "shoes_gap", {"acc@1": 0.1, "acc@10": 0.2})
    res = load_results(tmp_path, "smoke")
    assert res["shoes_gap"]["_source"] == "smoke"
    assert load_results(tmp_path, "full") == {}


def test_render_markdown_empty_results_shows_dashes():
    md = render_markdown(PAPER_TABLES[9], {})
    assert md.count("not run yet") == 2 and "58.26" in md


def test_load_results_skips_malformed_files_and_keeps_the_record_its_name_matches(tmp_path):
    import json
    import warnings

    folder = tmp_path / "smoke"
    folder.mkdir()
    good = {"experiment": "shoes_ours", "metrics": {"acc@1": 0.5}, "data": {"synthetic": True}}
    (folder / "shoes_ours.json").write_text(json.dumps(good))
    (folder / "copy of shoes_ours.json").write_text(json.dumps({**good, "metrics": {"acc@1": 0.9}}))
    (folder / "null.json").write_text(json.dumps({"experiment": "a", "metrics": None}))
    (folder / "string.json").write_text(json.dumps({"experiment": "b", "metrics": {"acc@1": "high"}}))
    (folder / "latin1.json").write_bytes(b'{"experiment": "c", "metrics": {}, "x": "\xe9"}')
    (folder / "torn.json").write_text('{"experiment": "d", "metr')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = load_results(tmp_path, "smoke", prefer_full=False)
    assert set(out) == {"shoes_ours"} and out["shoes_ours"]["metrics"]["acc@1"] == 0.5
    text = "\n".join(str(w.message) for w in caught)
    for name in ("null.json", "string.json", "latin1.json", "torn.json", "copy of shoes_ours.json"):
        assert name in text, (name, text)
    assert "not UTF-8" in text and "repeats experiment 'shoes_ours'" in text
