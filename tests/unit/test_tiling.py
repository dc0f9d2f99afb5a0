"""Tiling: grid tiles and point chunks over the example region of WORKFLOW.md."""

from __future__ import annotations

import json
import logging
import re
import tracemalloc

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import box, shape

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.operators.tiling import GridTilesOperator, PointChunksOperator
from airflow_provider_gee.utils.tiling import chunk_frame, chunk_points, grid_tiles, read_region

BERLIN = (13.2134, 52.4152, 13.3019, 52.4873)


@pytest.fixture
def region_files(tmp_path):
    """The Berlin rectangle as a GeoPackage in EPSG:4326 and as GeoJSON in EPSG:3035."""
    gdf = gpd.GeoDataFrame({"name": ["roi"]}, geometry=[box(*BERLIN)], crs="EPSG:4326")
    gpkg, geojson = tmp_path / "roi.gpkg", tmp_path / "roi_3035.geojson"
    gdf.to_file(gpkg, layer="roi")
    gdf.to_crs("EPSG:3035").to_file(geojson, driver="GeoJSON")
    return gpkg, geojson


@pytest.fixture
def points(tmp_path):
    rng = np.random.default_rng(42)
    gdf = gpd.GeoDataFrame(
        {"pid": np.arange(1000) + 5000},
        geometry=gpd.points_from_xy(rng.uniform(BERLIN[0], BERLIN[2], 1000), rng.uniform(BERLIN[1], BERLIN[3], 1000)),
        crs="EPSG:4326",
    )
    path = tmp_path / "points.gpkg"
    gdf.to_file(path)
    return path, gdf


def brute_force_cells(bounds, size, ox=-180.0, oy=-90.0):
    """An independent count: every cell of the bounding box tested one by one."""
    region = box(*bounds)
    found = set()
    for r in range(int((bounds[1] - oy) // size) - 1, int((bounds[3] - oy) // size) + 2):
        for c in range(int((bounds[0] - ox) // size) - 1, int((bounds[2] - ox) // size) + 2):
            cell = box(ox + c * size, oy + r * size, ox + (c + 1) * size, oy + (r + 1) * size)
            if cell.intersects(region) and not cell.touches(region):
                found.add((r, c))
    return found


@pytest.mark.parametrize("size", [0.01, 0.005, 0.0137])
def test_grid_matches_an_independent_computation(size):
    tiles = grid_tiles(BERLIN, size)
    assert {(t["row"], t["col"]) for t in tiles} == brute_force_cells(BERLIN, size)
    assert len({t["tile_id"] for t in tiles}) == len(tiles)
    assert [t["tile_id"] for t in tiles] == sorted(t["tile_id"] for t in tiles)


@pytest.mark.parametrize(("bounds", "size", "expected"), [
    ([13.2, 52.4, 13.3, 52.5], 0.05, 4),  # (13.2 + 180) / 0.05 = 3863.9999999999995 in floats
    ([0.3, 0.3, 0.6, 0.9], 0.1, 18),
    ([-71.1, 42.3, -70.9, 42.4], 0.1, 2),
])  # fmt: skip
def test_a_region_on_the_lattice_gets_no_extra_row_or_column(bounds, size, expected):
    tiles = grid_tiles(bounds, size)
    assert len(tiles) == expected
    minx, miny, maxx, maxy = bounds
    for t in tiles:  # every tile overlaps the region by more than float noise
        x0, y0, x1, y1 = t["bbox"]
        assert min(x1, maxx) - max(x0, minx) > size / 2 and min(y1, maxy) - max(y0, miny) > size / 2


def test_clipped_tiles_cover_the_region_without_gaps_or_overlaps(region_files):
    gpkg, _ = region_files
    tiles = grid_tiles(gpkg, 0.01, clip=True)
    geoms = [shape(t["geometry"]) for t in tiles]
    region = box(*BERLIN)
    assert sum(g.area for g in geoms) == pytest.approx(region.area, rel=1e-6)
    assert shapely.union_all(geoms).area == pytest.approx(region.area, rel=1e-6)
    assert shapely.union_all(geoms).symmetric_difference(region).area < 1e-9


def test_ids_are_stable_across_runs_files_and_crs(region_files):
    gpkg, geojson_3035 = region_files
    a = [t["tile_id"] for t in grid_tiles(gpkg, 0.01)]
    b = [t["tile_id"] for t in grid_tiles(geojson_3035, 0.01)]
    c = [t["tile_id"] for t in grid_tiles(BERLIN, 0.01)]
    assert a == b == c
    assert a[0] == "r14241c19321"  # (52.41 + 90) / 0.01, (13.21 + 180) / 0.01
    metric_a = [t["tile_id"] for t in grid_tiles(gpkg, 1000, units="metres")]
    metric_b = [t["tile_id"] for t in grid_tiles(geojson_3035, 1000, units="metres")]
    assert metric_a == metric_b


def test_metric_grid_cells_are_squares_in_the_grid_crs_and_cover_the_region():
    tiles = grid_tiles(BERLIN, 2000, units="metres", crs="EPSG:32633")
    for t in tiles:
        minx, miny, maxx, maxy = t["cell"]
        assert maxx - minx == pytest.approx(2000) and maxy - miny == pytest.approx(2000)
        assert t["grid"]["crs"] == "EPSG:32633"
    union = shapely.union_all([shape(t["geometry"]) for t in tiles])
    assert union.buffer(1e-9).contains(box(*BERLIN))


def test_overlap_grows_tiles_but_keeps_ids():
    plain = grid_tiles(BERLIN, 0.01)
    grown = grid_tiles(BERLIN, 0.01, overlap=0.001)
    assert [t["tile_id"] for t in plain] == [t["tile_id"] for t in grown]
    p, g = plain[0]["bbox"], grown[0]["bbox"]
    assert g == pytest.approx([p[0] - 0.001, p[1] - 0.001, p[2] + 0.001, p[3] + 0.001])


def test_xcom_stays_small_at_ten_thousand_tiles():
    tiles = grid_tiles((5.0, 45.0, 15.0, 55.0), 0.1)
    assert len(tiles) == 10_000
    size = len(json.dumps(tiles))
    assert size / len(tiles) < 400, size


def test_every_point_lands_in_exactly_one_chunk(points):
    path, gdf = points
    chunks = chunk_points(path, 100, id_column="pid")
    ids = [pid for c in chunks for pid in c["point_ids"]]
    assert sorted(ids) == sorted(gdf["pid"].tolist())
    assert all(0 < c["point_count"] <= 100 for c in chunks)
    assert sum(c["point_count"] for c in chunks) == 1000
    cells = [shape(c["geometry"]) for c in chunks]
    for i, a in enumerate(cells):  # quadtree leaves never overlap
        assert all(a.intersection(b).area == 0 for b in cells[i + 1 :])
    for c in chunks:  # the chunk's geometry holds its points, and they can be rebuilt from the file
        frame = chunk_frame(c)
        assert sorted(frame["pid"].tolist()) == sorted(c["point_ids"])
        assert shape(c["geometry"]).buffer(1e-9).contains(shapely.union_all(frame.geometry))
    assert chunk_points(path, 100, id_column="pid") == chunks  # deterministic


def test_chunks_respect_max_extent_and_duplicates(points):
    _, gdf = points
    chunks = chunk_points(gdf, 500, max_extent=0.02)
    assert all(c["cell"][2] - c["cell"][0] <= 0.02 for c in chunks)
    same = gpd.GeoDataFrame(geometry=gpd.points_from_xy([1.0] * 25, [2.0] * 25), crs="EPSG:4326")
    dup_chunks = chunk_points(same, 10)
    assert [c["point_count"] for c in dup_chunks] == [10, 10, 5]
    assert sorted(i for c in dup_chunks for i in c["point_ids"]) == list(range(25))


# ---------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(GeeConfigurationError, match=r"Region file '.*nope\.gpkg' does not exist"):
        grid_tiles(tmp_path / "nope.gpkg", 0.01)


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text("this is not geojson")
    with pytest.raises(GeeConfigurationError, match="cannot be read as vector data"):
        grid_tiles(bad, 0.01)


def test_empty_region(tmp_path):
    empty = gpd.GeoDataFrame({"a": []}, geometry=[], crs="EPSG:4326")
    with pytest.raises(GeeConfigurationError, match="is empty"):
        grid_tiles(empty, 0.01)


def test_missing_crs(tmp_path):
    gdf = gpd.GeoDataFrame(geometry=[box(*BERLIN)])
    with pytest.raises(GeeConfigurationError, match=r"has no CRS.*region_crs="):
        grid_tiles(gdf, 0.01)
    assert len(grid_tiles(gdf, 0.01, region_crs="EPSG:4326")) == 80


def test_invalid_geometry_is_repaired_and_said(caplog):
    bowtie = shapely.Polygon([(13.21, 52.41), (13.30, 52.48), (13.30, 52.41), (13.21, 52.48)])
    assert not bowtie.is_valid
    with caplog.at_level(logging.WARNING, logger="airflow_provider_gee.utils.tiling"):
        geom = read_region(bowtie)
    assert geom.is_valid and geom.area > 0
    assert "repaired it with make_valid" in caplog.text


@pytest.mark.parametrize("size", [0, -1, float("nan"), "ten"])
def test_cell_size_must_be_positive(size):
    with pytest.raises(GeeConfigurationError, match="cell_size must be a positive number"):
        grid_tiles(BERLIN, size)


def test_too_many_tiles():
    expected = len(brute_force_cells(BERLIN, 0.001))
    with pytest.raises(
        GeeConfigurationError, match=r"would have at least [\d,]+ tiles, more than max_tiles=1,000"
    ) as err:
        grid_tiles(BERLIN, 0.001, max_tiles=1000)
    found = int(re.search(r"at least ([\d,]+)", str(err.value))[1].replace(",", ""))
    assert 1000 < found <= expected  # stopped once past the limit, never more than the real count


def test_a_huge_grid_is_refused_before_anything_per_cell_is_built():
    tracemalloc.start()
    try:
        for bbox in ([0, 0, 10, 10], [-50, -50, 20, 20]):  # 1 M and 49 M candidate cells
            with pytest.raises(GeeConfigurationError, match="more than max_tiles=10:"):
                grid_tiles(bbox, 0.01, max_tiles=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # a per-cell index of 49 M cells alone would take 784 MB


def test_layer_choice_in_multi_layer_geopackage(tmp_path):
    path = tmp_path / "multi.gpkg"
    gpd.GeoDataFrame(geometry=[box(*BERLIN)], crs="EPSG:4326").to_file(path, layer="a")
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:4326").to_file(path, layer="b")
    with pytest.raises(GeeConfigurationError, match=r"has 2 layers \(a, b\): pass layer="):
        grid_tiles(path, 0.01)
    with pytest.raises(GeeConfigurationError, match="has no layer 'c'"):
        grid_tiles(path, 0.01, layer="c")
    assert len(grid_tiles(path, 0.01, layer="a")) == 80


def test_other_region_forms():
    assert len(grid_tiles(box(*BERLIN).wkt, 0.01)) == 80
    assert len(grid_tiles(json.dumps(shapely.geometry.mapping(box(*BERLIN))), 0.01)) == 80
    with pytest.raises(GeeConfigurationError, match="min < max"):
        grid_tiles((1, 1, 0, 0), 0.01)
    with pytest.raises(GeeConfigurationError, match="is not a region"):
        grid_tiles(42, 0.01)
    with pytest.raises(GeeConfigurationError, match="needs a projected CRS"):
        grid_tiles(BERLIN, 100, units="metres", crs="EPSG:4326")


def test_point_input_errors(points):
    path, gdf = points
    with pytest.raises(GeeConfigurationError, match="max_points must be a positive integer"):
        chunk_points(path, 0)
    with pytest.raises(GeeConfigurationError, match="id_column 'nope' is not a column"):
        chunk_points(path, 10, id_column="nope")
    dup = gdf.assign(pid=1)
    with pytest.raises(GeeConfigurationError, match="duplicate values"):
        chunk_points(dup, 10, id_column="pid")
    with pytest.raises(GeeConfigurationError, match="single points only"):
        chunk_points(gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:4326"), 10)


# ---------------------------------------------------------------------------- operators


def test_operators_return_tiles_and_check_max_map_length(region_files, points, monkeypatch):
    gpkg, _ = region_files
    op = GridTilesOperator(task_id="tiles", region=str(gpkg), cell_size=0.01)
    assert len(op.execute({})) == 80
    chunks = PointChunksOperator(task_id="chunks", points=str(points[0]), max_points=100).execute({})
    assert sum(c["point_count"] for c in chunks) == 1000
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "50")
    with pytest.raises(GeeConfigurationError, match=r"80 items, more than \[core\] max_map_length = 50"):
        op.execute({})


def test_an_error_names_a_region_file_by_its_whole_path(tmp_path):
    """However deep the directory (a worker's, a CI runner's), the message names the file itself."""
    deep = tmp_path.joinpath(*(["a-rather-long-directory-name"] * 4))
    deep.mkdir(parents=True)
    empty = deep / "empty-region.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(GeeConfigurationError) as refused:
        grid_tiles(str(empty), 0.01)
    assert str(refused.value) == f"Region {str(empty)!r} is empty: it holds no geometry to tile."
