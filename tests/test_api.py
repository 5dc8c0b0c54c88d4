"""The plain-string Python API (`qrag_cli.api`) and the README's example, with the tiny model."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from qrag_cli import api
from qrag_cli.errors import InputError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no <!-- api-example --> python block"
    return m.group(1)


def test_readme_example_runs(isolated_home, tiny_model, capsys):
    code = readme_example()
    assert code.count('model="default"') == 1  # the one substitution below: the real model is slow here
    exec(compile(code.replace('model="default"', f"model={str(tiny_model)!r}"), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    texts = eval(printed)  # the example prints a list of the retrieved texts
    assert len(texts) == 2 and set(texts) <= {"Mary took the football there.", "Mary went to the garden.",
                                              "John went home."}
    from qrag_cli.store.generations import current_folder

    assert (current_folder(isolated_home / "indexes" / "api-demo") / "manifest.json").is_file()


def test_build_from_pairs_open_and_search(tmp_path, tiny_model):
    docs = [("a", "Alpha is here. Beta is there."), ("b", "Gamma went home."), ("c", "Delta stayed.")]
    index = api.build(docs, out=tmp_path / "ix", model=str(tiny_model))
    assert index.manifest["corpus"]["documents"] == 3
    again = api.open_index(tmp_path / "ix")
    one = again.search("Where is Alpha?", steps=2, k=1)
    assert isinstance(one, api.Result) and one.id == "1" and one.question == "Where is Alpha?"
    assert [h.step for h in one.retrieved] == [1, 2] and one.kept == tuple(h.chunk for h in one.retrieved)
    assert all(isinstance(h, api.Hit) and h.doc in {"a", "b", "c"} for h in one.retrieved)
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.id = "x"  # type: ignore[misc]
    many = again.search(["Where is Alpha?", "Who went home?"], steps=1, k=2)
    assert isinstance(many, list) and [r.id for r in many] == ["1", "2"]
    assert many[0].retrieved[0].chunk == one.retrieved[0].chunk  # step 1's best chunk, whatever k
    assert all(len(r.retrieved) == 2 for r in many)


def test_build_from_texts_and_path_agree(tmp_path, tiny_model):
    texts = ["The ship left the harbour at dawn.", "Mary took the football there. Mary went to the garden."]
    a = api.build(texts, out=tmp_path / "a", model=str(tiny_model))
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(f'{{"id": "{i}", "text": "{t}"}}\n' for i, t in enumerate(texts, 1)))
    b = api.build(corpus, out=tmp_path / "b", model=str(tiny_model))
    q = "Where is the football?"
    assert a.search(q, steps=3) == b.search(q, steps=3)


def test_session_ask_takes_plain_strings(tmp_path, tiny_model):
    index = api.build(["Alpha is here. Beta is there."], out=tmp_path / "ix", model=str(tiny_model))
    [r] = index.session().ask(["Where is Alpha?"])
    assert r["id"] == "1" and r["question"] == "Where is Alpha?" and isinstance(r["retrieved"], list)


def test_build_errors(tmp_path, tiny_model):
    with pytest.raises(InputError, match="output folder"):
        api.build(["text"])
    with pytest.raises(InputError, match="item 2"):
        api.build(["ok", 3], out=tmp_path / "ix", model=str(tiny_model))
    with pytest.raises(InputError, match="steps"):
        api.build(["Alpha."], out=tmp_path / "iy", model=str(tiny_model)).search("q", steps=0)
