"""RULER-style needle-in-a-haystack and variable-tracking samples (docs/benchmarks.md, section 3).

Tasks: `niah_single` (one needle), `niah_multikey` (4 needles with different keys, ask one),
`niah_multivalue` (one key, 4 values, retrieve all), `niah_multiquery` (4 keys, ask all), `vt`
(variable tracking: ``VAR ABCDE = 12345``, then ``VAR FGHIJ = VAR ABCDE`` ... over `hops` hops, so
hops + 1 lines, spread in order through the haystack; the answers are every variable of the chain).
Needle: ``One of the special magic {numbers|uuids|words} for {key} is: {value}.``; keys are
adjective-noun pairs (`keys` "words"), 7-digit numbers or UUIDs (RULER's niah_multikey_3), values
7-digit numbers (or UUIDs, or words). Question: ``What are all the special magic numbers for {key}
mentioned in the provided text?`` (several keys joined with ", " and " and "); vt: RULER's prompt
with its in-context example, see `ruler_vt`.

Haystacks: `noise` (the RULER paragraph, one sentence per chunk, repeated), `novel` (sentences of
the split's novels, `haystack.BackgroundStream`), `needle` (confusable distractors: needles with
other keys and values; for vt, distractor chains with other values, interleaved in blocks). Keys,
values and variable names of samples and of distractors come from disjoint hash halves
(`words.side`), so a distractor never answers a question.

Length: the context (haystack + needles) is filled until it holds the target number of tokens of
the embedder's tokenizer (all-MiniLM-L6-v2 word pieces, no special tokens), overshooting by at most
one sentence (vt: the whole RULER prompt, see `ruler_vt`). Lengths below `LONG_TOKENS` give every
sample its own haystack; from 32K on one haystack per (split, length, seed) is shared by all samples
and only referenced (see `samples`), unless `per_sample` asks for a haystack of its own per sample.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import InputError
from . import haystack as hs
from .splice import insert_at, splice_positions
from .words import ADJECTIVES, NOUNS, side

RULER_TASKS = ("niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "vt")
RULER_LENGTHS = {"4K": 4096, "16K": 16384, "32K": 32768, "128K": 131072, "1M": 1048576}
HAYSTACKS = ("noise", "novel", "needle")
VALUE_KINDS = ("numbers", "uuids", "words")
KEY_KINDS = ("words", "numbers", "uuids")
NOISE = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")
N_NEEDLES = 4
VT_HOPS = 4
VT_BLOCK = 20  # distractor chains interleaved per block of the vt needle haystack
LONG_TOKENS = 32768


@dataclass(frozen=True)
class RulerFacts:
    """The needle lines of one sample (in context order), which of them support, question, answers."""

    facts: list[str]
    support: list[int]
    question: str
    answers: list[str]


def needle(key: str, value: str, value_kind: str = "numbers") -> str:
    """One needle sentence."""
    return f"One of the special magic {value_kind} for {key} is: {value}."


def niah_question(keys: list[str], value_kind: str = "numbers") -> str:
    """The question asking for the values of `keys`."""
    q = keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]
    return f"What are all the special magic {value_kind} for {q} mentioned in the provided text?"


def _pick(rng: random.Random, draw: Callable[[], str], half: int, avoid: set[str] | None = None) -> str:
    while True:
        x = draw()
        if side(x) == half and (avoid is None or x not in avoid):
            if avoid is not None:
                avoid.add(x)
            return x


def _key(rng: random.Random, half: int, avoid: set[str] | None = None, kind: str = "words") -> str:
    if kind != "words":
        return _value(rng, kind, half, avoid)
    return _pick(rng, lambda: f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}", half, avoid)


def _value(rng: random.Random, kind: str, half: int, avoid: set[str] | None = None) -> str:
    if kind == "numbers":
        return _pick(rng, lambda: str(rng.randrange(1_000_000, 10_000_000)), half, avoid)
    if kind == "uuids":
        return _pick(rng, lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)), half, avoid)
    return _pick(rng, lambda: rng.choice(NOUNS), half, avoid)


def _var(rng: random.Random, half: int, avoid: set[str]) -> str:
    return _pick(rng, lambda: "".join(rng.choice(string.ascii_uppercase) for _ in range(5)), half, avoid)


def vt_chain(rng: random.Random, hops: int, half: int) -> tuple[str, list[str], list[str]]:
    """(value, variable names, lines) of one chain of `hops` hops."""
    value = _pick(rng, lambda: str(rng.randrange(10_000, 100_000)), half)
    names: list[str] = []
    seen: set[str] = set()
    for _ in range(hops + 1):
        names.append(_var(rng, half, seen))
    lines = [f"VAR {names[0]} = {value}"] + [f"VAR {b} = VAR {a}" for a, b in zip(names, names[1:])]
    return value, names, lines


def make_facts(task: str, rng: random.Random, value_kind: str = "numbers", hops: int = VT_HOPS,
               key_kind: str = "words") -> RulerFacts:
    """The needles (or vt chain) of one sample."""
    if task == "vt":
        value, names, lines = vt_chain(rng, hops, 0)
        question = f"Find all variables that are assigned the value {value} in the text above."
        return RulerFacts(lines, list(range(len(lines))), question, names)
    seen_k: set[str] = set()
    seen_v: set[str] = set()
    if task == "niah_single":
        k, v = _key(rng, 0, None, key_kind), _value(rng, value_kind, 0)
        return RulerFacts([needle(k, v, value_kind)], [0], niah_question([k], value_kind), [v])
    if task == "niah_multivalue":
        k = _key(rng, 0, None, key_kind)
        vals = [_value(rng, value_kind, 0, seen_v) for _ in range(N_NEEDLES)]
        return RulerFacts([needle(k, v, value_kind) for v in vals], list(range(N_NEEDLES)),
                          niah_question([k], value_kind), vals)
    keys = [_key(rng, 0, seen_k, key_kind) for _ in range(N_NEEDLES)]
    vals = [_value(rng, value_kind, 0, seen_v) for _ in range(N_NEEDLES)]
    order = list(range(N_NEEDLES))
    rng.shuffle(order)  # placement order of the needles
    facts = [needle(keys[j], vals[j], value_kind) for j in order]
    if task == "niah_multikey":
        j = rng.randrange(N_NEEDLES)
        return RulerFacts(facts, [order.index(j)], niah_question([keys[j]], value_kind), [vals[j]])
    if task == "niah_multiquery":
        return RulerFacts(facts, list(range(N_NEEDLES)), niah_question(keys, value_kind), vals)
    raise InputError(f"unknown RULER task {task!r}: use one of {', '.join(RULER_TASKS)}")


# --- haystacks -----------------------------------------------------------------------------------


def _needle_stream(split: str, seed: int | str, value_kind: str, key_kind: str = "words") -> Iterator[str]:
    tag = value_kind if key_kind == "words" else f"{value_kind}:{key_kind}"
    rng = random.Random(f"qrag-ruler-needles:{split}:{seed}:{tag}")
    while True:
        yield needle(_key(rng, 1, None, key_kind), _value(rng, value_kind, 1), value_kind)


def _vt_stream(split: str, seed: int | str, hops: int) -> Iterator[str]:
    rng = random.Random(f"qrag-ruler-vt:{split}:{seed}:{hops}")
    while True:
        chains = [vt_chain(rng, hops, 1)[2] for _ in range(VT_BLOCK)]
        slots = [c for c, lines in enumerate(chains) for _ in lines]
        rng.shuffle(slots)  # interleave the chains, each keeping its order
        nxt = [0] * VT_BLOCK
        for c in slots:
            yield chains[c][nxt[c]]
            nxt[c] += 1


class _Prefix:
    """Prefix-stable access to an endless sentence iterator."""

    def __init__(self, it: Iterator[str]) -> None:
        self.it = it
        self.items: list[str] = []

    def take(self, n: int) -> list[str]:
        while len(self.items) < n:
            self.items.append(next(self.it))
        return self.items[:n]


def haystack_source(kind: str, split: str, seed: int | str, task: str, value_kind: str = "numbers",
                    hops: int = VT_HOPS, key_kind: str = "words") -> tuple[Callable[[int], list[str]], dict[str, Any]]:
    """``(take, ref)``: `take(n)` gives the first n haystack sentences; `ref` describes them (no size)."""
    if kind == "noise":
        return (lambda n: [NOISE[i % len(NOISE)] for i in range(n)]), {"kind": "noise"}
    if kind == "novel":
        stream = hs.BackgroundStream(split, seed)
        return stream.extend_to, {"kind": "novel", "split": split, "seed": seed}
    if kind != "needle":
        raise InputError(f"unknown haystack {kind!r}: use one of {', '.join(HAYSTACKS)}")
    if task == "vt":
        ref = {"kind": "vt_needle", "split": split, "seed": seed, "hops": hops}
        return _Prefix(_vt_stream(split, seed, hops)).take, ref
    ref = {"kind": "needle", "split": split, "seed": seed, "values": value_kind}
    if key_kind != "words":
        ref["keys"] = key_kind
    return _Prefix(_needle_stream(split, seed, value_kind, key_kind)).take, ref


@lru_cache(maxsize=4)
def _ref_background(kind: str, split: str, seed: int, n: int, extra: Any) -> tuple[str, ...]:
    if kind == "noise":
        take, _ = haystack_source("noise", split, seed, "")
    elif kind == "vt_needle":
        take = _Prefix(_vt_stream(split, seed, extra)).take
    else:
        take = _Prefix(_needle_stream(split, seed, *extra)).take
    return tuple(take(n))


def background_from_ref(ref: dict[str, Any]) -> list[str]:
    """The haystack sentences a stored reference describes (kinds noise, needle, vt_needle, novel)."""
    kind, n = ref.get("kind", "novel"), ref["n_sentences"]
    if kind == "novel":
        return hs.background(ref["split"], n, ref["seed"])
    if kind not in ("noise", "needle", "vt_needle"):
        raise InputError(f"unknown background kind {kind!r}")
    extra = ref.get("hops", VT_HOPS) if kind == "vt_needle" else (ref.get("values", "numbers"), ref.get("keys", "words"))
    return list(_ref_background(kind, ref.get("split", ""), ref.get("seed", 0), n, extra))


# --- token lengths -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from tokenizers import Tokenizer

    from ..embed.models import default_model_path

    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def count_tokens(texts: list[str]) -> list[int]:
    """Word-piece tokens of each text (the embedder's tokenizer, without special tokens)."""
    uniq = list(dict.fromkeys(texts))
    enc = _tokenizer().encode_batch(uniq, add_special_tokens=False)
    size = {t: len(e.ids) for t, e in zip(uniq, enc)}
    return [size[t] for t in texts]


def fill_count(take: Callable[[int], list[str]], target_tokens: int) -> int:
    """The smallest n whose first n sentences hold at least `target_tokens` tokens."""
    total, counted, m = 0, 0, 256
    while total < target_tokens:
        new = take(m)[counted:]
        for c in count_tokens(new):
            counted += 1
            total += c
            if total >= target_tokens:
                break
        m *= 2
    return counted


def ruler_samples(task: str, length: str, n: int, seed: int, split: str, haystack: str,
                  value_kind: str = "numbers", hops: int = VT_HOPS, key_kind: str = "words",
                  per_sample: bool = False, vt_example: bool = True) -> tuple[dict[str, Any] | None, list[dict]]:
    """`n` samples in the sample-file layout, and the shared background reference (None if per sample)."""
    if task == "vt":
        from .ruler_vt import vt_samples

        return vt_samples(length, n, seed, split, haystack, hops, vt_example, per_sample)
    target = RULER_LENGTHS[length]
    tag = task if key_kind == "words" else f"{task}:{key_kind}"
    facts = [make_facts(task, random.Random(f"qrag-ruler-facts:{tag}:{split}:{seed}:{i}"), value_kind, hops, key_kind)
             for i in range(n)]
    fact_tokens = [sum(count_tokens(f.facts)) for f in facts]
    ref = None
    if target >= LONG_TOKENS and not per_sample:
        take, ref = haystack_source(haystack, split, seed, task, value_kind, hops, key_kind)
        mean = round(sum(fact_tokens) / max(1, n))
        ref["n_sentences"] = fill_count(take, target - mean)
    out = []
    for i, f in enumerate(facts):
        rng = random.Random(f"qrag-ruler-splice:{task}:{length}:{split}:{seed}:{i}")
        s: dict[str, Any] = {"id": f"ruler-{task}-{length}-{split}-{seed}-{i}", "task": task,
                             "question": f.question, "answer": ", ".join(f.answers), "answers": f.answers}
        if ref is not None:
            pos = splice_positions(ref["n_sentences"], len(f.facts), rng)
            s.update(background=ref, facts=[{"position": p, "text": t} for p, t in zip(pos, f.facts)])
        else:
            take, _ = haystack_source(haystack, split, f"{seed}/{i}", task, value_kind, hops, key_kind)
            bg = take(fill_count(take, target - fact_tokens[i]))
            pos = splice_positions(len(bg), len(f.facts), rng)
            s["context"] = insert_at(bg, f.facts, pos)
        s["support"] = [pos[j] for j in f.support]
        out.append(s)
    return ref, out
