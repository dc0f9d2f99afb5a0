"""Spectral-temporal metrics at sample points, with an asset merge: sample points -> spatial
chunks -> per chunk, a year of cloud-masked Landsat 8 and 9 surface reflectance reduced to the
10th, 25th, 50th, 75th and 90th percentiles of red, near-infrared, shortwave-infrared and NDVI,
sampled at the chunk's points, exported as a table to an EE asset (pool ``gee_tasks``) ->
AssetMergeOperator (verified, parts deleted) -> the merged table downloaded as a GeoPackage.

Parses with no network and no credentials. Without a ``points`` param, 1,000 seeded random points
inside the region are written first (the workflow's example).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_gee.operators.assets import AssetMergeOperator
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.tiling import PointChunksOperator

CONN_ID = "google_cloud_default"
PARTS = "gee_examples/point_samples"
MERGED = "gee_examples/point_samples_merged"


PERCENTILES = [10, 25, 50, 75, 90]
BANDS = ["SR_B4", "SR_B5", "SR_B6", "NDVI"]


def landsat_surface_reflectance(image):
    """Landsat Collection 2 Level 2: clouds and cloud shadows masked (QA_PIXEL bits 3 and 4),
    the scale factors applied, NDVI added."""
    import ee

    qa = image.select("QA_PIXEL")
    clear = qa.bitwiseAnd(1 << 3).eq(0).And(qa.bitwiseAnd(1 << 4).eq(0))
    optical = image.select("SR_B.").multiply(0.0000275).add(-0.2)
    ndvi = optical.normalizedDifference(["SR_B5", "SR_B4"]).rename("NDVI")
    return ee.Image(optical.addBands(ndvi).updateMask(clear).copyProperties(image, ["system:time_start"]))


def sample_chunk(chunk: dict, context: dict):
    """Per-chunk computation: the year's spectral-temporal metrics under each point."""
    import ee

    from airflow_provider_gee.utils.tiling import chunk_to_ee_feature_collection

    points = chunk_to_ee_feature_collection(chunk)
    year = int(context["params"]["year"])
    landsat = (
        ee.ImageCollection("LANDSAT/LC08/C02/T1_L2")
        .merge(ee.ImageCollection("LANDSAT/LC09/C02/T1_L2"))
        .filterDate(f"{year}-01-01", f"{year + 1}-01-01")
        .filterBounds(points)
        .map(landsat_surface_reflectance)
    )
    metrics = landsat.select(BANDS).reduce(ee.Reducer.percentile(PERCENTILES))
    return metrics.sampleRegions(collection=points, properties=["point_id"], scale=30, geometries=True)


with DAG(
    dag_id="gee_point_sampling",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "points": Param("", type="string", description="point file; empty: 1,000 random points in the region"),
        "region": Param([13.2134, 52.4152, 13.3019, 52.4873], type="array"),
        "max_points": Param(100, type="integer", minimum=1),
        "year": Param(2023, type="integer", minimum=2014, description="the year of Landsat observations"),
        "output": Param("/tmp/gee-samples.gpkg", type="string", description="the merged table as GeoPackage"),
    },
    tags=["gee", "example"],
) as dag:

    @task
    def prepare(params: dict | None = None, run_id: str | None = None) -> str:
        """The asset folders, and (without a points file) seeded random sample points."""
        import os
        import tempfile

        import geopandas as gpd
        import numpy as np

        from airflow_provider_gee.hooks.earth_engine import EarthEngineHook

        EarthEngineHook(gcp_conn_id=CONN_ID).create_folder(PARTS)
        if params["points"]:
            return params["points"]
        minx, miny, maxx, maxy = params["region"]
        rng = np.random.default_rng(42)
        gdf = gpd.GeoDataFrame(
            {"pid": np.arange(1000)},
            geometry=gpd.points_from_xy(rng.uniform(minx, maxx, 1000), rng.uniform(miny, maxy, 1000)),
            crs="EPSG:4326",
        )
        path = os.path.join(tempfile.gettempdir(), f"gee-sample-points-{abs(hash(run_id))}.gpkg")
        gdf.to_file(path)
        return path

    points = prepare()
    chunks = PointChunksOperator(task_id="chunks", points=points, max_points=100, id_column="pid")
    samples = GeeExportOperator.partial(
        task_id="sample", build=sample_chunk, export_type="table", destination="asset",
        asset_id=f"{PARTS}/chunk_{{tile_id}}", overwrite=True, gcp_conn_id=CONN_ID, pool="gee_tasks", poll_interval=5,
        deferrable=True,
    ).expand(tile=chunks.output)  # fmt: skip
    # exactly this run's parts (their asset ids carry the run's token): other runs' parts in the
    # same folder are neither merged nor deleted
    merge = AssetMergeOperator(
        task_id="merge", export_results=samples.output, destination_asset=MERGED, delete_sources=True,
        overwrite=True, gcp_conn_id=CONN_ID, poll_interval=5,
    )  # fmt: skip

    @task
    def download(merged: dict, params: dict | None = None) -> dict:
        """The merged table, read page by page over REST, as a GeoPackage."""
        from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
        from airflow_provider_gee.utils.tiling import ee_table_to_geodataframe

        gdf = ee_table_to_geodataframe(merged["asset_id"], EarthEngineHook(gcp_conn_id=CONN_ID))
        gdf.to_file(params["output"], driver="GPKG")
        return {"path": params["output"], "rows": len(gdf), "columns": sorted(map(str, gdf.columns))}

    samples >> merge
    download(merge.output)
