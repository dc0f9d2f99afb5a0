"""The supported range, proven on real installs (``dev/compat_check.py``): the built wheel added
with pip to a fresh virtualenv that holds only the oldest supported Airflow (every dependency at
its declared lower bound), and to one with the newest Airflow of our constraints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# the fixture builds two virtualenvs from scratch (about 10 minutes on 2 cores): above the default
# per-test timeout, which counts a fixture's setup against the first test that uses it
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2700)]


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "dev.compat_check", "oldest", "newest"], cwd=ROOT, capture_output=True, text=True,
        timeout=2400,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr[-5000:]
    return {line.get("target", "wheel"): line for line in lines}


def test_the_wheel_holds_only_the_provider(reports: dict[str, dict]) -> None:
    assert reports["wheel"]["wheel_problems"] == []


@pytest.mark.parametrize("target", ["oldest", "newest"])
def test_the_provider_works_in_an_existing_airflow(reports: dict[str, dict], target: str) -> None:
    report = reports.get(target)
    assert report is not None, f"no report for {target}: {reports}"
    assert report["airflow_unchanged"], report
    assert report["provider_listed"], report
    assert report["dag_test"]["state"] == "success", report
    assert len(report["dag_test"]["files"]) >= 2, report
    assert report["failures"] == [], report
    if target == "oldest":
        assert report["airflow"] == "3.1.0"
        assert report["lower_bounds_installed"], report
        # no task state store before 3.3: the retry found its EE task instead of submitting again
        assert report["retry"]["submitted"] == report["retry"]["retry_result"], report
        assert report["retry"]["export_requests"] == 1, report
