"""The deployment we recommend, for real: Airflow on this machine's PostgreSQL (a database of the
test's own, dropped afterwards), CeleryExecutor with Redis as broker (a database index of its own,
flushed afterwards) and PostgreSQL as result backend, two Celery workers, two schedulers, two
triggerers, the api-server and the dag-processor, with the settings of ``docker/deployment.env``.

The tiled export example runs over 60 tiles with the pool of 10 while a Celery worker running tasks,
a scheduler and a triggerer are SIGKILLed. The run must succeed with EE tasks in flight bounded by
the pool (and reaching it: two schedulers share one pool), one EE operation per tile (never a
duplicate), every file verified, and nothing left on Drive.
"""

from __future__ import annotations

import collections
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import psutil
import pytest
import requests

from airflow_provider_gee.preload import TASK_MODULES
from dev.airflow_stack import AirflowStack
from dev.demo import ROOT, emulator_process
from dev.deployment import ensure_services, postgres_database, redis_database
from tests.helpers import modules_a_task_inherits

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]

DAG_ID = "gee_tiled_image_export"
REGION = [13.0, 52.3, 13.6, 52.55]  # 12 x 5 cells of 0.05 degrees
TILES = 60


def running_task_processes(stack: AirflowStack, name: str) -> int:
    """Task processes a Celery worker runs now: children of its pool processes."""
    try:
        worker = psutil.Process(stack.procs[name].pid)
        return sum(len(pool.children()) for pool in worker.children())
    except (psutil.Error, KeyError):
        return 0


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_the_recommended_deployment_survives_a_killed_worker_scheduler_and_triggerer(tmp_path):
    ensure_services()
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "example_dags" / "gee_tiled_image_export.py", dags)
    adc_dir = Path(tempfile.mkdtemp(prefix="gee-adc-"))
    adc = adc_dir / "application_default_credentials.json"
    emulator_args = {"ee-concurrency": 4, "task-seconds": 6}
    events: dict[str, int] = {}
    try:
        with (
            postgres_database() as database_url,
            redis_database() as broker_url,
            emulator_process(emulator_args, adc) as (url, conn),
        ):
            env = {"AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": conn, "GOOGLE_APPLICATION_CREDENTIALS": str(adc)}
            stack = AirflowStack.celery(tmp_path / "airflow", dags, database_url=database_url, broker_url=broker_url,
                                        env=env)  # fmt: skip
            with stack:
                stack.wait_for_dag(DAG_ID, timeout=300)
                conf = {"region": REGION, "cell_size": 0.05, "scale": 100, "output": str(tmp_path / "harvest"),
                        "report_dir": str(tmp_path / "report"), "cog": False}  # fmt: skip
                run_id = stack.trigger(DAG_ID, conf)

                def succeeded() -> int:
                    stats = requests.get(f"{url}/_emulator/stats", timeout=30).json()
                    return stats["operations_by_state"].get("SUCCEEDED", 0)

                def peak() -> int:
                    return requests.get(f"{url}/_emulator/stats", timeout=30).json()["peak_in_flight"]

                # the pool fills (two schedulers share it), then a worker is SIGKILLed while it runs
                # tasks (exports submitting, harvests streaming); the tasks it had taken but not
                # started hold their pool slots until the queued timeout requeues them
                stack._wait(lambda: peak() >= 10, 600, "10 EE tasks in flight", 0.5)
                stack._wait(lambda: running_task_processes(stack, "worker") > 0, 600, "worker to run a task", 0.2)
                events["worker_tasks_when_killed"] = running_task_processes(stack, "worker")
                stack.kill("worker")
                # a scheduler, then a triggerer with deferred exports, later in the run
                stack._wait(lambda: succeeded() >= 15, 900, "15 EE tasks to succeed", 1.0)
                stack.kill("scheduler")
                stack._wait(lambda: succeeded() >= 30, 900, "30 EE tasks to succeed", 1.0)
                stack.kill("triggerer")
                state = stack.wait_for_run(DAG_ID, run_id, timeout=1500)
                tis = stack.task_instances(DAG_ID, run_id)
                inherited = modules_a_task_inherits(stack)
            stats = requests.get(f"{url}/_emulator/stats", timeout=30).json()
            operations = requests.get(f"{url}/_emulator/operations", timeout=60).json()["operations"]
    finally:
        shutil.rmtree(adc_dir, ignore_errors=True)

    retried = sorted({(t["task_id"], t["map_index"]) for t in tis if (t.get("try_number") or 1) > 1})
    print(f"\nCelery deployment: {json.dumps(events)}, peak in flight {stats['peak_in_flight']}, "
          f"{len(operations)} EE operations, task instances retried: {retried}")  # fmt: skip
    failed = [(t["task_id"], t["map_index"], t["state"]) for t in tis if t["state"] != "success"]
    assert state == "success", failed
    exports = [t for t in tis if t["task_id"] == "tile_pipeline.export"]
    assert len(exports) == TILES
    # the pool bounds EE tasks in flight across both schedulers, and the run fills it
    assert stats["peak_in_flight"] == 10, stats["peak_in_flight"]
    # one EE operation per tile, whatever was killed: never a duplicate
    per_tile = collections.Counter(op["description"] for op in operations)
    assert len(per_tile) == TILES and set(per_tile.values()) == {1}, per_tile.most_common(3)
    assert stats["operations_by_state"] == {"SUCCEEDED": TILES}
    # every harvested file verified against its md5, and nothing left on Drive
    manifest = json.loads(next((tmp_path / "report").glob("*/manifest.json")).read_text())
    files = [f for record in manifest["records"] for f in record["files"]]
    assert len(files) == TILES and all(md5(Path(f["path"])) == f["md5"] for f in files)
    assert manifest["by_status"] == {"harvested": TILES}
    assert stats["drive_files"] == 0 and stats["drive_bytes"] == 0
    # Airflow's UI names each mapped export and harvest by its tile (map_index_template), not 0..59
    tile_ids = {record["tile_id"] for record in manifest["records"]}
    assert {t["rendered_map_index"] for t in exports} == tile_ids
    export_names = {t["map_index"]: t["rendered_map_index"] for t in exports}
    harvests = [t for t in tis if t["task_id"] == "tile_pipeline.harvest"]
    assert {t["map_index"]: t["rendered_map_index"] for t in harvests} == export_names
    # the worker died with task processes running (whether a task had passed the point where its
    # death needs a retry, or had just deferred, is the race's; either way nothing was lost above)
    assert events["worker_tasks_when_killed"] > 0
    # a Celery task process starts with what our tasks import (the pool process it is forked from
    # has them from the deployment's airflow_local_settings.py: airflow_provider_gee.preload)
    assert inherited == list(TASK_MODULES)
