"""How an exercise is graded: the Exercise record, the result, and the comparison of an answer with the truth.

Introduced with :mod:`cdimlab.exercises` (which holds the exercises of notebooks 00-08 and ``check``): numbers are
compared as a careful learner writes them (:mod:`cdimlab.answers`), collections as sets, and function answers are
run on the exercise's hidden cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdimlab.answers import as_items, norm_item, norm_text, parse_number, precise_enough, rounds_to


@dataclass(frozen=True)
class Exercise:
    """One exercise: its question, the expected answer and the feedback a learner gets.

    ``kind`` is ``"number"`` (within ``rel_tol``/``abs_tol``, or the truth rounded at the digits the learner gave:
    0.67 for 2/3; too few digits gets "close — give 3 significant digits"), ``"text"`` (case-folded, spaces and
    punctuation ignored; ``accept`` lists synonyms), ``"set"`` (order-free collection: list, tuple, set, numpy
    array) or ``"function"`` (the answer is a callable, run on ``cases``: ``(args, expected)`` pairs, or judged by
    ``grader``; ``signature`` is the stub the notebook starts from). ``mistakes`` maps a typical wrong answer to a
    targeted hint.
    """

    key: str
    question: str
    answer: Any
    hint: str
    explanation: str
    kind: str = "number"
    rel_tol: float = 1e-3
    abs_tol: float = 1e-6
    accept: tuple[str, ...] = ()
    mistakes: tuple[tuple[Any, str], ...] = ()
    cases: tuple[tuple[tuple[Any, ...], Any], ...] = field(default=(), repr=False)
    signature: str = ""  # for kind "function": the stub the notebook starts from, e.g. "my_ap(relevance)"
    # for kind "function" without cases: answer -> (status, message), e.g. the fusion exercise's grader
    grader: Callable[[Any], tuple[str, str]] | None = field(default=None, repr=False)

    @property
    def notebook(self) -> str:
        """The two-digit notebook number the exercise belongs to (``"01"`` for ``"01.acc_at_2"``)."""
        return self.key.split(".", 1)[0]


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`grade`: ``status`` is ``"correct"``, ``"wrong"`` or ``"unanswered"``; truthy if correct."""

    key: str
    status: str
    message: str

    def __bool__(self) -> bool:
        return self.status == "correct"

    def __str__(self) -> str:
        return self.message


def close_enough(a: Any, b: float, ex: Exercise) -> bool:
    """Whether number ``a`` counts as ``b``: within the exercise's tolerance, or -- for a non-integer truth --
    ``b`` rounded at the digits the learner gave, with enough digits (0.67 for 2/3). Non-numbers never count."""
    num = parse_number(a)
    if num is None:
        return False
    value, text = num
    if math.isclose(value, float(b), rel_tol=ex.rel_tol, abs_tol=ex.abs_tol):
        return True
    if text is None or float(b).is_integer():
        return False  # exact fractions are held to the tolerance; counts must be exact
    return rounds_to(value, text, float(b)) and precise_enough(text)


def same_answer(answer: Any, expected: Any, ex: Exercise) -> bool:
    """Compare ``answer`` with ``expected`` according to ``ex.kind`` (functions are handled in :func:`grade`)."""
    if ex.kind == "number":
        return close_enough(answer, expected, ex)
    if ex.kind == "text":
        wanted = {norm_text(expected), *(norm_text(a) for a in ex.accept)}
        return norm_text(answer) in wanted
    if ex.kind == "set":
        items = as_items(answer)
        return items is not None and {norm_item(a) for a in items} == {norm_item(e) for e in expected}
    raise ValueError(f"exercise {ex.key}: unknown kind {ex.kind!r}")


def grade_function(fn: Any, ex: Exercise) -> CheckResult:
    """Run a learner's function on the hidden cases; report the first case that fails and why."""
    if not callable(fn):
        return CheckResult(
            ex.key, "wrong", f"✗ {ex.key}: expected a function, got {type(fn).__name__}. {ex.hint}"
        )
    for args, expected in ex.cases:
        try:
            got = fn(*args)
        except Exception as err:  # a learner's bug: report it as feedback, not as a crash
            return CheckResult(
                ex.key, "wrong", f"✗ {ex.key}: your function raised {err!r} on {args}. {ex.hint}"
            )
        if got is None:
            return CheckResult(
                ex.key,
                "unanswered",
                f"… {ex.key}: not answered yet (your function returns None) — hint: {ex.hint}",
            )
        num = parse_number(got)
        if num is None or not math.isclose(num[0], expected, rel_tol=ex.rel_tol, abs_tol=ex.abs_tol):
            return CheckResult(
                ex.key,
                "wrong",
                f"✗ {ex.key}: for input {args} your function returned {got!r}, expected {expected!r}. {ex.hint}",
            )
    return CheckResult(
        ex.key, "correct", f"✓ {ex.key}: correct on all {len(ex.cases)} test cases. {ex.explanation}"
    )
