"""Adaptive splitting in real DAG runs (``dag.test()``: real task runner, task state store and
triggers) against the emulator with EE's size limits, through the real ``ee`` client: tiles too big
for EE are exported as quadrants (and quadrants of quadrants), harvested, mosaicked and reported
with every pixel in place, one EE task per part, and the budget of a tile stops its parts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from airflow_provider_gee.utils.tiling import grid_tiles
from tests.helpers_dags import run_dag, task_instances, xcom_values

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

REGION = [13.2134, 52.4152, 13.3019, 52.4873]
# 0.03 degree cells clipped to the region, at 200 m: r4748c06441 is 18 x 18 pixels (324: its
# quadrants, 81 to 100 pixels, are still too big), r4747c06443 7 x 14 (98: the region holds two of
# its quadrants, 42 and 63 pixels) and r4749c06443 7 x 11 (77: fits whole)
TILE_IDS = ["r4748c06441", "r4747c06443", "r4749c06443"]
TILE_PIXELS_LIMIT = 80

DAG = """
import datetime as dt
import pendulum
from airflow.sdk import DAG, task
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.harvest import GeeHarvestOperator
from airflow_provider_gee.operators.stitch import MosaicOperator
from airflow_provider_gee.utils.tiling import grid_tiles

ALL = {t["tile_id"]: t for t in grid_tiles(REGION, 0.03, clip=True)}
TILES = [ALL[tile_id] for tile_id in TILE_IDS][:N_TILES]


def build(tile, context):
    import ee
    return ee.Image.pixelLonLat().toFloat()


with DAG("DAG_ID", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    exports = GeeExportOperator.partial(
        task_id="export", build=build, gcp_conn_id="gee_test", folder="split", scale=200,
        file_name_prefix="{tile_id}", poll_interval=0.2, deferrable=DEFERRABLE, OPTIONS
    ).expand(tile=TILES)
    harvests = GeeHarvestOperator.partial(
        task_id="harvest", gcp_conn_id="gee_test", destination=DEST + "/tiles", wait_timeout=20,
    ).expand(export_result=exports.output)
    MosaicOperator(task_id="mosaic", harvest_results=harvests.output, destination=DEST + "/mosaic")

    @task
    def report(exports, harvests):
        from airflow_provider_gee.utils.report import build_manifest, write_report

        manifest = build_manifest(TILES, list(exports), list(harvests), price_per_eecu_hour=0.4)
        return {**write_report(manifest, TILES, DEST + "/report"), "content": manifest}

    report(exports.output, harvests.output)
"""


def split_dag(dest: Path, n_tiles: int = 3, deferrable: bool = True, **options: object) -> str:
    opts = "".join(f"{k}={v!r}, " for k, v in options.items())
    return (
        DAG.replace("REGION", repr(REGION)).replace("N_TILES", str(n_tiles)).replace("DEST", repr(str(dest)))
        .replace("DEFERRABLE", repr(deferrable)).replace("OPTIONS", opts).replace("TILE_IDS", repr(TILE_IDS))
    )  # fmt: skip


def tiles() -> list[dict]:
    every = {t["tile_id"]: t for t in grid_tiles(REGION, 0.03, clip=True)}
    return [every[tile_id] for tile_id in TILE_IDS]


def descriptions(emulator) -> Counter:
    return Counter(op.metadata["description"] for op in emulator.ee.operations.values())


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "in-worker"])
def test_tiles_too_big_for_ee_are_exported_in_parts_with_every_pixel(gee_conn, emulator, tmp_path, deferrable):
    emulator.config.max_pixels_per_task = TILE_PIXELS_LIMIT
    run, dag_id = run_dag(split_dag(tmp_path, deferrable=deferrable))
    assert run.state == "success", [(t.task_id, t.map_index, t.state) for t in task_instances(dag_id)]
    results = {r["tile_id"]: r for r in xcom_values(dag_id, "export")}

    # refused whole and as quadrants: 16 parts of a 16th; refused whole: 4 quadrants; fits: whole
    deep, shallow, whole = (results[t] for t in TILE_IDS)
    assert deep["split"]["depth"] == 2 and len(deep["split"]["refused"]) == 5 and len(deep["parts"]) == 16
    assert {p["tile_id"] for p in deep["parts"]} == {f"{TILE_IDS[0]}_q{a}_q{b}" for a in range(4) for b in range(4)}
    assert shallow["split"]["depth"] == 1 and len(shallow["split"]["refused"]) == 1
    assert [p["tile_id"] for p in shallow["parts"]] == [f"{TILE_IDS[1]}_q0", f"{TILE_IDS[1]}_q2"]
    assert "parts" not in whole and "split" not in whole
    for result in (deep, shallow):
        assert result["state"] == "SUCCEEDED"
        assert result["split"]["reason"].startswith("Output of image computation is too large (")
        # each part named as its tile id, with the run's token (one token for the run)
        tokens = {p["file_name_prefix"].removeprefix(p["tile_id"] + "_") for p in result["parts"]}
        assert len(tokens) == 1 and len(tokens.pop()) == 8
        assert result["eecu_seconds"] == pytest.approx(sum(p["eecu_seconds"] for p in result["parts"]))

    # one EE task per tile and part, never two: refused ones FAILED with EE's message
    ops = list(emulator.ee.operations.values())
    assert max(descriptions(emulator).values()) == 1
    assert Counter(op.state for op in ops) == {"FAILED": 6, "SUCCEEDED": 19}
    assert all(op.error["message"].startswith("Output of image computation is too large") for op in ops
               if op.state == "FAILED")  # fmt: skip

    # harvested per part, Drive emptied, and the mosaic holds every pixel of the tiles
    harvests = {h["tile_id"]: h for h in xcom_values(dag_id, "harvest")}
    assert sorted(harvests) == sorted(TILE_IDS)
    assert [harvests[t]["file_count"] for t in TILE_IDS] == [16, 2, 1]
    assert [len(harvests[t].get("parts", [])) for t in TILE_IDS] == [16, 2, 0]
    assert emulator.stats()["drive_files"] == 0
    (mosaic,) = xcom_values(dag_id, "mosaic")
    assert mosaic["files"] == 19
    assert_every_pixel_is_there(Path(mosaic["vrt"]), tiles())

    # the report names the split tiles, their parts and what everything cost
    (report,) = xcom_values(dag_id, "report")
    manifest = report["content"]
    assert manifest["split_tiles"] == 2
    records = {r["tile_id"]: r for r in manifest["records"]}
    assert records[TILE_IDS[0]]["split"]["depth"] == 2 and len(records[TILE_IDS[0]]["split"]["parts"]) == 16
    assert records[TILE_IDS[2]]["split"] is None
    assert manifest["cost"]["eecu_seconds"] == pytest.approx(sum(r["eecu_seconds"] for r in results.values()))
    assert json.loads(Path(report["manifest"]).read_text())["split_tiles"] == 2
    assert Path(report["map"]).stat().st_size > 0


def assert_every_pixel_is_there(vrt: Path, tiles: list[dict]) -> None:
    """The export was ee.Image.pixelLonLat(): every pixel whose centre lies in a tile is in the
    mosaic, holding its own centre's lon/lat (nothing missing, nothing shifted at the cuts)."""
    import rasterio
    from shapely import contains_xy
    from shapely.geometry import shape
    from shapely.ops import unary_union

    area = unary_union([shape(t["geometry"]) for t in tiles])
    with rasterio.open(vrt) as src:
        lon, lat = src.read(1), src.read(2)
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        xs, ys = rasterio.transform.xy(src.transform, rows, cols)
        nodata = src.nodata
    xs, ys = np.reshape(xs, lon.shape), np.reshape(ys, lat.shape)
    inside = contains_xy(area, xs, ys)
    valid = ~np.isnan(lon) if nodata is None or np.isnan(nodata) else lon != nodata
    assert inside.sum() > 300  # the three tiles: 324 + 98 + 77 pixels, their centres not all inside
    assert valid[inside].all(), f"{(~valid[inside]).sum()} pixels of the tiles missing from the mosaic"
    assert np.allclose(lon[inside], xs[inside], atol=1e-6) and np.allclose(lat[inside], ys[inside], atol=1e-6)


def test_a_part_still_too_big_at_max_depth_fails_with_ees_message(gee_conn, emulator, tmp_path, capsys):
    emulator.config.max_pixels_per_task = TILE_PIXELS_LIMIT
    run, _ = run_dag(split_dag(tmp_path, n_tiles=1, max_split_depth=1))
    assert run.state == "failed"
    log = capsys.readouterr().out
    assert "Output of image computation is too large (" in log
    assert "still too big after splitting 1 times: use smaller tiles or raise max_split_depth" in log
    # the tile and its first quadrant: nothing more was submitted once the quadrant was refused,
    # and nothing again (a tile too big fails without retries)
    assert Counter(op.state for op in emulator.ee.operations.values()) == {"FAILED": 2}


def test_split_on_error_false_fails_with_ees_message_and_one_ee_task(gee_conn, emulator, tmp_path, capsys):
    emulator.config.max_pixels_per_task = TILE_PIXELS_LIMIT
    run, _ = run_dag(split_dag(tmp_path, n_tiles=1, split_on_error=False))
    assert run.state == "failed"
    assert "Output of image computation is too large (" in capsys.readouterr().out
    assert len(emulator.ee.operations) == 1


def test_a_tiles_budget_stops_its_parts(gee_conn, emulator, tmp_path, capsys):
    emulator.config.max_pixels_per_task = 150  # quadrants pass: one split, 4 parts
    run, dag_id = run_dag(split_dag(tmp_path, n_tiles=1))
    assert run.state == "success"
    (result,) = xcom_values(dag_id, "export")
    part_costs = [p["eecu_seconds"] for p in result["parts"]]
    assert len(part_costs) == 4 and min(part_costs) > 0
    emulator.ee.operations.clear()
    # a budget of one and a half parts: the second part is submitted (one part spent), the third not
    budget = part_costs[0] + part_costs[1] / 2
    run, dag_id = run_dag(split_dag(tmp_path / "budget", n_tiles=1, max_tile_eecu_seconds=budget))
    assert run.state == "failed"
    assert "EECU budget of tile" in capsys.readouterr().out
    states = Counter(op.state for op in emulator.ee.operations.values())
    assert states == {"FAILED": 1, "SUCCEEDED": 2}, states
    assert [ti.try_number for ti in task_instances(dag_id) if ti.task_id == "export"] == [1]  # no retries
