"""A real, local Airflow 3.3 deployment for the demo, the integration tests and the benchmarks.

Starts the processes Airflow 3.3 needs (api-server first, then scheduler, dag-processor,
triggerer) in a private ``AIRFLOW_HOME``: LocalExecutor on SQLite by default, or the deployment we
recommend (:meth:`AirflowStack.celery`: CeleryExecutor on PostgreSQL and Redis with the settings
of ``docker/deployment.env``, several schedulers, triggerers and Celery workers). It creates the
``gee_tasks`` pool with ``include_deferred`` through the REST API, triggers DAG runs and waits for
them, and stops everything it started.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import requests

TERMINAL_RUN_STATES = ("success", "failed")
#: the recommended deployment's local settings (the image copies it to ``$AIRFLOW_HOME/config``)
LOCAL_SETTINGS = Path(__file__).resolve().parents[1] / "docker" / "airflow_local_settings.py"


#: Ports for processes that bind them later (an api-server some seconds after it is chosen, a
#: Cloud Storage stand-in) lie below the kernel's ephemeral range (32768-60999 by default), where
#: no other process's bind to port 0 can take them meanwhile, in a block per pytest-xdist worker
#: (and one for everything outside pytest), starting at a random place in it.
_PORT_BASE, _PORT_BLOCK = 20000, 1500
_port_offsets = itertools.count(random.randrange(_PORT_BLOCK))


def free_port() -> int:
    """A port of 127.0.0.1 that is free now and that no port-0 bind will hand out meanwhile."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    block = int(worker[2:]) % 7 if worker.startswith("gw") and worker[2:].isdigit() else 7
    start = _PORT_BASE + _PORT_BLOCK * block
    for _ in range(_PORT_BLOCK):
        port = start + next(_port_offsets) % _PORT_BLOCK
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken
        return port
    raise RuntimeError(f"No free port in {start}-{start + _PORT_BLOCK - 1}.")


class AirflowStack:
    """Airflow's api-server, scheduler, dag-processor and triggerer on this machine.

    :param home: the ``AIRFLOW_HOME`` (created; holds airflow.db and logs).
    :param dags_folder: where the DAG files are.
    :param env: extra environment for every process (connections, settings).
    :param pools: pools to create: ``{name: slots}``, all with ``include_deferred``.
    :param processes: how many of each process to run (``scheduler``, ``dag-processor``,
        ``triggerer``, and with CeleryExecutor ``worker``); the second and later are named
        ``scheduler-2`` and so on.
    :param local_settings: the ``airflow_local_settings.py`` every process imports (copied to
        ``$AIRFLOW_HOME/config``): the recommended deployment's, which preloads what our tasks
        import; ``None`` for none.
    """

    PROCESSES = ("scheduler", "dag-processor", "triggerer")

    @classmethod
    def celery(
        cls,
        home: str | Path,
        dags_folder: str | Path,
        *,
        database_url: str,
        broker_url: str,
        env: Mapping[str, str] | None = None,
        pools: Mapping[str, int] | None = None,
        schedulers: int = 2,
        triggerers: int = 2,
        workers: int = 2,
        local_settings: Path | None = LOCAL_SETTINGS,
    ) -> AirflowStack:
        """The recommended deployment: ``docker/deployment.env``'s settings, CeleryExecutor with
        ``broker_url`` (Redis), the metadata database and Celery's result backend on
        ``database_url`` (PostgreSQL); only addresses and paths are this host's."""
        from dev.deployment import deployment_settings

        home = Path(home)
        result_backend = "db+" + database_url  # db+postgresql+psycopg2://: SQLAlchemy 2.1 defaults to psycopg 3
        settings = {
            **deployment_settings(),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
            "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH": f"file://{home.resolve()}/xcom",
            **(env or {}),
        }
        counts = {"scheduler": schedulers, "dag-processor": 1, "triggerer": triggerers, "worker": workers}
        return cls(home, dags_folder, env=settings, pools=pools, processes=counts, local_settings=local_settings)

    def __init__(
        self,
        home: str | Path,
        dags_folder: str | Path,
        env: Mapping[str, str] | None = None,
        pools: Mapping[str, int] | None = None,
        processes: Mapping[str, int] | None = None,
        local_settings: Path | None = LOCAL_SETTINGS,
    ) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        if local_settings is not None:
            (self.home / "config").mkdir(exist_ok=True)
            shutil.copyfile(local_settings, self.home / "config" / "airflow_local_settings.py")
        self.dags_folder = Path(dags_folder)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pools = dict(pools if pools is not None else {"gee_tasks": 10})
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home.resolve()}/airflow.db",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # as the deployment we recommend (docker/): operators that can defer, defer
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "NO_PROXY": "127.0.0.1,localhost",
            **(env or {}),
        }
        self.processes = dict(processes or {name: 1 for name in self.PROCESSES})
        self.procs: dict[str, subprocess.Popen] = {}
        #: processes stopped on purpose (:meth:`kill`): not an error while waiting
        self.killed: dict[str, subprocess.Popen] = {}
        self.session = requests.Session()

    # ------------------------------------------------------------------ lifecycle

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run an ``airflow`` CLI command against this deployment; return its output.

        SQLite allows one writer: a CLI command that meets the running scheduler's write lock is
        tried again (six times at most, waiting a little longer each time: a busy scheduler holds
        the lock in bursts).
        """
        attempts = 6
        for attempt in range(attempts):
            done = subprocess.run(
                [sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True, timeout=timeout
            )
            output = done.stderr or done.stdout
            if not done.returncode:
                return done.stdout
            if "database is locked" not in output or attempt == attempts - 1:  # SQLite only
                raise RuntimeError(f"airflow {' '.join(args)} failed: {output[-3000:]}")
            time.sleep(2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _spawn(self, name: str, kind: str | None = None) -> None:
        kind = kind or name
        # a Celery worker is named, so that its tasks show which one ran them
        command = ["celery", "worker", "--celery-hostname", f"{name}@%h"] if kind == "worker" else [kind]
        env = self.env
        if name != kind:  # a second scheduler, triggerer or worker: log servers of its own
            env = {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                   "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}  # fmt: skip
        log = (self.home / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *command], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started (a worker's task processes too), as a
        machine that dies would; it is not restarted."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        self.killed[name] = proc

    def start(self, timeout: float = 180) -> AirflowStack:
        self.airflow("db", "migrate")
        self._spawn("api-server")
        self._wait(lambda: self._ok("/execution/health"), timeout, "the api-server to answer")
        for name, slots in self.pools.items():
            resp = self.session.post(
                f"{self.url}/api/v2/pools",
                json={"name": name, "slots": slots, "description": "EE tasks in flight", "include_deferred": True},
                timeout=30,
            )
            resp.raise_for_status()
        for kind, count in self.processes.items():
            for i in range(1, count + 1):
                self._spawn(kind if i == 1 else f"{kind}-{i}", kind)
        return self

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()

    def __enter__(self) -> AirflowStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ REST helpers

    def _ok(self, path: str) -> bool:
        try:
            return self.session.get(f"{self.url}{path}", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def _wait(
        self, check: Any, timeout: float, what: str, interval: float = 0.5, max_interval: float | None = None
    ) -> Any:
        """Call ``check`` until it returns something true; every ``interval`` seconds, or with
        ``max_interval`` set, ever less often (x1.5 per call) up to that."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"Airflow {', '.join(dead)} exited while waiting for {what}; see {self.home}/*.log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Timed out after {timeout} s waiting for {what}; see {self.home}/*.log")
            time.sleep(interval)
            if max_interval is not None:
                interval = min(interval * 1.5, max_interval)

    def cpu_seconds_by_process(self) -> dict[str, float]:
        """CPU seconds spent so far, by process: each Airflow process's own, and under
        ``"tasks"`` the children of the schedulers and Celery workers (LocalExecutor workers,
        Celery's pool processes, and the task processes they ran).

        A process's time counts once: a live process's own time plus that of the children it reaped
        (task processes that ended); read it twice and subtract to cost a stretch.
        """
        spent: dict[str, float] = {}
        for name, proc in self.procs.items():
            try:
                root = psutil.Process(proc.pid)
                t = root.cpu_times()
                own = t.user + t.system
                rest = t.children_user + t.children_system
                for child in root.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        c = child.cpu_times()
                        rest += c.user + c.system + c.children_user + c.children_system
            except psutil.Error:
                continue
            if name.startswith(("scheduler", "worker")):
                spent[name] = own
                spent["tasks"] = spent.get("tasks", 0.0) + rest
            else:
                spent[name] = own + rest
        return spent

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.session.request(method, f"{self.url}/api/v2/{path}", timeout=30, **kwargs)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        """Wait until the dag-processor has parsed the DAG (and it has no import errors)."""

        def parsed() -> bool:
            errors = self.api("GET", "importErrors").get("import_errors", [])
            if errors:
                raise RuntimeError(f"DAG import errors: {json.dumps(errors)[:2000]}")
            return self._ok(f"/api/v2/dags/{dag_id}")

        self._wait(parsed, timeout, f"DAG {dag_id!r} to be parsed")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.api("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        def ended() -> str | None:
            state = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state if state in TERMINAL_RUN_STATES else None

        # Each GET of a run loads every task instance of it (DagRun.dag_versions): at 2,000 tiles
        # 0.4-0.8 s of the api-server, so a poll each second took most of its time (py-spy, B5).
        # A run is seen ending at most 15 s late.
        return self._wait(ended, timeout, f"run {run_id} of {dag_id}", interval=1.0, max_interval=15.0)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.api(
                "GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100, "offset": len(out)}
            )
            out += page["task_instances"]
            if len(out) >= page["total_entries"] or not page["task_instances"]:
                return out
