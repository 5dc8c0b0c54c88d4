"""RULER-style samples: token lengths, needles at the support positions, gold answers, vt chains."""

from __future__ import annotations

import random
import re

import pytest

from qrag_cli.corpus.sentences import split_sentences
from qrag_cli.data import haystack as hs, ruler, ruler_vt
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


def _value(question: str) -> str:
    return re.search(r"assigned the value (\d+)", question).group(1)


def _check(sample: dict, chunks: list[str], target: int, haystack: str) -> None:
    task, support = sample["task"], sample["support"]
    tokens = sum(ruler.count_tokens(chunks))
    if task == "vt":  # RULER counts the whole prompt: question, answer prefix and the tokens to generate
        tokens += sum(ruler.count_tokens(["Question: " + sample["question"], ruler_vt.answer_prefix(5, "12345")]))
        tokens += ruler_vt.TOKENS_TO_GENERATE
        assert tokens <= target
    assert abs(tokens - target) / target < 0.03, tokens
    assert sample["answer"] == ", ".join(sample["answers"])
    if task == "vt":
        names, lines = _vt_answers(chunks, _value(sample["question"]))
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
    assert _vt_answers(f.facts, _value(f.question)) == (set(f.answers), list(range(7)))


def test_deterministic_and_split_dependent():
    st = DataSettings(benchmark="ruler", task="niah_multiquery", length="4K", n=2, haystack="noise")
    assert generate(st) == generate(st)
    assert generate(st)[1] != generate(DataSettings(**{**st.__dict__, "split": "train"}))[1]


# --- RULER's own layout: vt prompt with its example, key kinds, per-sample haystacks ---------------


@pytest.mark.parametrize("length", ["4K", "32K"])
def test_vt_sample_is_rulers_prompt(length):
    header, samples = generate(DataSettings(benchmark="ruler", task="vt", length=length, n=2, haystack="noise"))
    assert header["prompt"] == "ruler" and header["example"] is True
    for s in samples:
        chunks = materialise(s, header)
        _check(s, chunks, ruler.RULER_LENGTHS[length], "noise")
        assert s["question"] == f"Find all variables that are assigned the value {_value(s['question'])} in the text above."
        # the example block comes first: instruction, its own chain, question and answer line
        assert chunks[0] == ruler_vt.INSTRUCTION
        q = next(i for i, c in enumerate(chunks) if c.startswith("Question: "))
        ex_value = _value(chunks[q])
        assert ex_value != _value(s["question"])
        ex_names, ex_lines = _vt_answers(chunks[:q], ex_value)
        assert ex_lines == s["example"]["support"] and ex_names == set(s["example"]["answers"])
        assert all(len(n) == 3 for n in ex_names) and all(len(n) == 5 for n in s["answers"])
        assert chunks[q + 1].endswith("they are: " + " ".join(s["example"]["answers"]))
        assert chunks[q + 2] == ruler_vt.INSTRUCTION and min(s["support"]) > q + 2
        # the supports are on the real chain, never on the example's
        assert not set(s["support"]) & set(s["example"]["support"])
        # one assignment per line: the prompt text, split by the sentence chunker, gives back the chunks
        text = ruler_vt.prompt(s, chunks)
        assert "\nVAR " + chunks[s["support"][0]] [4:] + "\n" in text
        assert [t for _, _, t in split_sentences([text])] == chunks + ["Question: " + s["question"]]


def test_vt_without_example_and_train_split():
    _, plain = generate(DataSettings(benchmark="ruler", task="vt", length="4K", n=1, haystack="noise", vt_example=False))
    assert plain[0]["context"][0] == ruler_vt.INSTRUCTION and "example" not in plain[0]
    assert sum(1 for c in plain[0]["context"] if c.startswith("VAR ")) == ruler.VT_HOPS + 1
    _, train = generate(DataSettings(benchmark="ruler", task="vt", length="4K", n=1, split="train", haystack="noise"))
    assert train[0]["example"]["support"] and train[0]["context"][0] == ruler_vt.INSTRUCTION


@pytest.mark.parametrize("keys, pattern", [("uuids", r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"),
                                           ("numbers", r"[1-9]\d{6}"), ("words", r"[a-z]+-[a-z]+")])
def test_multikey_key_kinds(keys, pattern):
    header, samples = generate(DataSettings(benchmark="ruler", task="niah_multikey", length="4K", n=2,
                                            haystack="needle", keys=keys))
    for s in samples:
        key = re.search(r"for (\S+) mentioned", s["question"]).group(1)
        assert re.fullmatch(pattern, key)
        assert s["context"][s["support"][0]] == ruler.needle(key, s["answer"])
        others = [m.group(1) for c in s["context"] if (m := re.search(r"for (\S+) is:", c))]
        assert len(others) > 50 and all(re.fullmatch(pattern, k) for k in others)
        assert others.count(key) == 1


def test_per_sample_haystacks_at_32k():
    header, samples = generate(DataSettings(benchmark="ruler", task="niah_multikey", length="32K", n=2,
                                            haystack="needle", keys="uuids", per_sample=True))
    assert header["background"]["per_sample"] is True
    assert all("context" in s for s in samples) and samples[0]["context"] != samples[1]["context"]
    for s in samples:
        _check(s, s["context"], 32768, "needle")


def test_ruler_vt_training_samples_are_rulers_layout():
    """`qrag train --task ruler:vt` trains on the faithful prompt: the example chain is there to be ignored."""
    _needs_novels("novel")
    from qrag_cli.rl.tasks import check, make_samples
    from qrag_cli.settings import TrainSettings

    train, val = make_samples(check(TrainSettings(task="ruler:vt", n_train=2, n_val=1, out="unused")))
    for x in train + val:
        assert x["context"][0] == ruler_vt.INSTRUCTION and len(x["example"]["support"]) == ruler.VT_HOPS + 1
        assert _vt_answers(x["context"], _value(x["question"]))[1] == x["support"]
