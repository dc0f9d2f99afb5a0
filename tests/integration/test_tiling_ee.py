"""Tiles and chunks to EE objects and EE tables back to GeoDataFrames, through the real ee client
and the emulator."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box, shape

from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from airflow_provider_gee.utils.compact_tiles import compact_tile
from airflow_provider_gee.utils.operations import TERMINAL_STATES
from airflow_provider_gee.utils.tiling import (
    chunk_points,
    chunk_to_ee_feature_collection,
    ee_table_to_geodataframe,
    grid_tiles,
    tile_to_ee_geometry,
)
from tests.conftest import TEST_PROJECT
from tests.helpers import admin, wait_for

pytestmark = pytest.mark.integration
BERLIN = (13.2134, 52.4152, 13.3019, 52.4873)


@pytest.fixture
def hook(ee_hook: EarthEngineHook) -> EarthEngineHook:
    return ee_hook


@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
def test_tile_geometry_round_trips_through_ee(hook, compact):
    tile = grid_tiles(BERLIN, 0.01)[5]
    import ee

    given = compact_tile(tile) if compact else tile
    result = hook.compute_value(ee.Feature(tile_to_ee_geometry(given), {"tile_id": tile["tile_id"]}))
    assert result["properties"] == {"tile_id": tile["tile_id"]}
    assert shape(result["geometry"]).equals(shape(tile["geometry"]))


def test_chunk_exported_to_an_asset_reads_back_as_the_same_points(hook, emulator):
    rng = np.random.default_rng(7)
    pts = gpd.GeoDataFrame(
        {"pid": np.arange(300)},
        geometry=gpd.points_from_xy(rng.uniform(BERLIN[0], BERLIN[2], 300), rng.uniform(BERLIN[1], BERLIN[3], 300)),
        crs="EPSG:4326",
    )
    chunk = chunk_points(pts, 120, id_column="pid")[0]
    fc = chunk_to_ee_feature_collection(chunk, pts)
    hook.create_folder("chunks")
    op = hook.start_export(fc, kind="table", destination="asset", request_id="chunk-0", description="chunk",
                           assetId=f"chunks/{chunk['tile_id']}")  # fmt: skip
    wait_for(lambda: hook.get_operation(op["name"])["metadata"]["state"] in TERMINAL_STATES)
    back = ee_table_to_geodataframe(f"chunks/{chunk['tile_id']}", hook)
    assert sorted(back["point_id"].tolist()) == sorted(chunk["point_ids"])
    original = pts.set_index("pid").loc[back["point_id"]]
    assert np.allclose(back.geometry.x, original.geometry.x) and np.allclose(back.geometry.y, original.geometry.y)


def test_grid_over_a_region_read_from_an_ee_table(hook, emulator):
    roi = {"type": "Feature", "geometry": box(*BERLIN).__geo_interface__, "properties": {"name": "roi"}}
    admin(emulator, "assets", {"name": f"projects/{TEST_PROJECT}/assets/roi", "type": "TABLE", "features": [roi]})
    from_ee = grid_tiles(f"projects/{TEST_PROJECT}/assets/roi", 0.01, hook=hook)
    assert [t["tile_id"] for t in from_ee] == [t["tile_id"] for t in grid_tiles(BERLIN, 0.01)]
