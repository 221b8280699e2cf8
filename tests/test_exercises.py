"""The exercise checkers: right answers confirmed, wrong ones get hints, None means "not answered yet"."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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


# ------------------------------------------------------------------------ numbers as a careful learner writes them
def test_rounded_answers_at_the_digits_given_are_accepted():
    assert grade("01.acc_at_2", 0.67)  # 2/3 to 2 significant digits (the old 1e-3 tolerance refused it)
    assert grade("01.acc_at_2", "0.67") and grade("01.acc_at_2", "2/3") and grade("01.acc_at_2", " 0.667 ")
    assert grade("00.chance_acc_at_1", 0.009)  # 1/115 = 0.0087 to 3 decimals
    assert grade("00.chance_acc_at_1", np.float32(0.0087)) and grade(
        "00.chance_acc_at_1", torch.tensor(0.009)
    )
    assert grade("06.table10_delta", 3.97) and grade("08.shoe_gain", 12.2)
    assert not grade("01.acc_at_2", 0.66), "0.66 does not round 2/3"
    assert not grade("00.shoe_test_size", 114) and not grade("00.shoe_test_size", 110), "counts are exact"
    assert grade("00.shoe_test_size", np.int64(115)) and grade("00.shoe_test_size", 115.0)
    assert (
        not grade("01.acc_at_2", "nan")
        and not grade("01.acc_at_2", float("inf"))
        and not grade("01.acc_at_2", True)
    )


def test_too_few_digits_says_close_and_asks_for_three_digits():
    for key, answer in [
        ("01.acc_at_2", 0.7),
        ("00.chance_acc_at_1", 0.01),
        ("06.table10_delta", 4),
        ("01.acc_at_2", 0.66),
    ]:
        result = grade(key, answer)
        assert result.status == "wrong" and "close — give 3 significant digits" in result.message, (
            key,
            answer,
        )
    far = grade("01.acc_at_2", 0.9)
    assert "close" not in far.message and "hint" in far.message
    assert "close" not in grade("00.shoe_test_size", 114).message  # a count is not "close"
    assert "acc@1" in grade("01.acc_at_2", 0.33).message  # a rounded typical mistake still gets its own hint


def test_collections_accept_arrays_and_tensors():
    assert grade("01.kept_gallery", np.array([4, 3, 1]))
    assert grade("01.kept_gallery", torch.tensor([1, 3, 4]))
    assert grade("01.kept_gallery", [1.0, 3.0, 4.0])
    assert not grade("01.kept_gallery", np.array([1, 4]))
    assert grade("03.why_embedding", " (B). ") and grade("00.query_domain", "SKETCH.")


# --------------------------------------------------------------------------------- 04.fusion_forward (Eq. 1)
def _pool(fmap, pooling):
    return fmap.flatten(1) if pooling == "flatten" else fmap.mean(dim=(2, 3))


def _fusion(taps, pooling):
    mid = F.normalize(_pool(taps["conv5"], pooling), dim=1)
    return torch.cat([mid, F.normalize(taps["final"], dim=1)], dim=1)


def _fusion_numpy(taps, pooling):  # same maths, numpy output: also accepted
    mid = _pool(taps["conv5"], pooling).numpy()
    final = taps["final"].numpy()
    mid = mid / np.linalg.norm(mid, axis=1, keepdims=True)
    return np.concatenate([mid, final / np.linalg.norm(final, axis=1, keepdims=True)], axis=1)


def test_fusion_exercise_reference_is_midlevelfusion():
    from cdimlab.fusion import FusionConfig, MidLevelFusion

    taps = {"conv5": torch.rand(2, 3, 2, 2), "final": torch.randn(2, 4)}
    for pooling in ("flatten", "gap"):
        fusion = MidLevelFusion({"conv5": 3}, {"conv5": (2, 2)}, 4, FusionConfig(("conv5",), pooling))
        torch.testing.assert_close(fusion(taps), _fusion(taps, pooling))  # the hand-written one is right


def test_fusion_exercise_accepts_a_correct_implementation():
    for fn in (_fusion, _fusion_numpy):
        result = grade("04.fusion_forward", fn)
        assert result.status == "correct" and "MidLevelFusion" in result.message


def _wrong(kind):
    """Typical mistakes of the fusion exercise."""

    def fn(taps, pooling):
        fmap, final = taps["conv5"], taps["final"]
        mid = _pool(fmap, pooling)
        l2 = lambda x: F.normalize(x, dim=1)  # noqa: E731
        if kind == "no_l2":
            return torch.cat([mid, final], 1)
        if kind == "no_l2_mid":
            return torch.cat([mid, l2(final)], 1)
        if kind == "no_l2_final":
            return torch.cat([l2(mid), final], 1)
        if kind == "joint_l2":
            return l2(torch.cat([mid, final], 1))
        if kind == "order":
            return torch.cat([l2(final), l2(mid)], 1)
        if kind == "always_gap":
            return torch.cat([l2(fmap.mean(dim=(2, 3))), l2(final)], 1)
        if kind == "always_flatten":
            return torch.cat([l2(fmap.flatten(1)), l2(final)], 1)
        if kind == "hwc":
            return torch.cat([l2(fmap.permute(0, 2, 3, 1).flatten(1)), l2(final)], 1)
        if kind == "max":
            pooled = fmap.flatten(1) if pooling == "flatten" else fmap.amax(dim=(2, 3))
            return torch.cat([l2(pooled), l2(final)], 1)
        if kind == "batch_l2":
            return torch.cat([F.normalize(mid, dim=0), F.normalize(final, dim=0)], 1)
        if kind == "mid_only":
            return l2(mid)
        if kind == "final_scaled":
            return torch.cat([l2(mid), 2 * l2(final)], 1)
        raise AssertionError(kind)

    return fn


@pytest.mark.parametrize(
    "kind, message",
    [
        ("no_l2", "forgot the L2 normalisation"),
        ("no_l2_mid", "mid-level part is not L2-normalised"),
        ("no_l2_final", "final feature is not L2-normalised"),
        ("joint_l2", "normalise each part separately"),
        ("order", "wrong order"),
        ("always_gap", "that of gap pooling"),
        ("always_flatten", "that of flatten pooling"),
        ("hwc", "flatten order"),
        ("max", "max pooling"),
        ("batch_l2", "dim=0"),
        ("mid_only", "AND the final feature"),
        ("final_scaled", "the final (last 5 values) part differs"),
    ],
)
def test_fusion_exercise_names_each_typical_mistake(kind, message):
    result = grade("04.fusion_forward", _wrong(kind))
    assert result.status == "wrong" and message in result.message, result.message
    assert result.message.startswith("✗ 04.fusion_forward")


def test_fusion_exercise_stub_crash_and_non_function():
    assert grade("04.fusion_forward", lambda taps, pooling: None).status == "unanswered"
    crash = grade("04.fusion_forward", lambda taps, pooling: taps["fc7"])
    assert crash.status == "wrong" and "KeyError" in crash.message
    assert grade("04.fusion_forward", 3).status == "wrong"
    assert "returned a str" in grade("04.fusion_forward", lambda taps, pooling: "x").message
