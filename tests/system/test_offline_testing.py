"""The README's "Test your DAGs offline" example, run as a user runs it: its DAG, test and pytest
settings written to a new project directory, then ``pytest`` there (the gee-emulator plugin, found
through its entry point; a temporary AIRFLOW_HOME; no network, no Google account)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


def readme_files() -> dict[str, str]:
    """The section's code blocks, by the path their first line names (``# dags/x.py``)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Test your DAGs offline", 1)[1].split("\n## ", 1)[0]
    files = {}
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", section, flags=re.S):
        first, _, body = block.partition("\n")
        files[first.removeprefix("# ").split(" ")[0]] = block if first.endswith(".py") else body
    return files


def test_the_readme_example_test_passes_in_a_new_project(tmp_path):
    files = readme_files()
    assert set(files) == {"dags/ndvi_tiles.py", "tests/test_ndvi_tiles.py", "pyproject.toml"}
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    # the user's environment, not this test session's Airflow settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GEE_", "STORAGE_EMULATOR"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=840,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
