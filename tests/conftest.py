from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.lab.lab import Lab
    from tests.test_migrate import Deployed

pytest_plugins = ["tests.lab.fixture"]


@pytest.fixture
def service(lab: Lab, tmp_path: Path) -> Iterator[Deployed]:
    """The ML stand-in deployed on edge/edge0, its route, its DNS name (test_migrate.deploy)."""
    from tests.test_migrate import deploy, teardown

    d = deploy(lab, tmp_path)
    try:
        yield d
    finally:
        teardown(d)
