"""The layer contract (.importlinter) holds, and an upward import breaks it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parent.parent


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    return subprocess.run([exe, "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_layers_import_downward_only():
    r = lint(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 1 kept, 0 broken." in r.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    for part in ("orchestrator", "strategies", ".importlinter"):
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tmp_path / part)
    model = tmp_path / "orchestrator" / "model.py"
    model.write_text(model.read_text() + "\nfrom orchestrator.control import loop  # noqa\n")
    r = lint(tmp_path)
    assert r.returncode != 0
    assert "orchestrator.model is not allowed to import orchestrator.control" in r.stdout
