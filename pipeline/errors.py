"""Errors a user can fix, and the thin wrapper that turns them into a clear message and exit code."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable

from serving.errors import ConfigError, PipelineError, UnscorableInput, describe_errors

__all__ = ["ConfigError", "DataError", "PipelineError", "UnscorableInput", "describe_errors", "run_stage"]


class DataError(PipelineError):
    """A data file is unparseable or a row breaks the schema; the message names file and row."""


STORAGE_FULL = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "a file-size limit was hit",
}


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a PipelineError, or a write refused by a full disk or a size limit, becomes one line
    on stderr and exit status 2 (outputs are written atomically, so the previous ones stay as they were)."""
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        if error.errno not in STORAGE_FULL:
            raise
        where = f" while writing {error.filename}" if error.filename else ""
        print(f"error: {STORAGE_FULL[error.errno]}{where} ({error.strerror}); the previous outputs are kept", file=sys.stderr)
        sys.exit(2)
