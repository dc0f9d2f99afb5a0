"""The example DAGs: they parse offline, and the demo harness (real api-server, scheduler,
dag-processor, triggerer, pool and emulator) runs the tiled export example green, smaller."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dev.demo import ROOT, run_demo

pytestmark = pytest.mark.integration


def test_example_dags_parse_without_network_or_credentials(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", raising=False)
    bag = DagBag(dag_folder=str(ROOT / "example_dags"))
    assert bag.import_errors == {}
    assert "gee_tiled_image_export" in bag.dag_ids


@pytest.mark.slow
def test_demo_harness_runs_the_tiled_export_example(tmp_path):
    # 12 tiles of ~34 kB: 408 kB in all through a 250 kB Drive quota: harvesting as tiles finish
    # makes room; an export that still meets a full Drive fails with EE's message and its retry
    # runs once harvests have freed space
    summary = run_demo(
        tmp_path / "demo", region=[13.2134, 52.4152, 13.3019, 52.4873], cell_size=0.03, task_seconds=6.0,
        drive_quota_bytes=250_000,
    )  # fmt: skip
    assert summary["dag_run_state"] == "success", summary
    assert summary["succeeded"] == summary["tiles"] == 12
    by_state = summary["ee_operations_by_state"]  # one success per tile; any other ended FAILED (quota)
    assert by_state["SUCCEEDED"] == 12 and set(by_state) <= {"SUCCEEDED", "FAILED"}, by_state
    assert summary["peak_in_flight"] <= 10
    assert summary["files_harvested"] == 12 and summary["md5_mismatches"] == 0
    assert summary["drive_bytes_left"] == 0
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert manifest["by_status"] == {"harvested": 12}
    assert Path(summary["tiles_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the tile map (the plugin's page in headless Chromium) while tiles were harvested, and at the end
    assert [Path(p).name for p in summary["tile_map"]] == ["tile_map.png", "tile_map_running.png"]
    assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in summary["tile_map"])
    mosaic = summary["mosaic"]  # the mapped harvest's results, stitched into one COG over all 12 tiles
    assert mosaic["layout"] == "COG" and mosaic["bands"] == 2
    assert summary["bytes_harvested"] > 250_000 >= summary["drive_peak_bytes"]
    assert_no_secrets_under(tmp_path / "demo")
    left, bottom, right, top = mosaic["bounds"]
    assert left <= 13.2134 and bottom <= 52.4152 and right >= 13.3019 and top >= 52.4873  # covers the region
    # the same run to Cloud Storage by the service account (which has no Drive storage)
    gcs = summary["gcs"]
    assert gcs["dag_run_state"] == "success", gcs
    assert gcs["succeeded"] == gcs["tiles"] == 12 and gcs["ee_operations_by_state"] == {"SUCCEEDED": 12}
    assert gcs["files_harvested"] == 12 and gcs["md5_mismatches"] == 0 and gcs["bucket_objects_left"] == 0
    assert gcs["mosaic"]["layout"] == "COG" and gcs["drive_peak_bytes"] == 0


#: what a private key, an OAuth token or a service-account key file looks like
SECRET_PATTERNS = [rb"PRIVATE KEY", rb"private_key", rb"emu-[A-Za-z0-9_-]{32}", rb"ya29\.", rb"access_token",
                   rb"client_email\W+gee"]  # fmt: skip


def assert_no_secrets_under(root: Path) -> None:
    """Search every file of a run (task logs, the metadata DB with its XComs, outputs) for secrets."""
    import re

    hits = []
    for path in (p for p in root.rglob("*") if p.is_file() and p.name != "airflow.cfg"):  # cfg: option names
        data = path.read_bytes()
        hits += [
            f"{path.relative_to(root)}: {pattern.decode()}" for pattern in SECRET_PATTERNS if re.search(pattern, data)
        ]
    scanned = [p for p in root.rglob("*.log") if "task_id=" in str(p)]
    assert len(scanned) >= 24 and not hits, hits[:20]


@pytest.mark.slow  # the whole example DAG, in process (about 100 s)
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
    metrics = [f"{b}_p{p}" for b in ("SR_B4", "SR_B5", "SR_B6", "NDVI") for p in (10, 25, 50, 75, 90)]
    assert set(metrics) <= set(samples.columns)
    for band in ("SR_B4", "SR_B5", "SR_B6", "NDVI"):  # percentiles in order at every point
        ordered = samples[[f"{band}_p{p}" for p in (10, 25, 50, 75, 90)]].to_numpy()
        assert (ordered[:, :-1] <= ordered[:, 1:] + 1e-12).all()
    assert samples["NDVI_p50"].between(-1, 1).all() and samples["NDVI_p50"].nunique() > 100  # varies in space
    assert samples["SR_B5_p90"].between(-0.2, 1.0).all()  # reflectance after the scale factors
    stats = emulator.stats()
    assert stats["operations_by_state"] == {"SUCCEEDED": stats["operations"]}
    assert [a for a in emulator.ee.assets if "/point_samples/" in a] == []  # parts deleted after verification


@pytest.mark.slow
@pytest.mark.emulator(ee_concurrency=3, task_seconds=0.5)
def test_monthly_backfill_exports_each_month_once_even_when_rerun(emulator, tmp_path):
    import shutil
    import time

    from dev.airflow_stack import AirflowStack
    from dev.deployment import postgres_database

    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "example_dags" / "gee_monthly_timeseries.py", dags)
    env = {"AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(emulator.connection())}
    dag_id = "gee_monthly_timeseries"

    def runs(stack) -> list[dict]:
        # the scheduler adds the latest month on its own (catchup=False): count the backfill's
        all_runs = stack.api("GET", f"dags/{dag_id}/dagRuns", params={"limit": 50})["dag_runs"]
        return [r for r in all_runs if r["run_type"] == "backfill"]

    def backfills_completed(stack) -> bool:
        # the scheduler marks a backfill complete on a 30-s timer after its runs end (later when its
        # loop is busy); one backfill per DAG at a time
        backfills = stack.api("GET", "backfills", params={"dag_id": dag_id})["backfills"]
        return bool(backfills) and all(b["completed_at"] for b in backfills)

    def create_backfill(stack, reprocess: str) -> None:
        args = ("--dag-id", dag_id, "--from-date", "2024-01-01", "--to-date", "2024-03-01")
        stack.airflow("backfill", "create", *args, "--reprocess-behavior", reprocess)

    def wait_all_success(stack, count: int) -> list[dict]:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            current = runs(stack)
            if len(current) == count and all(r["state"] == "success" for r in current):
                return current
            assert not [r for r in current if r["state"] == "failed"], current
            time.sleep(2)
        pytest.fail("backfill did not finish")

    # on the machine's PostgreSQL (a database of its own): on SQLite's one writer, creating a backfill
    # of completed runs met the scheduler's lock in every attempt once under the parallel make test
    with (
        postgres_database("gee_backfill") as database_url,
        AirflowStack(
            tmp_path / "home", dags, env={**env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url}
        ) as stack,
    ):
        stack.wait_for_dag(dag_id)
        create_backfill(stack, "none")
        first = wait_all_success(stack, 3)
        ops_after_first = emulator.stats()["operations"]

        stack._wait(lambda: backfills_completed(stack), 600, "the first backfill to complete", 2.0)
        create_backfill(stack, "completed")
        time.sleep(3)
        again = wait_all_success(stack, 3)
    assert sorted(r["logical_date"][:7] for r in first) == ["2024-01", "2024-02", "2024-03"]
    assert [r["end_date"] for r in again] != [r["end_date"] for r in first]  # the months ran again
    stats = emulator.stats()
    assert stats["operations"] == ops_after_first  # re-running the months started no EE task
    assert stats["operations_by_state"] == {"SUCCEEDED": stats["operations"]}
    # descriptions are <dag>.<task>.<tile>.<period>.<run token>: three runs in flight at once
    # (max_active_runs=3), each month its own token, and every file name its run's
    descriptions = [op.metadata["description"].split(".") for op in emulator.ee.operations.values()]
    periods = [d[-2][:6] for d in descriptions]
    assert len({(d[-2], d[-1]) for d in descriptions}) == len({d[-1] for d in descriptions})  # a token per run
    files = [f.name for f in emulator.drive.files.values() if f.name.endswith(".tif")]
    assert len(files) == len(set(files)) == stats["operations"]
    backfilled = sorted(p for p in periods if p.startswith("2024"))
    assert backfilled == ["202401"] * 6 + ["202402"] * 6 + ["202403"] * 6  # 6 tiles x 3 months, each once
