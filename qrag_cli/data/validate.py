"""The bAbI generator checked against the real qa1 training file (``<shared>/data/babi/en-10k``).

Both the real file and generated stories (written in the same text format by `Story.babi_lines`)
go through the same parser and statistics: story shape (line count and the statement/question
pattern, e.g. ``SSQSSQSSQSSQSSQ``), and the relative frequencies of move subjects (actors),
destinations (rooms), move templates (verbs), question actors, and the distance in lines from a
question back to its support. `compare` reports the largest absolute difference per statistic and
fails a statistic whose difference exceeds the tolerance, or a shape that differs at all.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InputError
from .babi import Question, Story, simulate_story
from .haystack import shared_root

QA1_FILE = "qa1_single-supporting-fact_train.txt"
FREQUENCIES = ("actors", "rooms", "verbs", "question_actors", "support_distance")
_MOVE = re.compile(r"(\w+) (moved|went back|went|journeyed|travelled) to\s+the (\w+)\.")
_WHERE = re.compile(r"Where is (\w+)\?")


def qa1_path() -> Path:
    """The real bAbI qa1 training file in the shared folder."""
    return shared_root() / "data" / "babi" / "en-10k" / QA1_FILE


def parse_babi(lines: Iterable[str], task: str = "qa1", where: str = "<babi>") -> list[Story]:
    """Stories of a bAbI text file (IDs restart at 1 per story; questions are `q\\tanswer\\tids`)."""
    stories: list[Story] = []
    ids: dict[int, int] = {}  # line ID -> statement index within the story
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        num, _, rest = line.partition(" ")
        if not num.isdigit():
            raise InputError(f"{where}:{lineno}: a bAbI line starts with its ID")
        if int(num) == 1:
            stories.append(Story(task, [], []))
            ids = {}
        if not stories:
            raise InputError(f"{where}:{lineno}: the first story does not start at ID 1")
        st = stories[-1]
        if "\t" in rest:
            q, answer, sup = (rest.split("\t") + ["", ""])[:3]
            try:
                support = tuple(ids[int(x)] for x in sup.split())
            except (KeyError, ValueError):
                raise InputError(f"{where}:{lineno}: bad supporting IDs {sup!r}") from None
            st.questions.append(Question(len(st.statements), q.strip(), answer.strip(), support))
        else:
            ids[int(num)] = len(st.statements)
            st.statements.append(rest.strip())
    return stories


def _freq(c: Counter) -> dict[str, float]:
    total = sum(c.values())
    return {str(k): v / total for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))} if total else {}


def story_stats(stories: list[Story]) -> dict[str, Any]:
    """Shape and frequency statistics of qa1-style stories."""
    lines, shape = Counter(), Counter()
    actors, rooms, verbs, q_actors, dist = Counter(), Counter(), Counter(), Counter(), Counter()
    for st in stories:
        n_lines = len(st.statements) + len(st.questions)
        lines[n_lines] += 1
        pattern, line_of = [], []  # line number of each statement
        pending = list(st.questions)
        for i in range(len(st.statements) + 1):
            while pending and pending[0].after == i:
                q = pending.pop(0)
                pattern.append("Q")
                m = _WHERE.fullmatch(q.text)
                if m:
                    q_actors[m.group(1)] += 1
                if q.support:
                    dist[len(pattern) - max(line_of[j] for j in q.support)] += 1
            if i < len(st.statements):
                pattern.append("S")
                line_of.append(len(pattern))
                m = _MOVE.fullmatch(" ".join(st.statements[i].split()))
                if m:
                    actors[m.group(1)] += 1
                    verbs[m.group(2)] += 1
                    rooms[m.group(3)] += 1
        shape["".join(pattern)] += 1
    return {"stories": len(stories), "lines": _freq(lines), "shape": _freq(shape), "actors": _freq(actors),
            "rooms": _freq(rooms), "verbs": _freq(verbs), "question_actors": _freq(q_actors),
            "support_distance": _freq(dist)}


def babi_file_stats(path: str | Path) -> dict[str, Any]:
    """Statistics of a real bAbI file (default format: the released en-10k files)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"bAbI file not found: {p}")
    with open(p, encoding="utf-8") as fh:
        return story_stats(parse_babi(fh, where=str(p)))


def generated_stories(task: str = "qa1", n: int = 2000, seed: int = 0) -> list[Story]:
    """`n` generated stories, round-tripped through the bAbI text format."""
    rng = random.Random(seed)
    lines: list[str] = []
    for _ in range(n):
        lines.extend(simulate_story(task, rng).babi_lines())
    return parse_babi(lines, task)


def generated_stats(task: str = "qa1", n: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Statistics of `n` generated stories of `task`."""
    return story_stats(generated_stories(task, n, seed))


def compare(real: dict[str, Any], generated: dict[str, Any], tolerance: float = 0.03) -> dict[str, Any]:
    """Per statistic the largest absolute difference of relative frequencies; `ok` when all pass.

    Shapes (line counts and patterns) must match exactly: the same set of values.
    """
    report: dict[str, Any] = {"tolerance": tolerance, "max_diff": {}, "failures": []}
    for key in ("lines", "shape"):
        if set(real[key]) != set(generated[key]):
            report["failures"].append(f"{key}: real {sorted(real[key])} vs generated {sorted(generated[key])}")
    for key in FREQUENCIES:
        r, g = real[key], generated[key]
        diffs = {k: abs(r.get(k, 0.0) - g.get(k, 0.0)) for k in set(r) | set(g)}
        worst = max(diffs, key=diffs.__getitem__) if diffs else ""
        report["max_diff"][key] = round(diffs.get(worst, 0.0), 4)
        if diffs and diffs[worst] > tolerance:
            report["failures"].append(f"{key}[{worst}]: real {r.get(worst, 0.0):.4f} vs generated "
                                      f"{g.get(worst, 0.0):.4f} (> {tolerance})")
    report["ok"] = not report["failures"]
    return report
