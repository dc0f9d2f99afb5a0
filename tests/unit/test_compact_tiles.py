"""Compact tiles: what every mapped task pulls is about half as large, and every tile comes back
exactly as the tiling functions made it."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest

from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.tiling import GridTilesOperator, PointChunksOperator
from airflow_provider_gee.utils.compact_tiles import compact_tile, compact_tiles, expand_tile, expand_tiles, rectangle
from airflow_provider_gee.utils.splitting import split_tile
from airflow_provider_gee.utils.tiling import chunk_points, grid_tiles

BERLIN = (13.2134, 52.4152, 13.3019, 52.4873)
#: a region whose edges cross the cells: clipped tiles at the edge are no rectangles, inside they are
HEXAGON = "POLYGON ((13.20 52.45, 13.25 52.40, 13.32 52.41, 13.34 52.46, 13.28 52.50, 13.22 52.49, 13.20 52.45))"
GRIDS = {
    "degrees": lambda: grid_tiles(BERLIN, 0.01),
    "degrees, overlap": lambda: grid_tiles(BERLIN, 0.01, overlap=0.001),
    "degrees, clipped": lambda: grid_tiles(BERLIN, 0.03, clip=True),
    "degrees, clipped to a polygon": lambda: grid_tiles(HEXAGON, 0.01, clip=True),
    "metres": lambda: grid_tiles(BERLIN, 2000, units="metres"),
    "metres, clipped": lambda: grid_tiles(BERLIN, 2000, units="metres", clip=True),
}


@pytest.fixture
def points(tmp_path):
    rng = np.random.default_rng(7)
    xy = rng.uniform(BERLIN[:2], BERLIN[2:], (500, 2))
    path = tmp_path / "points.gpkg"
    gpd.GeoDataFrame(geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs="EPSG:4326").to_file(path)
    return path


@pytest.mark.parametrize("make", GRIDS.values(), ids=GRIDS.keys())
def test_every_grid_tile_comes_back_exactly_after_json(make):
    tiles = make()
    # as Airflow hands them over: through JSON
    assert expand_tiles(json.loads(json.dumps(compact_tiles(tiles)))) == json.loads(json.dumps(tiles))


def test_chunks_and_split_parts_come_back_exactly(points):
    chunks = chunk_points(str(points), 100)
    assert all("geometry" not in c and "cell" in c for c in compact_tiles(chunks))
    assert expand_tiles(json.loads(json.dumps(compact_tiles(chunks)))) == json.loads(json.dumps(chunks))
    parts = split_tile(grid_tiles(BERLIN, 0.02)[0])
    assert expand_tiles(compact_tiles(parts)) == parts


def test_rectangles_in_degrees_lose_geometry_and_cell_and_halve_the_list():
    tiles = grid_tiles((5.0, 45.0, 7.0, 55.0), 0.1)  # 2,000 tiles, as benchmark B5
    compact = compact_tiles(tiles)
    assert len(tiles) == 2000
    assert all(set(t) == {"tile_id", "row", "col", "bbox", "grid"} for t in compact)
    assert len(json.dumps(compact)) < 0.5 * len(json.dumps(tiles))


def test_clipped_tiles_inside_the_region_lose_their_geometry_at_the_edge_keep_it():
    tiles = grid_tiles(HEXAGON, 0.01, clip=True)
    compact = compact_tiles(tiles)
    inside = [c for c in compact if "geometry" not in c]
    assert 0 < len(inside) < len(tiles)
    by_id = {t["tile_id"]: t for t in tiles}
    assert all(by_id[c["tile_id"]]["geometry"] == rectangle(c["bbox"]) for c in inside)


def test_only_what_can_be_rebuilt_to_the_same_value_is_left_out():
    metric = grid_tiles(BERLIN, 2000, units="metres")[0]  # curved edges in lon/lat, cell in metres
    assert compact_tile(metric) is metric
    tile = grid_tiles(BERLIN, 0.01)[0]
    w, s, e, n = tile["bbox"]
    reordered = {**tile, "geometry": {"type": "Polygon", "coordinates": [[[w, s], [w, n], [e, n], [e, s], [w, s]]]}}
    assert compact_tile(reordered)["geometry"] == reordered["geometry"]  # the same area, not the same value
    assert "cell" not in compact_tile(reordered)
    custom = {"tile_id": "mine", "bbox": [0, 0, 1, 1], "cell": [0, 0, 1, 1], "geometry": rectangle([0, 0, 1, 1])}
    assert compact_tile(custom) == {"tile_id": "mine", "bbox": [0, 0, 1, 1], "cell": [0, 0, 1, 1]}  # no grid: cell kept
    no_cell = {"tile_id": "g", "bbox": [0, 0, 1, 1], "grid": {}, "geometry": rectangle([0, 0, 1, 1])}
    assert compact_tile(no_cell) is no_cell  # a grid tile without a cell would come back with one


def test_expanding_leaves_complete_tiles_and_other_values_alone():
    tile = grid_tiles(BERLIN, 0.01)[0]
    assert expand_tile(tile) is tile
    assert expand_tile(None) is None
    assert expand_tile("{{ ti.xcom_pull('tiles') }}") == "{{ ti.xcom_pull('tiles') }}"
    assert expand_tile({"tile_id": "no bbox"}) == {"tile_id": "no bbox"}
    compact = compact_tile(tile)
    assert expand_tile(compact) is not compact and "geometry" not in compact  # the XCom value is not changed


def test_the_tiling_operators_return_compact_tiles_unless_told(points):
    full = grid_tiles(BERLIN, 0.01)
    compact = GridTilesOperator(task_id="tiles", region=list(BERLIN), cell_size=0.01).execute({})
    assert compact == compact_tiles(full) and "geometry" not in compact[0]
    assert GridTilesOperator(task_id="full", region=list(BERLIN), cell_size=0.01, compact=False).execute({}) == full
    chunks = PointChunksOperator(task_id="chunks", points=str(points), max_points=100).execute({})
    assert expand_tiles(chunks) == chunk_points(str(points), 100)
    assert "geometry" not in chunks[0]


def test_an_export_sees_the_full_tile_however_it_is_set():
    tile = grid_tiles(BERLIN, 0.01)[3]
    seen = []
    op = GeeExportOperator(task_id="export", tile=compact_tile(tile), build=lambda t, c: seen.append(t))
    assert op.tile == tile
    op.tile = compact_tile(grid_tiles(BERLIN, 0.01)[4])  # as template rendering sets it
    assert op.tile["geometry"] == rectangle(op.tile["bbox"]) and op.tile["cell"] == op.tile["bbox"]
    op.build(op.tile, {})
    assert seen == [op.tile]
