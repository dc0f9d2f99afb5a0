"""Every task process parses its DAG file again, so what the operator modules import at module level
is paid on every task start of every tile (an export and a harvest, and the dag-processor's parses).
The geometry and raster stacks cost ~0.3 CPU-s per start, the Google provider's base hook with
googleapiclient and aiohttp about 0.7; only the tasks that use them load them (and the workers
preload the latter for them: airflow_provider_gee.preload, tests/unit/test_preload.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import modules_loaded

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "example_dags").glob("*.py"))
#: loaded only inside the tasks that need them (tiling, stitching, building EE objects, reports,
#: talking to Google: the resumed half of an export needs none of them)
HEAVY = (
    "geopandas", "pandas", "pyproj", "rasterio", "pyogrio", "pyarrow", "ee", "matplotlib", "numpy",
    "airflow.providers.google.common.hooks.base_google", "googleapiclient", "aiohttp",
)  # fmt: skip
OPERATOR_MODULES = (
    "airflow_provider_gee.get_provider_info",
    "airflow_provider_gee.operators.export",
    "airflow_provider_gee.operators.harvest",
    "airflow_provider_gee.operators.tiling",
    "airflow_provider_gee.operators.assets",
    "airflow_provider_gee.operators.stitch",
    "airflow_provider_gee.sensors.task",
)


def heavy_modules_loaded(target: str, tmp_path: Path, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return modules_loaded(target, tmp_path, heavy)


def test_importing_the_package_loads_no_optional_library(tmp_path: Path) -> None:
    # psutil (the dev harness), matplotlib ([report]), rasterio ([stitch]): not even Airflow
    assert heavy_modules_loaded("airflow_provider_gee", tmp_path, (*HEAVY, "psutil", "airflow")) == []


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_parsing_an_example_dag_loads_no_heavy_library(example: Path, tmp_path: Path) -> None:
    assert heavy_modules_loaded(str(example), tmp_path) == []


@pytest.mark.parametrize("module", OPERATOR_MODULES)
def test_operator_modules_load_no_heavy_library(module: str, tmp_path: Path) -> None:
    assert heavy_modules_loaded(module, tmp_path) == []


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    # the check above would pass vacuously if the probe could not see modules being loaded
    assert {"geopandas", "pandas", "pyproj"} <= set(heavy_modules_loaded("airflow_provider_gee.utils.tiling", tmp_path))


def test_the_probe_sees_the_google_clients(tmp_path: Path) -> None:
    loaded = set(heavy_modules_loaded("airflow_provider_gee.hooks.drive", tmp_path))
    assert {"airflow.providers.google.common.hooks.base_google", "googleapiclient", "aiohttp"} <= loaded
