"""Errors a user can fix, and the thin wrapper that turns them into a clear message and exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem with the user's input (params, data files, model folder): reported, not traced."""


class ConfigError(PipelineError):
    """params.yaml is missing a key, has an unknown key, or a value of the wrong type or range."""


class DataError(PipelineError):
    """A data file is unparseable or a row breaks the schema; the message names file and row."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a PipelineError becomes one line on stderr and exit status 2."""
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
