"""Optional reader: an OpenAI-compatible chat-completions server answers from the kept chunks.

``POST {url}/v1/chat/completions`` with ``{"model", "messages", "temperature": 0, "max_tokens"}``;
the user message holds the kept chunks sorted by their position in the context, then the question.
Standard library only (`urllib.request`). A reader that is down, times out, answers with an HTTP
error, non-JSON or JSON without ``choices[0].message.content`` never stops a benchmark: the call
counts as a failure (the first errors are kept for the report) and scores nothing. After
`MAX_CONSECUTIVE_FAILURES` failures in a row the reader is considered down and later calls fail at
once (counted the same way) instead of each waiting for the timeout.

Scoring (`answer_accuracy`): BabiLong's rule for bAbI tasks, RULER's string match all otherwise.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from .metrics import babilong_answer_correct, string_match_all, task_labels

SYSTEM_PROMPT = ("You answer questions about a text using only the facts given. "
                 "Answer with one short sentence.")
MAX_CONSECUTIVE_FAILURES = 3
MAX_ERRORS_KEPT = 5


def build_messages(question: str, chunks: Sequence[str]) -> list[dict[str, str]]:
    """The chat messages: a short instruction, then the chunks (already in context order) and the question."""
    context = "\n".join(chunks)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}\nAnswer:"},
    ]


def endpoint(url: str) -> str:
    """The chat-completions URL of a server base URL (a trailing ``/v1`` is accepted)."""
    base = url.rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return base + "/v1/chat/completions"


class Reader:
    """Calls the reader server; counts calls and failures."""

    def __init__(self, url: str, model: str = "", timeout: float = 30.0, max_tokens: int = 64) -> None:
        self.url = endpoint(url)
        self.model = model or "default"
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.calls = 0
        self.failures = 0
        self.errors: list[str] = []
        self._in_a_row = 0

    @property
    def down(self) -> bool:
        return self._in_a_row >= MAX_CONSECUTIVE_FAILURES

    def _fail(self, why: str) -> None:
        self.failures += 1
        self._in_a_row += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(why)

    def answer(self, question: str, chunks: Sequence[str]) -> str | None:
        """The reader's answer text, or None when the call failed (the failure is recorded)."""
        self.calls += 1
        if self.down:
            self._fail(f"skipped: the reader failed {MAX_CONSECUTIVE_FAILURES} times in a row")
            return None
        body = json.dumps({"model": self.model, "messages": build_messages(question, chunks),
                           "temperature": 0, "max_tokens": self.max_tokens}).encode("utf-8")
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read(1 << 22)
        except urllib.error.HTTPError as exc:
            self._fail(f"HTTP {exc.code} from {self.url}")
            return None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            self._fail(f"cannot reach {self.url}: {reason}")
            return None
        try:
            data: Any = json.loads(raw.decode("utf-8"))
            content = data["choices"][0]["message"]["content"]
        except (ValueError, UnicodeDecodeError):
            self._fail(f"{self.url} answered non-JSON: {raw[:80]!r}")
            return None
        except (KeyError, IndexError, TypeError):
            self._fail(f"{self.url} answered JSON without choices[0].message.content")
            return None
        if not isinstance(content, str):
            self._fail(f"{self.url} answered a non-text message content")
            return None
        self._in_a_row = 0
        return content

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "model": self.model, "timeout_s": self.timeout, "calls": self.calls,
                "failures": self.failures, "errors": list(self.errors)}


def answer_score(output: str, sample: dict[str, Any]) -> float:
    """1/0 by BabiLong's rule for a bAbI task; RULER's string match all (a fraction) otherwise."""
    task = sample.get("task", "")
    labels = task_labels(task)
    if labels:
        return 1.0 if babilong_answer_correct(output, sample["answer"], labels, sample.get("question", "")) else 0.0
    return string_match_all(output, sample.get("answers") or [sample["answer"]])


def answer_accuracy(outputs: Sequence[str | None], samples: Sequence[dict[str, Any]]) -> float | None:
    """Mean answer score over the samples the reader answered (None when it answered none)."""
    scores = [answer_score(o, s) for o, s in zip(outputs, samples) if o is not None]
    return sum(scores) / len(scores) if scores else None
