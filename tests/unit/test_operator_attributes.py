"""Operators keep Airflow's own attributes: none of their fields hides a BaseOperator method."""

from __future__ import annotations


def test_the_cleanup_operator_keeps_airflows_dry_run_method():
    """Its ``dry_run`` argument is kept as ``list_only``: an attribute ``dry_run`` would hide
    ``BaseOperator.dry_run()``, which ``airflow tasks test`` and others call."""
    from airflow_provider_gee.operators.assets import GeeAssetCleanupOperator

    op = GeeAssetCleanupOperator(task_id="c", folder="tmp", dry_run=False)
    assert callable(op.dry_run) and op.list_only is False
    assert GeeAssetCleanupOperator(task_id="d", folder="tmp").list_only is True
