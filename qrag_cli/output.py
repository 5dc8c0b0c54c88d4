"""Formatting of query results for stdout: JSON Lines, human text, TREC run files."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable
from typing import Any

FORMATS = ("auto", "jsonl", "text", "trec")
#: terminal escape sequences (CSI, OSC, other ESC x) and the remaining C0/C1 control characters but \t
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def plain(value: Any) -> str:
    """`value` as text safe to print on a terminal: escape sequences and control characters removed."""
    return _CONTROL.sub("", str(value))


def resolve_format(fmt: str, stdout_is_terminal: bool) -> str:
    """'auto' means text on a terminal and JSON Lines otherwise."""
    if fmt == "auto":
        return "text" if stdout_is_terminal else "jsonl"
    return fmt


def jsonl(results: Iterable[dict[str, Any]]) -> Iterable[str]:
    for r in results:
        yield json.dumps(r, ensure_ascii=False)


def check_trec(ids: Iterable[str], run: str) -> None:
    """TREC run lines are six whitespace-separated columns: a question id or run tag that is empty or
    holds whitespace is rejected (not escaped: trec_eval would not match an escaped id to its qrels)."""
    from .errors import InputError

    if not run or any(c.isspace() for c in run):
        raise InputError(f"--run-tag {run!r}: a TREC run tag must be non-empty and hold no whitespace")
    for qid in ids:
        if not qid or any(c.isspace() for c in qid):
            raise InputError(f"question id {qid!r}: a TREC id must be non-empty and hold no whitespace "
                             "(use --format jsonl, or ids without spaces)")


def trec(results: Iterable[dict[str, Any]], run: str = "qrag") -> Iterable[str]:
    """`qid Q0 docno rank score run`; docno is the chunk position. trec_eval orders a run by score, so
    the score column is the reverse rank (retrieval order is the ranking of a multi-step retriever)."""
    for r in results:
        check_trec([r["id"]], run)
        n = len(r["retrieved"])
        for rank, item in enumerate(r["retrieved"], 1):
            yield f"{r['id']} Q0 {item['chunk']} {rank} {n - rank + 1} {run}"


def text(results: Iterable[dict[str, Any]], width: int = 100) -> Iterable[str]:
    for r in results:
        yield f"[{plain(r['id'])}] {plain(r['question'])}"
        for item in r["retrieved"]:
            head = f"  step {item['step']}  chunk {item['chunk']}  score {item['score']:.4f}  {plain(item['doc'])}"
            yield head
            for line in textwrap.wrap(plain(item["text"].replace("\n", " ")), width=width - 6) or [""]:
                yield f"      {line}"
        yield f"  kept: {', '.join(map(str, r['kept'])) or '(none)'}"
        yield ""


def render(results: list[dict[str, Any]], fmt: str, run: str = "qrag") -> Iterable[str]:
    if fmt == "trec":
        return trec(results, run)
    return {"jsonl": jsonl, "text": text}[fmt](results)
