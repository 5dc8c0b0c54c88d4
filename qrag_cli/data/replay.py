"""bAbI answers and supports re-derived from the story text alone (`babi.replay`).

Every statement is parsed back with regexes (moves, gets, drops, gives, qa4 relations) and the
question's answer is derived with its own state tracking, sharing no code with the simulation in
`babi`: the tests run it over the real qa1 file (against its gold answers and supports) and over
every generated sample. Rules, per task, as documented in `babi`; unparseable lines and questions
the story does not answer raise InputError.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import InputError
from .babi import check_task

OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}
_MOVE = re.compile(r"(\w+) (?:moved|went back|went|journeyed|travelled) to the (\w+)\.")
_GET = re.compile(r"(\w+) (?:got|grabbed|picked up|took) the (\w+)(?: there)?\.")
_DROP = re.compile(r"(\w+) (?:dropped|put down|discarded|left) the (\w+)(?: there)?\.")
_GIVE = re.compile(r"(\w+) (?:gave|handed|passed) the (\w+) to (\w+)\.")
_REL = re.compile(r"The (\w+) is (north|south|east|west) of the (\w+)\.")


def _parse(story: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    events = []
    for i, line in enumerate(story):
        text = " ".join(line.split())
        for kind, rx in (("move", _MOVE), ("get", _GET), ("drop", _DROP), ("give", _GIVE), ("rel", _REL)):
            m = rx.fullmatch(text)
            if m:
                events.append((kind, m.groups()))
                break
        else:
            raise InputError(f"story line {i}: cannot parse {line!r}")
    return events


def _object_locations(events: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, tuple[str, tuple[int, ...]]]]:
    """After each event, the inferable room (and support) of every object whose room is known."""
    at: dict[str, tuple[str, int]] = {}  # actor -> (room, line of its last move)
    holds: dict[str, tuple[str, int]] = {}  # object -> (holder, line of the get/give)
    lies: dict[str, tuple[str, tuple[int, ...]] | None] = {}  # dropped object -> known room
    out = []
    for i, (kind, g) in enumerate(events):
        if kind == "move":
            at[g[0]] = (g[1], i)
        elif kind == "get":
            holds[g[1]] = (g[0], i)
        elif kind == "drop":
            holds.pop(g[1], None)
            lies[g[1]] = (at[g[0]][0], (at[g[0]][1], i)) if g[0] in at else None
        elif kind == "give":
            holds[g[1]] = (g[2], i)
        now: dict[str, tuple[str, tuple[int, ...]]] = {}
        for o in set(holds) | set(lies):
            if o in holds:
                a, j = holds[o]
                if a in at:
                    now[o] = (at[a][0], tuple(sorted((j, at[a][1]))))
            elif lies[o] is not None:
                now[o] = lies[o]  # type: ignore[assignment]
        out.append(now)
    return out


def _unanswerable(question: str) -> InputError:
    return InputError(f"the story does not answer {question!r}")


def replay(task: str, story: Sequence[str], question: str) -> tuple[str, list[int]]:
    """Answer `question` from the statements `story` alone; returns (answer, support indices)."""
    check_task(task)
    events = _parse(story)
    q = " ".join(question.split())
    if task == "qa1":
        m = re.fullmatch(r"Where is (\w+)\?", q)
        moves = [(i, g) for i, (k, g) in enumerate(events) if k == "move" and m and g[0] == m.group(1)]
        if not moves:
            raise _unanswerable(question)
        return moves[-1][1][1], [moves[-1][0]]
    if task == "qa2":
        m = re.fullmatch(r"Where is the (\w+)\?", q)
        loc = _object_locations(events)[-1].get(m.group(1)) if m and events else None
        if loc is None:
            raise _unanswerable(question)
        return loc[0], list(loc[1])
    if task == "qa3":
        m = re.fullmatch(r"Where was the (\w+) before the (\w+)\?", q)
        if not m:
            raise _unanswerable(question)
        hist: list[tuple[str, tuple[int, ...]]] = []  # (room, support when the room was first known)
        last_seen: list[tuple[int, ...]] = []  # the latest support of each history entry
        for now in _object_locations(events):
            loc = now.get(m.group(1))
            if loc is None:
                continue
            if hist and hist[-1][0] == loc[0]:
                last_seen[-1] = loc[1]
            else:
                hist.append(loc)
                last_seen.append(loc[1])
        if len(hist) < 2 or hist[-1][0] != m.group(2):
            raise _unanswerable(question)
        return hist[-2][0], sorted(set(last_seen[-2]) | set(hist[-1][1]))
    if task == "qa4":
        rel = []  # (x, dir, y, line): x is dir of y, both ways round
        for i, (k, g) in enumerate(events):
            if k == "rel":
                rel += [(g[0], g[1], g[2], i), (g[2], OPPOSITE[g[1]], g[0], i)]
        m1 = re.fullmatch(r"What is (north|south|east|west) of the (\w+)\?", q)
        m2 = re.fullmatch(r"What is the (\w+) (north|south|east|west) of\?", q)
        if m1:
            hits = [(x, i) for x, d, y, i in rel if d == m1.group(1) and y == m1.group(2)]
        elif m2:
            hits = [(y, i) for x, d, y, i in rel if x == m2.group(1) and d == m2.group(2)]
        else:
            hits = []
        if len(hits) != 1:
            raise _unanswerable(question)
        return hits[0][0], [hits[0][1]]
    gives = [(i, g) for i, (k, g) in enumerate(events) if k == "give"]  # qa5: (giver, object, receiver)
    forms = [  # question regex, which give fields it fixes, which field answers
        (r"What did (\w+) give to (\w+)\?", (0, 2), 1), (r"Who gave the (\w+) to (\w+)\?", (1, 2), 0),
        (r"Who gave the (\w+)\?", (1,), 0), (r"Who received the (\w+)\?", (1,), 2),
        (r"Who did (\w+) give the (\w+) to\?", (0, 1), 2),
    ]
    for rx, fixed, ans in forms:
        m = re.fullmatch(rx, q)
        if m:
            hits = [(i, g) for i, g in gives if all(g[f] == v for f, v in zip(fixed, m.groups()))]
            if hits:
                return hits[-1][1][ans], [hits[-1][0]]
            break
    raise _unanswerable(question)
