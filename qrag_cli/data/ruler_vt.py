"""RULER variable tracking (vt) laid out as NVIDIA RULER's generator writes its prompt.

RULER's prompt (scripts/data/synthetic/variable_tracking.py and constants.py, noise haystack)::

    Memorize and track the chain(s) of variable assignment hidden in the following text.      <- example
    <noise lines, with the example's chain: VAR QPE = 64019 / VAR SDK = VAR QPE / ...>
    Question: Find all variables that are assigned the value 64019 in the text above. Answer: According
    to the chain(s) of variable assignment in the text above, 5 variables are assigned the value 64019,
    they are: QPE SDK ...
    Memorize and track the chain(s) of variable assignment hidden in the following text.      <- the task
    <haystack lines; each assignment a line of its own: VAR ABCDE = 12345 / VAR FGHIJ = VAR ABCDE / ...>
    Question: Find all variables that are assigned the value 12345 in the text above.

A sample's chunks are the sentences of that prompt up to the task's question (which is the sample's
`question`): the example block (its instruction, haystack lines, chain, question and answer line),
the instruction, then the haystack with the chain's lines at sorted random line positions (no two
chain lines adjacent, as in RULER). The example chain has 3-letter names and its own 5-digit value
(never the task's); its haystack fills RULER's 500-token example budget. Haystack lines: `noise`
is RULER's line of five sentences (five chunks); `novel` is one novel sentence per line; `needle`
one distractor-chain line per line.

Length: like RULER, the whole prompt (example block, instruction, haystack, chain, question and
RULER's answer prefix) plus RULER's 30 tokens to generate stays within the target, with as many
haystack lines as fit; tokens are the embedder's word pieces (RULER counts with the evaluated
model's tokenizer).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from . import ruler
from .splice import insert_at

INSTRUCTION = "Memorize and track the chain(s) of variable assignment hidden in the following text."
EXAMPLE_TOKENS = 500  # RULER builds its example at max_seq_length 500
TOKENS_TO_GENERATE = 30  # RULER's tokens_to_generate for vt, counted in the length
EXAMPLE_LETTERS = 3  # RULER's example variables have 3 letters, the task's 5


def question(value: str) -> str:
    """RULER's vt question."""
    return f"Find all variables that are assigned the value {value} in the text above."


def answer_prefix(n_vars: int, value: str) -> str:
    """RULER's answer prefix (ends the prompt; the example's answer line is it plus the names)."""
    return (f"Answer: According to the chain(s) of variable assignment in the text above, {n_vars} variables "
            f"are assigned the value {value}, they are:")


def chain(rng: random.Random, hops: int, half: int, letters: int = 5) -> tuple[str, list[str], list[str]]:
    """(value, variable names, lines) of one chain; names of `letters` capitals, all distinct."""
    value = ruler._pick(rng, lambda: str(rng.randrange(10_000, 100_000)), half)
    names: list[str] = []
    while len(names) < hops + 1:
        name = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(letters))
        if name not in names:
            names.append(name)
    lines = [f"VAR {names[0]} = {value}"] + [f"VAR {b} = VAR {a}" for a, b in zip(names, names[1:])]
    return value, names, lines


def line_positions(n_lines: int, k: int, rng: random.Random) -> list[int]:
    """Final line positions of k chain lines among n_lines haystack lines (RULER's insertion)."""
    return [p + j for j, p in enumerate(sorted(rng.sample(range(n_lines), k)))]


def _per_line(haystack: str) -> int:
    return len(ruler.NOISE) if haystack == "noise" else 1


def _fit(take: Callable[[int], list[str]], budget: int, per_line: int) -> int:
    """The most whole haystack lines whose tokens fit in `budget` (at least one line per chain line)."""
    if budget <= 0:
        return 0
    return (ruler.fill_count(take, budget + 1) - 1) // per_line


def _body(lines: list[str], bg: list[str], per_line: int, rng: random.Random) -> tuple[list[str], list[int]]:
    """The haystack chunks `bg` with the chain `lines` inserted at line boundaries; their chunk positions."""
    n_lines = max(len(bg) // per_line, len(lines))
    pos = [per_line * (q - j) + j for j, q in enumerate(line_positions(n_lines, len(lines), rng))]
    pos = [min(p, len(bg) + j) for j, p in enumerate(pos)]
    return insert_at(bg, lines, pos), pos


def example_block(haystack: str, split: str, seed: str, hops: int,
                  rng: random.Random) -> tuple[list[str], list[int], list[str]]:
    """(chunks, chain positions, names) of the in-context example RULER puts before the task."""
    value, names, lines = chain(rng, min(10, hops), 1, EXAMPLE_LETTERS)
    take, _ = ruler.haystack_source(haystack, split, f"example/{seed}", "vt", hops=hops)
    per = _per_line(haystack)
    fixed = sum(ruler.count_tokens([INSTRUCTION, *lines, "Question: " + question(value),
                                    answer_prefix(len(names), value)]))
    bg = take(per * _fit(take, EXAMPLE_TOKENS - fixed, per))
    body, pos = _body(lines, bg, per, rng)
    qa = ["Question: " + question(value), answer_prefix(len(names), value) + " " + " ".join(names)]
    return [INSTRUCTION, *body, *qa], [1 + p for p in pos], names


def vt_samples(length: str, n: int, seed: int, split: str, haystack: str, hops: int = ruler.VT_HOPS,
               example: bool = True, per_sample: bool = False) -> tuple[dict[str, Any] | None, list[dict]]:
    """`n` vt samples in the sample-file layout, and the shared background reference (None if per sample)."""
    target = ruler.RULER_LENGTHS[length]
    per = _per_line(haystack)
    parts = []
    for i in range(n):
        rng = random.Random(f"qrag-ruler-vt-prompt:{split}:{seed}:{i}")
        value, names, lines = chain(rng, hops, 0)
        ex, ex_support, ex_names = (example_block(haystack, split, f"{seed}/{i}", hops, rng) if example
                                    else ([], [], []))
        head = ex + [INSTRUCTION]
        fixed = sum(ruler.count_tokens([*head, *lines, "Question: " + question(value),
                                        answer_prefix(len(names), value)])) + TOKENS_TO_GENERATE
        parts.append((rng, value, names, lines, head, ex_support, ex_names, fixed))
    ref = None
    if target >= ruler.LONG_TOKENS and not per_sample:
        take, ref = ruler.haystack_source(haystack, split, seed, "vt", hops=hops)
        ref["n_sentences"] = per * _fit(take, target - max(p[-1] for p in parts), per)
    out = []
    for i, (rng, value, names, lines, head, ex_support, ex_names, fixed) in enumerate(parts):
        s: dict[str, Any] = {"id": f"ruler-vt-{length}-{split}-{seed}-{i}", "task": "vt", "question": question(value),
                             "answer": ", ".join(names), "answers": names}
        if ref is not None:
            bg_size = ref["n_sentences"]
            n_lines = max(bg_size // per, len(lines))
            pos = [len(head) + per * (q - j) + j for j, q in enumerate(line_positions(n_lines, len(lines), rng))]
            s.update(background=ref, facts=[{"position": p, "text": t} for p, t in enumerate(head)]
                     + [{"position": p, "text": t} for p, t in zip(pos, lines)])
        else:
            take, _ = ruler.haystack_source(haystack, split, f"{seed}/{i}", "vt", hops=hops)
            bg = take(per * _fit(take, target - fixed, per))
            body, body_pos = _body(lines, bg, per, rng)
            s["context"] = head + body
            pos = [len(head) + p for p in body_pos]
        s["support"] = pos
        if ex_names:
            s["example"] = {"support": ex_support, "answers": ex_names}
        out.append(s)
    return ref, out


def prompt(sample: dict, chunks: list[str], haystack: str = "noise") -> str:
    """The RULER prompt text of a vt sample (its chunks, then the question): one record per line.

    Chunks of a `noise` haystack line are joined by spaces into RULER's five-sentence lines; the
    example's question and answer share a line; a blank line follows each instruction and the
    example's answer (as in RULER); every other chunk is a line of its own.
    """
    out: list[str] = []
    noise_run: list[str] = []
    for c in chunks:
        if haystack == "noise" and c in ruler.NOISE:
            noise_run.append(c)
            if len(noise_run) == len(ruler.NOISE):
                out.append(" ".join(noise_run))
                noise_run = []
            continue
        if c.startswith("Answer: According") and out and out[-1].startswith("Question: "):
            out[-1] += " " + c
            out.append("")
            continue
        out.append(c)
        if c == INSTRUCTION:
            out.append("")
    if noise_run:
        out.append(" ".join(noise_run))
    return "\n".join(out) + "\nQuestion: " + sample["question"]
