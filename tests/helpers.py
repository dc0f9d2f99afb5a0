"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from gee_emulator import EmulatorServer


def admin(emu: EmulatorServer, path: str, body: Any = None, method: str = "POST") -> Any:
    """Call one of the emulator's ``/_emulator/`` routes (with its admin token, which they demand
    when the emulator requires authentication)."""
    headers = {"Authorization": f"Bearer {emu.admin_token}"}
    resp = requests.request(method, f"{emu.url}/_emulator/{path}", json=body, headers=headers, timeout=30)
    resp.raise_for_status()
    return resp.json()


def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


def kill_task_process(ti_id: str) -> int:
    """SIGKILL the task process Airflow titled ``airflow worker -- <ti id>``; return its pid (0: none)."""
    for proc in psutil.process_iter(["cmdline"]):
        if f"airflow worker -- {ti_id}" in " ".join(proc.info["cmdline"] or []):
            proc.send_signal(signal.SIGKILL)
            return proc.pid
    return 0


BERLIN = [13.2134, 52.4152, 13.3019, 52.4873]


def export_constant(hook: Any, request_id: str, value: float = 1, **export_args: Any) -> dict[str, Any]:
    """Submit an image export of ``ee.Image.constant(value)`` over the Berlin example region to
    Drive (description = request id, scale 1000 m unless given); return the operation."""
    import ee

    hook.initialize_ee()
    args = {"description": request_id, "region": ee.Geometry.Rectangle(BERLIN), "scale": 1000, **export_args}
    return hook.start_export(ee.Image.constant(value), kind="image", destination="drive", request_id=request_id, **args)


def run_exports(hook: Any, jobs: list[tuple[str, Any, str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Submit ``(tile_id, ee_object, kind, destination, export_args)`` exports at once, wait for all,
    and return each shaped as GeeExportOperator returns it (what DriveHarvestOperator takes)."""
    from airflow_provider_gee.links.drive import drive_folder_id
    from airflow_provider_gee.utils.operations import TERMINAL_STATES, summarize

    hook.initialize_ee()
    ops = [
        hook.start_export(obj, kind=kind, destination=dest, request_id=args["description"], **args)
        for _, obj, kind, dest, args in jobs
    ]

    def all_done() -> list[dict[str, Any]] | None:
        current = [hook.get_operation(op["name"]) for op in ops]
        return current if all(o["metadata"]["state"] in TERMINAL_STATES for o in current) else None

    results = []
    for (tile_id, _, _, dest, args), op in zip(jobs, wait_for(all_done, timeout=120, interval=0.2), strict=True):
        done = summarize(op)
        results.append({
            "tile_id": tile_id, "operation": op["name"], "state": done["state"], "description": args["description"],
            "destination": dest, "destination_uris": done["destination_uris"],
            "file_name_prefix": args.get("fileNamePrefix"), "folder": args.get("folder"), "bucket": args.get("bucket"),
            "drive_folder_id": drive_folder_id(done["destination_uris"]), "create_time": done["create_time"],
        })  # fmt: skip
    return results


#: a DAG whose one task reports which of the modules our tasks import it found already imported
#: when it started (inherited from the worker that forked it); its file imports none of them
PRELOAD_PROBE_DAG = """
import pendulum
from airflow.sdk import DAG, task


@task
def inherited():
    import sys

    from airflow_provider_gee.preload import TASK_MODULES

    return [name for name in TASK_MODULES if name in sys.modules]


with DAG("preload_probe", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    inherited()
"""


def modules_a_task_inherits(stack: Any) -> list[str]:
    """Run :data:`PRELOAD_PROBE_DAG` (written to ``stack``'s DAG folder) once on ``stack``'s
    executor; the modules its task process found imported as it started."""
    (stack.dags_folder / "preload_probe.py").write_text(PRELOAD_PROBE_DAG)
    stack.wait_for_dag("preload_probe", timeout=300)
    run_id = stack.trigger("preload_probe")
    assert stack.wait_for_run("preload_probe", run_id, timeout=300) == "success"
    path = f"dags/preload_probe/dagRuns/{run_id}/taskInstances/inherited/xcomEntries/return_value"
    value = stack.api("GET", path, params={"deserialize": True})["value"]
    return json.loads(value) if isinstance(value, str) else value


_PROBE = """
import importlib, json, runpy, sys
target = sys.argv[1]
if target.endswith(".py"):
    runpy.run_path(target)
else:
    importlib.import_module(target)
print(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))
"""


def modules_loaded(target: str, airflow_home: Path, modules: Sequence[str]) -> list[str]:
    """Which of ``modules`` importing ``target`` (a module, or a ``.py`` file to run) loads, in a
    new interpreter with ``airflow_home`` as ``AIRFLOW_HOME`` (sorted)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(modules=tuple(modules)), target],
        capture_output=True, text=True, timeout=120, cwd=root,
        env={"AIRFLOW_HOME": str(airflow_home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


#: The end of a script that runs an operator as a task process does without a task state store
#: (Airflow < 3.3), once ``op`` and ``context`` are defined: execute, and on a deferral hand the
#: trigger's first event to the method it names; print the result as JSON.
DEFERRAL_DRIVER = """
import asyncio, json
from airflow.exceptions import TaskDeferred

async def first_event(trigger):
    async for event in trigger.run():
        return event.payload

call = lambda: op.execute(context)
while True:
    try:
        print(json.dumps(call()))
        break
    except TaskDeferred as deferred:
        event = asyncio.run(first_event(deferred.trigger))
        call = lambda d=deferred, e=event: getattr(op, d.method_name)(context, event=e, **(d.kwargs or {}))
"""
