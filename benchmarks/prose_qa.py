"""Build and check the real-prose question set, benchmarks/data/prose-qa.jsonl (qrag-samples v1).

    python benchmarks/prose_qa.py build   # benchmarks/prose_questions.py -> benchmarks/data/prose-qa.jsonl
    python benchmarks/prose_qa.py check   # exit 1, with every problem listed, if the file is not sound
    qrag bench --data benchmarks/data/prose-qa.jsonl --out bench-out/prose

Each sample's background is a whole training-split novel (``{"kind": "book", "name", "n_sentences"}``:
`haystack.novel_sentences`, the sentence chunker's output), `support` holds the chunk positions of
its supporting sentences and `support_text` those sentences verbatim. The check re-reads the novels
and verifies: the file is a valid samples file equal to what `build` makes from the question list;
every support text is the novel's sentence at its position; at least 60 questions about at least 4
training novels, single-fact and two-hop within one of each other; single questions have one
support, two-hop questions two, at least MIN_GAP sentences apart; the answer is in the answering
(last) support and not in the question; the question shares no run of 3 words and at most
MAX_OVERLAP of its content words with the answering sentence; no question twice.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from prose_questions import QUESTIONS  # noqa: E402

from qrag_cli.data import haystack as hs  # noqa: E402
from qrag_cli.data.samples import read_samples, write_samples  # noqa: E402

OUT = ROOT / "benchmarks" / "data" / "prose-qa.jsonl"
MIN_QUESTIONS, MIN_NOVELS, MIN_GAP, MAX_OVERLAP = 60, 4, 10, 0.5
KINDS = ("single", "two_hop")
STOP = set("""a an the of to in on at by for from with and or but not no is was were be been had has have did do does
what which who whom whose when where why how that this these those his her its their he she it they him them
as into than then there after before about over while during""".split())
WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("’", "'"))


def _position(sentences: tuple[str, ...], piece: str, novel: str) -> int:
    hits = [i for i, s in enumerate(sentences) if piece in s]
    if len(hits) != 1:
        raise ValueError(f"{novel}: {piece!r} is in {len(hits)} sentences, not exactly one")
    return hits[0]


def build() -> tuple[dict, list[dict]]:
    """(header, samples) from the question list (sorted by novel, so each novel is embedded once)."""
    samples = []
    for k, (novel, kind, question, answer, pieces) in enumerate(sorted(QUESTIONS, key=lambda q: q[0])):
        sentences = hs.novel_sentences(novel)
        pos = [_position(sentences, p, novel) for p in pieces]
        samples.append({"id": f"prose-{novel}-{k}", "task": kind, "question": question, "answer": answer,
                        "background": {"kind": "book", "name": novel, "n_sentences": len(sentences)},
                        "facts": [], "support": pos, "support_text": [sentences[p] for p in pos]})
    novels = sorted({s["background"]["name"] for s in samples})
    header = {"benchmark": "prose", "task": "prose-qa", "length": "book", "split": "train", "seed": 0,
              "n": len(samples), "background": {"kind": "book", "per_sample": True}, "novels": novels,
              "source": "benchmarks/prose_questions.py"}
    return header, samples


def problems(path: Path = OUT) -> list[str]:
    """Everything wrong with the file at `path` (empty: it passes)."""
    out: list[str] = []
    header, it = read_samples(path)
    samples = list(it)
    try:
        want = build()
    except ValueError as exc:
        return [str(exc)]
    if [header, *samples] != [{"format": "qrag-samples", "format_version": 1, **want[0]}, *want[1]]:
        out.append(f"{path} differs from what `build` makes of benchmarks/prose_questions.py: rebuild it")
    train = set(hs.novel_split()["train"])
    kinds = {k: 0 for k in KINDS}
    seen: set[str] = set()
    for s in samples:
        where = s["id"]
        novel = s["background"].get("name", "")
        if s["background"].get("kind") != "book" or novel not in train:
            out.append(f"{where}: background must be a training-split novel, got {s['background']}")
            continue
        sentences = hs.novel_sentences(novel)
        texts = s.get("support_text", [])
        if len(texts) != len(s["support"]):
            out.append(f"{where}: support_text must hold one sentence per support position")
            continue
        for p, t in zip(s["support"], texts):
            if not 0 <= p < len(sentences) or sentences[p] != t:
                out.append(f"{where}: support {p} is not the novel's sentence {t[:60]!r}")
        if s["task"] not in KINDS:
            out.append(f"{where}: task must be one of {KINDS}")
            continue
        kinds[s["task"]] += 1
        need = 1 if s["task"] == "single" else 2
        if len(s["support"]) != need:
            out.append(f"{where}: a {s['task']} question needs {need} supports")
        elif need == 2 and abs(s["support"][1] - s["support"][0]) < MIN_GAP:
            out.append(f"{where}: the two supports are fewer than {MIN_GAP} sentences apart")
        last, q, a = texts[-1] if texts else "", s["question"], s["answer"]
        if a.lower() not in last.lower():
            out.append(f"{where}: the answer {a!r} is not in the answering sentence")
        if a.lower() in q.lower():
            out.append(f"{where}: the question gives the answer away")
        qw, lw = _words(q), _words(last)
        grams = {tuple(lw[i : i + 3]) for i in range(len(lw) - 2)}
        if any(tuple(qw[i : i + 3]) in grams for i in range(len(qw) - 2)):
            out.append(f"{where}: the question copies three words in a row from the answering sentence")
        content = [w for w in qw if w not in STOP]
        shared = [w for w in content if w in set(lw)]
        if content and len(shared) / len(content) > MAX_OVERLAP:
            out.append(f"{where}: the question shares {len(shared)}/{len(content)} content words with the answer sentence")
        if q in seen:
            out.append(f"{where}: the question is asked twice")
        seen.add(q)
    if len(samples) < MIN_QUESTIONS:
        out.append(f"{len(samples)} questions, at least {MIN_QUESTIONS} wanted")
    if len({s["background"].get("name") for s in samples}) < MIN_NOVELS:
        out.append(f"questions about fewer than {MIN_NOVELS} novels")
    if abs(kinds["single"] - kinds["two_hop"]) > 1:
        out.append(f"not half and half: {kinds}")
    return out


def main(argv: list[str]) -> int:
    if argv[1:] == ["build"]:
        header, samples = build()
        OUT.parent.mkdir(parents=True, exist_ok=True)
        write_samples(OUT, header, samples)
        print(json.dumps({"wrote": str(OUT.relative_to(ROOT)), "n": len(samples), "novels": header["novels"]}))
        return 0
    if argv[1:] == ["check"]:
        found = problems()
        for p in found:
            print(p)
        print(f"{OUT.relative_to(ROOT)}: {'FAIL' if found else 'ok'} ({len(found)} problems)")
        return 1 if found else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
