"""What the provider's triggers send back, and the one parser each resume reads it with (as the
Amazon provider's ``validate_execute_complete_event``): a resume never guesses at an event's shape.

:class:`~airflow_provider_gee.triggers.task.GeeTaskTrigger` sends an :class:`OperationsEvent`,
:class:`~airflow_provider_gee.triggers.task.GeeQueueTrigger` a :class:`QueueEvent`. An event that is
neither (a trigger of another version, a hand-made event) fails the task naming what came.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict, cast, get_args

from airflow_provider_gee.exceptions import EarthEngineError

#: how the EE tasks waited for ended: all succeeded; one (or more) did not; the wait's timeout;
#: EE could not be read
OperationsStatus = Literal["success", "failed", "timeout", "error"]
#: admission control's outcome: room in EE's queue; EE could not be read; the wait's timeout
QueueStatus = Literal["admitted", "error", "timeout"]


class OperationsEvent(TypedDict):
    """The end of a wait for EE tasks."""

    status: OperationsStatus
    #: operation name -> its summary (:func:`~airflow_provider_gee.utils.operations.summarize`)
    operations: dict[str, dict[str, Any]]
    message: NotRequired[str]
    #: what the operator gave the trigger to hand back (``event_extra``: a split plan, inputs)
    extra: NotRequired[dict[str, Any]]


class QueueEvent(TypedDict):
    """The end of admission control's wait for room in EE's queue."""

    status: QueueStatus
    active: NotRequired[int]
    message: NotRequired[str]


def _unexpected(event: Any, trigger: str) -> EarthEngineError:
    return EarthEngineError(f"Unexpected event from {trigger}: {event!r}")


def ended_in_trigger(event: Any) -> bool:
    """Whether ``event`` says the task ended in the triggerer (``end_from_trigger``): a
    ``TaskSuccessEvent``'s payload, the bare state ``"success"``, which is all ``dag.test()``
    resumes such a task with (a deployment's triggerer ends it; it never resumes)."""
    return event == "success"


def operations_event(event: Any) -> OperationsEvent:
    """``event`` as GeeTaskTrigger sends it; :class:`EarthEngineError` naming it otherwise.

    :param event: what Airflow handed the resume method.
    """
    if (
        not isinstance(event, dict)
        or event.get("status") not in get_args(OperationsStatus)
        or not isinstance(event.get("operations"), dict)
    ):
        raise _unexpected(event, "GeeTaskTrigger")
    return cast(OperationsEvent, event)


def queue_event(event: Any) -> QueueEvent:
    """``event`` as GeeQueueTrigger sends it; :class:`EarthEngineError` naming it otherwise.

    :param event: what Airflow handed the resume method.
    """
    if not isinstance(event, dict) or event.get("status") not in get_args(QueueStatus):
        raise _unexpected(event, "GeeQueueTrigger")
    return cast(QueueEvent, event)
