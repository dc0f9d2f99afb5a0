"""GeeExportOperator on Airflow < 3.3 (no task state store): a retry finds its own EE task in EE's
listing. The path is run here directly (Airflow 3.3 would take the task state store); the same
code runs for real on Airflow 3.1.0 in ``tests/system/test_compat.py``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_gee.operators.export import GeeExportOperator
from tests.helpers import admin

pytestmark = pytest.mark.integration

TILE = {
    "tile_id": "r1c1",
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[13.2, 52.4], [13.22, 52.4], [13.22, 52.42], [13.2, 52.42], [13.2, 52.4]]],
    },
}


def build(tile: dict, context: Any):
    import ee

    return ee.Image.constant(1)


def operator(conn_id: str, **kwargs: Any) -> GeeExportOperator:
    return GeeExportOperator(
        task_id="export", tile=TILE, build=build, gcp_conn_id=conn_id, folder="out", scale=500, deferrable=False,
        poll_interval=0.05, **kwargs,
    )  # fmt: skip


def context(op: GeeExportOperator, try_number: int, run_start: datetime | None = None) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="d", task_id="export", run_id="manual__x", map_index=0, try_number=try_number)
    start = run_start or datetime.now(UTC) - timedelta(minutes=1)
    return {"ti": ti, "dag_run": SimpleNamespace(start_date=start), "task": op, "data_interval_start": None}


@pytest.mark.emulator(task_seconds=0.5)
def test_a_retry_after_a_crash_reattaches_without_an_export_request(gee_conn, emulator):
    first = operator(gee_conn)
    submitted = first.submit_job(context(first, 1))  # the worker dies right after this
    second = operator(gee_conn)
    result = second._execute_without_state_store(context(second, 2))
    assert result["operation"] == submitted["operation"] and result["state"] == "SUCCEEDED"
    stats = emulator.stats()
    assert stats["export_requests"] == 1 and stats["operations"] == 1


@pytest.mark.emulator(task_seconds=0.1)
def test_a_retry_after_a_failed_task_submits_the_next_generation_once(gee_conn, emulator):
    admin(emulator, "faults", {"kind": "task_failure", "match": "d.export.r1c1*", "count": 1, "message": "boom"})
    first = operator(gee_conn)
    with pytest.raises(Exception, match="boom"):
        first._execute_without_state_store(context(first, 1))
    second = operator(gee_conn)
    result = second._execute_without_state_store(context(second, 2))
    assert result["state"] == "SUCCEEDED"
    third = operator(gee_conn)  # a third try finds the SUCCEEDED one: nothing submitted
    assert third._execute_without_state_store(context(third, 3))["operation"] == result["operation"]
    stats = emulator.stats()
    assert stats["operations"] == 2 and stats["export_requests"] == 2
    assert stats["operations_by_state"] == {"FAILED": 1, "SUCCEEDED": 1}


@pytest.mark.emulator(task_seconds=0.1)
def test_tasks_of_an_earlier_run_are_not_taken(gee_conn, emulator):
    # a description that every run shares: only the creation time tells the runs' EE tasks apart
    first = operator(gee_conn, description="{tile_id}_export")
    done = first._execute_without_state_store(context(first, 1))
    later = operator(gee_conn, description="{tile_id}_export")
    ctx = context(later, 2, run_start=datetime.now(UTC) + timedelta(seconds=1))
    ctx["ti"].run_id = "manual__y"  # another run: another requestId
    assert later._execute_without_state_store(ctx)["operation"] != done["operation"]
    assert emulator.stats()["operations"] == 2
