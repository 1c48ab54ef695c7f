"""The recording rules in manifests/prometheus: valid, unit-tested under promtool, and the same
expressions as the catalog the controller queries."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.config import PrometheusConfig
from orchestrator.monitoring.catalog import CATALOG, RULES_WINDOW

RULES_DIR = Path(__file__).resolve().parents[1] / "manifests" / "prometheus"
RULES = RULES_DIR / "greenwise-rules.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: install Debian's `prometheus` package "
                    "(bash tests/lab/install.sh does)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60,
                          cwd=RULES_DIR)


def test_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass_under_promtool() -> None:
    tests = sorted((RULES_DIR / "tests").glob("*.yaml"))
    assert tests, f"no rule unit tests under {RULES_DIR / 'tests'}"
    done = promtool("test", "rules", *map(str, tests))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_record_the_catalog_word_for_word() -> None:
    rules = {r["record"]: " ".join(r["expr"].split())
             for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    for q in CATALOG:
        assert rules.get(q.record) == q.value(RULES_WINDOW), q.record
    assert PrometheusConfig(url="http://p:9090").rate_window == RULES_WINDOW  # the same default
