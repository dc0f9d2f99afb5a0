"""EE's size limits and EECU accounting in the emulator, through the real ``ee`` client: an image
export whose computation is too big fails with EE's own message, and what an export cost
(``batchEecuUsageSeconds``) grows with the pixels, bands and images it read."""

from __future__ import annotations

import time
import uuid

import ee
import pytest

pytestmark = pytest.mark.integration

REGION = [13.2, 52.42, 13.2 + 64 * 30 / 111_319.49, 52.42 + 64 * 30 / 111_319.49]  # ~64 x 64 pixels at 30 m


def export(hook, image: ee.Image, region: list[float] = REGION) -> dict:
    """Export ``image`` to Drive over ``region`` at 30 m and wait until EE ends the task."""
    op = hook.start_export(
        image, kind="image", destination="drive", request_id=str(uuid.uuid4()),
        description=f"limits-{uuid.uuid4().hex[:8]}", region=ee.Geometry.Rectangle(region), scale=30,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (op := hook.get_operation(op["name"])).get("done"):
        assert time.monotonic() < deadline, op
        time.sleep(0.1)
    return op


def landsat_year(region: list[float] = REGION) -> ee.ImageCollection:
    return (
        ee.ImageCollection("LANDSAT/LC08/C02/T1_L2")
        .filterDate("2023-01-01", "2024-01-01")
        .filterBounds(ee.Geometry.Rectangle(region))
        .select(["SR_B4", "SR_B5"])
    )


def test_eecu_grows_with_the_images_read(ee_hook):
    scenes = ee_hook.compute_value(landsat_year().size())
    single = export(ee_hook, ee.Image(landsat_year().first()))
    composite = export(ee_hook, landsat_year().median())
    one, year = single["metadata"]["batchEecuUsageSeconds"], composite["metadata"]["batchEecuUsageSeconds"]
    assert single["metadata"]["state"] == composite["metadata"]["state"] == "SUCCEEDED"
    assert scenes > 10 and 0 < one < year
    # a scene read once per composite: the cost is the single scene's times the scenes read
    assert year == pytest.approx(one * scenes, rel=0.01)


def test_a_computation_over_the_memory_limit_fails_with_ees_message(ee_hook, emulator):
    one = export(ee_hook, ee.Image(landsat_year().first()))["metadata"]["batchEecuUsageSeconds"]
    emulator.config.memory_limit_pixels = int(one / 1e-6 * 3)  # three scenes' worth
    assert export(ee_hook, ee.Image(landsat_year().first()))["metadata"]["state"] == "SUCCEEDED"
    failed = export(ee_hook, landsat_year().median())
    assert failed["metadata"]["state"] == "FAILED"
    assert failed["error"]["message"] == "User memory limit exceeded."


def test_a_computation_over_the_time_limit_times_out(ee_hook, emulator):
    emulator.config.task_timeout_seconds = 0.001
    failed = export(ee_hook, landsat_year().median())
    assert (failed["metadata"]["state"], failed["error"]["message"]) == ("FAILED", "Computation timed out.")


def test_an_output_over_the_pixel_limit_is_too_large(ee_hook, emulator):
    emulator.config.max_pixels_per_task = 64 * 64 * 2
    assert export(ee_hook, ee.Image.constant(1).toFloat())["metadata"]["state"] == "SUCCEEDED"
    bigger = [REGION[0], REGION[1], REGION[2] + (REGION[2] - REGION[0]), REGION[3] + (REGION[3] - REGION[1])]
    failed = export(ee_hook, ee.Image.constant(1).toFloat(), bigger)
    assert failed["metadata"]["state"] == "FAILED"
    assert failed["error"]["message"].startswith("Output of image computation is too large (")
