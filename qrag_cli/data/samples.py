"""The versioned sample file of `qrag data`: JSON Lines, a header line, then one sample per line.

Header (first line)::

    {"format": "qrag-samples", "format_version": 1, "benchmark": "babilong", "task": "qa1",
     "length": "1K", "split": "test", "seed": 0, "n": 100, "background": {...}, ...}

Sample, short contexts (the whole chunk list stored)::

    {"id": str, "task": str, "question": str, "answer": str, "context": [str, ...], "support": [int, ...],
     "story": [int, ...]}

``story`` (babilong, optional): the positions of every story line in ``context``, the supporting ones
and the others; every other chunk is a background sentence.

Sample, long contexts (>= 32K: the shared background is referenced, not repeated)::

    {"id", "task", "question", "answer",
     "background": {"kind": "novel", "split": "test", "n_sentences": 1200, "seed": 0},
     "facts": [{"position": int, "text": str}, ...], "support": [int, ...]}

Multi-answer tasks add ``"answers": [str, ...]`` (``answer`` is then the answers joined by ", ").
Chunk positions (``support``, fact ``position``) index the full chunk list of the sample: the
background with the facts spliced in so that each fact sits at its position (`materialise`). In the
long layout every support position is a fact position, except for a ``book`` background
(``{"kind": "book", "name": "wells_thetimemachine", "n_sentences": N}``: the first N sentences of
that novel, `haystack.novel_sentences`; questions about the book itself, whose supports are its own
sentences and whose `facts` list is empty). Background kinds: ``novel``
(`haystack.background(split, n_sentences, seed)`), ``noise``, ``needle`` and ``vt_needle`` (RULER
haystacks, `ruler.background_from_ref`). A header background with ``"per_sample": true``
describes where the stored contexts came from (each sample drew its own); otherwise it is the one
background every sample of the file references.

Header fields beyond the required ones (`HEADER_FIELDS`) are those of `OPTIONAL_HEADER_FIELDS`; any
other field, and a background kind not in `BACKGROUND_KINDS`, is refused with the file and line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..atomic import atomic_open
from ..errors import InputError
from .splice import insert_at

FORMAT = "qrag-samples"
FORMAT_VERSION = 1
HEADER_FIELDS = {"benchmark": str, "task": str, "length": str, "split": str, "seed": int, "n": int,
                 "background": dict}
#: Further header fields `qrag data` and the shipped files write; any other field is refused (a typo
#: such as "lenght" would otherwise pass unnoticed).
OPTIONAL_HEADER_FIELDS = ("hard_negatives", "background_pool", "haystack", "tokens", "values", "hops", "prompt",
                          "example", "keys", "novels", "source")
BACKGROUND_KINDS = ("novel", "noise", "needle", "vt_needle", "book")
SAMPLE_FIELDS = {"id": str, "task": str, "question": str, "answer": str}


def write_samples(path_or_stdout: str | os.PathLike | IO[str] | None, header: dict, samples: Iterable[dict]) -> None:
    """Write the header and the samples as JSON Lines to a path ('-' or '' or None: stdout) or a text stream.

    A path is written to a temporary file next to it and renamed, so a reader never sees half a file.
    """
    head = {"format": FORMAT, "format_version": FORMAT_VERSION, **header}

    def dump(fh: IO[str]) -> None:
        fh.write(json.dumps(head, ensure_ascii=False) + "\n")
        for s in samples:
            fh.write(json.dumps(s, ensure_ascii=False) + "\n")

    if path_or_stdout is None or path_or_stdout in ("", "-"):
        dump(sys.stdout)
        sys.stdout.flush()
        return
    if hasattr(path_or_stdout, "write"):
        dump(path_or_stdout)  # type: ignore[arg-type]
        return
    path = Path(path_or_stdout)  # type: ignore[arg-type]
    if path.parent and not path.parent.is_dir():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist")
    with atomic_open(path, "w") as fh:
        dump(fh)


def _type_name(t: type) -> str:
    return {str: "a string", int: "an integer", dict: "an object", list: "a list"}[t]


def _need(obj: dict, key: str, typ: type, where: str) -> Any:
    if key not in obj:
        raise InputError(f"{where}: missing field {key!r}")
    v = obj[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise InputError(f"{where}: field {key!r} must be {_type_name(typ)}, got {type(v).__name__}")
    return v


def _int_list(obj: dict, key: str, where: str) -> list[int]:
    v = _need(obj, key, list, where)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise InputError(f"{where}: field {key!r} must be a list of integers")
    return v


def _check_background(ref: Any, where: str) -> int:
    if not isinstance(ref, dict):
        raise InputError(f"{where}: field 'background' must be an object")
    kind = ref.get("kind", "novel")
    n = _need(ref, "n_sentences", int, f"{where}: background")
    if n < 0:
        raise InputError(f"{where}: background n_sentences must be >= 0")
    if kind in ("novel", "needle", "vt_needle"):
        _need(ref, "split", str, f"{where}: background")
        _need(ref, "seed", int, f"{where}: background")
    elif kind == "book":
        _need(ref, "name", str, f"{where}: background")
    elif kind != "noise":
        raise InputError(f"{where}: unknown background kind {kind!r}: use one of {', '.join(BACKGROUND_KINDS)}")
    return n


def check_sample(s: Any, where: str) -> dict:
    """Validate one sample object; raises InputError prefixed with `where` (file:line)."""
    if not isinstance(s, dict):
        raise InputError(f"{where}: a sample must be a JSON object")
    for key, typ in SAMPLE_FIELDS.items():
        _need(s, key, typ, where)
    if "answers" in s and not (isinstance(s["answers"], list) and all(isinstance(a, str) for a in s["answers"])):
        raise InputError(f"{where}: field 'answers' must be a list of strings")
    support = _int_list(s, "support", where)
    if "context" in s:
        ctx = _need(s, "context", list, where)
        if not all(isinstance(c, str) for c in ctx):
            raise InputError(f"{where}: field 'context' must be a list of strings")
        total, allowed = len(ctx), None
    elif "background" in s:
        n_bg = _check_background(s["background"], where)
        facts = _need(s, "facts", list, where)
        positions = []
        for f in facts:
            if not isinstance(f, dict):
                raise InputError(f"{where}: every fact must be an object with 'position' and 'text'")
            positions.append(_need(f, "position", int, f"{where}: fact"))
            _need(f, "text", str, f"{where}: fact")
        total, allowed = n_bg + len(facts), set(positions)
        if s["background"].get("kind") == "book":
            allowed = None  # questions about a book: the supports are its own sentences
        if any(not 0 <= p < total for p in positions) or positions != sorted(set(positions)):
            raise InputError(f"{where}: fact positions must be increasing and within 0..{total - 1}")
    else:
        raise InputError(f"{where}: a sample needs 'context' or 'background' with 'facts'")
    for p in support:
        if not 0 <= p < total:
            raise InputError(f"{where}: support position {p} is out of range 0..{total - 1}")
        if allowed is not None and p not in allowed:
            raise InputError(f"{where}: support position {p} is not the position of a fact")
    if "story" in s:
        story = set(_int_list(s, "story", where))
        if any(not 0 <= p < total for p in story) or not set(support) <= story:
            raise InputError(f"{where}: field 'story' must hold chunk positions, the support among them")
    return s


def check_header(h: Any, where: str) -> dict:
    """Validate the header object; raises InputError prefixed with `where`."""
    if not isinstance(h, dict) or "format" not in h:
        raise InputError(f"{where}: missing header: the first line must be the qrag-samples header object")
    if h["format"] != FORMAT:
        raise InputError(f"{where}: format {h['format']!r} is not {FORMAT!r}")
    if h.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{where}: format version {h.get('format_version')!r}, this qrag reads {FORMAT_VERSION}: "
                         "regenerate the file with `qrag data`")
    for key, typ in HEADER_FIELDS.items():
        _need(h, key, typ, where)
    unknown = sorted(set(h) - {"format", "format_version", *HEADER_FIELDS, *OPTIONAL_HEADER_FIELDS})
    if unknown:
        raise InputError(f"{where}: unknown header field(s) {', '.join(map(repr, unknown))}: known fields are "
                         f"{', '.join([*HEADER_FIELDS, *OPTIONAL_HEADER_FIELDS])}")
    kind = h["background"].get("kind", "novel")
    if kind not in BACKGROUND_KINDS:
        raise InputError(f"{where}: unknown background kind {kind!r}: use one of {', '.join(BACKGROUND_KINDS)}")
    return h


def _lines(path: str | os.PathLike) -> tuple[str, Iterator[str]]:
    if str(path) == "-":
        return "<stdin>", iter(sys.stdin)
    p = Path(path)
    if not p.is_file():
        raise InputError(f"sample file not found: {p}")

    def gen() -> Iterator[str]:
        with open(p, encoding="utf-8") as fh:
            yield from fh

    return str(p), gen()


def _json(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise InputError(f"{where}: not JSON ({exc})") from None


def read_samples(path: str | os.PathLike) -> tuple[dict, Iterator[dict]]:
    """The validated header and a lazy iterator of validated samples.

    Every error names the file and the line. The iterator checks at the end that the file holds the
    `n` samples its header announces (a truncated file fails).
    """
    header, numbered = read_numbered_samples(path)
    return header, (sample for _, sample in numbered)


def read_numbered_samples(path: str | os.PathLike) -> tuple[dict, Iterator[tuple[int, dict]]]:
    """`read_samples`, each sample with its line number in the file."""
    name, lines = _lines(path)
    try:
        first = next(lines)
    except (StopIteration, UnicodeDecodeError):
        raise InputError(f"{name}:1: missing header (empty or unreadable file)") from None
    header = check_header(_json(first, f"{name}:1"), f"{name}:1")

    def samples() -> Iterator[dict]:
        count = 0
        lineno = 1
        try:
            for lineno, line in enumerate(lines, start=2):
                if not line.strip():
                    continue
                where = f"{name}:{lineno}"
                yield lineno, check_sample(_json(line, where), where)
                count += 1
        except UnicodeDecodeError:
            raise InputError(f"{name}:{lineno + 1}: not UTF-8 text") from None
        if count != header["n"]:
            raise InputError(f"{name}: the header announces {header['n']} samples, the file holds {count}")

    return header, samples()


def load_background(ref: dict) -> list[str]:
    """The background sentences a reference describes (cached per process)."""
    if ref.get("kind") == "book":
        from .haystack import novel_sentences

        return list(novel_sentences(ref["name"])[: ref["n_sentences"]])
    from .ruler import background_from_ref

    return background_from_ref(ref)


def materialise(sample: dict, header: dict | None = None) -> list[str]:
    """The full chunk list of a sample: its context, or its background with the facts spliced in."""
    if "context" in sample:
        return list(sample["context"])
    facts = sample["facts"]
    return insert_at(load_background(sample["background"]), [f["text"] for f in facts],
                     [f["position"] for f in facts])
