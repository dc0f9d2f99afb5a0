"""airflow_provider_gee.preload and the recommended airflow_local_settings.py: every Airflow process
imports what our tasks import once, so the task processes it forks inherit it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from airflow_provider_gee.preload import TASK_MODULES, preload_task_modules
from dev.airflow_stack import LOCAL_SETTINGS, AirflowStack
from tests.helpers import modules_loaded

ROOT = Path(__file__).resolve().parents[2]
HEAVY = "airflow.providers.google.common.hooks.base_google"


def test_airflow_imports_the_local_settings_and_with_them_the_task_modules(tmp_path: Path) -> None:
    without = modules_loaded("airflow", tmp_path / "plain", TASK_MODULES)
    home = tmp_path / "home"
    AirflowStack(home, tmp_path / "dags")  # nothing started: writes the home's config/ only
    assert (home / "config" / "airflow_local_settings.py").read_text() == LOCAL_SETTINGS.read_text()
    with_settings = modules_loaded("airflow", home, TASK_MODULES)
    assert HEAVY not in without
    assert with_settings == sorted(TASK_MODULES)
    # the file hands Airflow no names: nothing of it is taken for a setting or a cluster policy
    code = "import airflow.settings as s; print(hasattr(s, 'preload_task_modules'))"
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr[-2000:]


def test_a_stack_without_local_settings_has_none(tmp_path: Path) -> None:
    AirflowStack(tmp_path / "home", tmp_path / "dags", local_settings=None)
    assert not (tmp_path / "home" / "config").exists()


def test_a_module_that_fails_to_import_is_reported_and_skipped(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="airflow_provider_gee.preload"):
        imported = preload_task_modules(["json", "airflow_provider_gee_no_such_module", "csv"])
    assert imported == ["json", "csv"]
    assert "not preloading airflow_provider_gee_no_such_module" in caplog.text


def test_the_image_installs_the_same_local_settings() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert LOCAL_SETTINGS == ROOT / "docker" / "airflow_local_settings.py"
    # the official image's AIRFLOW_HOME is /opt/airflow: Airflow looks in its config/
    assert (
        "COPY --chown=airflow:0 docker/airflow_local_settings.py /opt/airflow/config/airflow_local_settings.py"
        in dockerfile
    )
