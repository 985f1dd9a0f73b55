"""Alert rules under unit test: `promtool test rules` passes, and every alert of monitoring/rules/ has
a case where it fires and one where it does not (monitoring/tests/<rules file stem>_test.yml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from common.settings import PROJECT_ROOT

RULES = sorted((PROJECT_ROOT / "monitoring" / "rules").glob("*.yml"))
TESTS = PROJECT_ROOT / "monitoring" / "tests"


def _alerts(rules_file: Path) -> set[str]:
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def _cases(test_file: Path) -> dict[str, tuple[int, int]]:
    """alert -> (evaluations expecting it to fire, evaluations expecting silence)."""
    out: dict[str, list[int]] = {}
    for test in yaml.safe_load(test_file.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            counts = out.setdefault(case["alertname"], [0, 0])
            counts[0 if case.get("exp_alerts") else 1] += 1
    return {name: (fire, quiet) for name, (fire, quiet) in out.items()}


def test_promtool_unit_tests_of_the_alert_rules_pass():
    tests = sorted(TESTS.glob("*_test.yml"))
    assert tests
    result = subprocess.run(
        ["promtool", "test", "rules", *map(str, tests)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rules_file", RULES, ids=lambda p: p.name)
def test_every_alert_has_a_firing_and_a_quiet_case(rules_file):
    test_file = TESTS / f"{rules_file.stem}_test.yml"
    assert test_file.is_file(), f"{rules_file.name} has no unit tests: write {test_file.name}"
    assert str(Path("..") / "rules" / rules_file.name) in yaml.safe_load(test_file.read_text())["rule_files"]
    cases = _cases(test_file)
    for alert in sorted(_alerts(rules_file)):
        fire, quiet = cases.get(alert, (0, 0))
        assert fire and quiet, f"{alert}: {fire} firing and {quiet} quiet cases in {test_file.name}"
