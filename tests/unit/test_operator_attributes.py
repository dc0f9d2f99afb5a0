"""Operators keep Airflow's own attributes: none of their fields hides a BaseOperator method."""

from __future__ import annotations


def test_the_cleanup_operator_keeps_airflows_dry_run_method():
    """Its ``dry_run`` argument is kept as ``list_only``: an attribute ``dry_run`` would hide
    ``BaseOperator.dry_run()``, which ``airflow tasks test`` and others call."""
    from airflow_provider_gee.operators.assets import GeeAssetCleanupOperator

    op = GeeAssetCleanupOperator(task_id="c", folder="tmp", dry_run=False)
    assert callable(op.dry_run) and op.list_only is False
    assert GeeAssetCleanupOperator(task_id="d", folder="tmp").list_only is True


def test_every_operator_and_sensor_stands_on_one_of_the_provider_bases():
    """Operators that call Google get the connection from GeeBaseOperator; those that do not
    (stitching, point chunks) still get its retry defaults and tile names from GeeLocalOperator;
    the sensor's connection arguments come from GeeBaseSensor."""
    from datetime import timedelta

    from airflow_provider_gee.operators.base import DEFAULT_RETRIES, GeeBaseOperator, GeeLocalOperator
    from airflow_provider_gee.operators.stitch import MosaicOperator, TableStitchOperator
    from airflow_provider_gee.operators.tiling import PointChunksOperator
    from airflow_provider_gee.sensors.base import GeeBaseSensor
    from airflow_provider_gee.sensors.task import GeeTaskSensor

    local = [
        MosaicOperator(task_id="m", harvest_results=[], destination="/tmp/out"),
        TableStitchOperator(task_id="t", harvest_results=[], output_path="/tmp/out.gpkg"),
        PointChunksOperator(task_id="p", points="points.gpkg", max_points=10),
    ]
    for op in local:
        assert isinstance(op, GeeLocalOperator) and not isinstance(op, GeeBaseOperator)
        assert (op.retries, op.retry_delay) == (DEFAULT_RETRIES, timedelta(seconds=30)), type(op).__name__
    assert MosaicOperator(task_id="m2", harvest_results=[], destination="/tmp/o", retries=0).retries == 0

    sensor = GeeTaskSensor(task_id="s", operations=["x"], gcp_conn_id="gee", impersonation_chain="sa@p.iam")
    assert isinstance(sensor, GeeBaseSensor)
    assert (sensor.gcp_conn_id, sensor.impersonation_chain) == ("gee", "sa@p.iam")
    assert "impersonation_chain" in sensor.template_fields
