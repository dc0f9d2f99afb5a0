"""Contract tests: the real ``ee`` client and EarthEngineHook against the emulator over HTTP."""

from __future__ import annotations

import re

import ee
import pytest
import rasterio

from airflow_provider_gee.exceptions import EarthEngineError
from airflow_provider_gee.hooks.drive import DriveHook
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
from airflow_provider_gee.utils.operations import TERMINAL_STATES
from tests.conftest import TEST_PROJECT
from tests.helpers import admin, export_constant, wait_for

pytestmark = pytest.mark.integration

BERLIN = [13.2134, 52.4152, 13.3019, 52.4873]


@pytest.fixture
def hook(gee_conn: str) -> EarthEngineHook:
    h = EarthEngineHook(gcp_conn_id=gee_conn)
    h.initialize_ee()
    return h


def wait_done(hook: EarthEngineHook, name: str, timeout: float = 30) -> dict:
    return wait_for(lambda: (op := hook.get_operation(name))["metadata"]["state"] in TERMINAL_STATES and op, timeout)


def test_initialize_fetches_discovery_and_algorithms(hook, emulator):
    requests = emulator.stats()["requests"]
    assert requests["ee.discovery"] >= 1
    assert requests["ee.algorithms.list"] == 1
    # the generated API exists: ee.Image has the algorithm list's methods
    assert callable(ee.Image.pixelLonLat)


def test_image_export_to_drive_writes_a_georeferenced_geotiff(hook, emulator, tmp_path):
    region = ee.Geometry.Rectangle(BERLIN)
    image = ee.Image.pixelLonLat().select("longitude").add(1)
    op = hook.start_export(
        image,
        kind="image",
        destination="drive",
        request_id="img-1",
        description="tile-a",
        folder="gee_exports",
        fileNamePrefix="tile-a",
        region=region,
        scale=100,
    )
    assert op["metadata"]["type"] == "EXPORT_IMAGE"
    done = wait_done(hook, op["name"])
    assert done["metadata"]["state"] == "SUCCEEDED"
    assert done["metadata"]["destinationUris"][0].startswith("https://drive.google.com/#folders/")

    drive = DriveHook(gcp_conn_id=hook.gcp_conn_id)
    files = drive.list_folder(drive.resolve_folder("gee_exports"))
    assert [f["name"] for f in files] == ["tile-a.tif"]
    target = tmp_path / "tile-a.tif"
    drive.download_verified(files[0], target)
    with rasterio.open(target) as src:
        assert src.crs.to_string() == "EPSG:4326"
        pixel = 100 / 111319.49079327357
        assert src.res == pytest.approx((pixel, pixel))
        left, bottom, right, top = src.bounds
        # the grid covers the region and is at most one pixel larger on each side
        assert left <= BERLIN[0] < left + pixel and right - pixel < BERLIN[2] <= right
        assert bottom <= BERLIN[1] < bottom + pixel and top - pixel < BERLIN[3] <= top
        value = next(src.sample([(13.25, 52.45)]))[0]
        assert value == pytest.approx(13.25 + 1, abs=pixel)


def test_table_export_to_asset_creates_a_table_readable_with_load_table(hook, emulator):
    hook.create_folder("exports/points")
    points = ee.FeatureCollection(
        [ee.Feature(ee.Geometry.Point([13.25 + i / 100, 52.45]), {"pid": i}) for i in range(7)]
    )
    op = hook.start_export(
        points,
        kind="table",
        destination="asset",
        request_id="tbl-1",
        description="points",
        assetId="exports/points/part-1",
    )
    assert wait_done(hook, op["name"])["metadata"]["state"] == "SUCCEEDED"
    asset = hook.get_asset("exports/points/part-1")
    assert asset["type"] == "TABLE" and asset["featureCount"] == "7"
    loaded = ee.FeatureCollection(f"projects/{TEST_PROJECT}/assets/exports/points/part-1")
    assert loaded.size().getInfo() == 7
    merged = loaded.merge(loaded)
    assert hook.compute_value(merged.size()) == 14


def test_request_id_deduplicates_a_retried_export_after_a_lost_response(hook, emulator):
    # The first POST is handled, then answered 503 as if the answer was lost: the hook retries
    # with the same requestId and must get the same operation back.
    admin(emulator, "faults", {"kind": "http", "route": "ee.image.export", "status": 503, "after": True})
    op = export_constant(hook, "dedup-1", description="dedup", scale=500)
    stats = emulator.stats()
    assert stats["requests"]["ee.image.export"] == 2
    assert stats["operations"] == 1
    again = export_constant(hook, "dedup-1", description="dedup", scale=500)
    assert again["name"] == op["name"]
    assert emulator.stats()["operations"] == 1


def test_operations_are_listed_newest_first_across_pages(hook, emulator):
    names = [export_constant(hook, f"page-{i}", i)["name"] for i in range(5)]
    listed = list(hook.list_operations(page_size=2))
    assert [op["name"] for op in listed] == names[::-1]
    assert emulator.stats()["requests"]["ee.operations.list"] == 3
    # the ee client's own paging (list_next) walks the same listing
    assert len(ee.data.listOperations()) == 5


@pytest.mark.emulator(ee_concurrency=2, task_seconds=0.3)
def test_only_k_tasks_run_at_once_and_the_rest_wait_pending(hook, emulator):
    names = [export_constant(hook, f"k-{i}", i)["name"] for i in range(5)]
    running_seen = 0

    def all_done() -> bool:
        nonlocal running_seen
        states = [op["metadata"]["state"] for op in hook.list_operations()]
        running_seen = max(running_seen, states.count("RUNNING"))
        assert states.count("RUNNING") <= 2
        return states.count("SUCCEEDED") == 5

    wait_for(all_done, timeout=30)
    assert running_seen == 2
    assert emulator.stats()["peak_in_flight"] == 5
    assert all(hook.get_operation(n)["metadata"]["progress"] == 1.0 for n in names)


def test_failed_task_message_reaches_the_client(hook, emulator):
    admin(emulator, "faults", {"kind": "task_failure", "match": "doomed*", "message": "Computation timed out."})
    op = export_constant(hook, "fail-1", description="doomed-tile")
    done = wait_done(hook, op["name"])
    assert done["metadata"]["state"] == "FAILED"
    assert done["error"]["message"] == "Computation timed out."


def test_too_many_pixels_fails_with_ees_message(hook):
    op = export_constant(hook, "big-1", description="big", scale=10, maxPixels=1000)
    done = wait_done(hook, op["name"])
    assert done["metadata"]["state"] == "FAILED"
    assert done["error"]["message"].startswith("Export too large: specified ")
    assert "(max: 1000)" in done["error"]["message"]


@pytest.mark.emulator(file_dimensions=64)
def test_large_image_export_is_split_into_offset_named_parts(hook, emulator, tmp_path):
    op = hook.start_export(
        ee.Image.pixelLonLat(),
        kind="image",
        destination="drive",
        request_id="shard-1",
        description="shard",
        folder="shards",
        fileNamePrefix="big",
        region=ee.Geometry.Rectangle(BERLIN),
        scale=60,
    )
    assert wait_done(hook, op["name"])["metadata"]["state"] == "SUCCEEDED"
    drive = DriveHook(gcp_conn_id=hook.gcp_conn_id)
    files = drive.list_folder(drive.resolve_folder("shards"))
    assert len(files) > 1
    bounds, offsets = [], []
    for f in files:
        match = re.fullmatch(r"big-(\d{10})-(\d{10})\.tif", f["name"])
        assert match, f["name"]
        drive.download_verified(f, tmp_path / f["name"])
        with rasterio.open(tmp_path / f["name"]) as src:
            assert src.width <= 64 and src.height <= 64
            bounds.append(src.bounds)
            offsets.append((int(match[1]), int(match[2]), src.bounds, src.res[0]))
    west, north = min(b.left for b in bounds), max(b.top for b in bounds)
    for row, col, b, pixel in offsets:  # names carry each part's pixel offset from the top-left
        assert row == round((north - b.top) / pixel) and col == round((b.left - west) / pixel)
    # the parts tile the export region without gaps: their areas add up to the bounding box
    area = sum((b.right - b.left) * (b.top - b.bottom) for b in bounds)
    east, south = max(b.right for b in bounds), min(b.bottom for b in bounds)
    assert area == pytest.approx((east - west) * (north - south))
    assert west <= BERLIN[0] and east >= BERLIN[2] and south <= BERLIN[1] and north >= BERLIN[3]


def test_cancel_ends_a_pending_task_cancelled(hook, emulator):
    admin(emulator, "config", {"ee_concurrency": 0})
    op = export_constant(hook, "cancel-1", description="cancel")
    assert hook.get_operation(op["name"])["metadata"]["state"] == "PENDING"
    hook.cancel_operation(op["name"])
    done = wait_done(hook, op["name"])
    assert done["metadata"]["state"] == "CANCELLED"


@pytest.mark.emulator(drive_quota_bytes=1000)
def test_export_beyond_the_drive_quota_fails_and_writes_nothing(hook, emulator):
    op = hook.start_export(
        ee.Image.pixelLonLat(),
        kind="image",
        destination="drive",
        request_id="quota-1",
        description="quota",
        region=ee.Geometry.Rectangle(BERLIN),
        scale=100,
    )
    done = wait_done(hook, op["name"])
    assert done["metadata"]["state"] == "FAILED"
    assert "storage quota has been exceeded" in done["error"]["message"]
    assert emulator.stats()["drive_bytes"] == 0


def test_assets_folders_listing_copy_and_delete(hook, emulator):
    hook.create_folder("a/b/c")
    hook.create_folder("a/b/c")  # exists already: fine
    for i in range(3):
        admin(
            emulator,
            "assets",
            {
                "name": f"projects/{TEST_PROJECT}/assets/a/b/t{i}",
                "type": "TABLE",
                "features": [{"type": "Feature", "geometry": None, "properties": {"i": i}}],
            },
        )
    # a Cloud project's asset ids are full names, as EE gives them (ee.data.getAssetRoots)
    root = f"projects/{TEST_PROJECT}/assets/"
    everything = [a["id"].removeprefix(root) for a in hook.list_assets("a", recursive=True)]
    assert sorted(everything) == ["a/b", "a/b/c", "a/b/t0", "a/b/t1", "a/b/t2"]
    assert [a["id"].removeprefix(root) for a in hook.list_assets("a", recursive=True, pattern="b/t*")] == [
        "a/b/t0",
        "a/b/t1",
        "a/b/t2",
    ]
    assert len(list(hook.list_assets("a/b", page_size=2))) == 4
    roots = [a["id"] for a in hook.list_assets(f"projects/{TEST_PROJECT}")]
    assert roots == [f"{root}a"]
    hook.copy_asset("a/b/t0", "a/b/c/t0-copy")
    assert hook.get_asset("a/b/c/t0-copy")["featureCount"] == "1"
    with pytest.raises(EarthEngineError, match="is not empty") as err:
        hook.delete_asset("a/b/c")
    assert err.value.status_code == 400 and not err.value.retryable
    hook.delete_asset("a/b/c/t0-copy")
    hook.delete_asset("a/b/c")
    assert hook.get_asset("a/b/c") is None
    hook.delete_asset("a/b/c", missing_ok=True)


def test_transient_errors_are_retried_and_permanent_ones_are_not(hook, emulator):
    op = export_constant(hook, "retry-1", description="retry")
    admin(emulator, "faults", {"kind": "http", "route": "ee.operations.get", "status": 429, "count": 2})
    before = emulator.stats()["requests"].get("ee.operations.get", 0)
    assert hook.get_operation(op["name"])["name"] == op["name"]
    assert emulator.stats()["requests"]["ee.operations.get"] - before == 3

    before = emulator.stats()["requests"]["ee.operations.get"]
    with pytest.raises(EarthEngineError) as err:
        hook.get_operation("NOSUCHOPERATION")
    assert err.value.status_code == 404 and not err.value.retryable
    assert emulator.stats()["requests"]["ee.operations.get"] - before == 1


def test_calls_are_checked_against_the_algorithm_list_as_ee_checks_them(hook, emulator):
    # an outdated or hand-written client: its signatures differ from the server's algorithm list
    def outdated(name: str, *args: str) -> ee.ApiFunction:
        return ee.ApiFunction(name, {"args": [{"name": a, "type": "Object"} for a in args], "returns": "Object"})

    with pytest.raises(EarthEngineError, match=r"Unknown built-in function name: Image\.noSuchAlgorithm") as err:
        hook.compute_value(outdated("Image.noSuchAlgorithm", "input").call(ee.Image(1)))
    assert err.value.status_code == 400 and not err.value.retryable
    with pytest.raises(EarthEngineError, match=r"Unrecognized arguments \{'rigth'\} to function: Number\.add"):
        hook.compute_value(outdated("Number.add", "left", "right", "rigth").call(1, 2, 3))
    missing = r"Required argument \(bandSelectors\) missing to function: Image\.select"
    with pytest.raises(EarthEngineError, match=missing):
        hook.compute_value(outdated("Image.select", "input").call(ee.Image(1)))
    # a real algorithm the emulator does not model: a synthetic result, or refused when strict
    focal = ee.Image.constant(1).focal_max(3).reduceRegion(ee.Reducer.mean(), ee.Geometry.Point([0, 0]), 100)
    assert isinstance(hook.compute_value(focal)["constant"], float)
    admin(emulator, "config", {"strict_evaluation": True})
    with pytest.raises(EarthEngineError, match=r"'Image\.focal_max' is not evaluated by the emulator") as err:
        hook.compute_value(focal)
    assert err.value.status_code == 400


@pytest.mark.emulator(require_auth=True)
def test_token_flow_runs_the_real_jwt_exchange_and_is_required(hook, emulator):
    import requests

    assert emulator.stats()["requests"]["oauth.token"] >= 1
    assert hook.get_asset("nothing-here") is None  # authorized request works
    resp = requests.get(f"{emulator.url}/v1/projects/{TEST_PROJECT}/operations", timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["status"] == "UNAUTHENTICATED"


INIT_SCRIPT = """
import sys
from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
EarthEngineHook(gcp_conn_id="gee_test").initialize_ee()
import ee
print(ee.Number(40).add(2).getInfo())
"""


@pytest.mark.parametrize("cache_seconds", [3600, 0])
def test_task_processes_of_a_machine_share_the_documents_ee_initialize_downloads(
    emulator, monkeypatch, tmp_path, cache_seconds
):
    import json
    import subprocess
    import sys

    conn = emulator.connection()
    conn["extra"]["client_cache_seconds"] = cache_seconds
    monkeypatch.setenv("AIRFLOW_CONN_GEE_TEST", json.dumps(conn))
    monkeypatch.setenv("GEE_CLIENT_CACHE_DIR", str(tmp_path / "cache"))
    for _ in range(3):  # three task processes, one after the other
        done = subprocess.run([sys.executable, "-c", INIT_SCRIPT], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip().endswith("42"), done.stderr[-2000:]
    requests = emulator.stats()["requests"]
    if cache_seconds:  # downloaded once for the machine (the discovery document serves both resources)
        assert (requests["ee.discovery"], requests["ee.algorithms.list"]) == (1, 1)
        # a damaged entry is fetched again, not used
        for entry in (tmp_path / "cache").iterdir():
            entry.write_bytes(b'{"truncated')
        subprocess.run([sys.executable, "-c", INIT_SCRIPT], capture_output=True, text=True, timeout=120, check=True)
        assert emulator.stats()["requests"]["ee.algorithms.list"] == 2
    else:  # every process downloads them: twice the discovery document, once the algorithm list
        assert (requests["ee.discovery"], requests["ee.algorithms.list"]) == (6, 3)


def test_task_processes_starting_together_on_a_cold_cache_download_once(emulator, monkeypatch, tmp_path):
    """Tasks that start at the same moment (a pool filling, the hour's cache expiring) wait for one
    download: EE answers the discovery document slowly here, so every process asks while the
    first download is still under way."""
    import json
    import subprocess
    import sys

    admin(emulator, "faults", {"kind": "http", "route": "ee.discovery", "delay": 3})
    monkeypatch.setenv("AIRFLOW_CONN_GEE_TEST", json.dumps(emulator.connection()))
    monkeypatch.setenv("GEE_CLIENT_CACHE_DIR", str(tmp_path / "cache"))
    procs = [
        subprocess.Popen([sys.executable, "-c", INIT_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0 and out.strip().endswith("42"), err[-2000:]
    requests = emulator.stats()["requests"]
    assert (requests["ee.discovery"], requests["ee.algorithms.list"]) == (1, 1), requests
