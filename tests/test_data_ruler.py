"""RULER-style samples: token lengths, needles at the support positions, gold answers, vt chains."""

from __future__ import annotations

import random
import re

import pytest

from qrag_cli.data import haystack as hs, ruler
from qrag_cli.data.generate import generate
from qrag_cli.data.samples import materialise
from qrag_cli.settings import DataSettings

NEEDLE = re.compile(r"One of the special magic (\w+) for ([\w-]+) is: ([\w-]+)\.")
VAR = re.compile(r"VAR (\w+) = (?:VAR )?(\w+)")


@pytest.fixture(scope="module", autouse=True)
def tokenizer():
    try:
        ruler.count_tokens(["hello"])
    except Exception as exc:  # the embedder package (its tokenizer.json) is missing
        pytest.skip(f"embedder tokenizer not available: {exc}")


def _needs_novels(haystack: str) -> None:
    if haystack == "novel" and not any(hs.novels_dir().glob("*.txt.xz")):
        pytest.skip(f"shared Gutenberg novels not found under {hs.novels_dir()} (set QRAG_SHARED)")


def _vt_answers(chunks: list[str], value: str) -> tuple[set[str], list[int]]:
    """Follow every assignment from `value` through the context: the variables and their lines."""
    found: set[str] = set()
    lines: list[int] = []
    for i, c in enumerate(chunks):
        m = VAR.fullmatch(c)
        if m and (m.group(2) == value or m.group(2) in found):
            found.add(m.group(1))
            lines.append(i)
    return found, lines


def _check(sample: dict, chunks: list[str], target: int, haystack: str) -> None:
    tokens = sum(ruler.count_tokens(chunks))
    assert abs(tokens - target) / target < 0.03, tokens
    task, support = sample["task"], sample["support"]
    assert sample["answer"] == ", ".join(sample["answers"])
    if task == "vt":
        value = sample["question"].rsplit(" ", 1)[1].rstrip(".")
        names, lines = _vt_answers(chunks, value)
        assert names == set(sample["answers"]) and len(names) == ruler.VT_HOPS + 1
        assert lines == support
        return
    keys = re.search(r"for (.+) mentioned", sample["question"]).group(1).replace(" and ", ", ").split(", ")
    gold = sorted((m.group(2), m.group(3)) for c in chunks if (m := NEEDLE.fullmatch(c)) and m.group(2) in keys)
    at_support = sorted((m.group(2), m.group(3)) for p in support if (m := NEEDLE.fullmatch(chunks[p])))
    assert at_support == gold and len(support) == len(sample["answers"])
    assert sorted(v for _, v in gold) == sorted(sample["answers"])
    n_needles = sum(1 for c in chunks if NEEDLE.fullmatch(c))
    expected = {"niah_single": 1, "niah_multikey": 4, "niah_multivalue": 4, "niah_multiquery": 4}[task]
    assert n_needles == expected if haystack != "needle" else n_needles > 100


@pytest.mark.parametrize("haystack", ruler.HAYSTACKS)
@pytest.mark.parametrize("task", ruler.RULER_TASKS)
def test_short_samples(task, haystack):
    _needs_novels(haystack)
    header, samples = generate(DataSettings(benchmark="ruler", task=task, length="4K", n=2, haystack=haystack))
    assert header["tokens"] == 4096 and header["background"]["per_sample"] is True
    for s in samples:
        _check(s, s["context"], 4096, haystack)


@pytest.mark.parametrize("task, haystack", [("niah_multikey", "needle"), ("vt", "needle"), ("niah_single", "novel")])
def test_long_samples_share_one_background(task, haystack):
    _needs_novels(haystack)
    header, samples = generate(DataSettings(benchmark="ruler", task=task, length="32K", n=3, haystack=haystack))
    ref = header["background"]
    assert "per_sample" not in ref and ref["n_sentences"] > 0
    for s in samples:
        assert s["background"] == ref and "context" not in s
        chunks = materialise(s, header)
        assert len(chunks) == ref["n_sentences"] + len(s["facts"])
        assert all(chunks[f["position"]] == f["text"] for f in s["facts"])
        _check(s, chunks, 32768, haystack)


def test_16k_novel_length():
    _needs_novels("novel")
    _, samples = generate(DataSettings(benchmark="ruler", task="niah_multivalue", length="16K", n=1, haystack="novel"))
    _check(samples[0], samples[0]["context"], 16384, "novel")


def test_value_kinds():
    for kind, pattern in (("uuids", r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"),
                          ("words", r"[a-z]+"), ("numbers", r"[1-9]\d{6}")):
        f = ruler.make_facts("niah_multivalue", random.Random(1), kind)
        assert len(set(f.answers)) == 4 and all(re.fullmatch(pattern, a) for a in f.answers)
        assert f"special magic {kind} for" in f.question and all(a in t for a, t in zip(f.answers, f.facts))


def test_vt_hops_are_configurable():
    f = ruler.make_facts("vt", random.Random(2), hops=6)
    assert len(f.facts) == 7 and len(f.answers) == 7 and f.support == list(range(7))
    value = f.question.rsplit(" ", 1)[1].rstrip(".")
    assert _vt_answers(f.facts, value) == (set(f.answers), list(range(7)))


def test_deterministic_and_split_dependent():
    st = DataSettings(benchmark="ruler", task="niah_multiquery", length="4K", n=2, haystack="noise")
    assert generate(st) == generate(st)
    assert generate(st)[1] != generate(DataSettings(**{**st.__dict__, "split": "train"}))[1]
