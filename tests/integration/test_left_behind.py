"""The wait for EE tasks a killed try left running, when several exports of the run check at the
same moment: they see the same free room in EE's queue, and deferrable ones take it in the order of
their Airflow keys instead of all taking it (the split-resume test once saw 3 EE tasks in flight
for a pool of 2 when two exports resumed together). Real EE tasks in the emulator, the real hook
and trigger; the task instance answers Airflow's two execution-API reads the way Airflow 3.3
shapes them."""

from __future__ import annotations

import pytest
from airflow.exceptions import TaskDeferred

from airflow_provider_gee.exceptions import EarthEngineError
from airflow_provider_gee.operators.export import GeeExportOperator
from airflow_provider_gee.utils.naming import run_token
from tests.helpers import export_constant

pytestmark = pytest.mark.integration

REGION = [13.2, 52.4, 13.3, 52.5]
RUN_ID = "manual__2026-12-05T00:00:00+00:00"


class RunOfThree:
    """A run whose export task instances are keyed as Airflow keys them (``task_id`` or
    ``task_id_mapindex``): two in the worker, one deferred, and a killed try of another task."""

    dag_id = "left_behind"
    run_id = RUN_ID

    def __init__(self, task_id: str, map_index: int) -> None:
        self.task_id, self.map_index = task_id, map_index

    def get_ti_count(self, **kwargs: object) -> int:
        assert kwargs["run_ids"] == [RUN_ID] and "up_for_retry" in kwargs["states"]
        return 1  # the killed try, waiting to retry

    def get_task_states(self, **kwargs: object) -> dict[str, dict[str, str]]:
        return {
            RUN_ID: {
                "export_0": "running", "export_1": "running", "export_2": "deferred", "killed": "up_for_retry",
            }
        }  # fmt: skip


def export(map_index: int, conn: str, deferrable: bool = True) -> tuple[GeeExportOperator, dict[str, object]]:
    op = GeeExportOperator(
        task_id="export", asset="x", region=REGION, gcp_conn_id=conn, deferrable=deferrable, poll_interval=0.1,
        wait_timeout=0.5,
    )  # fmt: skip
    context = {"ti": RunOfThree("export", map_index)}
    op._set_run(context)
    return op, context


# EE tasks of an hour: they stay in flight while the exports look
@pytest.mark.emulator(task_seconds=3600.0)
def test_exports_checking_together_take_the_room_left_one_by_one(gee_conn, ee_hook):
    token = run_token(RunOfThree.dag_id, RUN_ID)
    # in flight: the killed try's EE task and the deferred export's; another run's does not count
    for description in (f"killed-{token}", f"export-2-{token}", "another-run-ffffffff"):
        export_constant(ee_hook, description)

    first, first_context = export(0, gee_conn)
    second, second_context = export(1, gee_conn)
    # 3 slots held (two in the worker, one deferred), 2 EE tasks of the run: room for one more,
    # which the first in key order takes
    assert first._left_behind(first_context) == (2, 3, 0)
    assert second._left_behind(second_context) == (2, 3, 1)
    first._hold_for_left_behind(first_context)  # returns: it submits

    # the second waits in the worker for the one ahead (seconds), not deferred; here it never submits
    with pytest.raises(EarthEngineError, match="exports of the run submitting ahead"):
        second._hold_for_left_behind(second_context)

    # an export that waits in the worker may be waiting on an EE task already counted: not ahead
    waits_in_worker, context = export(1, gee_conn, deferrable=False)
    assert waits_in_worker._left_behind(context) == (2, 3, 0)

    # once the first submitted, no room is left: the second waits deferred for an EE task to end
    export_constant(ee_hook, f"export-0-{token}")
    with pytest.raises(TaskDeferred) as deferred:
        second._hold_for_left_behind(second_context)
    trigger = deferred.value.trigger
    assert (trigger.limit, trigger.description_contains) == (3, token)
