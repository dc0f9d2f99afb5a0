"""Many runs at once, never mixed (the operator level; the real scheduler runs two runs of the tiled
example at once in ``tests/system/test_many_runs_scheduler.py``).

Each test reproduces a way in which two runs, two deployments or a re-run tiling used to take each
other's EE tasks or files, with the operators' own ``execute`` against the emulator and the real
clients. The task state store is a plain dict here (as Airflow's keeps JSON per task instance).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.harvest import GeeHarvestOperator
from airflow_provider_gee.utils import naming

pytestmark = pytest.mark.integration

TILE_A = {
    "tile_id": "r1c1",
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[13.2, 52.4], [13.22, 52.4], [13.22, 52.42], [13.2, 52.42], [13.2, 52.4]]],
    },
}
TILE_B = {
    "tile_id": "r2c2",
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[13.24, 52.44], [13.26, 52.44], [13.26, 52.46], [13.24, 52.46], [13.24, 52.44]]],
    },
}


class Store(dict):
    """Airflow's task state store as the operator uses it: JSON values by key, per task instance."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


def build(tile: dict, context: Any):
    import ee

    return ee.Image.constant(context["params"]["value"]).toFloat()


def export_op(conn_id: str, tile: dict = TILE_A, **kwargs: Any) -> GeeExportOperator:
    options = {"folder": "shared", "file_name_prefix": "{tile_id}", "scale": 500, **kwargs}
    return GeeExportOperator(
        task_id="export", tile=tile, build=build, gcp_conn_id=conn_id, deferrable=False, poll_interval=0.05,
        **options,
    )  # fmt: skip


def context(op: Any, run_id: str, value: float = 1, try_number: int = 1, store: Store | None = None) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="d", task_id=op.task_id, run_id=run_id, map_index=0, try_number=try_number, stats_tags={}
    )
    return {
        "ti": ti, "task": op, "params": {"value": value}, "data_interval_start": None, "task_state_store": store,
        "dag_run": SimpleNamespace(run_id=run_id, start_date=datetime.now(UTC) - timedelta(minutes=1)),
    }  # fmt: skip


@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch):
    """Set ``[gee] deployment_id`` (None: unset) for what follows; the cached value is dropped."""

    def use(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv("AIRFLOW__GEE__DEPLOYMENT_ID", raising=False)
        else:
            monkeypatch.setenv("AIRFLOW__GEE__DEPLOYMENT_ID", value)
        naming.deployment_id.cache_clear()

    yield use
    naming.deployment_id.cache_clear()


def pixel_values(path: str) -> set[float]:
    import numpy as np
    import rasterio

    with rasterio.open(path) as src:  # the tile's pixels (outside its polygon EE writes no data)
        return {float(v) for v in np.unique(src.read(1)) if not np.isnan(v)}


@pytest.mark.emulator(task_seconds=0.1)
def test_two_runs_with_one_prefix_write_and_harvest_only_their_own_files(gee_conn, emulator, tmp_path):
    # runs 2022 and 2023 of one DAG, file_name_prefix="{tile_id}" into one Drive folder, both
    # exported before either harvests (two runs in flight): each harvest takes its own file only
    results = {}
    for run_id, value in (("scheduled__2022", 2022), ("scheduled__2023", 2023)):
        op = export_op(gee_conn)
        results[run_id] = op.execute(context(op, run_id, value))
    prefixes = {r["file_name_prefix"] for r in results.values()}
    assert len(prefixes) == 2 and all(p.startswith("r1c1_") for p in prefixes)  # readable, run-scoped
    for run_id, value in (("scheduled__2022", 2022), ("scheduled__2023", 2023)):
        harvest = GeeHarvestOperator(
            task_id="harvest", export_result=results[run_id], destination=str(tmp_path / run_id), gcp_conn_id=gee_conn
        )
        manifest = harvest.execute(context(harvest, run_id))
        (entry,) = manifest["files"]
        assert pixel_values(entry["path"]) == {float(value)}
        if run_id == "scheduled__2022":  # the other run's file is still there for its own harvest
            assert emulator.stats()["drive_files"] == 1
    assert emulator.stats()["drive_files"] == 0


@pytest.mark.emulator(task_seconds=0.1)
def test_two_deployments_on_one_identity_start_one_ee_task_each(gee_conn, emulator, deployment):
    # staging and production: the same DAG, run id and map index, one EE identity
    operations = []
    for name in ("staging", "production"):
        deployment(name)
        op = export_op(gee_conn)
        operations.append(op.execute(context(op, "scheduled__2024-01-01T00:00:00+00:00"))["operation"])
    assert operations[0] != operations[1]
    assert emulator.stats()["operations"] == 2


def test_the_default_deployment_id_differs_between_execution_apis_and_the_setting_wins(deployment, monkeypatch):
    # task processes see no database URL in Airflow 3: the execution API they report to tells
    # deployments apart (tests/integration/test_two_deployments.py runs two for real)
    deployment(None)
    ids = []
    for url in ("http://airflow-a:8080/execution/", "http://airflow-b:8080/execution/"):
        monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", url)
        naming.deployment_id.cache_clear()
        ids.append(naming.deployment_id())
    assert ids[0] != ids[1]
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "http://airflow-a:8080/execution")
    naming.deployment_id.cache_clear()
    assert naming.deployment_id() == ids[0]  # a trailing slash is the same API
    deployment("production")
    assert naming.deployment_id() == "production"


@pytest.mark.emulator(task_seconds=0.1)
def test_a_retry_after_a_re_run_tiling_exports_its_own_tile(gee_conn, emulator):
    # map index 0 held tile r1c1 and kept its EE task in the store; the tiling was cleared and run
    # again with another region, so map index 0 is now tile r2c2: its retry must export r2c2
    store = Store()
    first = export_op(gee_conn, TILE_A)
    old = first.execute(context(first, "manual__x", store=store))
    second = export_op(gee_conn, TILE_B)
    new = second.execute(context(second, "manual__x", try_number=2, store=store))
    assert new["tile_id"] == "r2c2" and new["operation"] != old["operation"]
    assert emulator.stats()["operations"] == 2
    assert store[GeeExportOperator.external_id_key]["tile_id"] == "r2c2"


@pytest.mark.emulator(task_seconds=0.1)
def test_a_retry_with_other_export_arguments_does_not_take_the_stored_ee_task(gee_conn, emulator):
    store = Store()
    first = export_op(gee_conn, scale=500)
    old = first.execute(context(first, "manual__x", store=store))
    same = export_op(gee_conn, scale=500)
    assert same.execute(context(same, "manual__x", try_number=2, store=store))["operation"] == old["operation"]
    changed = export_op(gee_conn, scale=250)
    new = changed.execute(context(changed, "manual__x", try_number=3, store=store))
    assert new["operation"] != old["operation"] and emulator.stats()["operations"] == 2


def test_a_split_plan_of_another_tile_or_other_arguments_is_not_used(gee_conn):
    from airflow_provider_gee.operators.export import SPLIT_KEY
    from airflow_provider_gee.utils.splitting import SplitPlan

    op = export_op(gee_conn, TILE_A)
    plan = SplitPlan.start(op.tile, {"tile_id": "r1c1", "operation": None, "error": "too big"}, None)
    plan.data["fingerprint"] = op._fingerprint()
    store = Store({SPLIT_KEY: plan.data})
    assert op._stored_plan(context(op, "manual__x", store=store)) is not None
    other_tile = export_op(gee_conn, TILE_B)
    assert other_tile._stored_plan(context(other_tile, "manual__x", store=store)) is None
    other_scale = export_op(gee_conn, TILE_A, scale=250)  # its parts would be cut on other lines
    assert other_scale._stored_plan(context(other_scale, "manual__x", store=store)) is None
    legacy = Store({SPLIT_KEY: {k: v for k, v in plan.data.items() if k != "fingerprint"}})
    assert op._stored_plan(context(op, "manual__x", store=legacy)) is None


def test_tile_ids_that_could_be_a_parts_id_are_refused_before_anything_remote(gee_conn, emulator):
    op = export_op(gee_conn, {**TILE_A, "tile_id": "A_q1"})
    with pytest.raises(Exception, match=r"tile_id='A_q1'.*reserved for the parts of split tiles"):
        op.execute(context(op, "manual__x"))
    assert emulator.stats()["operations"] == 0


@pytest.mark.emulator(task_seconds=0.1)
def test_a_forgotten_ee_tasks_result_bounds_its_files_by_its_submission(gee_conn, emulator, tmp_path):
    # EE forgets the EE task; the retry finds the outputs and reports success: the result must say
    # from when its files may be, or its harvest would take any older file of the same name
    store = Store()
    first = export_op(gee_conn, run_scoped_names=False)
    before = datetime.now(UTC)
    done = first.execute(context(first, "manual__x", store=store))
    emulator.ee.operations.clear()  # EE keeps tasks for a while only
    retry = export_op(gee_conn, run_scoped_names=False)
    result = retry.execute(context(retry, "manual__x", try_number=2, store=store))
    assert result["operation"] == done["operation"] and result["state"] == "SUCCEEDED"
    assert result["create_time"] and datetime.fromisoformat(result["create_time"]) >= before - timedelta(seconds=1)


def test_a_harvest_of_a_result_without_a_creation_time_takes_no_file_older_than_its_run(gee_conn, emulator, tmp_path):
    admin_seed = {"folder": "shared", "name": "r1c1.tif", "size": 300}
    from tests.helpers import admin

    old = admin(emulator, "drive/files", admin_seed)  # another export's older file of that name
    result = {"tile_id": "r1c1", "state": "SUCCEEDED", "destination": "drive", "folder": "shared",
              "file_name_prefix": "r1c1", "export_type": "image", "operation": "projects/p/operations/X"}  # fmt: skip
    harvest = GeeHarvestOperator(
        task_id="harvest", export_result=result, destination=str(tmp_path), gcp_conn_id=gee_conn, wait_timeout=1
    )
    ctx = context(harvest, "manual__x")
    ctx["dag_run"].start_date = datetime.now(UTC) + timedelta(seconds=1)  # the run started after that file
    with pytest.raises(Exception, match="no file"):
        harvest.execute(ctx)
    assert emulator.stats()["drive_files"] == 1 and old["id"]  # left where it was
    assert not any(p.suffix == ".tif" for p in Path(tmp_path).iterdir())


def test_a_long_description_keeps_the_runs_token(gee_conn):
    # the budget and the wait for left-behind EE tasks find the run's EE tasks by the token
    op = export_op(gee_conn, description="d" * 99 + "{tile_id}")
    ctx = context(op, "manual__x")
    op._set_run(ctx)
    text = op.task_description(ctx)
    assert len(text) <= 100 and text.endswith("_" + op._run_token)
    other = export_op(gee_conn, description="d" * 99 + "{tile_id}")
    other._set_run(context(other, "manual__y"))
    assert other.task_description(context(other, "manual__y")) != text


def test_a_placed_run_token_is_filled_also_without_run_scoped_names(gee_conn):
    op = export_op(gee_conn, file_name_prefix="ndvi_{tile_id}_{run_token}", run_scoped_names=False)
    op._set_run(context(op, "manual__x"))
    assert op._fill(op.file_name_prefix) == f"ndvi_r1c1_{op._run_token}"
    assert "{" not in op._fill("{tile_id}_{run_token}") and op._fill("{tile_id}") == "r1c1"


@pytest.mark.emulator(task_seconds=0.1)
def test_a_file_format_given_in_export_options_decides_what_the_harvest_takes(gee_conn, emulator, tmp_path):
    op = export_op(gee_conn, export_options={"fileFormat": "GeoTIFF"}, file_format=None)
    result = op.execute(context(op, "manual__x"))
    assert result["file_format"] == "GeoTIFF"
    harvest = GeeHarvestOperator(task_id="h", export_result=result, destination=str(tmp_path), gcp_conn_id=gee_conn)
    assert len(harvest.execute(context(harvest, "manual__x"))["files"]) == 1


def test_a_mapped_export_whose_file_names_lack_the_tile_is_refused(gee_conn, emulator):
    for kwargs in ({"file_name_prefix": "ndvi"}, {"file_name_prefix": None, "description": "ndvi"}):
        op = export_op(gee_conn, **kwargs)
        with pytest.raises(Exception, match=r"has no '\{tile_id\}': every tile of this mapped export"):
            op.execute(context(op, "manual__x"))
    assert emulator.stats()["export_requests"] == 0


def test_a_harvest_prefix_other_than_its_exports_is_refused(gee_conn, emulator, tmp_path):
    result = {"tile_id": "r1c1", "state": "SUCCEEDED", "destination": "drive", "folder": "shared",
              "file_name_prefix": "r1c1_aaaaaaaa", "export_type": "image"}  # fmt: skip
    harvest = GeeHarvestOperator(
        task_id="h", export_result=result, prefix="r1c1_bbbbbbbb", destination=str(tmp_path), gcp_conn_id=gee_conn
    )
    with pytest.raises(Exception, match="is not the prefix of the export it harvests"):
        harvest.execute(context(harvest, "manual__x"))
    assert emulator.stats()["requests"].get("drive.files.list", 0) == 0


@pytest.mark.emulator(task_seconds=30)
def test_the_ee_task_of_ignored_stored_state_is_cancelled(gee_conn, emulator):
    # map index 0 held tile r1c1, whose EE task still runs; its task instance now exports r2c2:
    # the old EE task would write beside the new one and outside the pool, so it is cancelled
    store = Store()
    first = export_op(gee_conn, TILE_A)
    ctx = context(first, "manual__x", store=store)
    first._set_run(ctx)
    store[GeeExportOperator.external_id_key] = first.submit_job(ctx)  # ... and the worker dies
    second = export_op(gee_conn, TILE_B)
    assert second.get_job_status(store[GeeExportOperator.external_id_key], context(second, "manual__x", 2, store)) == (
        "DISCARDED"
    )
    (old,) = emulator.ee.operations.values()
    assert old.state in ("CANCELLING", "CANCELLED")


def test_stored_state_of_a_version_before_fingerprints_is_trusted_as_before(gee_conn):
    op = export_op(gee_conn, TILE_A)
    op._set_run(context(op, "manual__x"))
    assert op._is_own({"operation": "projects/p/operations/X", "generation": 0}, "EE task")
    assert op._is_own({"tile_id": 7, "fingerprint": "f"}, "split plan") is False
    numbered = export_op(gee_conn, {**TILE_A, "tile_id": 7})
    numbered._set_run(context(numbered, "manual__x"))
    assert numbered._is_own({"tile_id": 7, "fingerprint": numbered._fingerprint()}, "split plan")
