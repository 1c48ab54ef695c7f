"""The session-scoped `lab` fixture: three running clusters for any test that asks.

If $GREENWISE_LAB_DIR names a directory with a running lab (`run-lab up --dir DIR`), tests use
it and leave it running; otherwise the fixture brings a lab up in a temporary directory and
stops everything it started at the end of the session. Mark tests that use it with
`@pytest.mark.lab`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.lab import Lab


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs the local continuum lab (three clusters)")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    given = os.environ.get("GREENWISE_LAB_DIR")
    if given and Lab(given).running():
        yield Lab(given)
        return
    lab = Lab(Path(given) if given else tmp_path_factory.mktemp("lab"))
    lab.up(quiet=True)
    try:
        yield lab
    finally:
        lab.down()
