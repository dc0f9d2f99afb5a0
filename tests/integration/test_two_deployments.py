"""Two Airflow deployments (two homes, each with its api-server) on one EE identity run the same DAG
with the same run id: each starts its own EE task and harvests its own file.

Scheduled run ids are equal across deployments and EE de-duplicates requestIds per caller, so a
requestId from DAG, task, run and map index alone made the second deployment attach to the first
one's EE task (and harvest nothing, the first having taken the file). Neither deployment sets
``[gee] deployment_id`` here: the default, from the execution API's URL, must tell them apart.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from dev.airflow_stack import AirflowStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.harvest import GeeHarvestOperator

TILE = {"tile_id": "r1c1", "geometry": {"type": "Polygon", "coordinates": [[[13.2, 52.4], [13.22, 52.4],
        [13.22, 52.42], [13.2, 52.42], [13.2, 52.4]]]}}


def build(tile, context):
    import ee
    return ee.Image.constant(1).toFloat()


with DAG("shared_dag", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    exported = GeeExportOperator(
        task_id="export", tile=TILE, build=build, gcp_conn_id="gee", folder="shared", file_name_prefix="{tile_id}",
        scale=500, poll_interval=0.5, retries=0,
    )
    GeeHarvestOperator(
        task_id="harvest", export_result=exported.output, gcp_conn_id="gee", destination="{{ params.dest }}",
        wait_timeout=20, retries=0,
    )
"""

#: scheduled run ids are equal across deployments; the API reserves them for the scheduler, so a
#: manual run with one fixed id stands for them
RUN_ID = "manual__2024-03-01T00:00:00+00:00"


@pytest.mark.emulator(ee_concurrency=2, task_seconds=0.5)
def test_two_deployments_with_one_run_id_start_and_harvest_their_own_ee_tasks(emulator, tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "shared_dag.py").write_text(textwrap.dedent(DAG))
    env = {"AIRFLOW_CONN_GEE": json.dumps(emulator.connection())}
    states, harvested = {}, {}
    for name in ("staging", "production"):
        dest = tmp_path / f"{name}-files"
        with AirflowStack(tmp_path / name, dags, env=env, pools={}) as stack:
            stack.wait_for_dag("shared_dag")
            body = {"dag_run_id": RUN_ID, "logical_date": "2024-03-01T00:00:00Z", "conf": {"dest": str(dest)}}
            answer = stack.session.post(f"{stack.url}/api/v2/dags/shared_dag/dagRuns", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            states[name] = stack.wait_for_run("shared_dag", RUN_ID, timeout=300)
        harvested[name] = sorted(p.name for p in dest.glob("*.tif")) if dest.exists() else []
    assert states == {"staging": "success", "production": "success"}, states
    stats = emulator.stats()
    assert stats["operations"] == 2 and stats["operations_by_state"] == {"SUCCEEDED": 2}
    assert all(len(files) == 1 for files in harvested.values()), harvested
    assert harvested["staging"] != harvested["production"]  # each its own file, named with its own token
    assert stats["drive_files"] == 0
