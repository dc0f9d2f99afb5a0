"""GeeExportOperator, GeeTaskTrigger and GeeTaskSensor in real DAG runs (``dag.test()``: real task
runner, task state store and triggers, run inline) against the emulator with the real clients."""

from __future__ import annotations

import pytest

from airflow_provider_gee.operators.export import request_id, sanitize_description
from airflow_provider_gee.utils.tiling import grid_tiles
from tests.helpers import admin, export_constant
from tests.helpers_dags import run_dag, task_instances, xcom_values

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

HEADER = """
import datetime as dt
import pendulum
from airflow.sdk import DAG
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.sensors.task import GeeTaskSensor
from airflow_provider_gee.utils.tiling import grid_tiles

TILES = grid_tiles([13.2134, 52.4152, 13.3019, 52.4873], 0.03)

def build(tile, context):
    import ee
    return ee.Image.pixelLonLat().select("longitude")
"""


def export_dag(n_tiles: int = 1, retries: int = 0, **options: object) -> str:
    opts = ", ".join(f"{k}={v!r}" for k, v in options.items())
    return (
        HEADER
        + f"""
with DAG("DAG_ID", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    GeeExportOperator.partial(
        task_id="export", build=build, gcp_conn_id="gee_test", folder="out", scale=200,
        poll_interval=0.2, retries={retries}, retry_delay=dt.timedelta(seconds=0), {opts}
    ).expand(tile=TILES[:{n_tiles}])
"""
    )


def test_mapped_exports_succeed_and_return_what_harvest_needs(gee_conn, emulator):
    run, dag_id = run_dag(export_dag(n_tiles=3))
    assert run.state == "success"
    results = xcom_values(dag_id, "export")
    assert len(results) == 3
    stats = emulator.stats()
    assert stats["operations"] == 3 and stats["operations_by_state"] == {"SUCCEEDED": 3}
    first = results[0]
    assert first["state"] == "SUCCEEDED" and first["destination"] == "drive" and first["folder"] == "out"
    first_tile = grid_tiles([13.2134, 52.4152, 13.3019, 52.4873], 0.03)[0]["tile_id"]
    assert first["drive_folder_id"] and first["tile_id"] == first_tile
    assert first["description"].startswith(f"{dag_id}.export.{first_tile}.")
    assert first["file_name_prefix"] == first["description"]
    # the resumed half needs no ee.Initialize: discovery is fetched by the submitting halves only
    assert stats["requests"]["ee.algorithms.list"] <= 3


@pytest.mark.emulator(task_seconds=0.2)
def test_an_export_that_ends_in_the_triggerer_returns_its_result_under_dag_test(gee_conn, emulator):
    """``dag.test()`` resumes a task that ended in the triggerer (end_from_trigger) with the bare
    state "success" as its event: the result is rebuilt from the stored EE task, not refused."""
    run, dag_id = run_dag(export_dag(n_tiles=2, deferrable=True, end_from_trigger=True))
    assert run.state == "success", [(t.task_id, t.state) for t in task_instances(dag_id)]
    results = xcom_values(dag_id, "export")
    assert sorted(r["state"] for r in results) == ["SUCCEEDED", "SUCCEEDED"]
    assert all(r["operation"].startswith("projects/") and r["drive_folder_id"] for r in results)
    assert emulator.stats()["operations"] == 2  # nothing submitted again to rebuild the result


@pytest.mark.emulator(task_seconds=0.2)
def test_lost_submit_response_is_reattached_by_the_retry(gee_conn, emulator):
    # EE starts the task but every answer is lost, beyond the hook's own 5 retries: the Airflow
    # retry asks again with the same requestId and gets the same operation.
    admin(emulator, "faults", {"kind": "http", "route": "ee.image.export", "status": 503, "after": True, "count": 6})
    run, dag_id = run_dag(export_dag(retries=1))
    assert run.state == "success"
    stats = emulator.stats()
    assert stats["export_requests"] == 7 and stats["operations"] == 1
    assert [ti.try_number for ti in task_instances(dag_id) if ti.task_id == "export"] == [2]


@pytest.mark.emulator(task_seconds=3.0)
def test_retry_reattaches_to_a_running_operation(gee_conn, emulator):
    # the wait fails once (the trigger reads a permanent error) while the EE task keeps running
    admin(emulator, "faults", {"kind": "http", "route": "ee.operations.get", "status": 403, "count": 1})
    run, _ = run_dag(export_dag(retries=1))
    assert run.state == "success"
    stats = emulator.stats()
    assert stats["operations"] == 1 and stats["export_requests"] == 1


@pytest.mark.emulator(task_seconds=0.2)
def test_retry_after_success_returns_the_result_without_resubmitting(gee_conn, emulator):
    # the trigger's error comes after the task already SUCCEEDED (1 s retry delay > 0.2 s task)
    admin(emulator, "faults", {"kind": "http", "route": "ee.operations.get", "status": 403, "count": 1,
                               "after": True})  # fmt: skip
    run, dag_id = run_dag(export_dag(retries=1).replace("seconds=0", "seconds=1"))
    assert run.state == "success"
    assert emulator.stats()["export_requests"] == 1
    assert xcom_values(dag_id, "export")[0]["state"] == "SUCCEEDED"


def test_retry_after_a_failed_ee_task_submits_a_new_one(gee_conn, emulator, capsys):
    admin(
        emulator, "faults", {"kind": "task_failure", "match": "*", "count": 1, "message": "An internal error occurred."}
    )
    run, _ = run_dag(export_dag(retries=1))
    assert run.state == "success"
    stats = emulator.stats()
    assert stats["operations"] == 2 and stats["operations_by_state"] == {"FAILED": 1, "SUCCEEDED": 1}
    assert "An internal error occurred." in "".join(capsys.readouterr())


def test_failed_ee_task_fails_the_airflow_task_with_ees_message(gee_conn, emulator, capsys):
    admin(
        emulator,
        "faults",
        {"kind": "task_failure", "match": "*", "count": 5, "message": "Injected: the EE worker was lost."},
    )
    run, _ = run_dag(export_dag(retries=0))
    assert run.state == "failed"
    assert "Injected: the EE worker was lost." in "".join(capsys.readouterr())
    assert emulator.stats()["operations"] == 1


def test_expression_ee_rejects_fails_at_once_without_retries(gee_conn, emulator, capsys):
    # a client whose Image.constant takes an argument EE's does not: EE refuses the submission
    outdated = (
        "ee.ApiFunction('Image.constant', {'args': [{'name': 'value', 'type': 'Object'}, "
        "{'name': 'bogus', 'type': 'Object'}], 'returns': 'Image'})"
    )
    source = export_dag(retries=2).replace(
        'return ee.Image.pixelLonLat().select("longitude")', f"return ee.Image({outdated}.call(1, 2))"
    )
    run, dag_id = run_dag(source)
    assert run.state == "failed"
    assert "Earth Engine rejected export" in "".join(capsys.readouterr())
    assert [ti.try_number for ti in task_instances(dag_id) if ti.task_id == "export"] == [1]
    assert emulator.stats()["operations"] == 0


def test_bad_arguments_fail_before_anything_remote(gee_conn, emulator, capsys):
    run, _ = run_dag(export_dag(destination="asset", asset_id="parts/fixed"))
    assert run.state == "failed"
    assert "has no '{tile_id}'" in "".join(capsys.readouterr())
    assert emulator.stats()["requests"].get("ee.discovery", 0) == 0


def test_sensor_waits_by_name_and_by_prefix(gee_conn, emulator):
    from airflow_provider_gee.hooks.earth_engine import EarthEngineHook

    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    names = [export_constant(hook, f"s-{i}", i, description=f"notebook-{i}")["name"] for i in range(3)]
    source = (
        HEADER
        + f"""
with DAG("DAG_ID", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    GeeTaskSensor(task_id="by_name", operations={names[:1]!r}, gcp_conn_id="gee_test", poke_interval=0.2)
    GeeTaskSensor(task_id="by_prefix", description_prefix="notebook-", gcp_conn_id="gee_test", poke_interval=0.2)
    GeeTaskSensor(task_id="poking", description_prefix="notebook-", gcp_conn_id="gee_test", poke_interval=0.2,
                  deferrable=False, mode="poke")
"""
    )
    run, dag_id = run_dag(source)
    assert run.state == "success"
    assert [s["name"] for s in xcom_values(dag_id, "by_name")[0]["succeeded"]] == names[:1]
    assert sorted(s["name"] for s in xcom_values(dag_id, "by_prefix")[0]["succeeded"]) == sorted(names)
    assert sorted(s["name"] for s in xcom_values(dag_id, "poking")[0]["succeeded"]) == sorted(names)


@pytest.mark.emulator(ee_concurrency=0, task_seconds=0.2)
def test_admission_control_waits_while_ees_queue_is_full(gee_conn, emulator, capsys):
    import threading

    from airflow_provider_gee.hooks.earth_engine import EarthEngineHook

    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    outside = [  # started by somebody else, outside Airflow
        export_constant(hook, f"o-{i}", i, description=f"outside-{i}")["name"] for i in range(3)
    ]
    assert hook.count_active_operations() == 3
    release = threading.Timer(3.0, lambda: admin(emulator, "config", {"ee_concurrency": 5}))
    release.start()
    try:
        run, dag_id = run_dag(export_dag(max_ee_queue=3))
    finally:
        release.cancel()
    assert run.state == "success"
    ours = xcom_values(dag_id, "export")[0]["operation"]
    outside_ends = [hook.get_operation(n)["metadata"]["endTime"] for n in outside]
    ours_created = hook.get_operation(ours)["metadata"]["createTime"]
    # submitted only after the queue dropped below 3, i.e. after an outside task ended
    assert ours_created > min(outside_ends)
    assert "max_ee_queue=3): waiting" in "".join(capsys.readouterr())


def test_request_ids_and_descriptions_follow_ees_rules():
    rid = request_id("dag", "task", "manual__2024-01-01T00:00:00+00:00", 7, 0)
    assert len(rid) <= 60 and all(c.isalnum() or c == "-" for c in rid)
    assert rid == request_id("dag", "task", "manual__2024-01-01T00:00:00+00:00", 7, 0)
    assert rid != request_id("dag", "task", "manual__2024-01-01T00:00:00+00:00", 7, 1)
    assert rid != request_id("dag", "task", "manual__2024-01-01T00:00:00+00:00", 8, 0)
    long = sanitize_description("x/y " * 60)
    assert len(long) == 100 and set(long) <= set("xy_-0123456789abcdef")
    assert sanitize_description("a" * 150) != sanitize_description("a" * 151)


@pytest.mark.emulator(ee_concurrency=0)
def test_on_kill_cancels_the_running_ee_task(gee_conn, emulator):
    from airflow_provider_gee.hooks.earth_engine import EarthEngineHook
    from airflow_provider_gee.operators.export import GeeExportOperator
    from airflow_provider_gee.utils.operations import summarize

    hook = EarthEngineHook(gcp_conn_id=gee_conn)
    op = export_constant(hook, "kill-1", description="kill")
    task = GeeExportOperator(task_id="export", build=lambda tile, ctx: None, region={}, gcp_conn_id=gee_conn)
    task.on_kill()  # nothing submitted by this instance: nothing to cancel
    assert hook.get_operation(op["name"])["metadata"]["state"] == "PENDING"
    task._operation = summarize(op)  # what submit_job / get_job_status record
    task.on_kill()
    assert hook.get_operation(op["name"])["metadata"]["state"] == "CANCELLED"


@pytest.mark.emulator(task_seconds=0.05)
def test_a_budget_stops_submission_once_the_runs_exports_have_used_it(gee_conn, emulator):
    def costs(prefix: str) -> list[float]:  # EECU of the DAG's EE tasks, in the order EE created them
        ops = sorted(emulator.ee.operations.values(), key=lambda op: op.seq)
        return [op.metadata["batchEecuUsageSeconds"] for op in ops if op.metadata["description"].startswith(prefix)]

    # what 6 tiles cost without a budget, then the same 6 tiles with a budget of the first three
    _, measured_dag = run_dag(export_dag(n_tiles=6))
    measured = costs(f"{measured_dag}.")
    assert len(measured) == 6 and all(c > 0 for c in measured)
    budget = sum(measured[:3])
    run, dag_id = run_dag(export_dag(n_tiles=6, max_eecu_seconds=budget))
    spent = costs(f"{dag_id}.")
    # a tile submits while what the run's finished exports used is below the budget, and never after
    submitted = len(spent)
    assert 0 < submitted < 6 and sum(spent[:-1]) < budget <= sum(spent)
    tis = sorted((ti for ti in task_instances(dag_id) if ti.task_id == "export"), key=lambda ti: ti.map_index)
    assert [ti.state for ti in tis].count("success") == submitted
    assert [ti.state for ti in tis].count("failed") == 6 - submitted and run.state == "failed"
    assert all(ti.try_number == 1 for ti in tis)  # a spent budget is not retried


def test_lineage_inputs_come_from_the_real_clients_expression(ee_hook):
    # ee.Image(id), ee.ImageCollection(id) and ee.FeatureCollection(id), as the official client
    # serializes them: the loads lineage names as the export's inputs
    import ee
    from ee import serializer

    from airflow_provider_gee.utils.lineage import ee_inputs

    aoi = ee.FeatureCollection("projects/gee-test-project/assets/aoi")
    image = (
        ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED").filterBounds(aoi).median()
        .addBands(ee.Image("USGS/SRTMGL1_003")).clipToCollection(aoi)
    )  # fmt: skip
    expression = serializer.encode(image, for_cloud_api=True)
    # in the order the serialized expression holds them (shared values first), each once
    assert ee_inputs(expression) == [
        "projects/gee-test-project/assets/aoi", "COPERNICUS/S2_SR_HARMONIZED", "USGS/SRTMGL1_003",
    ]  # fmt: skip
