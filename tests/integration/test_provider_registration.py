"""Airflow discovers the provider through its entry point, as ``airflow providers list`` does."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_airflow_providers_list_shows_the_provider():
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"package_name": "airflow-provider-gee"' in result.stdout


def test_every_module_named_in_provider_info_imports():
    import importlib

    from airflow_provider_gee.get_provider_info import get_provider_info

    info = get_provider_info()
    modules = [
        m
        for section in ("hooks", "operators", "sensors", "triggers")
        for entry in info.get(section, [])
        for m in entry["python-modules"]
    ]
    assert modules
    for module in modules:
        importlib.import_module(module)
    for link in info.get("extra-links", []):
        module, _, cls = link.rpartition(".")
        assert hasattr(importlib.import_module(module), cls)
