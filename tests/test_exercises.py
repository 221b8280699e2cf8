"""The exercise checkers: right answers confirmed, wrong ones get hints, None means "not answered yet"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cdimlab import exercises
from cdimlab.exercises import EXERCISES, check, exercises_for, grade, solution

ROOT = Path(__file__).resolve().parents[1]


def test_every_notebook_has_at_least_two_exercises():
    for nb in [f"{i:02d}" for i in range(9)]:
        assert len(exercises_for(nb)) >= 2, f"notebook {nb} needs at least two exercises"


@pytest.mark.parametrize("key", [k for k, ex in EXERCISES.items() if ex.kind != "function"])
def test_the_stored_answer_is_graded_correct(key):
    result = grade(key, solution(key))
    assert result.status == "correct" and bool(result)
    assert result.message.startswith("✓")


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_none_is_unanswered_with_a_hint(key):
    result = grade(key, None)
    assert result.status == "unanswered" and not result
    assert "not answered yet" in result.message and EXERCISES[key].hint in result.message


def test_hand_computed_answers():
    # the tiny matrix of 01.acc_at_2: true-match ranks 2, 1, 3
    assert grade("01.acc_at_2", 2 / 3)
    assert grade("01.average_precision", (0.5 + 0.5 + 0.6) / 3)
    assert grade("02.triplet_loss_value", 0.1)
    assert grade("04.fused_dim_paper", 12_800)
    assert grade("05.fused_dim", 3072)
    assert grade("05.reduce_params", 4_195_328)
    assert grade("03.classifier_params", 1_538_799)
    assert grade("08.shoe_gain", 12.18)


def test_numbers_use_a_tolerance_and_reject_far_answers():
    assert grade("01.acc_at_2", 0.6667)
    assert not grade("01.acc_at_2", 0.7)
    assert not grade("04.fused_dim_paper", "twelve thousand")


def test_typical_mistakes_get_a_targeted_hint():
    result = grade("01.acc_at_2", 1 / 3)
    assert result.status == "wrong" and "acc@1" in result.message
    result = grade("04.fused_dim_paper", 12544)
    assert "fc7" in result.message
    result = grade("01.kept_gallery", [1, 4])
    assert "distractor" in result.message


def test_percentages_are_recognised():
    result = grade("00.chance_acc_at_1", 100 / 115)
    assert result.status == "wrong" and "percentage" in result.message


def test_text_and_set_answers_are_normalised():
    assert grade("00.query_domain", "  Sketch ")
    assert grade("03.why_embedding", "B")
    assert grade("01.kept_gallery", (4, 3, 1))
    assert not grade("01.kept_gallery", "1, 3, 4"), "a string is not a collection of indices"
    assert grade("06.ablation_set", ["RES5A", "res5b", "res2", "res3", "res4"])


def _my_ap(relevance):
    hits, total = 0, 0.0
    for rank, rel in enumerate(relevance, start=1):
        if rel:
            hits += 1
            total += hits / rank
    return total / hits


def test_function_exercise_runs_the_learners_function():
    assert grade("01.ap_function", _my_ap)
    wrong = grade("01.ap_function", lambda rel: sum(rel) / len(rel))
    assert wrong.status == "wrong" and "expected" in wrong.message
    stub = grade("01.ap_function", lambda rel: None)
    assert stub.status == "unanswered"
    crash = grade("01.ap_function", lambda rel: 1 / 0)
    assert crash.status == "wrong" and "ZeroDivisionError" in crash.message
    assert grade("01.ap_function", 0.5).status == "wrong"


def test_check_prints_the_message_and_returns_the_result(capsys):
    result = check("02.zero_loss_distance", 0.8)
    assert result and "✓" in capsys.readouterr().out
    check("02.zero_loss_distance", 0.5)
    assert "hint" in capsys.readouterr().out


def test_unknown_key_names_the_known_ones():
    with pytest.raises(KeyError, match="01.acc_at_2"):
        grade("01.nope", 1)


def test_duplicate_keys_are_refused():
    ex = EXERCISES["00.query_domain"]
    with pytest.raises(ValueError, match="duplicate"):
        exercises._ex(ex, ex)


def test_instructors_guide_lists_every_answer():
    guide = (ROOT / "notebooks" / "INSTRUCTORS.md").read_text(encoding="utf-8")
    missing = [key for key in EXERCISES if f"`{key}`" not in guide]
    assert not missing, f"INSTRUCTORS.md lacks the answers of {missing}"
    assert re.search(r"12,?800", guide)
