"""How the exercise checkers read a learner's answer (notebooks 00-08, via :mod:`cdimlab.exercises`).

A careful learner writes 0.67 for 2/3, ``"2/3"``, a numpy or torch scalar, a numpy array where a list is asked, or
``" (B). "`` for option b. These helpers turn such answers into something comparable: a number together with the
digits the learner gave (so "rounded at those digits" can be judged), a list of normalised items, a normalised text.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = [
    "as_items",
    "digits_given",
    "nearly",
    "norm_item",
    "norm_text",
    "parse_number",
    "precise_enough",
    "rounds_to",
]


def parse_number(a: Any) -> tuple[float, Decimal | None] | None:
    """``a`` as (value, the decimal the learner wrote) -- None if it is no number. The decimal is the shortest
    text of the value (``0.67``, also for a float32 numpy/torch scalar); None for an exact fraction ``"2/3"``."""
    if isinstance(a, bool):
        return None
    if isinstance(a, str):
        text = a.strip().replace(",", "")
        try:
            if "/" in text:
                return float(Fraction(text)), None
            value = float(text)
            return (value, Decimal(text)) if np.isfinite(value) else None
        except (ValueError, ZeroDivisionError, ArithmeticError):
            return None
    if hasattr(a, "detach"):  # a torch scalar: go through numpy, keeping its dtype
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
        if arr.size != 1 or arr.dtype.kind not in "iuf":
            return None
        x = arr[()] if arr.ndim == 0 else arr.reshape(())[()]  # a numpy scalar of the original dtype
        text = np.format_float_positional(x, unique=True, trim="-") if arr.dtype.kind == "f" else str(x)
        return (float(x), Decimal(text)) if np.isfinite(x) else None
    except (TypeError, ValueError, ArithmeticError):
        return None


def digits_given(text: Decimal) -> tuple[int, int]:
    """(significant digits, decimal places) of what the learner wrote; trailing zeros of a whole number
    (``4.0``, ``1000``) are not significant."""
    sign, digits, exp = text.as_tuple()
    decimals = max(0, -int(exp))
    if text == text.to_integral_value():
        stripped = str(abs(int(text))).rstrip("0")
        return max(1, len(stripped)), 0
    return len(str(int("".join(map(str, digits))))), decimals


def rounds_to(value: float, text: Decimal, truth: float) -> bool:
    """Whether the truth, rounded at the learner's last digit, is what the learner wrote."""
    _, decimals = digits_given(text)
    return abs(value - truth) <= 0.5 * 10.0**-decimals * (1 + 1e-9)


def precise_enough(text: Decimal) -> bool:
    """At least 2 significant digits, or 3 decimals (``0.009`` for 1/115 is what a careful learner writes)."""
    sig, decimals = digits_given(text)
    return sig >= 2 or decimals >= 3


def nearly(a: Any, b: float) -> bool:
    """Right but too rough: ``b`` rounded at the learner's digits (0.7 for 2/3), or within 5% of it."""
    num = parse_number(a)
    if num is None or float(b) == 0.0 or float(b).is_integer():
        return False  # counts are right or wrong, not "close"
    value, text = num
    return abs(value - float(b)) <= 0.05 * abs(float(b)) or (
        text is not None and rounds_to(value, text, float(b))
    )


def norm_text(s: Any) -> str:
    """Case-fold, keep letters/digits/dots/commas, trim dots and commas: ``" (B). "`` equals ``"b"``."""
    return "".join(ch for ch in str(s).casefold() if ch.isalnum() or ch in ".,").strip(".,")


def as_items(answer: Any) -> list[Any] | None:
    """A collection answer as a list (list, tuple, set, numpy array, tensor); None for a string or a scalar."""
    if isinstance(answer, (str, bytes)):
        return None
    if hasattr(answer, "tolist") and np.ndim(answer) == 1:
        return list(answer.tolist())
    if isinstance(answer, (Sequence, set, frozenset)):
        return list(answer)
    return None


def norm_item(x: Any) -> str:
    """One element of a collection: whole numbers as integers (``np.int64(3)``, ``3.0`` -> ``"3"``), else text."""
    num = None if isinstance(x, str) else parse_number(x)
    if num is not None and num[0].is_integer():
        return str(int(num[0]))
    return norm_text(x)
