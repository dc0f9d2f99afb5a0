"""Shared fixtures: an in-process emulator per test and an Airflow connection pointing at it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before anything imports airflow: a private AIRFLOW_HOME and DAG folder, and loopback never
# through a proxy.
_HOME = tempfile.mkdtemp(prefix="gee-test-airflow-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(_HOME, "dags")
os.makedirs(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], exist_ok=True)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
# the ee client's document cache of this session (never the user's ~/.cache)
os.environ["GEE_CLIENT_CACHE_DIR"] = os.path.join(_HOME, "ee-client-cache")
# gcsfs's experimental bucket-layout look-up is a gRPC API that gcp-storage-emulator does not serve
# (each open() would wait for it to time out); Cloud Storage itself is unaffected.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

from gee_emulator import EmulatorConfig, EmulatorServer  # noqa: E402

TEST_PROJECT = "gee-test-project"


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    """A fresh emulator; ``@pytest.mark.emulator(ee_concurrency=.., task_seconds=.., require_auth=..)``
    changes its settings."""
    marker = request.node.get_closest_marker("emulator")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    require_auth = options.pop("require_auth", False)
    # Most tests exercise pooling, harvesting and merging with the generated service account, so
    # their emulator gives it Drive storage (the switch for an older account); tests of identities
    # ask for Google's default, none (@pytest.mark.emulator(service_account_drive_quota_bytes=0)).
    defaults = {
        "project": TEST_PROJECT,
        "ee_concurrency": 2,
        "task_seconds": 0.2,
        "service_account_drive_quota_bytes": None,
    }
    config = EmulatorConfig(**{**defaults, **options})
    with EmulatorServer(config, require_auth=require_auth) as emu:
        yield emu


@pytest.fixture
def gee_conn(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow connection id (from an AIRFLOW_CONN_ variable) for the emulator, with a generated
    service-account key and short retry delays."""
    conn = emulator.connection()
    conn["extra"]["retry_initial_seconds"] = 0.01
    monkeypatch.setenv("AIRFLOW_CONN_GEE_TEST", json.dumps(conn))
    return "gee_test"


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated metadata database (SQLite in the test AIRFLOW_HOME), made once per session."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, timeout=300)
    return _HOME


@pytest.fixture
def gcs_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``gcp-storage-emulator`` on a free port, with a ``landing`` bucket; clients find it through
    STORAGE_EMULATOR_HOST."""
    import socket

    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    storage.Client(project="p", credentials=AnonymousCredentials()).create_bucket("landing")
    yield url
    server.stop()


@pytest.fixture
def user_conn(emulator, monkeypatch, tmp_path: Path) -> str:
    """A connection with no key: the hooks take Application Default Credentials, here a person's
    ``authorized_user`` file, as after ``gcloud auth application-default login``."""
    path = tmp_path / "adc.json"
    path.write_text(json.dumps(emulator.user_credentials("analyst@example.com")))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    conn = emulator.connection(user=True)
    conn["extra"]["retry_initial_seconds"] = 0.01
    monkeypatch.setenv("AIRFLOW_CONN_GEE_USER", json.dumps(conn))
    return "gee_user"


@pytest.fixture
def ee_hook(gee_conn: str):
    """An EarthEngineHook on the emulator, with the process-global ``ee`` client initialized for it."""
    from airflow_provider_gee.hooks.earth_engine import EarthEngineHook

    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    hook.initialize_ee()
    return hook
