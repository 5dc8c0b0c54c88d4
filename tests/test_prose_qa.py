"""The real-prose question set (benchmarks/data/prose-qa.jsonl) passes its checker; the checker catches drift."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qrag_cli.data import haystack as hs
from qrag_cli.data.samples import check_sample, materialise, read_samples

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "prose-qa.jsonl"


@pytest.fixture(scope="module")
def prose():
    if not any(hs.novels_dir().glob("*.txt.xz")):
        pytest.skip(f"shared Gutenberg novels not found under {hs.novels_dir()} (set QRAG_SHARED)")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import prose_qa

    return prose_qa


def test_prose_file_passes_its_checker(prose):
    assert prose.problems(DATA) == []
    header, it = read_samples(DATA)
    samples = list(it)
    assert header["benchmark"] == "prose" and len(samples) >= 60 and len(header["novels"]) >= 4
    for s in samples[:3]:  # the supports are the book's sentences, as the bench materialises it
        assert [materialise(s)[p] for p in s["support"]] == s["support_text"]


def test_checker_script_exit_status(prose):
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "prose_qa.py"), "check"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ok (0 problems)" in res.stdout


def _edited(tmp_path: Path, edit) -> Path:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    sample = json.loads(lines[5])
    edit(sample)
    lines[5] = json.dumps(sample, ensure_ascii=False)
    out = tmp_path / "edited.jsonl"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["support"].__setitem__(0, s["support"][0] + 1), "is not the novel's sentence"),
    (lambda s: s.__setitem__("support_text", [t.replace("e", "a") for t in s["support_text"]]), "is not the novel's sentence"),
    (lambda s: s.__setitem__("answer", "no such answer"), "not in the answering sentence"),
    (lambda s: s.__setitem__("question", s["support_text"][-1]), "copies three words"),
])
def test_checker_catches_a_broken_sample(prose, tmp_path, edit, message):
    found = prose.problems(_edited(tmp_path, edit))
    assert any(message in p for p in found), found
    assert any("differs from what `build` makes" in p for p in found)


def test_book_backgrounds_allow_supports_outside_facts():
    s = {"id": "x", "task": "single", "question": "q?", "answer": "a", "facts": [], "support": [3],
         "background": {"kind": "book", "name": "some_novel", "n_sentences": 10}}
    assert check_sample(s, "f:2") is s
    with pytest.raises(Exception, match="not the position of a fact"):
        check_sample({**s, "background": {"kind": "noise", "n_sentences": 10}}, "f:2")
