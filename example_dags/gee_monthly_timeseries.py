"""Time series: every month, export every tile for that month's data interval.

A monthly schedule; backfill past months with
``airflow backfill create --dag-id gee_monthly_timeseries --from-date 2024-01-01 --to-date 2024-06-01``.
Each run's EE task descriptions carry its period (``...<tile>.20240101T0000``), and re-running a
month never duplicates EE tasks (requestIds come from the run and the tile). The params choose
where EE writes: ``drive`` (a person's credentials) or ``gcs`` with a bucket (service accounts,
which have no Drive storage).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.operators.tiling import GridTilesOperator

CONN_ID = "google_cloud_default"


def monthly_image(tile: dict, context: dict):
    """The month's computation; here a constant band holding the month (use your collection's
    ``filterDate(context["data_interval_start"], context["data_interval_end"])`` instead)."""
    import ee

    start = context["data_interval_start"]
    return ee.Image.constant(start.year * 100 + start.month).rename(["yyyymm"]).toInt32()


with DAG(
    dag_id="gee_monthly_timeseries",
    schedule="@monthly",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,  # past months: `airflow backfill create` (bounded and visible) rather than catchup
    max_active_runs=3,
    params={
        "destination": Param("drive", enum=["drive", "gcs"], description="where EE writes: drive or gcs"),
        "bucket": Param("gee-exports", type="string", description="Cloud Storage bucket (destination gcs)"),
    },
    tags=["gee", "example"],
) as dag:
    tiles = GridTilesOperator(task_id="tiles", region=[13.2134, 52.4152, 13.3019, 52.4873], cell_size=0.05)
    GeeExportOperator.partial(
        task_id="export", build=monthly_image, gcp_conn_id=CONN_ID, pool="gee_tasks", folder="gee_monthly",
        destination="{{ params.destination }}", bucket="{{ params.bucket }}", scale=100, poll_interval=5,
        deferrable=True,
    ).expand(tile=tiles.output)  # fmt: skip
