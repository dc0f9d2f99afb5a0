"""The example DAGs: they parse offline, and the demo harness (real api-server, scheduler,
dag-processor, triggerer, pool and emulator) runs the tiled export example green, smaller."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_gee.emulator.demo import ROOT, run_demo

pytestmark = pytest.mark.integration


def test_example_dags_parse_without_network_or_credentials(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", raising=False)
    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    assert "gee_tiled_image_export" in bag.dag_ids


@pytest.mark.slow
def test_demo_harness_runs_the_tiled_export_example(tmp_path):
    summary = run_demo(
        tmp_path / "demo", region=[13.2134, 52.4152, 13.3019, 52.4873], cell_size=0.03, drive_quota_bytes=5_000_000
    )  # 12 tiles; fmt: skip
    assert summary["dag_run_state"] == "success", summary
    assert summary["succeeded"] == summary["tiles"] == 12 and summary["ee_operations"] == 12
    assert summary["peak_in_flight"] <= 10
    assert summary["files_harvested"] == 12 and summary["md5_mismatches"] == 0
    assert summary["drive_bytes_left"] == 0
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert manifest["by_status"] == {"harvested": 12}
    assert Path(summary["tiles_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.emulator(ee_concurrency=4, task_seconds=0.1)
def test_point_sampling_example_merges_and_downloads_every_point(emulator, monkeypatch, tmp_path):
    import importlib.util
    import os
    import shutil

    import geopandas as gpd

    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(emulator.connection()))
    path = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "gee_point_sampling.py"
    shutil.copy(ROOT / "example_dags" / "gee_point_sampling.py", path)
    spec = importlib.util.spec_from_file_location("gee_point_sampling_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = tmp_path / "samples.gpkg"
    run = module.dag.test(run_conf={"output": str(output)})
    assert run.state == "success"
    samples = gpd.read_file(output)
    assert len(samples) == 1000 and sorted(samples["point_id"]) == list(range(1000))
    assert {"longitude", "latitude"} <= set(samples.columns)
    stats = emulator.stats()
    assert stats["operations_by_state"] == {"SUCCEEDED": stats["operations"]}
    assert [a for a in emulator.ee.assets if "/point_samples/" in a] == []  # parts deleted after verification
