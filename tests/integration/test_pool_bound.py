"""The acceptance test of the export machinery: the real api-server, scheduler, dag-processor and
triggerer, a real ``gee_tasks`` pool of 10 slots with include_deferred, 30 mapped tiles against an
emulated EE that runs 3 tasks at once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

from airflow_provider_gee.preload import TASK_MODULES
from dev.airflow_stack import AirflowStack
from tests.helpers import modules_a_task_inherits

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = """
import datetime as dt

import pendulum
from airflow.sdk import DAG
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.tiling import GridTilesOperator


def build(tile, context):
    import ee
    return ee.Image.pixelLonLat().select("longitude")


with DAG("pool_bound", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    tiles = GridTilesOperator(task_id="tiles", region=[13.0, 52.0, 13.6, 52.5], cell_size=0.1)
    GeeExportOperator.partial(
        task_id="export", build=build, gcp_conn_id="gee", folder="pool", scale=2000, pool="gee_tasks",
        poll_interval=1.0, retry_delay=dt.timedelta(seconds=2), end_from_trigger=True,
    ).expand(tile=tiles.output)
"""

LINK_KEYS = ("gee_task_link", "gee_drive_folder_link", "gee_asset_link")


def link_requests(api_log: str) -> tuple[int, int, int]:
    """(XCom GETs, XCom POSTs of link keys, task runs started) in the api-server's access log."""
    keys = "|".join(LINK_KEYS)
    gets = len(re.findall(rf"method=GET path=/execution/xcoms/\S+/({keys}) ", api_log))
    posts = len(re.findall(rf"method=POST path=/execution/xcoms/\S+/({keys}) ", api_log))
    runs = len(re.findall(r"method=PATCH path=/execution/task-instances/\S+/run query=\S* status_code=200", api_log))
    return gets, posts, runs


EXPORT_ROUTES = ("ee.image.export", "ee.table.export", "ee.operations.", "ee.assets.", "ee.projects.listAssets")


# EE's tasks last long enough (3 at once, 3 s each) that Airflow fills the pool even while other
# tests load the machine: the peak proves the bound is reached, not merely respected
@pytest.mark.emulator(ee_concurrency=3, task_seconds=3.0)
def test_thirty_tiles_never_exceed_the_pool_and_fill_it(emulator, tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "pool_bound.py").write_text(textwrap.dedent(DAG))
    env = {"AIRFLOW_CONN_GEE": json.dumps(emulator.connection())}
    with AirflowStack(tmp_path / "home", dags, env=env, pools={"gee_tasks": 10}) as stack:
        stack.wait_for_dag("pool_bound")
        run_id = stack.trigger("pool_bound")

        links_path = f"dags/pool_bound/dagRuns/{run_id}/taskInstances/export/links"

        def deferred_export() -> tuple[dict, dict] | None:
            # the last of several deferred exports waits longest: EE runs 3 at once, 2 s each. Read
            # again while its links are not there: Airflow 3.3.2 can retry a deferred task (a stale
            # executor event, see README's limits), and a retry's XComs start empty
            tis = stack.task_instances("pool_bound", run_id)
            waiting = [ti for ti in tis if ti["task_id"] == "export" and ti["state"] == "deferred"]
            if len(waiting) < 4:
                return None
            last = max(waiting, key=lambda ti: ti["map_index"])
            links = stack.api("GET", links_path, params={"map_index": last["map_index"]})["extra_links"]
            # Airflow's task runner writes the links one after the other after the task deferred:
            # read again until the Drive folder's is written too
            written = links["Earth Engine task"] and links["Drive folder"]
            return (last, links) if written else None

        waiting, links = stack._wait(deferred_export, 300, "exports to defer, showing their links")
        state = stack.wait_for_run("pool_bound", run_id, timeout=600)
        tis = stack.task_instances("pool_bound", run_id)
        final_links = stack.api("GET", links_path, params={"map_index": waiting["map_index"]})["extra_links"]
        tiles = stack.api("GET", f"dags/pool_bound/dagRuns/{run_id}/taskInstances/tiles/xcomEntries/return_value",
                          params={"deserialize": True})["value"]  # fmt: skip
        gets, posts, runs = link_requests((stack.home / "api-server.log").read_text())
        inherited = modules_a_task_inherits(stack)
    # a task process starts with what our tasks import: the LocalExecutor's worker, forked from the
    # scheduler, has it from the recommended airflow_local_settings.py (airflow_provider_gee.preload)
    assert inherited == list(TASK_MODULES)
    # the links show while the export waits on EE
    assert re.fullmatch(rf"{emulator.url}/v1/projects/[^/]+/operations/\S+", links["Earth Engine task"]), links
    assert links["Drive folder"] == "https://drive.google.com/drive/search?q=pool"
    assert links["Earth Engine asset"] is None
    assert final_links["Earth Engine task"] == links["Earth Engine task"]
    # an export that ends in the triggerer keeps the folder search: the triggerer writes only the
    # return value (a link key written by it and by the task runner at once kills Airflow's triggerer)
    assert final_links["Drive folder"] == links["Drive folder"], final_links
    # each link is written once per task run, by Airflow's task runner; only a resumed half reads
    # its EE task link back (the Google provider's base link: ~6 reads and ~4.5 writes per run)
    print(f"\nlink XCom requests: {gets} reads, {posts} writes, {runs} task runs")
    assert posts <= 3 * runs and gets <= runs
    stats = emulator.stats()
    exports = [ti for ti in tis if ti["task_id"] == "export"]
    assert state == "success", [(ti["task_id"], ti["map_index"], ti["state"]) for ti in tis]
    assert len(exports) == 30 and all(ti["state"] == "success" for ti in exports)
    # each mapped export is named by its tile in Airflow's UI (the default map_index_template)
    tiles = json.loads(tiles) if isinstance(tiles, str) else tiles
    assert {ti["map_index"]: ti["rendered_map_index"] for ti in exports} == {
        i: tile["tile_id"] for i, tile in enumerate(tiles)
    }
    assert stats["operations"] == 30 and stats["operations_by_state"] == {"SUCCEEDED": 30}  # no duplicates
    assert stats["peak_in_flight"] == 10  # the pool bounds EE's queue, and fills it
    retried = [ti["map_index"] for ti in exports if ti["try_number"] > 1]
    print(f"\ntiles that needed a retry: {retried}")
    # a successful export ends in the triggerer (end_from_trigger=True): each try of an export started
    # on a worker once, never a second time to resume (the tiling task is the one other run)
    tries = sum(ti["try_number"] for ti in exports)
    assert runs == 1 + tries, (runs, tries)
    ee_requests = sum(n for route, n in stats["requests"].items() if route.startswith(EXPORT_ROUTES))
    per_export = ee_requests / 30
    print(f"\nEE requests per completed export: {per_export:.2f} ({json.dumps(stats['requests'])})")
    assert per_export <= 3


@pytest.mark.emulator(ee_concurrency=3, task_seconds=0.5)
def test_a_missing_pool_is_reported_at_dag_check(emulator, tmp_path):
    """Without the pool, ``gee-dag-check`` names it and the fix; the scheduler only logs why the
    exports wait, and no EE task starts. A pool without include_deferred is named too."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "pool_bound.py").write_text(textwrap.dedent(DAG).replace("cell_size=0.1", "cell_size=0.3"))
    env = {"AIRFLOW_CONN_GEE": json.dumps(emulator.connection())}
    with AirflowStack(tmp_path / "home", dags, env=env, pools={}) as stack:
        stack.wait_for_dag("pool_bound")

        def dag_check() -> tuple[int, str]:
            done = subprocess.run(
                [sys.executable, "-m", "airflow_provider_gee.utils.dag_check", str(dags)], env=stack.env,
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            return done.returncode, done.stdout.strip().splitlines()[-1]  # the verdict; Airflow logs before it

        assert dag_check() == (
            1,
            "Task 'export' of DAG 'pool_bound' uses pool 'gee_tasks', which does not exist: the task would never be "
            'scheduled. Create it: airflow pools set gee_tasks 10 "EE tasks in flight" --include-deferred',
        )
        run_id = stack.trigger("pool_bound")

        def export_waits() -> bool:
            tis = stack.task_instances("pool_bound", run_id)
            return any(ti["task_id"] == "export" and ti["state"] == "scheduled" for ti in tis)

        stack._wait(export_waits, 120, "the exports to be created")
        log = stack.home / "scheduler.log"
        stack._wait(lambda: "Tasks using non-existent pool 'gee_tasks' will not be scheduled" in log.read_text(), 60,
                    "the scheduler's message")  # fmt: skip
        assert emulator.stats()["export_requests"] == 0

        stack.api("POST", "pools", json={"name": "gee_tasks", "slots": 10, "include_deferred": False})
        code, out = dag_check()
        assert code == 1 and "which does not count deferred tasks" in out and "--include-deferred" in out
        stack.api("PATCH", "pools/gee_tasks", json={"name": "gee_tasks", "slots": 10, "include_deferred": True})
        code, out = dag_check()
        assert (code, out) == (
            0,
            f"OK: 1 DAGs in {dags}; every pool they use exists and counts deferred EE tasks, and no export gives two "
            "runs in flight the same names.",
        )
