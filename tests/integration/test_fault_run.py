"""A full run on the real scheduler through faults and crashes: 10% of EE and Drive requests answered
429/503, two EE tasks failing, a task process SIGKILLed while its EE task runs, and the triggerer
SIGKILLed and started again mid-run. Every tile must end done, with one EE operation per tile and
attempt, every file verified and nothing left on (or deleted early from) Drive."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_gee.utils.tiling import grid_tiles
from dev.airflow_stack import AirflowStack
from tests.helpers import admin, kill_task_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REGION = [13.0, 52.0, 13.4, 52.3]  # 4 x 3 cells of 0.1 degrees

DAG = """
import datetime as dt

import pendulum
from airflow.sdk import DAG, task_group
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.harvest import DriveHarvestOperator
from airflow_provider_gee.operators.tiling import GridTilesOperator

RETRY = {"retries": 4, "retry_delay": dt.timedelta(seconds=2)}


def build(tile, context):
    import ee
    return ee.Image.pixelLonLat().toFloat()


with DAG("fault_run", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    tiles = GridTilesOperator(task_id="tiles", region=REGION, cell_size=0.1, **RETRY)

    @task_group
    def tile_pipeline(tile):
        exported = GeeExportOperator(
            task_id="export", tile=tile, build=build, gcp_conn_id="gee", folder="faults", scale=500,
            file_name_prefix="{tile_id}", pool="gee_tasks", poll_interval=1.0, **RETRY,
        )
        DriveHarvestOperator(task_id="harvest", export_result=exported.output, gcp_conn_id="gee",
                             destination=DEST, **RETRY)

    tile_pipeline.expand(tile=tiles.output)
    # waits in its worker (not deferred): the one to SIGKILL while its EE task runs
    GeeExportOperator(
        task_id="blocking_export", region=[13.5, 52.0, 13.6, 52.1], build=build, gcp_conn_id="gee",
        folder="faults", scale=500, file_name_prefix="blocking", pool="gee_tasks", deferrable=False,
        poll_interval=0.5, **RETRY,
    )
"""


@pytest.mark.emulator(ee_concurrency=3, task_seconds=4.0)
def test_a_run_survives_faults_kills_and_a_triggerer_restart(emulator, tmp_path):
    tiles = grid_tiles(REGION, 0.1)
    assert len(tiles) == 12
    failing = [tiles[1]["tile_id"], tiles[7]["tile_id"]]
    dest = tmp_path / "harvest"
    dags = tmp_path / "dags"
    dags.mkdir()
    source = textwrap.dedent(DAG).replace("REGION", repr(REGION)).replace("DEST", repr(str(dest)))
    (dags / "fault_run.py").write_text(source)
    env = {
        "AIRFLOW_CONN_GEE": json.dumps(emulator.connection()),
        # a killed triggerer's triggers go to the new one after this many seconds without a heartbeat
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
    }
    with AirflowStack(tmp_path / "home", dags, env=env, pools={"gee_tasks": 10}) as stack:
        stack.wait_for_dag("fault_run")
        admin(emulator, "faults", [
            {"kind": "http", "route": "ee.*", "status": 429, "rate": 0.1, "seed": 1},
            {"kind": "http", "route": "drive.*", "status": 503, "rate": 0.1, "seed": 2},
            *({"kind": "task_failure", "match": f"*{tile_id}*", "count": 1, "message": "Injected: worker lost."}
              for tile_id in failing),
        ])  # fmt: skip
        run_id = stack.trigger("fault_run")
        base = f"dags/fault_run/dagRuns/{run_id}/taskInstances"

        def blocking_is_waiting_on_ee() -> str | None:
            ti = stack.api("GET", f"{base}/blocking_export")
            ops = [op for op in emulator.ee.operations.values() if "blocking" in op.metadata["description"]]
            return ti["id"] if ti["state"] == "running" and ops and not ops[0].done else None

        ti_id = stack._wait(blocking_is_waiting_on_ee, 300, "the blocking export to wait on its EE task", 0.2)
        assert kill_task_process(ti_id), "the blocking export's task process was not found"

        def deferred_exports() -> bool:
            tis = stack.api("GET", base, params={"limit": 100})["task_instances"]
            return sum(ti["state"] == "deferred" for ti in tis) >= 3

        stack._wait(deferred_exports, 300, "exports waiting in the triggerer", 0.2)
        os.killpg(stack.procs["triggerer"].pid, signal.SIGKILL)
        stack.procs["triggerer"].wait(timeout=30)
        time.sleep(2)
        stack._spawn("triggerer")
        state = stack.wait_for_run("fault_run", run_id, timeout=900)
        tis = stack.task_instances("fault_run", run_id)

    stats = emulator.stats()
    assert state == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis if t["state"] != "success"]
    assert all(t["state"] == "success" for t in tis)
    fired = {(r["kind"], r["pattern"]): r["fired"] for r in stats["faults"]}
    assert fired[("http", "ee.*")] > 0 and fired[("http", "drive.*")] > 0, fired
    assert all(fired[("task_failure", f"*{t}*")] == 1 for t in failing), fired

    # one EE operation per tile and attempt: a new one only where EE failed the task
    per_description = Counter(op.metadata["description"] for op in emulator.ee.operations.values())
    by_tile = {t["tile_id"]: n for t in tiles for d, n in per_description.items() if t["tile_id"] in d}
    assert by_tile == {t["tile_id"]: 2 if t["tile_id"] in failing else 1 for t in tiles}, per_description
    blocking = [d for d in per_description if "blocking" in d]
    assert len(blocking) == 1 and per_description[blocking[0]] == 1  # the SIGKILLed task re-attached
    killed = next(t for t in tis if t["task_id"] == "blocking_export")
    assert killed["try_number"] >= 2
    states = Counter(op.state for op in emulator.ee.operations.values())
    assert states == {"SUCCEEDED": 13, "FAILED": 2}, states

    # every tile's file in place with the right pixels; Drive emptied by the (verifying) harvests
    files = sorted(p for p in dest.rglob("*.tif"))
    assert [p.stem.rsplit("_", 1)[0] for p in files] == sorted(t["tile_id"] for t in tiles)  # "_<run token>"
    assert stats["drive_files"] == 1  # only the blocking export's file, which nothing harvests
    for path in files:
        assert_pixel_centres_are_lon_lat(path)


def assert_pixel_centres_are_lon_lat(path: Path) -> None:
    """The export was ee.Image.pixelLonLat(): band 1 holds each pixel centre's longitude, band 2 its latitude."""
    import numpy as np
    import rasterio

    with rasterio.open(path) as src:
        lon, lat = src.read(1), src.read(2)
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        xs, ys = rasterio.transform.xy(src.transform, rows, cols)
    xs, ys = np.reshape(xs, lon.shape), np.reshape(ys, lat.shape)
    valid = ~np.isnan(lon)  # pixels whose centre lies outside the tile are masked (nodata)
    assert valid.mean() > 0.8, path
    assert np.allclose(lon[valid], xs[valid], atol=1e-5) and np.allclose(lat[valid], ys[valid], atol=1e-5), path
