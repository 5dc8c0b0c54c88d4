"""Benchmark metrics on hand-made cases (no model, no data)."""

from __future__ import annotations

import pytest

from qrag_cli.bench.metrics import (
    babilong_answer_correct,
    coverage,
    fact_prf,
    first_sentence,
    median,
    string_match_all,
    task_labels,
)
from qrag_cli.bench.reader import answer_accuracy, answer_score

ROOMS = task_labels("qa1")


def test_coverage_needs_every_support_chunk():
    assert coverage([5, 1, 9], [1, 9]) == 1.0
    assert coverage([5, 1], [1, 9]) == 0.0
    assert coverage([], [3]) == 0.0
    assert coverage([], []) == 1.0


@pytest.mark.parametrize(
    "kept, support, expected",
    [
        ([1, 2], [1, 2], (1.0, 1.0, 1.0)),
        ([1, 2, 3, 4], [1, 2], (0.5, 1.0, 2 / 3)),
        ([1], [1, 2], (1.0, 0.5, 2 / 3)),
        ([7, 8], [1, 2], (0.0, 0.0, 0.0)),
        ([], [1, 2], (0.0, 0.0, 0.0)),  # nothing kept: F1 0
        ([], [], (1.0, 1.0, 1.0)),
        ([3], [], (0.0, 1.0, 0.0)),
        ([1, 1, 2], [1, 2], (1.0, 1.0, 1.0)),  # duplicates count once
    ],
)
def test_fact_precision_recall_f1(kept, support, expected):
    assert fact_prf(kept, support) == pytest.approx(expected)


def test_task_labels():
    assert ROOMS == {"bedroom", "kitchen", "garden", "hallway", "bathroom", "office"}
    assert task_labels("qa4") == ROOMS
    assert task_labels("qa5") == {"bill", "fred", "jeff", "mary", "apple", "football", "milk"}
    assert task_labels("niah_single") == frozenset()


@pytest.mark.parametrize(
    "output, answer, question, ok",
    [
        ("kitchen", "kitchen", "Where is John?", True),
        ("John is in the Kitchen.", "kitchen", "Where is John?", True),
        ("The kitchen. Before that he was in the garden.", "kitchen", "Where is John?", True),  # 2nd sentence ignored
        ("John is in the kitchen or the garden.", "kitchen", "Where is John?", False),  # two labels: wrong
        ("garden", "kitchen", "Where is John?", False),
        ("I do not know.", "kitchen", "Where is John?", False),
        ("", "kitchen", "Where is John?", False),
        # a label named in the question does not count (qa3)
        ("The apple was in the hallway before the kitchen.", "hallway", "Where was the apple before the kitchen?", True),
        ("The apple was in the hallway before the kitchen.", "hallway", "Where was the apple?", False),
        ("kitchen <context> garden", "kitchen", "Where is John?", True),
    ],
)
def test_babilong_answer_rule(output, answer, question, ok):
    assert babilong_answer_correct(output, answer, ROOMS, question) is ok


def test_babilong_rule_qa5_and_multi_label_answers():
    labels = task_labels("qa5")
    assert babilong_answer_correct("Fred gave it.", "Fred", labels, "Who gave the milk to Jeff?")
    assert not babilong_answer_correct("Fred gave it to Bill.", "Fred", labels, "Who gave the milk?")
    assert babilong_answer_correct("milk, apple", "apple,milk", labels)
    assert not babilong_answer_correct("milk", "apple,milk", labels)
    assert first_sentence("The Kitchen. The garden.") == "the kitchen"


def test_ruler_string_match_all():
    assert string_match_all("the values are 1234567 and 7654321", ["1234567", "7654321"]) == 1.0
    assert string_match_all("only 1234567 here", ["1234567", "7654321"]) == 0.5
    assert string_match_all("nothing", ["1234567"]) == 0.0
    assert string_match_all("VAR ABCDE = 1", ["abcde"]) == 1.0  # case-insensitive
    assert string_match_all("anything", []) == 1.0


def test_answer_scores_and_accuracy():
    qa1 = {"task": "qa1", "question": "Where is Mary?", "answer": "office"}
    niah = {"task": "niah_multivalue", "question": "?", "answer": "1, 2", "answers": ["111", "222"]}
    assert answer_score("Mary is in the office.", qa1) == 1.0
    assert answer_score("111 and 333", niah) == 0.5
    assert answer_accuracy(["office", None, "garden"], [qa1, qa1, qa1]) == 0.5  # failures not counted
    assert answer_accuracy([None], [qa1]) is None


def test_median():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0]) == 2.5
    assert median([]) is None
