"""BabiLong-style samples: novel split, backgrounds, splicing, the sample file format and its checks."""

from __future__ import annotations

import io
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from qrag_cli.data import babi, haystack as hs
from qrag_cli.data.generate import generate
from qrag_cli.data.samples import materialise, read_samples, write_samples
from qrag_cli.data.splice import insert_at, splice
from qrag_cli.errors import InputError
from qrag_cli.settings import DataSettings


@pytest.fixture(scope="module")
def novels():
    folder = hs.novels_dir()
    if not any(folder.glob("*.txt.xz")):
        pytest.skip(f"shared Gutenberg novels not found under {folder} (set QRAG_SHARED)")


def test_novel_split_is_fixed_and_disjoint(novels):
    split = hs.novel_split()
    assert len(split["train"]) == 60 and len(split["test"]) == 20
    assert not set(split["train"]) & set(split["test"])
    names = sorted(p.name[: -len(".txt.xz")] for p in hs.novels_dir().glob("*.txt.xz"))
    assert sorted(split["train"] + split["test"]) == names
    assert split == hs.novel_split()


def test_story_seeds_are_disjoint_between_splits():
    train = {hs.story_seed("train", s) for s in range(-50, 50)}
    test = {hs.story_seed("test", s) for s in range(-50, 50)}
    assert not train & test


def test_background_is_deterministic_prefix_stable_and_from_its_split(novels):
    a = hs.BackgroundStream("test", 5)
    b = hs.BackgroundStream("test", 5)
    assert a.extend_to(250) == b.extend_to(250)
    assert b.extend_to(120) == a.extend_to(250)[:120]
    assert hs.background("test", 250, 5) == a.extend_to(250)
    assert {name for name, _, _ in a.used} <= set(hs.novel_split()["test"])
    assert all(e - s <= hs.RUN for _, s, e in a.used)
    train = hs.BackgroundStream("train", 5)
    train.extend_to(250)
    assert {name for name, _, _ in train.used} <= set(hs.novel_split()["train"])
    assert hs.BackgroundStream("test", 6).extend_to(50) != a.extend_to(50)


def test_splice_keeps_order_and_reports_positions():
    bg = [f"b{i}" for i in range(30)]
    facts = ["f0", "f1", "f2", "f3"]
    out, pos = splice(bg, facts, random.Random(0))
    assert len(out) == 34 and pos == sorted(pos)
    assert [out[p] for p in pos] == facts
    assert [x for x in out if x.startswith("b")] == bg
    assert insert_at(bg, facts, pos) == out
    assert insert_at([], ["x"], [0]) == ["x"]
    with pytest.raises(InputError, match="out of order"):
        insert_at(bg, ["a", "b"], [5, 5])
    with pytest.raises(InputError, match="outside"):
        insert_at(bg, ["a"], [31])


def _story_of(settings: DataSettings, i: int) -> babi.BabiSample:
    return babi.generate_samples(settings.task, settings.n, hs.story_seed(settings.split, settings.seed))[i]


def test_short_babilong_samples_support_points_at_the_facts(novels):
    st = DataSettings(task="qa2", length="1K", n=12, seed=3)
    header, samples = generate(st)
    assert header["background"]["per_sample"] is True and header["n"] == 12
    for i, s in enumerate(samples):
        b = _story_of(st, i)
        ctx = s["context"]
        assert len(ctx) == 50 + len(b.story)
        assert [ctx[p] for p in s["support"]] == [b.story[j] for j in b.support]
        assert [ctx[p] for p in s["story"]] == list(b.story)  # 'story' marks every story line
        assert (s["question"], s["answer"]) == (b.question, b.answer)
        it = iter(ctx)  # the story lines appear in order
        assert all(line in it for line in b.story)
    assert samples[0]["context"][:3] != samples[1]["context"][:3]  # each sample has its own background


def test_background_pool_gives_windows_of_one_shared_pool_around_the_same_stories(novels):
    from qrag_cli.data.negatives import candidate_sentences

    st = DataSettings(task="qa2", length="100", n=6, seed=3, split="train", background_pool=400)
    header, samples = generate(st)
    plain = generate(replace(st, background_pool=0))[1]
    shared = candidate_sentences("train")[:400]
    starts = set()
    for s, p in zip(samples, plain):
        assert (s["question"], s["support"], s["story"]) == (p["question"], p["support"], p["story"])
        assert [s["context"][i] for i in s["story"]] == [p["context"][i] for i in p["story"]]
        story = set(s["story"])
        bg = [c for i, c in enumerate(s["context"]) if i not in story]
        start = shared.index(bg[0])
        assert len(bg) == 100 and bg == shared[start : start + 100]  # one window: its runs stay consecutive
        starts.add(start)
    assert len(starts) > 1 and header["background_pool"] == 400


def test_long_babilong_samples_reference_one_background(novels):
    st = DataSettings(task="qa1", length="32K", n=6, seed=2)
    header, samples = generate(st)
    ref = header["background"]
    assert ref == {"kind": "novel", "split": "test", "n_sentences": 1200, "seed": 2}
    bg = hs.background("test", 1200, 2)
    for i, s in enumerate(samples):
        assert "context" not in s and s["background"] == ref
        chunks = materialise(s, header)
        b = _story_of(st, i)
        assert len(chunks) == 1200 + len(b.story)
        assert [f["text"] for f in s["facts"]] == b.story
        assert all(chunks[f["position"]] == f["text"] for f in s["facts"])
        assert [chunks[p] for p in s["support"]] == [b.story[j] for j in b.support]
        assert [c for j, c in enumerate(chunks) if j not in {f["position"] for f in s["facts"]}] == bg


def test_custom_sentence_count_and_other_split(novels):
    st_train = DataSettings(task="qa4", length="100", n=3, split="train", seed=1)
    _, train = generate(st_train)
    _, test = generate(replace(st_train, split="test"))
    story = _story_of(st_train, 0).story
    assert len(train[0]["context"]) == 100 + len(story)
    train_src = hs.BackgroundStream("train", "1/0")
    test_src = hs.BackgroundStream("test", "1/0")
    assert [c for c in train[0]["context"] if c not in story] == train_src.extend_to(100)
    test_src.extend_to(100)
    assert not {n for n, _, _ in train_src.used} & {n for n, _, _ in test_src.used}
    assert train[0]["question"] != test[0]["question"] or train[0]["context"] != test[0]["context"]


def test_round_trip_is_deterministic(novels, tmp_path: Path):
    for st in (DataSettings(task="qa3", length="4K", n=4, seed=9), DataSettings(task="qa5", length="128K", n=4)):
        header, samples = generate(st)
        a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        write_samples(a, header, samples)
        write_samples(b, *generate(st))
        assert a.read_bytes() == b.read_bytes()
        h2, it = read_samples(a)
        back = list(it)
        assert h2["format"] == "qrag-samples" and h2["format_version"] == 1 and h2["task"] == st.task
        assert back == samples
        assert [materialise(s, h2) for s in back] == [materialise(s, header) for s in samples]


def test_write_to_stdout(novels, capsys):
    header, samples = generate(DataSettings(task="qa1", length="1K", n=2))
    write_samples("-", header, samples)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["format"] == "qrag-samples"
    buf = io.StringIO()
    write_samples(buf, header, samples)
    assert buf.getvalue().splitlines() == lines


@pytest.fixture(scope="module")
def good_lines(novels) -> list[str]:
    buf = io.StringIO()
    write_samples(buf, *generate(DataSettings(task="qa1", length="32K", n=2)))
    return buf.getvalue().splitlines()


def _edit(line: str, **changes) -> str:
    obj = json.loads(line)
    for k, v in changes.items():
        if v is None:
            obj.pop(k, None)
        else:
            obj[k] = v
    return json.dumps(obj)


def _read_all(path: Path) -> None:
    _, it = read_samples(path)
    list(it)


@pytest.mark.parametrize("case, line, message", [
    ("not_json", 2, "not JSON"),
    ("no_header", 1, "missing header"),
    ("other_format", 1, "is not 'qrag-samples'"),
    ("other_version", 1, "format version 2"),
    ("header_field", 1, "missing field 'seed'"),
    ("missing_field", 2, "missing field 'question'"),
    ("ill_typed", 3, "field 'answer' must be a string"),
    ("support_range", 2, "support position 99999 is out of range"),
    ("support_not_fact", 3, "is not the position of a fact"),
    ("facts_order", 2, "fact positions must be increasing"),
    ("no_context", 2, "needs 'context' or 'background'"),
    ("story_range", 3, "field 'story' must hold chunk positions"),
])
def test_validation_errors_name_file_and_line(tmp_path, good_lines, case, line, message):
    lines = list(good_lines)
    h, s1, s2 = lines
    first_fact = json.loads(s2)["facts"][0]["position"]
    edits = {
        "not_json": lambda: [h, "{oops", s2],
        "no_header": lambda: [s1, s2],
        "other_format": lambda: [_edit(h, format="other"), s1, s2],
        "other_version": lambda: [_edit(h, format_version=2), s1, s2],
        "header_field": lambda: [_edit(h, seed=None), s1, s2],
        "missing_field": lambda: [h, _edit(s1, question=None), s2],
        "ill_typed": lambda: [h, s1, _edit(s2, answer=3)],
        "support_range": lambda: [h, _edit(s1, support=[99999]), s2],
        "support_not_fact": lambda: [h, s1, _edit(s2, support=[first_fact + 1 if first_fact == 0 else first_fact - 1])],
        "facts_order": lambda: [h, _edit(s1, facts=list(reversed(json.loads(s1)["facts"]))), s2],
        "no_context": lambda: [h, _edit(s1, background=None), s2],
        "story_range": lambda: [h, s1, _edit(s2, story=[-1])],
    }
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(edits[case]()) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        _read_all(path)
    assert f"{path}:{line}" in str(err.value) and message in str(err.value)


def test_truncated_empty_and_missing_files(tmp_path, good_lines):
    path = tmp_path / "cut.jsonl"
    path.write_text("\n".join(good_lines[:2]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="announces 2 samples, the file holds 1"):
        _read_all(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="missing header"):
        _read_all(path)
    with pytest.raises(InputError, match="not found"):
        read_samples(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("change, message", [
    ({"benchmark": "longbench"}, "babilong, ruler"),
    ({"task": "qa9"}, "qa1, qa2, qa3, qa4, qa5"),
    ({"length": "2K"}, "1K, 4K, 32K, 128K, 1M, 10M"),
    ({"split": "dev"}, "'train' or 'test'"),
    ({"n": 0}, "at least 1"),
    ({"benchmark": "ruler", "task": "qa1"}, "niah_single"),
    ({"benchmark": "ruler", "task": "vt", "length": "1K"}, "4K, 16K, 32K, 128K, 1M"),
    ({"benchmark": "ruler", "task": "vt", "length": "4K", "haystack": "hay"}, "noise, novel, needle"),
    ({"length": "1K", "background_pool": 10}, "pool of 50..40000"),
    ({"length": "1K", "background_pool": 50_000}, "pool of 50..40000"),
    ({"length": "32K", "background_pool": 2000}, "below 1200"),
    ({"benchmark": "ruler", "task": "vt", "length": "4K", "background_pool": 500}, "babilong options"),
])
def test_generate_rejects_bad_settings(change, message):
    with pytest.raises(InputError, match=message):
        generate(replace(DataSettings(), **change))
