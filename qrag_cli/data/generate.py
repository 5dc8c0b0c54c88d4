"""`qrag data`: benchmark samples from `DataSettings` (BabiLong-style or RULER-style).

BabiLong: bAbI stories of the task (`babi`, story seed ``haystack.story_seed(split, seed)``, so the
train and test splits never share a story seed), each sample's story lines spliced at random
positions among background sentences of the split's novels. Lengths 1K and 4K (and a plain number of
sentences below 1,200, e.g. "100" for training) store each sample's whole context, drawn from its
own background (``BackgroundStream(split, f"{seed}/{i}")``); from 32K on (1,200 sentences) all
samples share the one background ``haystack.background(split, n_sentences, seed)`` and store only a
reference to it and their fact positions. RULER: see `ruler.ruler_samples` (vt: `ruler_vt`).

Everything is validated before any heavy work; errors are InputError naming the valid choices.
"""

from __future__ import annotations

import random
from typing import Any

from ..errors import InputError
from ..settings import DataSettings
from . import babi, negatives, ruler
from . import haystack as hs
from .splice import insert_at, splice_positions

BENCHMARKS = ("babilong", "ruler")
BABILONG_LONG = 1200  # sentences from which the background is shared and referenced
MAX_SENTENCES = 400_000


def _choices(xs: Any) -> str:
    return ", ".join(xs)


def babilong_sentences(length: str) -> int:
    """Background sentences of a BabiLong length name, or of a plain number of sentences."""
    if length in hs.BABILONG_SENTENCES:
        return hs.BABILONG_SENTENCES[length]
    if length.isdigit() and 1 <= int(length) <= MAX_SENTENCES:
        return int(length)
    raise InputError(f"unknown babilong length {length!r}: use one of {_choices(hs.BABILONG_SENTENCES)} "
                     f"or a number of background sentences (1..{MAX_SENTENCES})")


def check_settings(s: DataSettings) -> None:
    """Raise InputError for any unusable option (before anything is generated)."""
    if s.benchmark not in BENCHMARKS:
        raise InputError(f"unknown benchmark {s.benchmark!r}: use one of {_choices(BENCHMARKS)}")
    hs.check_split(s.split)
    if s.n < 1:
        raise InputError("--n must be at least 1")
    if s.benchmark == "babilong":
        if s.task not in babi.TASKS:
            raise InputError(f"unknown babilong task {s.task!r}: use one of {_choices(babi.TASKS)}")
        n_bg = babilong_sentences(s.length)
        if not 0 <= s.hard_negatives <= 1:
            raise InputError(f"--hard-negatives {s.hard_negatives}: use a fraction in [0, 1]")
        if s.hard_negatives and n_bg >= BABILONG_LONG:
            raise InputError("--hard-negatives mixes into per-sample contexts: use a length below 1200 sentences")
        if s.background_pool and not (n_bg < BABILONG_LONG and n_bg <= s.background_pool <= negatives.POOL_CANDIDATES):
            raise InputError(f"--background-pool {s.background_pool}: per-sample contexts (a length below 1200 "
                             f"sentences) and a pool of {n_bg}..{negatives.POOL_CANDIDATES} sentences")
        return
    if s.hard_negatives or s.background_pool:
        raise InputError("--hard-negatives and --background-pool are babilong options")
    if s.task not in ruler.RULER_TASKS:
        raise InputError(f"unknown ruler task {s.task!r}: use one of {_choices(ruler.RULER_TASKS)}")
    if s.length not in ruler.RULER_LENGTHS:
        raise InputError(f"unknown ruler length {s.length!r}: use one of {_choices(ruler.RULER_LENGTHS)}")
    if s.haystack not in ruler.HAYSTACKS:
        raise InputError(f"unknown haystack {s.haystack!r}: use one of {_choices(ruler.HAYSTACKS)}")
    values = getattr(s, "values", "numbers")
    if values not in ruler.VALUE_KINDS:
        raise InputError(f"unknown needle values {values!r}: use one of {_choices(ruler.VALUE_KINDS)}")
    if getattr(s, "hops", ruler.VT_HOPS) < 1:
        raise InputError("--hops must be at least 1")
    if s.keys not in ruler.KEY_KINDS:
        raise InputError(f"unknown needle keys {s.keys!r}: use one of {_choices(ruler.KEY_KINDS)}")


def _babilong(s: DataSettings) -> tuple[dict, list[dict]]:
    n_bg = babilong_sentences(s.length)
    hs.novel_split()  # fails early, with a clear message, when the novels are missing
    stories = babi.generate_samples(s.task, s.n, hs.story_seed(s.split, s.seed))
    long = n_bg >= BABILONG_LONG
    pool = negatives.hard_pool(s.task, s.split) if s.hard_negatives else []
    shared = negatives.candidate_sentences(s.split)[: s.background_pool] if s.background_pool else []
    ref = {"kind": "novel", "split": s.split, "n_sentences": n_bg, "seed": s.seed}
    out = []
    for i, b in enumerate(stories):
        rng = random.Random(f"qrag-babilong-splice:{s.task}:{s.length}:{s.split}:{s.seed}:{i}")
        sample: dict[str, Any] = {"id": f"babilong-{s.task}-{s.length}-{s.split}-{s.seed}-{i}", "task": s.task,
                                  "question": b.question, "answer": b.answer}
        pos = splice_positions(n_bg, len(b.story), rng)
        if long:
            sample.update(background=ref, facts=[{"position": p, "text": t} for p, t in zip(pos, b.story)])
        else:
            if shared:  # a window of the shared pool (its runs of consecutive sentences stay together)
                start = random.Random(f"qrag-background-pool:{s.split}:{s.seed}:{i}").randrange(len(shared) - n_bg + 1)
                bg = shared[start : start + n_bg]
            else:
                bg = hs.BackgroundStream(s.split, f"{s.seed}/{i}").extend_to(n_bg)
            if pool:  # its own stream: the fact positions stay those of the plain sample
                hard_rng = random.Random(f"qrag-hard-negatives:{s.task}:{s.length}:{s.split}:{s.seed}:{i}")
                bg = negatives.mix_in(bg, pool, s.hard_negatives, hard_rng)
            sample["context"] = insert_at(bg, b.story, pos)
            sample["story"] = list(pos)  # where every story line sits (the rest is background)
        sample["support"] = [pos[j] for j in b.support]
        out.append(sample)
    header_bg = dict(ref) if long else {**ref, "per_sample": True}
    return _header(s, header_bg), out


def _ruler(s: DataSettings) -> tuple[dict, list[dict]]:
    values = getattr(s, "values", "numbers")
    hops = getattr(s, "hops", ruler.VT_HOPS)
    if s.haystack == "novel":
        hs.novel_split()
    ref, out = ruler.ruler_samples(s.task, s.length, s.n, s.seed, s.split, s.haystack, values, hops,
                                   s.keys, s.per_sample, s.vt_example)
    bg = dict(ref) if ref is not None else {"kind": s.haystack, "per_sample": True}
    header = _header(s, bg)
    header.update(haystack=s.haystack, tokens=ruler.RULER_LENGTHS[s.length], values=values)
    if s.task == "vt":
        header.update(hops=hops, prompt="ruler", example=s.vt_example)
    elif s.keys != "words":
        header["keys"] = s.keys
    return header, out


def _header(s: DataSettings, background: dict) -> dict:
    header = {"benchmark": s.benchmark, "task": s.task, "length": s.length, "split": s.split,
              "seed": s.seed, "n": s.n, "background": background}
    if s.hard_negatives:
        header["hard_negatives"] = s.hard_negatives
    if s.background_pool:
        header["background_pool"] = s.background_pool
    return header


def generate(settings: DataSettings) -> tuple[dict, list[dict]]:
    """(header, samples) for `samples.write_samples`, dispatching on benchmark, task, length, split."""
    check_settings(settings)
    if settings.benchmark == "babilong":
        return _babilong(settings)
    return _ruler(settings)
