"""Exercise checkers for the course notebooks: a wrong answer gets a hint, a right one a confirmation.

Every notebook (00-08) ends with exercises. A learner writes ``answer = ...`` and calls
``check("01.acc_at_2", answer)``; the answer is compared with the one stored here and a short message says
what to look at again. ``None`` means "not answered yet": the cell still runs (the committed notebooks run
under nbval) and prints the hint. Numbers are accepted as a careful learner writes them (0.67 for 2/3, 0.009 for
1/115, ``"2/3"``, numpy scalars), text case-insensitively, collections (lists, tuples, arrays) as sets; an exercise
may also take a function, which is then called on hidden test cases (``04.fusion_forward`` compares the
learner's fusion with :class:`cdimlab.fusion.MidLevelFusion`, see :mod:`cdimlab.fusion_exercise`).

The exercises are the single source for the question text in the notebooks (``tools/build_notebooks.py``) and
for the answers in ``notebooks/INSTRUCTORS.md``.
"""

from __future__ import annotations

from typing import Any

from cdimlab.answers import nearly
from cdimlab.grading import CheckResult, Exercise, close_enough, grade_function, same_answer

__all__ = ["EXERCISES", "CheckResult", "Exercise", "check", "exercises_for", "grade", "solution"]


def grade(key: str, answer: Any) -> CheckResult:
    """Grade ``answer`` for exercise ``key`` without printing; see :func:`check`."""
    if key not in EXERCISES:
        raise KeyError(f"unknown exercise {key!r}; known ones: {sorted(EXERCISES)}")
    ex = EXERCISES[key]
    if answer is None:
        return CheckResult(key, "unanswered", f"… {key}: not answered yet — hint: {ex.hint}")
    if ex.grader is not None:
        status, msg = ex.grader(answer)
        mark = {"correct": "✓", "wrong": "✗", "unanswered": "…"}[status]
        tail = ex.explanation if status == "correct" else f"hint: {ex.hint}"
        return CheckResult(key, status, f"{mark} {key}: {msg} {tail}")
    if ex.kind == "function":
        return grade_function(answer, ex)
    if same_answer(answer, ex.answer, ex):
        return CheckResult(key, "correct", f"✓ {key}: correct. {ex.explanation}")
    for wrong, why in ex.mistakes:
        if same_answer(answer, wrong, ex):
            return CheckResult(key, "wrong", f"✗ {key}: {answer!r} is not it — {why}")
    if ex.kind == "number" and close_enough(answer, ex.answer * 100, ex):
        return CheckResult(key, "wrong", f"✗ {key}: that looks like a percentage; give a fraction in [0, 1].")
    if ex.kind == "number" and nearly(answer, ex.answer):
        return CheckResult(key, "wrong", f"✗ {key}: {answer!r} is close — give 3 significant digits.")
    return CheckResult(key, "wrong", f"✗ {key}: {answer!r} is not it — hint: {ex.hint}")


def check(key: str, answer: Any) -> CheckResult:
    """Grade a learner's ``answer`` for exercise ``key``, print the feedback and return the result.

    ``None`` prints "not answered yet" with a hint (so the committed notebooks run clean); a wrong answer prints
    a hint (a targeted one for typical mistakes); a right one prints a confirmation and why it is right.
    Used in the exercises at the end of every notebook.
    """
    result = grade(key, answer)
    print(result.message)
    return result


def solution(key: str) -> Any:
    """The expected answer of exercise ``key`` (for instructors; for function exercises, the test cases)."""
    ex = EXERCISES[key]
    return ex.cases if ex.kind == "function" else ex.answer


def exercises_for(notebook: str) -> list[Exercise]:
    """The exercises of one notebook, by number (``"01"``) or file name (``"01_metrics.ipynb"``), in order."""
    nb = str(notebook)[:2]
    return [ex for ex in EXERCISES.values() if ex.notebook == nb]


def _average_precision_cases() -> tuple[tuple[tuple[Any, ...], float], ...]:
    """Hidden cases for 01.ap_function: a 0/1 relevance list in rank order -> AP."""
    return (
        (([1, 0, 0],), 1.0),
        (([0, 1, 0, 1, 1],), (1 / 2 + 2 / 4 + 3 / 5) / 3),
        (([0, 0, 1],), 1 / 3),
        (([1, 1, 0, 0, 1],), (1 + 1 + 3 / 5) / 3),
    )


def _fusion_grader(fn: Any) -> tuple[str, str]:
    """04.fusion_forward: imported on use, so notebooks without torch-heavy exercises load fast."""
    from cdimlab.fusion_exercise import grade_fusion_forward

    return grade_fusion_forward(fn)


def _ex(*items: Exercise) -> dict[str, Exercise]:
    """Index exercises by key, refusing duplicates."""
    out: dict[str, Exercise] = {}
    for ex in items:
        if ex.key in out:
            raise ValueError(f"duplicate exercise key {ex.key}")
        out[ex.key] = ex
    return out


_TINY_D = "D = [[0.2, 0.5, 0.1], [0.9, 0.3, 0.4], [0.6, 0.7, 0.8]]"

EXERCISES: dict[str, Exercise] = _ex(
    # 00 welcome
    Exercise(
        "00.shoe_test_size",
        "How many sketch queries does the **real** QMUL-Shoe **test** split have (the paper's Table 1, shown "
        "above)? The synthetic stand-in printed earlier is smaller on purpose; the question is about the real data.",
        115,
        "read the 'test' column of the QMUL-Shoe row in the Table 1 cell above (not the stand-in's count).",
        "115 test sketches, each ranked against the 115 test photos.",
        mistakes=(
            (304, "304 is the training split; the question asks for the test split."),
            (419, "419 is all sketches."),
        ),
    ),
    Exercise(
        "00.chance_acc_at_1",
        "If a model ranked the real QMUL-Shoe test photos (one per test sketch: your previous answer) in random "
        "order, what acc@1 would it get on average? (A fraction, not a percentage.)",
        1 / 115,
        "with N gallery photos and one true match, a random ranking puts the match first with probability 1/N.",
        "1/115 ≈ 0.0087: the floor any trained model must clear (the paper reports 64% on shoes).",
        rel_tol=2e-2,
        mistakes=((10 / 115, "10/115 is chance acc@10; the question asks for acc@1."),),
    ),
    Exercise(
        "00.query_domain",
        "In FG-SBIR, is the **query** a `sketch` or a `photo`?",
        "sketch",
        "the user draws something and the system searches a catalogue for the same object.",
        "the sketch is the query, the photos are the gallery.",
        kind="text",
        mistakes=(("photo", "photos form the gallery that gets ranked."),),
    ),
    # 01 metrics
    Exercise(
        "01.acc_at_2",
        f"Rows are sketches, columns photos, sketch *i* matches photo *i*: `{_TINY_D}`. What is acc@2?",
        2 / 3,
        "for each row find the rank of the diagonal entry (1 = smallest distance); count the rows with rank <= 2.",
        "ranks of the true matches are 2, 1 and 3, so 2 of 3 queries have their match in the top 2.",
        mistakes=(
            (1 / 3, "1/3 is acc@1 here; at K = 2 one more query counts."),
            (1.0, "row 3's true match is ranked last."),
        ),
    ),
    Exercise(
        "01.average_precision",
        "A query's ranked gallery has true matches at ranks 2, 4 and 5 (relevance `[0, 1, 0, 1, 1]`). "
        "What is its average precision (AP)?",
        (1 / 2 + 2 / 4 + 3 / 5) / 3,
        "AP = mean over the true matches of (matches so far / rank) at each true match's rank.",
        "(1/2 + 2/4 + 3/5) / 3 ≈ 0.533.",
        mistakes=(
            (
                (1 / 2 + 2 / 4 + 3 / 5) / 5,
                "divide by the number of true matches (3), not the gallery size (5).",
            ),
        ),
    ),
    Exercise(
        "01.kept_gallery",
        "ReID query: identity 7, camera 1. Gallery (index: identity, camera): 0: (7, 1), 1: (7, 2), 2: (-1, 2), "
        "3: (0, 1), 4: (3, 2). Which gallery indices are **kept** for ranking? Give a list.",
        [1, 3, 4],
        "same identity AND same camera is dropped, identity -1 is junk and dropped, identity 0 (distractor) stays.",
        "index 0 (same identity, same camera) and index 2 (junk) are dropped; the distractor 3 stays as a negative.",
        kind="set",
        mistakes=(
            ([1, 4], "identity 0 is a distractor: it stays as a negative."),
            ([1], "only same-id-same-camera and junk go."),
        ),
    ),
    Exercise(
        "01.ap_function",
        "Write `my_ap(relevance)` that returns the AP of a 0/1 relevance list in rank order (at least one 1).",
        None,
        "walk down the list, keep a count of hits; at each hit add hits / rank (rank starts at 1); divide by hits.",
        "your AP agrees with the definition cdimlab.metrics.cmc_map uses.",
        kind="function",
        cases=_average_precision_cases(),
        signature="my_ap(relevance)",
    ),
    # 02 vanilla FG-SBIR
    Exercise(
        "02.triplet_loss_value",
        "Margin 0.3, d(anchor, positive) = 0.5, d(anchor, negative) = 0.7. What is the triplet loss?",
        0.1,
        "the loss is max(0, margin + d(a, p) - d(a, n)).",
        "max(0, 0.3 + 0.5 - 0.7) = 0.1: the negative is farther, but not by the margin.",
        mistakes=(
            (0.0, "the negative must be farther by at least the margin for the loss to vanish."),
            (0.5, "subtract d(a, n)."),
        ),
    ),
    Exercise(
        "02.zero_loss_distance",
        "With margin 0.3 and d(anchor, positive) = 0.5, what is the smallest d(anchor, negative) with zero loss?",
        0.8,
        "solve margin + d(a, p) - d(a, n) = 0.",
        "0.5 + 0.3 = 0.8: past that the triplet gives no gradient, which is why sampling hard negatives matters.",
    ),
    Exercise(
        "02.pool5_values_smoke",
        "How many values does Sketch-a-Net's pool5 (`conv5` tap) hold for one 113x113 smoke-profile input? "
        "(Use `backbone.tap_shapes()` from above.)",
        1024,
        "multiply C x H x W of the conv5 tap; at 225x225 it is 256x7x7.",
        "256 x 2 x 2 = 1,024 (at the paper's 225x225: 256 x 7 x 7 = 12,544).",
        mistakes=((12544, "12,544 is at the paper's 225x225; the smoke profile uses 113x113."),),
    ),
    # 03 vanilla ReID
    Exercise(
        "03.pool5_dim",
        "How long is ResNet-50's pool5 embedding vector?",
        2048,
        "pool5 is global average pooling of res5c; count its channels.",
        "2,048 channels in res5c, averaged over space.",
    ),
    Exercise(
        "03.classifier_params",
        "How many parameters (weights + biases) does the identity classifier on pool5 have for Market-1501's "
        "751 training identities?",
        2048 * 751 + 751,
        "a Linear(in_features, out_features) layer has in x out weights plus out biases.",
        "2048 x 751 + 751 = 1,538,799.",
        mistakes=((2048 * 751, "don't forget the 751 biases."),),
    ),
    Exercise(
        "03.why_embedding",
        "At test time we rank by the pool5 embedding, not by the classifier's logits. Why? Answer `a`, `b` or `c`: "
        "(a) logits are slower to compute; (b) the test identities are not among the training classes; "
        "(c) softmax is not differentiable.",
        "b",
        "ReID train and test identities are disjoint.",
        "the classifier only knows training identities; the embedding generalises to new people.",
        kind="text",
    ),
    # 04 fusion FG-SBIR
    Exercise(
        "04.fused_dim_paper",
        "What is the length of the paper's fused FG-SBIR embedding (flattened conv5 + fc7) at 225x225?",
        12800,
        "flatten pool5 (256x7x7) and add fc7's 256 values.",
        "12,544 + 256 = 12,800.",
        mistakes=(
            (12544, "that is conv5 alone; the fc7 part is concatenated as well."),
            (512, "that would be GAP, not flatten."),
        ),
    ),
    Exercise(
        "04.fused_dim_smoke",
        "And in the smoke profile (113x113 input)? Check your answer against `fused.out_dim` above.",
        1280,
        "conv5 is 256x2x2 at 113x113.",
        "1,024 + 256 = 1,280.",
        mistakes=((12800, "12,800 is at 225x225."),),
    ),
    Exercise(
        "04.fusion_forward",
        "Write the paper's fusion (Eq. 1) yourself: `my_fusion(taps, pooling)` gets `taps = {'conv5': (B, C, H, W) "
        "map, 'final': (B, D) feature}` and `pooling` (`'flatten'` or `'gap'`), and returns the fused embedding "
        "(B, mid + D): pool the conv5 map, L2-normalise it, L2-normalise the final feature, concatenate "
        "[mid, final]. It is checked against `cdimlab.fusion.MidLevelFusion` on random inputs.",
        None,
        "flatten = fmap.flatten(1), GAP = fmap.mean(dim=(2, 3)); torch.nn.functional.normalize(x, dim=1) per part; "
        "torch.cat([mid, final], dim=1).",
        "that is MidLevelFusion.forward for one tap without an FC layer: each part has unit length, so the long "
        "flattened map and the short final feature weigh the same.",
        kind="function",
        signature="my_fusion(taps, pooling)",
        grader=_fusion_grader,
    ),
    Exercise(
        "04.why_l2_parts",
        "Why are the mid part and the final part L2-normalised **separately** before concatenation? Answer `a`, `b` "
        "or `c`: (a) so the 12,544 conv5 values cannot drown the 256 fc7 values; (b) to make training faster; "
        "(c) because the triplet loss needs unit vectors.",
        "a",
        "compare the sizes of the two parts.",
        "each part gets unit length, so the long flattened map and the short fc7 vector weigh equally.",
        kind="text",
    ),
    # 05 fusion ReID
    Exercise(
        "05.fused_dim",
        "What is the length of the paper's fused ReID embedding (GAP(res5a), GAP(res5b) -> FC 1024, + pool5)?",
        3072,
        "the FC output and pool5 are concatenated.",
        "1,024 + 2,048 = 3,072.",
        mistakes=(
            (4096, "4,096 is the two GAP vectors before the FC layer."),
            (6144, "the FC reduces 4,096 to 1,024 first."),
        ),
    ),
    Exercise(
        "05.reduce_params",
        "How many parameters (weights + biases) does that FC reduction layer (4,096 -> 1,024) have?",
        4096 * 1024 + 1024,
        "in x out weights plus out biases.",
        "4,096 x 1,024 + 1,024 = 4,195,328.",
        mistakes=((4096 * 1024, "add the 1,024 biases."),),
    ),
    Exercise(
        "05.why_gap",
        "Why GAP rather than flatten for ReID's mid-level maps? Answer `a`, `b` or `c`: (a) fewer parameters; "
        "(b) people change pose and viewpoint across cameras, so spatial positions don't line up; (c) ResNet has no "
        "spatial maps.",
        "b",
        "think about whether the same body part appears at the same place in two cameras.",
        "ReID pairs are not pose-aligned, so spatial layout is a distractor (paper, Table 10).",
        kind="text",
    ),
    # 06 ablations
    Exercise(
        "06.best_sbir_layer",
        "According to the paper's Table 7, which single Sketch-a-Net layer is best to fuse with fc7?",
        "conv5",
        "look at the acc@1 column of Table 7.",
        "conv5: 64.35% acc@1 against 60.0% (conv3) and 60.87% (conv4).",
        kind="text",
    ),
    Exercise(
        "06.gap_fused_dim",
        "With GAP instead of flatten on conv5 (Table 9's GAP row), how long is the fused FG-SBIR embedding?",
        512,
        "GAP keeps one value per channel.",
        "256 (GAP of conv5) + 256 (fc7) = 512.",
        mistakes=((12800, "that is the flatten variant."), (256, "don't forget fc7.")),
    ),
    Exercise(
        "06.table10_delta",
        "Table 10: by how many points does GAP beat flattening in single-query mAP on Market-1501? (In points, e.g. 1.5.)",
        75.55 - 71.58,
        "subtract the Flattening row's single-query mAP from the GAP row's.",
        "75.55 - 71.58 = 3.97 points.",
        rel_tol=5e-3,
    ),
    Exercise(
        "06.ablation_set",
        "Which taps does the paper's Table 8 row 'res2,3,4 + res5(a,b)' fuse? Give a list of tap names.",
        ["res2", "res3", "res4", "res5a", "res5b"],
        "the row combines blocks 2-4 with the paper's own choice.",
        "res2, res3, res4, res5a, res5b — and it scores below res5a + res5b alone.",
        kind="set",
    ),
    Exercise(
        "06.conv4_layout",
        "The controlled experiment runs Sketch-a-Net at 113 px. How many spatial positions (height x width) does the "
        "conv4 map it fuses keep there?",
        25,
        "conv3-conv5 keep the size of pool2's output; Sketch-a-Net at 113 px: 33 after conv1, 16, 12, 5.",
        "5 x 5 = 25 positions, where conv5 after pool5 keeps only 2 x 2 = 4; at the paper's 225 px pool5 keeps 7 x 7 = 49. "
        "That is why the controlled experiment fuses conv4: a map helps only while it keeps a layout.",
        mistakes=(
            (4, "that is conv5 after pool5 (2 x 2)."),
            (49, "that is pool5 at the paper's 225 px input."),
        ),
    ),
    # 07 explorer
    Exercise(
        "07.rank_of_match",
        "A query's distances to 4 gallery items are `[0.9, 0.4, 0.7, 0.2]` and its true match is item 2 "
        "(0-based). At which rank (1 = first) does the true match appear?",
        3,
        "sort the distances ascending and find where 0.7 lands.",
        "order is items 3, 1, 2, 0, so the match is third: a hit for acc@10 but not acc@1.",
        mistakes=(
            (2, "ranks start at 1 and the item index is not the rank."),
            (1, "smaller distance ranks first."),
        ),
    ),
    Exercise(
        "07.gradcam_target",
        "In embedding Grad-CAM, which score is differentiated? Answer `a`, `b` or `c`: (a) the class logit of the "
        "query; (b) the similarity between the query's embedding and one gallery item's embedding; (c) the loss.",
        "b",
        "there are no classes at test time in FG-SBIR; what makes a query match a gallery item?",
        "the heat map shows which regions raise the similarity to that gallery item.",
        kind="text",
    ),
    # 08 reproduce
    Exercise(
        "08.shoe_gain",
        "Table 3: by how many points does 'Ours' beat 'Vanilla' in acc@1 on QMUL-Shoe? (In points, e.g. 1.5.)",
        64.35 - 52.17,
        "Vanilla 52.17%, Ours 64.35%.",
        "64.35 - 52.17 = 12.18 points — the paper's headline 'around 11%' gain.",
        rel_tol=5e-3,
    ),
    Exercise(
        "08.market_mq_gain",
        "Table 4: the mAP gain of 'Ours' over 'Vanilla' on Market-1501 **multi-query**, in points?",
        82.37 - 75.98,
        "multi-query mAP: Vanilla 75.98%, Ours 82.37%.",
        "82.37 - 75.98 = 6.39 points (the paper rounds to 6.4).",
        rel_tol=5e-3,
        mistakes=((75.55 - 67.55, "that is the single-query gain; the question asks for multi-query."),),
    ),
)
