"""Data-aware scheduling on the real scheduler: the tiled export example's mosaic is an Airflow
Asset, and the example DAG scheduled on it runs once after the producer's run, without a sensor,
reading where the mosaic is from the asset event's extra."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from dev.airflow_stack import AirflowStack
from dev.demo import ROOT, emulator_process

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

PRODUCER, CONSUMER = "gee_tiled_image_export", "gee_ndvi_mosaic_summary"
REGION = [13.1005, 52.3605, 13.1395, 52.3995]  # 2 x 2 cells of 0.02 degrees


def test_a_dag_scheduled_on_the_mosaic_runs_once_after_the_producer(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in (PRODUCER, CONSUMER):
        shutil.copy(ROOT / "example_dags" / f"{name}.py", dags)
    adc_dir = Path(tempfile.mkdtemp(prefix="gee-adc-"))
    adc = adc_dir / "application_default_credentials.json"
    try:
        with emulator_process({"task-seconds": 0.5}, adc) as (_url, conn):
            env = {"AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": conn, "GOOGLE_APPLICATION_CREDENTIALS": str(adc)}
            with AirflowStack(tmp_path / "airflow", dags, env=env) as stack:
                stack.wait_for_dag(PRODUCER)
                stack.wait_for_dag(CONSUMER)
                assert stack.api("GET", f"dags/{CONSUMER}/dagRuns")["dag_runs"] == []
                conf = {"region": REGION, "cell_size": 0.02, "scale": 100, "output": str(tmp_path / "harvest"),
                        "report_dir": str(tmp_path / "report")}  # fmt: skip
                run_id = stack.trigger(PRODUCER, conf)
                assert stack.wait_for_run(PRODUCER, run_id, timeout=600) == "success"

                def consumer_runs() -> list[dict] | None:
                    runs = stack.api("GET", f"dags/{CONSUMER}/dagRuns")["dag_runs"]
                    return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else None

                runs = stack._wait(consumer_runs, 300, f"{CONSUMER} to run on the new mosaic", 2.0)
                time.sleep(10)  # a second run would show up within a few scheduler loops
                runs = stack.api("GET", f"dags/{CONSUMER}/dagRuns")["dag_runs"]
                events = stack.api("GET", "assets/events", params={"source_dag_id": PRODUCER})["asset_events"]
    finally:
        shutil.rmtree(adc_dir, ignore_errors=True)
    assert [(r["run_type"], r["state"]) for r in runs] == [("asset_triggered", "success")]
    # the producer's mosaic task emitted one event, whose extra says where the mosaic is
    assert len(events) == 1 and events[0]["source_task_id"] == "mosaic" and events[0]["source_run_id"] == run_id
    extra = events[0]["extra"]
    assert extra["tiles"] == 4 and Path(extra["cog"]).is_file() and Path(extra["vrt"]).is_file()
    # the consumer read the mosaic the event named and wrote its summary next to it
    summary = json.loads(Path(extra["cog"]).with_name("summary.json").read_text())
    assert summary["mosaic"] == extra["cog"] and summary["tiles"] == 4
    assert 0 < summary["valid_fraction"] <= 1 and -1 <= summary["ndvi_min"] <= summary["ndvi_mean"] <= 1
