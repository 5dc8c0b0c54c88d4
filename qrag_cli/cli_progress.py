"""Progress of the long commands (`index`, `bench`, `train`) on stderr: the one renderer they share.

The core reports counts through callbacks (a stage, done, total); this module shows them:

- stderr is a terminal: a rich bar per stage (done/total, rate, ETA, a detail such as tokens/s);
- stderr is not a terminal (redirected to a file, a CI log): plain lines
  ``stage: done/total unit (pct), rate unit/s, ETA 1m05s, detail``, one when a stage starts, one when it
  ends and one every ``QRAG_PROGRESS_INTERVAL`` seconds (default 10) in between, also while a step
  reports nothing (the line then shows the same count, a falling rate and a growing elapsed time);
- `--quiet`: nothing but warnings and errors.

Messages of the `qrag_cli` logger at INFO (one-time work such as the default model's ONNX export) are
printed as info lines (not with --quiet); WARNING and above always.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

INTERVAL_ENV = "QRAG_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0
LOGGER = "qrag_cli"


def interval_from_env() -> float:
    """Seconds between plain progress lines: $QRAG_PROGRESS_INTERVAL (a positive number), else 10."""
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


def duration(seconds: float) -> str:
    """1m05s, 2h03m, 42s."""
    s = int(round(max(seconds, 0.0)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _count(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


@dataclass
class _Stage:
    name: str
    unit: str
    t0: float
    first: float  # the count at the stage's first report: the rate counts the work done since
    done: float = 0.0
    total: float | None = None
    detail: str = ""
    task: Any = None  # the rich task on a terminal
    extra: dict[str, Any] = field(default_factory=dict)
    work: tuple[float, float] | None = None  # (done, total) of the ETA's own measure, when not the count
    work_first: float | None = None

    def rate(self, now: float) -> float:
        return (self.done - self.first) / max(now - self.t0, 1e-9)

    def eta(self, now: float) -> float | None:
        """Seconds left at the rate so far: of the work measure when the stage has one (index: word
        pieces, since batches go from short chunks to long ones), else of the count."""
        if self.work is not None and self.work_first is not None:
            done, total = self.work
            rate = (done - self.work_first) / max(now - self.t0, 1e-9)
            return None if rate <= 0 else max(total - done, 0.0) / rate
        rate = self.rate(now)
        if self.total is None or rate <= 0 or self.done - self.first <= 0:
            return None
        return max(self.total - self.done, 0.0) / rate

    def line(self, now: float) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            text = f"{self.name}: {_count(self.done)}/{_count(self.total)}{unit} ({100 * self.done / self.total:.0f}%)"
        else:
            text = f"{self.name}: {_count(self.done)}{unit}"
        if self.done > self.first:
            text += f", {self.rate(now):,.1f}{unit or ' items'}/s"
        eta = self.eta(now)
        if eta is not None and self.total and self.done < self.total:
            text += f", ETA {duration(eta)}"
        text += f", {duration(now - self.t0)} elapsed"
        return text + (f", {self.detail}" if self.detail else "")


class ProgressView:
    """Renders stage progress on `console` (a terminal bar, else periodic plain lines; nothing if quiet).

    Use as a context manager; call `update(stage, done, total, unit=, detail=)` from the core's callbacks,
    `info(message)` for one-off notes and `warn(message)` for warnings (printed even when quiet)."""

    def __init__(self, console: Console, *, quiet: bool = False, terminal: bool | None = None,
                 interval: float | None = None) -> None:
        self.console, self.quiet = console, quiet
        self.terminal = console.is_terminal if terminal is None else terminal
        self.interval = interval_from_env() if interval is None else interval
        self.stages: dict[str, _Stage] = {}
        self.current: _Stage | None = None
        self.last_line = 0.0
        self.lock = threading.RLock()
        self.bars: Progress | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._handler = _LogHandler(self)

    # --- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> ProgressView:
        logger = logging.getLogger(LOGGER)
        logger.addHandler(self._handler)
        self._level = logger.level
        logger.setLevel(logging.INFO)
        if self.quiet:
            return self
        if self.terminal:
            self.bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                                 TextColumn("{task.fields[count]}"), TextColumn("{task.fields[rate]}"),
                                 TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[detail]}"),
                                 console=self.console)
            self.bars.start()
        else:
            self._beat = threading.Thread(target=self._heartbeat, name="qrag-progress", daemon=True)
            self._beat.start()
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=1.0)
        with self.lock:
            if kind is None and self.current is not None and not self.terminal and not self.quiet:
                self._plain(self._end_line(self.current))
            self.current = None
        if self.bars is not None:
            self.bars.stop()
        logger = logging.getLogger(LOGGER)
        logger.removeHandler(self._handler)
        logger.setLevel(self._level)

    # --- reports -----------------------------------------------------------------------------------
    def update(self, stage: str, done: float, total: float | None = None, *, unit: str = "",
               detail: str = "", work: tuple[float, float] | None = None) -> None:
        """The count of `stage` (a new name starts a stage and ends the previous one); `work` (done,
        total) is what the ETA extrapolates when the count's items differ in cost."""
        if self.quiet:
            return
        with self.lock:
            now = time.monotonic()
            st = self.stages.get(stage)
            if st is None or st is not self.current:  # a stage starts (again: its rate counts from now), the previous ends
                if self.current is not None and not self.terminal:
                    self._plain(self._end_line(self.current))
                task = st.task if st is not None else None
                st = self.stages[stage] = _Stage(stage, unit, now, float(done))
                if self.bars is not None:
                    st.task = task if task is not None else self.bars.add_task(stage, total=total, count="",
                                                                                rate="", eta="", detail="")
            st.done, st.total, st.detail = float(done), (float(total) if total else None), detail
            if work is not None:
                st.work = (float(work[0]), float(work[1]))
                if st.work_first is None:
                    st.work_first = st.work[0]
            started = self.current is not st
            self.current = st
            if self.bars is not None:
                rate = f"{st.rate(now):,.1f} {unit or 'items'}/s" if st.done > st.first else ""
                count = f"{_count(st.done)}/{_count(st.total)} {unit}" if st.total else f"{_count(st.done)} {unit}"
                eta = st.eta(now)
                left = f"ETA {duration(eta)}" if eta is not None and st.total and st.done < st.total else ""
                self.bars.update(st.task, completed=st.done, total=st.total, count=count, rate=rate, eta=left,
                                 detail=detail)
            elif started and not st.done:  # shown after one interval if still running: an early error stays one line
                self.last_line = now
            elif started or now - self.last_line >= self.interval:
                self._plain(st.line(now))

    def info(self, message: str) -> None:
        if not self.quiet:
            with self.lock:
                self.console.print(escape(message), soft_wrap=True, highlight=False)

    def warn(self, message: str) -> None:
        with self.lock:
            self.console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True, highlight=False)

    # --- plain lines -------------------------------------------------------------------------------
    def _end_line(self, st: _Stage) -> str:
        now = time.monotonic()
        unit = f" {st.unit}" if st.unit else ""
        text = f"{st.name}: done, {_count(st.done)}{unit} in {duration(now - st.t0)}"
        if st.done > st.first:
            text += f" ({st.rate(now):,.1f}{unit or ' items'}/s)"
        return text + (f", {st.detail}" if st.detail else "")

    def _plain(self, text: str) -> None:
        self.last_line = time.monotonic()
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _heartbeat(self) -> None:
        """A line every interval even when no report comes (a slow step), so a log never goes silent."""
        while not self._stop.wait(max(min(self.interval, 1.0) / 2, 0.05)):
            with self.lock:
                if self.current is not None and time.monotonic() - self.last_line >= self.interval:
                    self._plain(self.current.line(time.monotonic()))


class _LogHandler(logging.Handler):
    """Routes the `qrag_cli` logger into the view: INFO as info lines, WARNING and above as warnings."""

    def __init__(self, view: ProgressView) -> None:
        super().__init__(logging.INFO)
        self.view = view

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break a command
            return
        if record.levelno >= logging.WARNING:
            self.view.warn(message)
        else:
            self.view.info(message)


# --- the commands' callbacks -----------------------------------------------------------------------
def index_callback(view: ProgressView) -> Any:
    """`build_index`'s progress callback: chunks embedded (of the corpus's, estimated while it is read),
    tokens/s, then the vectors added to the ANN index."""
    start: list[float] = []  # (time, tokens) of the first report: tokens/s counts this run's work

    def on(p: Any) -> None:
        if p.phase == "embed":
            now = time.monotonic()
            if not start:
                start.extend((now, p.tokens))
            rate = (p.tokens - start[1]) / max(now - start[0], 1e-9)
            detail = f"{rate:,.0f} tokens/s" if p.tokens > start[1] else ""
            if p.resumed_chunks:
                detail += f"{', ' if detail else ''}{p.resumed_chunks:,} resumed"
            expected = p.tokens_expected
            view.update("embed", p.chunks, p.chunks_expected or None, unit="chunks", detail=detail,
                        work=None if expected is None else (p.tokens, expected))
        else:
            view.update("ann index", p.ann_done, p.ann_total or None, unit="vectors")
    return on


def train_callback(view: ProgressView) -> Any:
    """`train`'s progress callback (one metrics row per update): updates done/total, updates/s, the loss
    and the last validation figure."""
    last: dict[str, Any] = {}

    def on(row: dict[str, Any]) -> None:
        if "val_coverage" in row:
            last["val"] = row["val_coverage"]
        loss = row.get("loss")
        detail = f"loss {loss:.4f}" if isinstance(loss, float) and loss == loss else "warming up"
        if "val" in last:
            detail += f", val coverage {last['val']:.3f}"
        view.update("train", row.get("update", 0), row.get("steps_total"), unit="updates", detail=detail)
        if "val_coverage" in row and not view.terminal:
            view.info(f"validation at update {row.get('update')}: coverage {row['val_coverage']:.3f}")
    return on
