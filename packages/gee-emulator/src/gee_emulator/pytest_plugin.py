"""pytest fixtures for testing Earth Engine pipelines offline (registered as the ``gee_emulator``
plugin through the ``pytest11`` entry point; nothing to import).

* ``gee_emulator``: a fresh emulator per test, on a free loopback port, with the synthetic
  catalogue. ``@pytest.mark.gee_emulator(task_seconds=0.1, ee_concurrency=4, ...)`` passes
  :class:`~gee_emulator.EmulatorConfig` fields.
* ``gee_connection``: an Airflow connection for it (``AIRFLOW_CONN_<ID>``, set for the test only),
  with a generated service-account key: the provider's hooks, the ``ee`` client and the Google
  provider's Drive and Cloud Storage hooks reach the emulator as they reach Google. Returns the
  connection id: ``google_cloud_default``, or the ``gee_conn_id`` ini option.
* ``gee_airflow_db``: a migrated Airflow metadata database (once per session) for ``dag.test()``,
  in the Airflow home your tests configure. With the ini option ``gee_isolated_airflow = true``
  the plugin points ``AIRFLOW_HOME`` at a new temporary directory before Airflow is imported, and
  the DAG folder at the project's ``dags/`` (ini option ``gee_dags_folder``), where ``dag.test()``
  finds the DAGs it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from gee_emulator.ee_state import EmulatorConfig
from gee_emulator.server import EmulatorServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "gee_conn_id", "Airflow connection id the gee_connection fixture sets", default="google_cloud_default"
    )
    parser.addini("gee_dags_folder", "the DAG folder of an isolated Airflow, relative to the rootdir", default="dags")
    parser.addini(
        "gee_isolated_airflow",
        "point AIRFLOW_HOME at a new temporary directory for the test session (true/false)",
        default="false",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gee_emulator(**config): settings of the gee_emulator fixture's emulator")
    if str(config.getini("gee_isolated_airflow")).lower() in ("1", "true", "yes"):
        home = tempfile.mkdtemp(prefix="gee-emulator-airflow-")
        config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))
        os.environ["AIRFLOW_HOME"] = home
        os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(config.rootpath / str(config.getini("gee_dags_folder")))
    # the emulator listens on loopback: never through a proxy
    no_proxy = os.environ.get("NO_PROXY", "")
    if "127.0.0.1" not in no_proxy:
        os.environ["NO_PROXY"] = ",".join(filter(None, [no_proxy, "127.0.0.1", "localhost"]))


@pytest.fixture
def gee_emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    """A running emulator (Earth Engine, Drive and OAuth on one loopback port)."""
    marker = request.node.get_closest_marker("gee_emulator")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    require_auth = bool(options.pop("require_auth", False))
    options.setdefault("project", "gee-emulator-test")
    with EmulatorServer(EmulatorConfig(**options), require_auth=require_auth) as emulator:
        yield emulator


@pytest.fixture
def gee_connection(
    gee_emulator: EmulatorServer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The id of an Airflow connection to the emulator (an ``AIRFLOW_CONN_`` variable)."""
    conn_id = str(request.config.getini("gee_conn_id"))
    connection = gee_emulator.connection(conn_id)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
    return conn_id


@pytest.fixture(scope="session")
def gee_airflow_db() -> str:
    """``airflow db migrate`` once per session; returns AIRFLOW_HOME."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stderr[-3000:]}")
    return os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
