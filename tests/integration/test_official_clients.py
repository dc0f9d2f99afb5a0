"""The official ``ee`` client's own task and asset functions, called unchanged against the emulator,
and every answer held against the shapes of Google's REST reference (tests/fixtures/
ee_rest_reference.json, which names its source). ``ee`` builds its API from the emulator's
discovery document, so a method or keyword that the document declares differently from EE fails
here as it would fail the client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ee
import pytest
import requests

from tests.conftest import TEST_PROJECT
from tests.helpers import BERLIN, admin, wait_for

pytestmark = pytest.mark.integration

REFERENCE = json.loads((Path(__file__).parents[1] / "fixtures" / "ee_rest_reference.json").read_text())
ROOT = f"projects/{TEST_PROJECT}/assets"


def assert_shape(kind: str, data: dict[str, Any]) -> None:
    """Every field is one the REST reference documents for ``kind``."""
    unknown = set(data) - set(REFERENCE["resources"][kind]["fields"])
    assert not unknown, f"{kind} fields not in Google's reference: {sorted(unknown)}"


def assert_operation(op: dict[str, Any]) -> None:
    assert_shape("Operation", op)
    assert_shape("OperationMetadata", op["metadata"])


def test_the_discovery_document_declares_the_reference_paths_and_parameters(emulator):
    doc = requests.get(f"{emulator.url}/$discovery/rest", params={"version": "v1"}, timeout=10).json()
    declared = {}

    def walk(node: dict[str, Any]) -> None:
        for method in node.get("methods", {}).values():
            declared[method["id"].removeprefix("earthengine.")] = method
        for child in node.get("resources", {}).values():
            walk(child)

    walk(doc)
    assert set(declared) <= set(REFERENCE["methods"]), sorted(set(declared) - set(REFERENCE["methods"]))
    for method_id, method in declared.items():
        ref = REFERENCE["methods"][method_id]
        assert (method["httpMethod"], method["path"]) == (ref["httpMethod"], ref["path"]), method_id
        assert method["parameterOrder"] == [ref["pathParam"]], method_id


def test_plain_number_maths(ee_hook):
    assert ee.Number(40).add(2).getInfo() == 42
    assert ee.Number(7).divide(2).getInfo() == 3.5
    assert ee.Number(3).subtract(5).multiply(2).getInfo() == -4


@pytest.mark.emulator(ee_concurrency=1, task_seconds=0.3)
def test_the_task_functions(ee_hook, emulator):
    region = ee.Geometry.Rectangle(BERLIN)
    tasks = [
        ee.batch.Export.image.toDrive(ee.Image.constant(i), description=f"official-{i}", region=region, scale=1000)
        for i in range(2)
    ]
    for task in tasks:
        task.start()
    first, second = tasks
    assert first.status()["state"] in ("READY", "RUNNING") and first.status()["description"] == "official-0"
    assert {t.id for t in ee.batch.Task.list()} == {first.id, second.id}
    second.cancel()  # PENDING: cancelled at once
    legacy = {t["id"]: t for t in ee.data.getTaskList()}
    assert legacy[second.id]["state"] == "CANCELLED" and legacy[first.id]["task_type"] == "EXPORT_IMAGE"
    wait_for(lambda: first.status()["state"] == "COMPLETED", timeout=30)
    (status,) = ee.data.getTaskStatus(first.id)
    assert status["state"] == "COMPLETED" and status["destination_uris"]
    assert ee.data.getTaskStatus("NOSUCHTASK")[0]["state"] == "UNKNOWN"  # a 404, as EE answers it
    operations = ee.data.listOperations()
    assert {op["name"] for op in operations} == {first.name, second.name}
    for op in operations:
        assert_operation(op)
    done = ee.data.getOperation(first.name)
    assert_operation(done)
    assert done["done"] and done["metadata"]["state"] == "SUCCEEDED"
    ee.data.cancelOperation(first.name)  # a finished task: nothing happens
    assert ee.data.getOperation(first.name)["metadata"]["state"] == "SUCCEEDED"


def test_the_asset_functions(ee_hook, emulator):
    assert_shape("EarthEngineAsset", ee.data.createFolder(f"{ROOT}/f"))
    ee.data.createFolder(f"{ROOT}/f/sub")
    rows = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.3, 52.5]}, "properties": {"i": i}}
            for i in range(3)]  # fmt: skip
    admin(emulator, "assets", {"name": f"{ROOT}/f/t", "type": "TABLE", "features": rows})
    admin(emulator, "assets", {"name": f"{ROOT}/f/empty", "type": "TABLE", "features": []})

    table = ee.data.getAsset(f"{ROOT}/f/t")
    assert_shape("EarthEngineAsset", table)
    assert table["id"] == f"{ROOT}/f/t" and table["type"] == "TABLE" and table["featureCount"] == "3"
    assert "featureCount" not in ee.data.getAsset(f"{ROOT}/f/empty")
    # the manual notebook's own call
    assert ee.data.getList({"id": f"{ROOT}/f"}) == [
        {"id": f"{ROOT}/f/empty", "type": "Table"},
        {"id": f"{ROOT}/f/sub", "type": "Folder"},
        {"id": f"{ROOT}/f/t", "type": "Table"},
    ]
    listed = ee.data.listAssets({"parent": f"{ROOT}/f"})["assets"]
    for asset in listed:
        assert_shape("EarthEngineAsset", asset)
    assert [a["id"] for a in listed] == [f"{ROOT}/f/empty", f"{ROOT}/f/sub", f"{ROOT}/f/t"]
    assert [a["name"] for a in ee.data.listAssets(ROOT)["assets"]] == [f"{ROOT}/f"]
    assert [a["name"] for a in ee.data.listImages(f"{ROOT}/f")["images"]] == [a["name"] for a in listed]
    paged = ee.data.listAssets({"parent": f"{ROOT}/f", "pageSize": 2})
    assert len(paged["assets"]) == 2 and paged["nextPageToken"]

    features = ee.data.listFeatures({"assetId": f"{ROOT}/f/t"})
    assert_shape("ListFeaturesResponse", features)
    assert features["type"] == "FeatureCollection" and [f["properties"]["i"] for f in features["features"]] == [0, 1, 2]

    ee.data.copyAsset(f"{ROOT}/f/t", f"{ROOT}/f/t2")
    ee.data.renameAsset(f"{ROOT}/f/t2", f"{ROOT}/f/t3")
    assert ee.data.getInfo(f"{ROOT}/f/t2") is None and ee.data.getAsset(f"{ROOT}/f/t3")["featureCount"] == "3"
    ee.data.updateAsset(f"{ROOT}/f/t3", {"properties": {"source": "copy"}}, ["properties.source"])
    assert ee.data.getAsset(f"{ROOT}/f/t3")["properties"] == {"source": "copy"}
    ee.data.deleteAsset(f"{ROOT}/f/t3")
    assert ee.data.getInfo(f"{ROOT}/f/t3") is None
    with pytest.raises(ee.EEException, match="not empty"):
        ee.data.deleteAsset(f"{ROOT}/f")
    assert ee.data.getAssetRoots() == [{"id": f"{ROOT}/f", "type": "Folder"}]
