"""Retrieval and answer metrics of `qrag bench` (docs/method.md, Evaluation; docs/benchmarks.md).

- coverage (fact EM): 1 if every supporting chunk is among the retrieved ones after the last step;
- fact precision / recall / F1 of the *kept* chunks (after the Q-threshold stop) against the support;
- BabiLong's answer rule: the target must be the only task label in the first sentence of the
  reader's output (labels named in the question do not count);
- RULER's "string match all": the fraction of gold strings present in a text;
- the 95% Wilson score interval of a proportion (coverage is one success or failure per sample), so
  a reader can tell 0.83 from 0.78 at n = 300 (they are apart only if the intervals barely touch).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..data import babi


def coverage(retrieved: Iterable[int], support: Iterable[int]) -> float:
    """1.0 if every support position is among the retrieved positions, else 0.0 (empty support: 1.0)."""
    return 1.0 if set(support) <= set(retrieved) else 0.0


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """The Wilson score interval of `successes` out of `n` (95% by default); None when n = 0.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n successes
    (Wilson, 1927; the interval statsmodels' `proportion_confint(method="wilson")` gives).
    """
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * ((p * (1 - p) / n + z2 / (4 * n * n)) ** 0.5)
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= n else min(1.0, centre + half)  # exact ends where rounding would miss them
    return lo, hi


def fact_prf(kept: Iterable[int], support: Iterable[int]) -> tuple[float, float, float]:
    """(precision, recall, F1) of the kept positions against the support positions.

    Nothing kept: precision 0, recall 0, F1 0 (when there is support). No support (never the case for
    a benchmark sample): recall 1, precision 1 if nothing was kept else 0, F1 their harmonic mean.
    """
    k, s = set(kept), set(support)
    hit = len(k & s)
    if not s:
        p = 1.0 if not k else 0.0
        r = 1.0
    else:
        p = hit / len(k) if k else 0.0
        r = hit / len(s)
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f1


def task_labels(task: str) -> frozenset[str]:
    """BabiLong's label set of a bAbI task (lower case): rooms for qa1-qa4, actors and objects for qa5."""
    if task == "qa5":
        return frozenset(x.lower() for x in (*babi.QA5_ACTORS, *babi.OBJECTS))
    if task in babi.TASKS:
        return frozenset(babi.ROOMS)
    return frozenset()


def first_sentence(output: str) -> str:
    """BabiLong's output preprocessing: lower case, up to the first '.', before any <context>/<example>."""
    out = output.lower().split(".")[0]
    return out.split("<context>")[0].split("<example>")[0]


def babilong_answer_correct(output: str, answer: str, labels: Iterable[str], question: str = "") -> bool:
    """BabiLong's rule: `answer` must be the only task label in the first sentence of `output`.

    Labels are matched as substrings, case-insensitively, as in BabiLong's evaluation; labels that the
    question names are ignored (qa3 "Where was the apple before the kitchen?" may repeat "kitchen").
    A comma-separated answer of several labels needs exactly those labels.
    """
    out = first_sentence(output)
    labels = {lab.lower() for lab in labels}
    q = question.lower()
    in_question = {lab for lab in labels if lab in q}
    found = {lab for lab in labels if lab in out} - in_question
    targets = [t.strip().lower() for t in answer.split(",") if t.strip()]
    if not targets:
        return False
    return set(targets) <= found and len(found) == len(set(targets))


def string_match_all(text: str, gold: Sequence[str]) -> float:
    """RULER's string match all: the fraction of gold strings present in `text` (case-insensitive)."""
    if not gold:
        return 1.0
    low = text.lower()
    return sum(1.0 for g in gold if g.lower() in low) / len(gold)


def median(xs: Sequence[float]) -> float | None:
    """The median of `xs` (None when empty)."""
    if not xs:
        return None
    ys = sorted(xs)
    m = len(ys) // 2
    return float(ys[m]) if len(ys) % 2 else float((ys[m - 1] + ys[m]) / 2)


def mean(xs: Sequence[float]) -> float | None:
    """The mean of `xs` (None when empty)."""
    return float(sum(xs) / len(xs)) if xs else None
