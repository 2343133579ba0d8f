"""Test-only: every Python process started with this folder on PYTHONPATH and KSTS_TEST_IMPORT_LOG set appends a line
`<pid> <module> <argv>` to that file whenever it imports one of the top-level modules in KSTS_TEST_WATCHED_IMPORTS.

Python imports `sitecustomize` at start-up, so this reaches the worker processes a `bentoml serve` spawns, which a
test cannot inspect otherwise (tests/test_lean_worker.py).
"""

import os
import sys

LOG = os.environ.get("KSTS_TEST_IMPORT_LOG")
WATCHED = frozenset(filter(None, os.environ.get("KSTS_TEST_WATCHED_IMPORTS", "").split(",")))


class ImportWatcher:
    """A meta-path finder that finds nothing: it only notes the first import of a watched module, then lets the others find it."""

    def find_spec(self, name, path=None, target=None):
        if name in WATCHED:
            with open(LOG, "a", encoding="utf-8") as log:
                log.write(f"{os.getpid()} {name} {' '.join(sys.argv)}\n")
        return None


if LOG and WATCHED:
    sys.meta_path.insert(0, ImportWatcher())
