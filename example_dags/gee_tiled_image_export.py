"""Tiled image export: region -> grid tiles -> one EE export per tile (pool ``gee_tasks``) ->
harvest each tile's files from Drive as soon as its export ends -> mosaic (VRT + Cloud Optimized
GeoTIFF) and report (manifest + tile map). The mosaic is the Airflow Asset ``NDVI_MOSAIC``:
``gee_ndvi_mosaic_summary.py`` runs whenever a new one lands.

Parses with no network and no credentials. Settings come from the DAG's params (region as a bbox
or a vector file path, cell size, scale, where EE writes, where files and the report go).

Where EE writes depends on who runs it: EE writes Drive exports as the caller, and service
accounts have no Drive storage, so a service-account connection exports to Cloud Storage
(``destination="gcs"`` with a bucket); Drive is for a person's credentials.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, Param, task, task_group

from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.harvest import GeeHarvestOperator
from airflow_provider_gee.operators.stitch import MosaicOperator
from airflow_provider_gee.operators.tiling import GridTilesOperator

CONN_ID = "google_cloud_default"
#: the run's mosaic: DAGs scheduled on it run when one lands; its event's extra names the files
NDVI_MOSAIC = Asset(name="gee_tiled_ndvi_mosaic")


def build(tile: dict, context: dict):
    """The per-tile computation: a summer's median Sentinel-2 NDVI (clouds masked by the scene
    classification) and the number of clear observations (replace with your own)."""
    import ee

    year = int(context["params"]["year"])
    region = ee.Geometry(tile["geometry"])

    def clear(image):
        scl = image.select("SCL")
        cloud_or_shadow = scl.eq(3).Or(scl.eq(8)).Or(scl.eq(9)).Or(scl.eq(10))
        return image.updateMask(cloud_or_shadow.Not())

    s2 = (
        ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED")
        .filterDate(f"{year}-06-01", f"{year}-09-01")
        .filterBounds(region)
        .filter(ee.Filter.lt("CLOUDY_PIXEL_PERCENTAGE", 60))
        .map(clear)
    )
    ndvi = s2.map(lambda image: image.normalizedDifference(["B8", "B4"]).rename("ndvi")).median()
    return ndvi.addBands(s2.select("B4").count().rename("clear_obs")).toFloat()


with DAG(
    dag_id="gee_tiled_image_export",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,  # the region param stays a list
    params={
        "region": Param(
            [13.2134, 52.4152, 13.3019, 52.4873], description="bbox [minx, miny, maxx, maxy] or a file path"
        ),
        "cell_size": Param(0.02, type="number", exclusiveMinimum=0, description="tile edge in degrees"),
        "scale": Param(30, type="number", exclusiveMinimum=0, description="metres per pixel"),
        "year": Param(2023, type="integer", minimum=2017, description="the summer (June-August) of the composite"),
        "destination": Param(
            "drive",
            enum=["drive", "gcs"],
            description="where EE writes: drive (a person's credentials) or gcs (any identity; service accounts)",
        ),
        "folder": Param("gee_tiled_export", type="string", description="Drive folder of the exports"),
        "bucket": Param("gee-exports", type="string", description="Cloud Storage bucket of the exports"),
        "output": Param("/tmp/gee-harvest", type="string", description="where harvested files go"),
        "report_dir": Param("/tmp/gee-report", type="string", description="where manifest.json and tiles.png go"),
        "cog": Param(True, type="boolean", description="also write the mosaic as one Cloud Optimized GeoTIFF"),
        "price_per_eecu_hour": Param(
            None, type=["null", "number"], description="your plan's price per EECU-hour: the report estimates the cost"
        ),
    },
    tags=["gee", "example"],
) as dag:
    tiles = GridTilesOperator(task_id="tiles", region="{{ params.region }}", cell_size="{{ params.cell_size }}")

    @task_group
    def tile_pipeline(tile: dict):
        # export and harvest in one mapped group: each tile's files are fetched as soon as its
        # export ends, so Drive (or the bucket) never holds much more than the pool's worth
        exported = GeeExportOperator(
            task_id="export", tile=tile, build=build, gcp_conn_id=CONN_ID, pool="gee_tasks",
            destination="{{ params.destination }}", folder="{{ params.folder }}", bucket="{{ params.bucket }}",
            scale="{{ params.scale }}", file_name_prefix="{tile_id}",
            poll_interval=5, weight_rule="absolute",
            deferrable=True,  # the pool slot is held by a deferred task, not a worker slot
            end_from_trigger=True,  # a finished export ends in the triggerer: no second task start
        )  # fmt: skip
        # a finished tile's files are fetched before more exports are queued (Airflow's default
        # "downstream" weights would favour the exports), so Drive holds little even when Airflow,
        # not EE, is the bottleneck
        GeeHarvestOperator(
            task_id="harvest", export_result=exported.output, gcp_conn_id=CONN_ID,
            priority_weight=10, weight_rule="absolute",
            destination="{{ params.output }}/{{ run_id | replace(':', '_') | replace('+', '_') }}",
        )  # fmt: skip

    pipelines = tile_pipeline.expand(tile=tiles.output)
    run_dir = "{{ params.output }}/{{ run_id | replace(':', '_') | replace('+', '_') }}"

    # the tiles back together: a VRT over the harvested GeoTIFFs (sharded exports included) and a COG
    mosaic = MosaicOperator(
        task_id="mosaic", harvest_results=dag.get_task("tile_pipeline.harvest").output,
        destination=f"{run_dir}/mosaic", cog="{{ params.cog }}", outlets=[NDVI_MOSAIC],
    )  # fmt: skip

    @task(trigger_rule="all_done")
    def report(tiles: list, exports: list, harvests: list, params: dict | None = None, run_id: str | None = None):
        from airflow_provider_gee.utils.report import build_manifest, write_report

        tiles = list(tiles)
        manifest = build_manifest(tiles, list(exports), list(harvests), params["price_per_eecu_hour"])
        out = f"{params['report_dir']}/{run_id.replace(':', '_').replace('+', '_')}"
        return {**write_report(manifest, tiles, out), "by_status": manifest["by_status"]}

    pipelines >> mosaic
    pipelines >> report(
        tiles.output,
        dag.get_task("tile_pipeline.export").output,
        dag.get_task("tile_pipeline.harvest").output,
    )
