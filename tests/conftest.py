"""Shared fixtures: an in-process emulator per test and an Airflow connection pointing at it."""

from __future__ import annotations

import atexit
import http.server
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before anything imports airflow: a private AIRFLOW_HOME and DAG folder, and loopback never
# through a proxy.
_HOME = tempfile.mkdtemp(prefix="gee-test-airflow-")
atexit.register(shutil.rmtree, _HOME, True)  # this process's session home (xdist: each worker's), ~90 MB
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


#: Tests that run whole Airflow deployments or build virtualenvs, in two queues that `make test`
#: runs side by side (pytest-xdist, ``-n 3 --dist loadgroup``, scheduled by
#: :func:`pytest_xdist_make_scheduler` below) while the third worker takes every other test: at most
#: two deployments share the machine's two cores at once. The queues are balanced by the durations
#: measured on 2 cores (seconds, ``--durations``), noted beside each.
HEAVY_QUEUES = {
    "stack-1": (
        "tests/system/test_celery_deployment.py",  # 147
        "tests/integration/test_example_dags.py::test_demo_harness_runs_the_tiled_export_example",  # 138
        "tests/system/test_tile_map.py",  # 96
        "tests/integration/test_example_dags.py::test_monthly_backfill_exports_each_month_once_even_when_rerun",  # 91
        "tests/integration/test_pool_bound.py",  # 91
        "tests/system/test_asset_scheduling.py",  # 49
        "tests/system/test_tile_map_hostile.py",  # 30
        "tests/system/test_offline_testing.py",  # 16
    ),
    "stack-2": (
        "tests/system/test_compat.py",  # 107 (its virtualenvs, module-scoped: one queue)
        "tests/integration/test_example_dags.py::test_point_sampling_example_merges_and_downloads_every_point",  # 99
        "tests/integration/test_split_resume.py",  # 92
        "tests/integration/test_many_runs_scheduler.py",  # 66
        "tests/integration/test_fault_run.py",  # 59
        "tests/integration/test_two_deployments.py",  # 54
        "tests/system/test_third_party_clients.py",  # 24 (its virtualenv, module-scoped: one queue)
    ),
}


def heavy_queue(nodeid: str) -> str | None:
    """The queue of a test (by its id), or ``None`` for a test any worker may run."""
    return next((queue for queue, prefixes in HEAVY_QUEUES.items() if nodeid.startswith(prefixes)), None)


@pytest.hookimpl(tryfirst=True)  # before xdist's own scheduler
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadgroup``: one worker per queue, each running its queue's tests one after the
    other, the other tests spread over the workers. (xdist's own loadgroup reads ``xdist_group``
    marks by rewriting test ids, which pytest 9 no longer lets it do: it would spread them.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class HeavyQueues(LoadScopeScheduling):
        # a scope is a unit of work for one worker; the largest (the queues) are handed out first
        def _split_scope(self, nodeid: str) -> str:
            return heavy_queue(nodeid) or nodeid

    return HeavyQueues(config, log)


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
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from dev.airflow_stack import free_port

    port = free_port()  # gcp-storage-emulator binds it itself (and hangs if it is taken)
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
    path.write_text(json.dumps(emulator.user_credentials("analyst@example.com", client="own")))
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


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        body = b"id,x\n1,2\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def token_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server standing for a URL someone else chose (a metadata server's token, their
    own API): its URL and the paths of the requests that reached it."""
    hits: list[str] = []
    handler = type("Handler", (_Counter,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
