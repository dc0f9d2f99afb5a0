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
