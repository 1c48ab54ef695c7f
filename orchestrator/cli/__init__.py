"""The `greenwise-mc` command: one module per command, the app and its error boundary in
`main`, what the commands share in `common`."""

from orchestrator.cli.main import app, main

__all__ = ["app", "main"]
