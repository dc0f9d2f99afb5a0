"""Adaptive splitting's pure parts: which EE errors split a tile, how a tile is cut (on the grid and
the export's pixel lattice, clipped tiles and point chunks), and the plan kept between tries."""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import Point, shape

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.utils.splitting import (
    SIZE_ERRORS,
    SplitPlan,
    is_size_error,
    part_path,
    part_tile,
    split_tile,
)
from airflow_provider_gee.utils.tiling import chunk_points, grid_tiles


@pytest.mark.parametrize("message", [*SIZE_ERRORS, "Image.reduceRegion: Too many pixels in the region. Found 1e9."])
def test_eess_size_errors_split(message):
    assert is_size_error(message)
    assert is_size_error(f"Error: {message.upper()}.")


@pytest.mark.parametrize(
    "message",
    [
        None,
        "",
        "Too many concurrent aggregations.",  # a rate: smaller pieces do not help
        "Export too large: specified 2000000 pixels (max: 1000). Specify higher maxPixels value if ...",
        "Image.load: Image asset 'x' not found.",
    ],
)
def test_other_errors_do_not_split(message):
    assert not is_size_error(message)


def test_a_geographic_grid_tile_splits_into_four_quadrants_that_cover_it_exactly():
    tile = grid_tiles([13.0, 52.0, 13.2, 52.2], 0.1)[0]
    parts = split_tile(tile)
    assert [p["tile_id"] for p in parts] == [f"{tile['tile_id']}_q{q}" for q in range(4)]
    whole = shape(tile["geometry"])
    pieces = [shape(p["geometry"]) for p in parts]
    assert shapely.union_all(pieces).symmetric_difference(whole).area < 1e-12
    assert sum(p.area for p in pieces) == pytest.approx(whole.area)  # no overlap
    w, s, e, n = tile["bbox"]
    assert parts[0]["bbox"] == pytest.approx([w, s, (w + e) / 2, (s + n) / 2])  # 0 is south-west
    assert parts[3]["bbox"] == pytest.approx([(w + e) / 2, (s + n) / 2, e, n])  # 3 is north-east
    assert all(p["row"] == tile["row"] and p["grid"] == tile["grid"] for p in parts)


def test_the_cut_lies_on_the_exports_pixel_lattice():
    # a metric grid (EASE-Grid 2.0) of 1,000 m cells exported at 30 m in the grid's CRS: the
    # middle (500 m) is no multiple of 30, so the cut moves to the nearest lattice line
    tile = grid_tiles([13.0, 52.0, 13.05, 52.03], 1000, units="m")[0]
    x0, y0 = tile["cell"][:2]
    parts = split_tile(tile, snap=(0.0, 30.0, 0.0, 30.0))
    cut_x, cut_y = parts[0]["cell"][2], parts[0]["cell"][3]
    assert cut_x % 30 == pytest.approx(0, abs=1e-6) or cut_x % 30 == pytest.approx(30)
    assert cut_y % 30 == pytest.approx(0, abs=1e-6) or cut_y % 30 == pytest.approx(30)
    assert abs(cut_x - (x0 + 500)) <= 15 and abs(cut_y - (y0 + 500)) <= 15
    assert parts[3]["cell"][:2] == [cut_x, cut_y]
    # the parts' lon/lat geometries still cover the tile's
    whole = shape(tile["geometry"])
    union = shapely.union_all([shape(p["geometry"]) for p in parts])
    assert union.symmetric_difference(whole).area / whole.area < 1e-6


def test_a_tile_within_one_pixel_cannot_be_split():
    # 50 m cells on a lattice of 100 m pixels: no pixel edge lies inside a cell
    tile = grid_tiles([13.0, 52.0, 13.001, 52.001], 50, units="m")[0]
    with pytest.raises(GeeConfigurationError, match="too small to split"):
        split_tile(tile, snap=(0.0, 100.0, 0.0, 100.0))


def test_quadrants_outside_a_clipped_tile_are_left_out():
    # a triangle over one cell: its north-east quadrant holds nothing of the region
    triangle = {"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.099, 52.0], [13.0, 52.099], [13.0, 52.0]]]}
    (tile,) = grid_tiles(triangle, 0.1, clip=True)
    parts = split_tile(tile)
    assert [p["tile_id"][-3:] for p in parts] == ["_q0", "_q1", "_q2"]
    assert sum(shape(p["geometry"]).area for p in parts) == pytest.approx(shape(tile["geometry"]).area)


def test_a_part_of_a_part_is_cut_again_the_same_way():
    tile = grid_tiles([13.0, 52.0, 13.1, 52.1], 0.1)[0]
    deep = split_tile(split_tile(tile)[1])[2]
    assert deep["tile_id"] == f"{tile['tile_id']}_q1_q2"
    assert part_tile(tile, deep["tile_id"]) == deep
    assert part_path(tile["tile_id"], deep["tile_id"]) == [1, 2]
    with pytest.raises(ValueError, match="is not a part of tile"):
        part_path(tile["tile_id"], f"{tile['tile_id']}_x1")


def test_a_point_chunk_splits_its_points_among_the_quadrants(tmp_path):
    points = gpd.GeoDataFrame(
        {"pid": [f"p{i}" for i in range(40)]},
        geometry=[Point(13.0 + (i % 8) * 0.01, 52.0 + (i // 8) * 0.01) for i in range(40)],
        crs="EPSG:4326",
    )
    path = tmp_path / "points.gpkg"
    points.to_file(path)
    (chunk,) = chunk_points(str(path), 100, id_column="pid")
    parts = split_tile(chunk)
    ids = [pid for p in parts for pid in p["point_ids"]]
    assert sorted(ids) == sorted(chunk["point_ids"])  # every point in exactly one part
    assert sum(p["point_count"] for p in parts) == 40
    # a chunk made from a GeoDataFrame cannot read its points back: named, with the fix
    (from_frame,) = chunk_points(points, 100, id_column="pid")
    with pytest.raises(GeeConfigurationError, match="made from a GeoDataFrame"):
        split_tile(from_frame)


def test_the_plan_replaces_a_refused_part_in_place_and_adds_up_the_cost():
    tile = grid_tiles([13.0, 52.0, 13.1, 52.1], 0.1)[0]
    refused = {"operation": "op0", "error": "User memory limit exceeded.", "eecu_seconds": 2.0}
    plan = SplitPlan.start(tile, refused, None)
    assert [p["depth"] for p in plan.parts] == [1, 1, 1, 1] and plan.current() is plan.parts[0]
    first = plan.parts[0]
    first.update(state="SUCCEEDED", result={"eecu_seconds": 1.5})
    second = plan.current()
    plan.replace(second, {"operation": "op2", "error": "Computation timed out.", "eecu_seconds": 0.5},
                 split_tile(part_tile(tile, second["tile_id"])))  # fmt: skip
    assert [p["tile_id"][len(tile["tile_id"]) :] for p in plan.parts] == [
        "_q0", "_q1_q0", "_q1_q1", "_q1_q2", "_q1_q3", "_q2", "_q3",
    ]  # fmt: skip
    assert plan.current()["tile_id"].endswith("_q1_q0") and plan.depth() == 2
    assert plan.eecu_seconds() == pytest.approx(4.0)
    assert SplitPlan(plan.data).parts == plan.parts  # what the task state store keeps is plain data
