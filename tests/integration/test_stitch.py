"""Stitching emulator-produced tiles: exports run on the emulator with the real ``ee`` client, are
harvested by DriveHarvestOperator, and MosaicOperator / TableStitchOperator put them together."""

from __future__ import annotations

import tempfile

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely

from airflow_provider_gee.exceptions import GeeConfigurationError
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from airflow_provider_gee.operators.harvest import DriveHarvestOperator
from airflow_provider_gee.operators.stitch import MosaicOperator, TableStitchOperator
from airflow_provider_gee.utils.tiling import (
    chunk_points,
    chunk_to_ee_feature_collection,
    grid_tiles,
    tile_to_ee_geometry,
)
from tests.helpers import run_exports

pytestmark = pytest.mark.integration

#: 6 x 5 cells of 0.02 degrees
REGION = [13.1005, 52.3605, 13.2195, 52.4595]
SCALE = 8  # metres: 278 x 278 pixels per tile, so fileDimensions 256 splits one tile into 4 files


def harvest_all(gee_conn: str, results: list[dict], destination) -> list[dict]:
    return [
        DriveHarvestOperator(
            task_id="harvest", export_result=r, gcp_conn_id=gee_conn, destination=str(destination)
        ).execute({})
        for r in results
    ]


def export_tiles(hook: EarthEngineHook, tiles: list[dict], image_for, **args) -> list[dict]:
    jobs = []
    for i, tile in enumerate(tiles):
        export_args = {"description": f"{tile['tile_id']}{args.get('suffix', '')}", "folder": "stitch",
                       "fileNamePrefix": tile["tile_id"], "region": tile_to_ee_geometry(tile), "scale": SCALE,
                       **{k: v for k, v in args.items() if k != "suffix"}}  # fmt: skip
        if i == 0 and "fileDimensions" not in args:
            export_args["fileDimensions"] = 256  # this tile comes back as a sharded export
        jobs.append((tile["tile_id"], image_for(i), "image", "drive", export_args))
    return run_exports(hook, jobs)


@pytest.fixture
def hook(gee_conn):
    h = EarthEngineHook(gcp_conn_id=gee_conn)
    h.initialize_ee()
    return h


@pytest.mark.emulator(ee_concurrency=8, task_seconds=0)
def test_six_by_five_tiles_with_a_sharded_export_become_one_vrt_and_one_cog(gee_conn, hook, tmp_path):
    import ee

    tiles = grid_tiles(REGION, 0.02)
    assert len(tiles) == 30
    results = export_tiles(hook, tiles, lambda i: ee.Image.pixelLonLat())
    manifests = harvest_all(gee_conn, results, tmp_path / "harvest")
    files = [f["path"] for m in manifests for f in m["files"]]
    assert len(files) == 33 and sum(bool(f.get("shard")) for m in manifests for f in m["files"]) == 4

    mosaic = MosaicOperator(
        task_id="mosaic", harvest_results=manifests, destination=str(tmp_path / "out"), cog=True, compress="zstd",
        window_size=256,
    )  # fmt: skip
    result = mosaic.execute({})

    assert result["files"] == 33 and result["tiles"] == 30
    # its OpenLineage: it read the harvests' destination and wrote its own (file namespace, path)
    lineage = mosaic.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(tmp_path / "harvest"))]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", str(tmp_path / "out"))]
    union = [np.inf, np.inf, -np.inf, -np.inf]
    for path in files:
        with rasterio.open(path) as src:
            b = src.bounds
            union = [min(union[0], b.left), min(union[1], b.bottom), max(union[2], b.right), max(union[3], b.top)]
    for product in (result["vrt"], result["cog"]):
        with rasterio.open(product) as mosaic:
            assert np.allclose(tuple(mosaic.bounds), union, atol=1e-9), (product, mosaic.bounds, union)
            assert mosaic.count == 2 and mosaic.crs.to_epsg() == 4326
            rng = np.random.default_rng(7)
            xs = rng.uniform(union[0], union[2], 200)
            ys = rng.uniform(union[1], union[3], 200)
            got = np.array(list(mosaic.sample(zip(xs, ys, strict=True))))
        expected = []
        for x, y in zip(xs, ys, strict=True):
            holder = next(p for p in files if _contains(p, x, y))
            with rasterio.open(holder) as src:
                expected.append(next(src.sample([(x, y)])))
        assert np.array_equal(got, np.array(expected)), product
        assert np.allclose(got[:, 0], xs, atol=SCALE / 111_320)  # pixelLonLat: the pixel centre's longitude
    with rasterio.open(result["cog"]) as cog:
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert cog.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "ZSTD"
        assert cog.overviews(1) and cog.block_shapes[0] == (512, 512)


def _contains(path: str, x: float, y: float) -> bool:
    with rasterio.open(path) as src:
        b = src.bounds
        return b.left <= x < b.right and b.bottom < y <= b.top


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0)
@pytest.mark.parametrize(("overlap", "expected"), [("first", 1.0), ("last", 2.0), ("mean", 1.5)])
def test_overlapping_buffered_tiles_follow_the_stated_rule(gee_conn, hook, tmp_path, overlap, expected):
    import ee

    tiles = grid_tiles([13.1005, 52.3605, 13.1395, 52.3795], 0.02, overlap=0.005)  # 2 x 1, buffered
    assert len(tiles) == 2
    results = export_tiles(hook, tiles, lambda i: ee.Image.constant(i + 1).toFloat(), fileDimensions=4096, scale=100)
    manifests = harvest_all(gee_conn, results, tmp_path / "harvest")
    result = MosaicOperator(
        task_id="mosaic", harvest_results=manifests, destination=str(tmp_path / "out"), cog=True, overlap=overlap
    ).execute({})
    middle = (13.12, 52.37)  # inside both buffered tiles
    only_first, only_second = (13.103, 52.37), (13.137, 52.37)
    with rasterio.open(result["cog"]) as cog:
        values = [v[0] for v in cog.sample([middle, only_first, only_second])]
    assert values == [expected, 1.0, 2.0]
    if overlap != "mean":
        with rasterio.open(result["vrt"]) as vrt:
            assert [v[0] for v in vrt.sample([middle, only_first, only_second])] == [expected, 1.0, 2.0]


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0)
def test_tiles_on_another_crs_are_named_unless_a_target_grid_is_given(gee_conn, hook, tmp_path):
    import ee

    tiles = grid_tiles([13.1005, 52.3605, 13.1395, 52.3795], 0.02)
    image = ee.Image.constant(5).toFloat()
    results = export_tiles(hook, tiles[:1], lambda i: image, fileDimensions=4096, scale=100)
    results += export_tiles(hook, tiles[1:], lambda i: image, fileDimensions=4096, scale=100, crs="EPSG:3857")
    manifests = harvest_all(gee_conn, results, tmp_path / "harvest")
    odd = manifests[1]["files"][0]["path"]
    with pytest.raises(GeeConfigurationError, match=r"1 of 2 tiles do not share the first tile's grid") as err:
        MosaicOperator(task_id="m", harvest_results=manifests, destination=str(tmp_path / "out")).execute({})
    assert odd in str(err.value) and "EPSG:3857" in str(err.value) and "target_crs" in str(err.value)

    result = MosaicOperator(
        task_id="m", harvest_results=manifests, destination=str(tmp_path / "out"), cog=True,
        target_crs="EPSG:3857", target_resolution=100,
    ).execute({})  # fmt: skip
    assert result["crs"] == "EPSG:3857" and result["resolution"] == [100, 100]
    with rasterio.open(result["cog"]) as cog:
        values = cog.read(1)
    # both tiles, resampled onto one grid, fill the mosaic but for a rim of partial edge pixels
    assert np.all(values[3:-3, 3:-3] == 5) and np.all((values == 5) | np.isnan(values))


def test_bad_mosaic_settings_fail_before_anything_is_read():
    cases = [
        ({"overlap": "max"}, "overlap must be one of first, last, mean, not 'max'."),
        ({"overlap": "mean"}, "overlap='mean' averages pixels, which a VRT cannot express"),
        ({"compress": "gzip"}, "compress must be one of DEFLATE"),
        ({"target_crs": "EPSG:3857"}, "Give target_crs and target_resolution together"),
        ({"target_crs": "EPSG:3857", "target_resolution": 0}, "target_resolution must be > 0, got 0."),
        ({"window_size": 16}, "window_size must be at least 256 pixels, got 16."),
    ]
    for kwargs, message in cases:
        with pytest.raises(GeeConfigurationError) as err:
            MosaicOperator(task_id="m", harvest_results=[], destination="/tmp/x", **kwargs)
        assert message in str(err.value)
    with pytest.raises(GeeConfigurationError, match="No GeoTIFF among the harvested files"):
        MosaicOperator(task_id="m", harvest_results=[{"files": []}], destination="/tmp/gee-x").execute({})
    with pytest.raises(GeeConfigurationError, match=r"must end in \.gpkg \(GeoPackage\) or \.parquet"):
        TableStitchOperator(task_id="t", harvest_results=[], output_path="/tmp/out.csv")


def test_a_failed_stitch_leaves_the_previous_output_whole_and_no_temporary_files(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the operator's work directories go
    good = tmp_path / "a.geojson"
    gpd.GeoDataFrame({"k": [1, 2]}, geometry=gpd.points_from_xy([13.3, 13.4], [52.5, 52.5]), crs="EPSG:4326").to_file(
        good, driver="GeoJSON"
    )
    bad = tmp_path / "b.csv"  # its header reads fine; its rows fail once writing has begun
    bad.write_text('k,.geo\n3,"{not GeoJSON"\n')
    out = tmp_path / "out" / "points.gpkg"
    TableStitchOperator(task_id="t", harvest_results=[str(good)], output_path=str(out)).execute({})
    before = out.read_bytes()
    with pytest.raises(GeeConfigurationError, match="Cannot read table"):
        TableStitchOperator(task_id="t", harvest_results=[str(good), str(bad)], output_path=str(out)).execute({})
    assert out.read_bytes() == before  # the earlier product, whole
    assert sorted(p.name for p in out.parent.iterdir()) == ["points.gpkg"]  # no staging left
    assert list(scratch.iterdir()) == []  # no work directory left


def test_a_mosaic_of_tiles_far_apart_is_refused_before_anything_is_written(tmp_path):
    from rasterio.transform import from_origin

    paths = []
    for i, (west, north) in enumerate([(0.0, 1.0), (100.0, 51.0)]):  # two 10 x 10 tiles, 100 degrees apart
        path = tmp_path / f"t{i}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8", crs="EPSG:4326",
                           transform=from_origin(west, north, 1e-5, 1e-5)) as dst:  # fmt: skip
            dst.write(np.ones((1, 10, 10), dtype="uint8"))
        paths.append(str(path))
    out = tmp_path / "out"
    with pytest.raises(
        GeeConfigurationError, match=r"would be 10,000,010 x 5,000,010 = 50,000,150,000,100 pixels"
    ) as err:
        MosaicOperator(task_id="m", harvest_results=paths, destination=str(out)).execute({})
    assert "more than max_pixels=10,000,000,000" in str(err.value) and not list(out.glob("*"))


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0)
@pytest.mark.parametrize("output", ["points.gpkg", "points.parquet"])
def test_chunked_point_tables_stitch_with_every_point_once(gee_conn, hook, tmp_path, output):
    rng = np.random.default_rng(1)
    points = gpd.GeoDataFrame(
        {"pid": np.arange(300)},
        geometry=shapely.points(rng.uniform(13.21, 13.30, 300), rng.uniform(52.41, 52.48, 300)),
        crs="EPSG:4326",
    )
    chunks = chunk_points(points, 60, id_column="pid")
    assert len(chunks) >= 5
    jobs = [
        (c["tile_id"], chunk_to_ee_feature_collection(c, points), "table", "drive",
         {"description": c["tile_id"], "folder": "tables", "fileNamePrefix": c["tile_id"],
          "fileFormat": "CSV" if i % 2 else "GeoJSON"})
        for i, c in enumerate(chunks)
    ]  # fmt: skip
    # a border point exported by two chunks: chunk 0 again, as another file of another tile
    again = {"description": "again", "folder": "tables", "fileNamePrefix": "again", "fileFormat": "CSV"}
    jobs.append(("again", chunk_to_ee_feature_collection(chunks[0], points), "table", "drive", again))
    manifests = harvest_all(gee_conn, run_exports(hook, jobs), tmp_path / "harvest")

    result = TableStitchOperator(
        task_id="stitch", harvest_results=manifests, output_path=str(tmp_path / output), key="point_id"
    ).execute({})

    stitched = gpd.read_file(tmp_path / output) if output.endswith(".gpkg") else gpd.read_parquet(tmp_path / output)
    assert sorted(stitched["point_id"]) == list(range(300))
    repeated = chunks[0]["point_count"]
    assert result["rows_read"] == 300 + repeated and result["duplicates_dropped"] == repeated
    assert stitched.crs.to_epsg() == 4326
    by_id = points.set_index("pid").geometry
    assert all(g.distance(by_id[pid]) < 1e-9 for pid, g in zip(stitched["point_id"], stitched.geometry, strict=True))
    expected_tile = {pid: c["tile_id"] for c in chunks for pid in c["point_ids"]}
    assert all(stitched["tile_id"] == stitched["point_id"].map(expected_tile))

    unkeyed = TableStitchOperator(
        task_id="stitch", harvest_results=manifests, output_path=str(tmp_path / f"all-{output}")
    ).execute({})
    assert unkeyed["rows_written"] == 300 + repeated


@pytest.mark.emulator(ee_concurrency=4, task_seconds=0)
def test_tables_on_cloud_storage_stitch_into_cloud_storage(gee_conn, hook, gcs_url, tmp_path):
    from airflow.sdk import ObjectStoragePath

    points = gpd.GeoDataFrame(
        {"pid": range(40)}, geometry=shapely.points(np.linspace(13.21, 13.29, 40), np.full(40, 52.45)), crs="EPSG:4326"
    )
    chunks = chunk_points(points, 10, id_column="pid")
    args = [{"description": c["tile_id"], "folder": "gcs_tables", "fileNamePrefix": c["tile_id"]} for c in chunks]
    jobs = [
        (c["tile_id"], chunk_to_ee_feature_collection(c, points), "table", "drive", a)
        for c, a in zip(chunks, args, strict=True)
    ]
    manifests = harvest_all(gee_conn, run_exports(hook, jobs), f"gs://{gee_conn}@landing/run1/parts")
    assert all(
        f["path"].startswith("gs://") or "landing/run1/parts" in f["path"] for m in manifests for f in m["files"]
    )

    result = TableStitchOperator(
        task_id="stitch", harvest_results=manifests, output_path=f"gs://{gee_conn}@landing/run1/points.gpkg",
        key="point_id",
    ).execute({})  # fmt: skip

    local = tmp_path / "points.gpkg"
    local.write_bytes(ObjectStoragePath(f"gs://{gee_conn}@landing/run1/points.gpkg").read_bytes())
    stitched = gpd.read_file(local)
    assert sorted(stitched["point_id"]) == list(range(40)) and result["rows_written"] == 40


def test_a_retried_mosaic_of_cloud_storage_tiles_keeps_one_copy_of_each(gee_conn, gcs_url, tmp_path):
    """A local mosaic's VRT points at local copies of remote tiles (in ``<name>.tiles``): a retry
    (MosaicOperator retries by default) replaces them, it does not pile up another set."""
    from airflow.sdk import ObjectStoragePath
    from rasterio.transform import from_origin

    paths = []
    for i in range(2):  # two adjacent 10 x 10 tiles, uploaded to the bucket
        local = tmp_path / f"t{i}.tif"
        with rasterio.open(local, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8", crs="EPSG:4326",
                           transform=from_origin(13.0 + i * 1e-4, 52.5, 1e-5, 1e-5)) as dst:  # fmt: skip
            dst.write(np.full((1, 10, 10), i + 1, dtype="uint8"))
        remote = f"gs://{gee_conn}@landing/tiles/t{i}.tif"
        ObjectStoragePath(remote).write_bytes(local.read_bytes())
        paths.append(remote)
    out = tmp_path / "out"
    for _ in range(2):  # the first try, then its retry
        result = MosaicOperator(task_id="m", harvest_results=paths, destination=str(out), name="m").execute({})
    copies = sorted(p.name for p in (out / "m.tiles").iterdir())
    assert sorted(c.split("-", 1)[1] for c in copies) == ["t0.tif", "t1.tif"], copies
    with rasterio.open(result["vrt"]) as vrt:
        assert set(np.unique(vrt.read(1))) == {1, 2}
