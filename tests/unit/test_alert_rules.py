"""The shipped alert rules are valid and fire as their unit tests say (promtool, from Debian's
prometheus package: ``scripts/install_system.sh``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from service.queue.drift import ALERT_THRESHOLD

PROMETHEUS = Path(__file__).resolve().parents[2] / "docker" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: run `bash scripts/install_system.sh` (as root)"
    return subprocess.run([tool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)


def test_the_rules_check_and_their_unit_tests_pass():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_rule_has_a_unit_test_and_the_drift_rule_uses_the_services_threshold():
    rules = {r["alert"]: r for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
             for r in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert tested == set(rules)
    assert rules["TTAInputDrift"]["expr"].endswith(f"> {ALERT_THRESHOLD:g}")
