"""How long an export or a trigger waits for an EE task when nobody says: EE's own limit."""

from __future__ import annotations

import datetime as dt

from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.triggers.task import GeeTaskTrigger
from airflow_provider_gee.utils.operations import DEFAULT_WAIT_TIMEOUT, EE_TASK_MAX_SECONDS

REGION = [13.2, 52.4, 13.3, 52.5]


def test_an_export_waits_for_its_execution_timeout_or_ees_ten_day_limit():
    assert DEFAULT_WAIT_TIMEOUT == EE_TASK_MAX_SECONDS + 3600 == 867_600
    assert GeeExportOperator(task_id="a", asset="x", region=REGION).wait_timeout == DEFAULT_WAIT_TIMEOUT
    bounded = GeeExportOperator(task_id="b", asset="x", region=REGION, execution_timeout=dt.timedelta(hours=2))
    assert bounded.wait_timeout == 7200
    assert GeeExportOperator(task_id="c", asset="x", region=REGION, wait_timeout=60).wait_timeout == 60


def test_a_trigger_waits_for_ees_limit_unless_told():
    assert GeeTaskTrigger(["projects/p/operations/x"]).timeout == DEFAULT_WAIT_TIMEOUT
    assert GeeTaskTrigger(["projects/p/operations/x"], timeout=None).timeout is None
