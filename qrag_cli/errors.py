"""Typed errors of the qrag library and the exit code each one maps to.

Library code raises these; only the CLI turns them into a one-line message and an exit code.
Exit codes: 0 ok, 1 runtime error, 2 usage error (bad input), 3 index/model incompatible.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INCOMPATIBLE = 3


class QragError(Exception):
    """Base of every error qrag raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code: int = EXIT_RUNTIME


class InputError(QragError):
    """The user's input is unusable: a missing file, an empty corpus, binary data, a bad option."""

    exit_code = EXIT_USAGE


class OutputExistsError(InputError):
    """The output folder exists and the user did not ask to overwrite it."""


class IndexNotFoundError(InputError):
    """The index folder is missing or is not a finished qrag index."""


class IncompatibleError(QragError):
    """An index, a model or a file format that does not fit what it is used with."""

    exit_code = EXIT_INCOMPATIBLE


class ModelMismatchError(IncompatibleError):
    """The model given is not the one the index was built with."""


class NoBm25Error(IncompatibleError):
    """Lexical or hybrid retrieval was asked of an index built without its BM25 index."""


class CorruptIndexError(IncompatibleError):
    """An index file is truncated, edited or of an unknown format version."""


class ModelLoadError(QragError):
    """The embedder could not be loaded (missing files, not installed)."""

    exit_code = EXIT_RUNTIME


class TrainingError(QragError):
    """Training cannot go on (the loss became NaN or infinite); the last good checkpoint is kept."""

    exit_code = EXIT_RUNTIME


class BusyError(QragError):
    """Another process holds the write lock of the folder (two builds into one index at once)."""

    exit_code = EXIT_RUNTIME


class StorageError(QragError):
    """The output cannot be written: disk full, no permission, read-only file system."""

    exit_code = EXIT_RUNTIME


class MissingExtraError(QragError):
    """An option needs an optional dependency that is not installed (`--ray` without `qrag-cli[ray]`)."""

    exit_code = EXIT_RUNTIME


class ClusterError(QragError):
    """The Ray cluster cannot be reached, or its workers failed beyond their retries."""

    exit_code = EXIT_RUNTIME
