"""The CLI, killed by SIGKILL right after a migration step is journaled done: a crash there.

    python -m tests.crash_after STEP migrate SERVICE --to CLUSTER ...

A test-only entry: production code has no failpoint of its own, only the `Failpoints` hooks
this installs.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

from orchestrator.migration.executor import Failpoints, Migrator


class CrashAfter(Failpoints):
    def __init__(self, step: str) -> None:
        self.step = step

    def done(self, step: str) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    Migrator.failpoints = CrashAfter(sys.argv[1])
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    runpy.run_module("orchestrator", run_name="__main__")
