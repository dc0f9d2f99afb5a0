"""The events the provider's triggers send, read by one parser each: what a trigger sends is
accepted as it is, anything else fails naming what came."""

from __future__ import annotations

import pytest

from airflow_provider_gee.exceptions import EarthEngineError
from airflow_provider_gee.triggers.events import ended_in_trigger, operations_event, queue_event

SUMMARY = {"name": "projects/p/operations/A", "state": "SUCCEEDED"}


@pytest.mark.parametrize(
    "event",
    [
        {"status": "success", "operations": {"projects/p/operations/A": SUMMARY}, "message": ""},
        {"status": "failed", "operations": {}, "message": "1 of 1 EE operation(s) did not succeed"},
        {"status": "timeout", "operations": {}, "message": "waited 10 s", "extra": {"split": {"parts": []}}},
        {"status": "error", "operations": {}, "message": "projects/p/operations/A: 403"},
    ],
)
def test_what_the_task_trigger_sends_is_read_as_it_is(event):
    assert operations_event(event) is event
    assert not ended_in_trigger(event)


@pytest.mark.parametrize(
    "event",
    [None, [], "success", {"status": "succeeded", "operations": {}}, {"status": "success"}, {"operations": {}}],
)
def test_anything_else_fails_naming_the_trigger_and_what_came(event):
    with pytest.raises(EarthEngineError, match="Unexpected event from GeeTaskTrigger") as err:
        operations_event(event)
    assert repr(event) in str(err.value)


def test_the_queue_triggers_events_and_a_result_that_ended_in_the_triggerer():
    for status in ("admitted", "error", "timeout"):
        assert queue_event({"status": status, "active": 3})["status"] == status
    with pytest.raises(EarthEngineError, match="Unexpected event from GeeQueueTrigger"):
        queue_event({"status": "success", "operations": {}})

    # what dag.test() resumes a task that ended in the triggerer with: TaskSuccessEvent's payload
    assert ended_in_trigger("success") and not ended_in_trigger({"status": "success"})
