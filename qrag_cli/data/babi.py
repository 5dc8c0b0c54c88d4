"""The bAbI world simulation for tasks qa1-qa5 (docs/benchmarks.md, section 1), and its replay.

World (qa1-qa3): actors John, Mary, Sandra, Daniel; rooms bedroom, kitchen, garden, hallway,
bathroom, office; objects apple, football, milk. qa5 has the actors Bill, Fred, Jeff, Mary. Every
actor and object starts in a hidden random room (as in the released generator), so the first
statement about an actor is a move to a room other than its unstated starting room, and a `get`
needs the actor to be where the object really is.

Tasks (each a story of statements and questions; a *sample* is one question with every statement
before it, earlier questions dropped, its answer and its support as indices into those statements):
- qa1: 15 lines, (move, move, question) five times. `Where is {A}?` asks about the actor of a
  uniformly random statement among the last five (`QA1_RECENT`), so always an actor whose room has
  been stated. This reproduces the real qa1 file, whose support is never more than 7 lines back and
  whose support-distance distribution (1: 45%, 2: 29%, 4: 13%, 5: 9%, 7: 4%) a uniform choice over
  all known actors does not match. Support: that actor's last move.
- qa2: each step picks get, drop or move uniformly and samples a valid clause uniformly (a kind with
  no valid clause is drawn again). After more than 2 statements since the last question, with
  probability 1/2, ask `Where is the {O}?` about a random object whose location can be inferred:
  held by an actor whose room is known (support: the last get of it, the holder's last move) or
  dropped where the dropper was known to be (support: the drop, the dropper's last move before it).
- qa3: the same simulation and cadence. An object's known location history appends its inferred
  room whenever that room differs from the last entry. Ask `Where was the {O} before the {R}?`
  about a random object with at least two entries: R is the latest room, the answer the previous
  one. Support: the lines behind the last two entries, taking for the previous room its latest
  evidence before the object left it and for R the evidence when it arrived; that is three lines
  (the holder's move into the previous room, its get, its move into R) unless the object changed
  hands where the new holder's room was unknown (then the earlier drop and move are needed: four).
- qa4: three distinct rooms in a line (north-south or east-west); the two adjacent relations, in
  random order, each stated either way round (`The {R1} is {dir} of the {R2}.`); one question,
  `What is {dir} of the {R}?` or `What is the {R} {dir} of?`, answered by one statement.
- qa5: move, get and give (`{A} gave/handed/passed the {O} to {B}.`, same room, giver holding it),
  kinds drawn uniformly. After each give 0-5 further move/get clauses, then one of five question
  forms about that give (the latest give, so the latest one matching the question). Support: the give.

Five questions per story except qa4 (one). Templates: see the *_VERBS tuples; get and drop take
" there" with probability 1/2.

`replay` (implemented in `replay.py`) re-derives an answer and its support from the story text
alone (regex parsing, its own state tracking), independently of the generator: the tests check it
against the real qa1 file and against every generated sample.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError

TASKS = ("qa1", "qa2", "qa3", "qa4", "qa5")
ACTORS = ("John", "Mary", "Sandra", "Daniel")
QA5_ACTORS = ("Bill", "Fred", "Jeff", "Mary")
ROOMS = ("bedroom", "kitchen", "garden", "hallway", "bathroom", "office")
OBJECTS = ("apple", "football", "milk")
MOVE_VERBS = ("moved to", "went to", "journeyed to", "travelled to", "went back to")
GET_VERBS = ("got", "grabbed", "picked up", "took")
DROP_VERBS = ("dropped", "put down", "discarded", "left")
GIVE_VERBS = ("gave", "handed", "passed")
AXES = (("north", "south"), ("west", "east"))
QUESTIONS_PER_STORY = 5
QA1_RECENT = 5
QA5_MAX_FILLER = 5
MAX_STATEMENTS = 5000  # safety cap on one story (never reached in practice)


@dataclass(frozen=True)
class Question:
    """A question asked after the first `after` statements of a story."""

    after: int
    text: str
    answer: str
    support: tuple[int, ...]


@dataclass
class Story:
    """One simulated story: its statements and the questions interleaved with them."""

    task: str
    statements: list[str]
    questions: list[Question]

    def samples(self) -> list[BabiSample]:
        """One sample per question: the statements before it, the answer, the support."""
        return [
            BabiSample(self.task, self.statements[: q.after], q.text, q.answer, list(q.support))
            for q in self.questions
        ]

    def babi_lines(self) -> list[str]:
        """The story in the released bAbI text format (`ID text`, questions `ID q \\tanswer\\tids`)."""
        out: list[str] = []
        ids: list[int] = []
        pending = list(self.questions)
        for i in range(len(self.statements) + 1):
            while pending and pending[0].after == i:
                q = pending.pop(0)
                sup = " ".join(str(ids[j]) for j in q.support)
                out.append(f"{len(out) + 1} {q.text} \t{q.answer}\t{sup}")
            if i < len(self.statements):
                ids.append(len(out) + 1)
                out.append(f"{len(out) + 1} {self.statements[i]}")
        return out


@dataclass(frozen=True)
class BabiSample:
    """One question with every story line before it (earlier questions dropped)."""

    task: str
    story: list[str]
    question: str
    answer: str
    support: list[int]


def check_task(task: str) -> None:
    """Raise InputError unless `task` is one of `TASKS`."""
    if task not in TASKS:
        raise InputError(f"unknown bAbI task {task!r}: use one of {', '.join(TASKS)}")


class _World:
    """The true (partly hidden) world state plus what the story has revealed so far."""

    def __init__(self, rng: random.Random, actors: Sequence[str]) -> None:
        self.rng = rng
        self.actors = tuple(actors)
        self.room = {a: rng.choice(ROOMS) for a in self.actors}  # true rooms, hidden at first
        self.obj_room = {o: rng.choice(ROOMS) for o in OBJECTS}  # where an unheld object lies
        self.holder: dict[str, str | None] = {o: None for o in OBJECTS}
        self.statements: list[str] = []
        self.subjects: list[str] = []
        self.last_move: dict[str, int] = {}
        self.got: dict[str, int] = {}
        self.floor: dict[str, tuple[str, tuple[int, ...]] | None] = {o: None for o in OBJECTS}
        self.last_give: tuple[str, str, str, int] | None = None

    def _say(self, subject: str, text: str) -> int:
        self.statements.append(text)
        self.subjects.append(subject)
        return len(self.statements) - 1

    def _there(self) -> str:
        return " there" if self.rng.random() < 0.5 else ""

    def move(self) -> bool:
        a = self.rng.choice(self.actors)
        r = self.rng.choice([x for x in ROOMS if x != self.room[a]])
        self.room[a] = r
        self.last_move[a] = self._say(a, f"{a} {self.rng.choice(MOVE_VERBS)} the {r}.")
        return True

    def get(self) -> bool:
        pairs = [(a, o) for a in self.actors for o in OBJECTS
                 if self.holder[o] is None and self.obj_room[o] == self.room[a]]
        if not pairs:
            return False
        a, o = self.rng.choice(pairs)
        self.holder[o] = a
        self.got[o] = self._say(a, f"{a} {self.rng.choice(GET_VERBS)} the {o}{self._there()}.")
        return True

    def drop(self) -> bool:
        pairs = [(a, o) for o, a in self.holder.items() if a is not None]
        if not pairs:
            return False
        a, o = self.rng.choice(pairs)
        self.holder[o] = None
        self.obj_room[o] = self.room[a]
        i = self._say(a, f"{a} {self.rng.choice(DROP_VERBS)} the {o}{self._there()}.")
        self.floor[o] = (self.room[a], (self.last_move[a], i)) if a in self.last_move else None
        return True

    def give(self) -> bool:
        triples = [(a, o, b) for o, a in self.holder.items() if a is not None
                   for b in self.actors if b != a and self.room[b] == self.room[a]]
        if not triples:
            return False
        a, o, b = self.rng.choice(triples)
        self.holder[o] = b
        i = self._say(a, f"{a} {self.rng.choice(GIVE_VERBS)} the {o} to {b}.")
        self.last_give = (a, o, b, i)
        return True

    def step(self, kinds: Sequence[str]) -> str:
        """Draw a kind uniformly until one has a valid clause; perform it."""
        while True:
            kind = self.rng.choice(kinds)
            if getattr(self, kind)():
                return kind

    def known_location(self, o: str) -> tuple[str, tuple[int, ...]] | None:
        """The object's room as the story so far tells it, with the supporting statements."""
        a = self.holder[o]
        if a is None:
            return self.floor[o]
        if a not in self.last_move:
            return None
        return self.room[a], tuple(sorted((self.got[o], self.last_move[a])))


def _qa1(rng: random.Random) -> tuple[list[str], list[Question]]:
    w = _World(rng, ACTORS)
    qs: list[Question] = []
    for _ in range(QUESTIONS_PER_STORY):
        w.move()
        w.move()
        who = rng.choice(w.subjects[-QA1_RECENT:])
        qs.append(Question(len(w.statements), f"Where is {who}?", w.room[who], (w.last_move[who],)))
    return w.statements, qs


def _qa2_qa3(rng: random.Random, task: str) -> tuple[list[str], list[Question]]:
    w = _World(rng, ACTORS)
    qs: list[Question] = []
    history: dict[str, list[list]] = {o: [] for o in OBJECTS}  # [room, support then, latest support]
    since = 0
    while len(qs) < QUESTIONS_PER_STORY and len(w.statements) < MAX_STATEMENTS:
        w.step(("get", "drop", "move"))
        since += 1
        for o in OBJECTS:
            loc = w.known_location(o)
            if loc is not None:
                if history[o] and history[o][-1][0] == loc[0]:
                    history[o][-1][2] = loc[1]
                else:
                    history[o].append([loc[0], loc[1], loc[1]])
        if since <= 2 or rng.random() >= 0.5:
            continue
        if task == "qa2":
            known = [o for o in OBJECTS if w.known_location(o) is not None]
            if known:
                o = rng.choice(known)
                room, sup = w.known_location(o)  # type: ignore[misc]
                qs.append(Question(len(w.statements), f"Where is the {o}?", room, sup))
                since = 0
        else:
            known = [o for o in OBJECTS if len(history[o]) >= 2]
            if known:
                o = rng.choice(known)
                (prev, _, s1), (last, s2, _) = history[o][-2:]
                sup = tuple(sorted(set(s1) | set(s2)))
                qs.append(Question(len(w.statements), f"Where was the {o} before the {last}?", prev, sup))
                since = 0
    return w.statements, qs


def _qa4(rng: random.Random) -> tuple[list[str], list[Question]]:
    r = rng.sample(ROOMS, 3)
    d, od = rng.choice(AXES)
    pairs = [(r[0], r[1]), (r[1], r[2])]  # (x, y): x is `d` of y
    rng.shuffle(pairs)
    statements = [f"The {x} is {d} of the {y}." if rng.random() < 0.5 else f"The {y} is {od} of the {x}."
                  for x, y in pairs]
    k = rng.randrange(2)
    x, y = pairs[k]
    text, answer = rng.choice([
        (f"What is {d} of the {y}?", x), (f"What is the {x} {d} of?", y),
        (f"What is {od} of the {x}?", y), (f"What is the {y} {od} of?", x),
    ])
    return statements, [Question(2, text, answer, (k,))]


def _qa5(rng: random.Random) -> tuple[list[str], list[Question]]:
    w = _World(rng, QA5_ACTORS)
    qs: list[Question] = []
    while len(qs) < QUESTIONS_PER_STORY and len(w.statements) < MAX_STATEMENTS:
        if w.step(("move", "get", "give")) != "give":
            continue
        a, o, b, i = w.last_give  # type: ignore[misc]
        for _ in range(rng.randint(0, QA5_MAX_FILLER)):
            w.step(("move", "get"))
        text, answer = rng.choice([
            (f"What did {a} give to {b}?", o), (f"Who gave the {o}?", a),
            (f"Who gave the {o} to {b}?", a), (f"Who received the {o}?", b),
            (f"Who did {a} give the {o} to?", b),
        ])
        qs.append(Question(len(w.statements), text, answer, (i,)))
    return w.statements, qs


def simulate_story(task: str, rng: random.Random) -> Story:
    """One story of `task`, drawn with `rng`."""
    check_task(task)
    if task == "qa1":
        st, qs = _qa1(rng)
    elif task in ("qa2", "qa3"):
        st, qs = _qa2_qa3(rng, task)
    elif task == "qa4":
        st, qs = _qa4(rng)
    else:
        st, qs = _qa5(rng)
    return Story(task, st, qs)


def generate_story(task: str, rng: random.Random) -> list[BabiSample]:
    """The samples (one per question) of one story of `task`."""
    return simulate_story(task, rng).samples()


def generate_samples(task: str, n: int, seed: int | str) -> list[BabiSample]:
    """`n` samples of `task` from consecutive stories of `random.Random(seed)`."""
    check_task(task)
    if n < 0:
        raise InputError("the number of samples must be >= 0")
    rng = random.Random(seed)
    out: list[BabiSample] = []
    while len(out) < n:
        out.extend(generate_story(task, rng))
    return out[:n]


def replay(task: str, story: Sequence[str], question: str) -> tuple[str, list[int]]:
    """Answer `question` from the statements `story` alone: (answer, support indices).

    The implementation (`qrag_cli.data.replay`) parses the text back with its own regexes and state
    tracking and shares no code with the simulation above.
    """
    from .replay import replay as _replay

    return _replay(task, story, question)
