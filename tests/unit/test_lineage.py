"""OpenLineage datasets: the EE assets an expression loads, where an export wrote (split tiles
too), and how URIs become OpenLineage namespaces and names (as Airflow's providers convert them)."""

from __future__ import annotations

from airflow_provider_gee.operators.stitch import MosaicOperator
from airflow_provider_gee.utils.lineage import ee_inputs, export_output_uris, operator_lineage


def load(function: str, arg: str, asset: str) -> dict:
    return {"functionInvocationValue": {"functionName": function, "arguments": {arg: {"constantValue": asset}}}}


def test_the_assets_an_expression_loads_are_found_once_in_order():
    s2 = load("ImageCollection.load", "id", "COPERNICUS/S2_SR_HARMONIZED")
    expression = {
        "result": "0",
        "values": {
            "0": {"functionInvocationValue": {"functionName": "Image.addBands", "arguments": {
                "dstImg": s2,
                "srcImg": {"functionInvocationValue": {"functionName": "Image.clip", "arguments": {
                    "input": load("Image.load", "id", "USGS/SRTMGL1_003"),
                    "geometry": load("Collection.loadTable", "tableId", "projects/p/assets/aoi"),
                }}},
                "names": {"arrayValue": {"values": [s2]}},
            }}},
            "1": {"constantValue": "COPERNICUS/not-loaded"},  # a string that no load reads
        },
    }  # fmt: skip
    assert ee_inputs(expression) == ["COPERNICUS/S2_SR_HARMONIZED", "USGS/SRTMGL1_003", "projects/p/assets/aoi"]


def test_where_exports_wrote_by_destination_and_per_part():
    drive = {"destination": "drive", "drive_folder_id": "F1", "folder": "out", "file_name_prefix": "t1"}
    gcs = {"destination": "gcs", "bucket": "b", "file_name_prefix": "runs/t1"}
    asset = {"destination": "asset", "asset_id": "projects/p/assets/tiles/t1"}
    assert export_output_uris(drive) == ["x-google-drive://F1/t1"]
    assert export_output_uris({**drive, "drive_folder_id": None}) == ["x-google-drive://out/t1"]
    assert export_output_uris(gcs) == ["gs://b/runs/t1"]
    assert export_output_uris(asset) == ["x-earthengine://p/tiles/t1"]
    parts = [{**gcs, "tile_id": f"t1_q{q}", "file_name_prefix": f"runs/t1_q{q}"} for q in (0, 2)]
    assert export_output_uris({**gcs, "tile_id": "t1", "parts": parts}) == ["gs://b/runs/t1_q0", "gs://b/runs/t1_q2"]


def test_uris_become_namespaces_and_names_as_airflows_providers_convert_them():
    lineage = operator_lineage(
        ["x-earthengine://earthengine-public/USGS/SRTMGL1_003", "gs://b/runs/t1", "gs://b/runs/t1"],
        ["file:///data/mosaic", "x-google-drive://F1/t1"],
    )
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("x-earthengine://earthengine-public", "USGS/SRTMGL1_003"), ("gs://b", "runs/t1"),
    ]  # fmt: skip
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", "/data/mosaic"), ("x-google-drive://F1", "t1")]


def test_an_operator_that_has_not_run_reports_no_datasets(tmp_path):
    mosaic = MosaicOperator(task_id="m", harvest_results=[], destination=str(tmp_path))
    lineage = mosaic.get_openlineage_facets_on_complete(None)
    assert lineage.inputs == [] and lineage.outputs == []
