"""The CLI's one error mapper: every failure becomes one line on stderr and one exit code.

QragError subclasses carry their exit code (errors.py); Ctrl-C and SIGTERM are 130; a closed stdout
(`qrag query ... | head -n1`) ends quietly with 141; a write that fails (disk full, read-only file
system, an I/O error) is one line naming the path, exit 1; anything else is an internal error, exit 1,
with the traceback under --debug.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from typing import Any, Callable

import typer
from rich.console import Console
from rich.markup import escape

from .errors import EXIT_RUNTIME, QragError

err = Console(stderr=True)
state = {"debug": False}  # set by the --debug option of the main callback
EXIT_INTERRUPTED = 130
EXIT_SIGPIPE = 141  # what a shell reports for a process ended by SIGPIPE
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO}
DENIED_ERRNOS = {errno.EACCES, errno.EPERM}


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map errors to one line on stderr and an exit code (tracebacks only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = state["debug"]
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # a full device or a closed pipe shows here, not at interpreter exit
            return result
        except typer.Exit:
            raise
        except QragError as exc:
            if debug:
                raise
            err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: nothing was left half-written", soft_wrap=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:  # the reader of stdout has what it wanted
            quiet_stdout()
            raise typer.Exit(EXIT_SIGPIPE) from None
        except OSError as exc:
            if debug or exc.errno not in WRITE_ERRNOS | DENIED_ERRNOS:
                raise
            if exc.filename in (None, "stdout"):
                quiet_stdout()  # else Python's final flush of the same buffer fails again at exit
            where = escape(str(exc.filename or "stdout"))
            what = escape(exc.strerror or str(exc))
            verb = "cannot write" if exc.errno in WRITE_ERRNOS else "cannot open"
            err.print(f"[red]error:[/] {verb} {where}: {what}", soft_wrap=True)
            raise typer.Exit(EXIT_RUNTIME) from None
        except Exception as exc:  # noqa: BLE001 - the one place unexpected errors become a message
            if debug:
                raise
            err.print(f"[red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} (rerun with --debug)",
                      soft_wrap=True)
            raise typer.Exit(EXIT_RUNTIME) from None

    return wrapper


def quiet_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not report the failed write again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test runner's stdout)
        pass


def terminate(signum: int, frame: Any) -> None:
    """SIGTERM handler: handled like Ctrl-C (finished work is kept, nothing is left half-written)."""
    raise KeyboardInterrupt


def write_failed(exc: OSError, path: str) -> OSError:
    """`exc` naming `path` when it names no file (a write to an open file does not)."""
    if exc.filename is None:
        exc.filename = path
    return exc
