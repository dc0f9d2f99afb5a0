"""Exceptions raised by the provider.

Every error that comes back from Earth Engine becomes one :class:`EarthEngineError` that keeps EE's
own message and says whether trying again can help, so callers never have to parse HTTP codes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from airflow.exceptions import AirflowException
from airflow.providers.common.compat.sdk import AirflowFailException

#: HTTP codes for which a later identical request may succeed (rate limits and server trouble).
RETRYABLE_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
#: EE's answer when the project's queue is full (3,000 tasks): waiting helps, whatever the status
#: code (Google does not document it)
QUEUE_FULL = re.compile(r"Too many tasks already in the queue")


class EarthEngineError(AirflowException):
    """An Earth Engine request or task failed.

    :param message: EE's own message, unchanged.
    :param status_code: HTTP status code of the failed request (``None`` for a failed EE task or a
        connection that could not be made).
    :param status: Google's canonical status name, e.g. ``RESOURCE_EXHAUSTED`` or ``NOT_FOUND``.
    :param retryable: whether the same request may succeed later (429, 5xx, deadline, connection).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        status: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.status = status
        self.retryable = retryable

    @classmethod
    def from_response(cls, status_code: int, body: bytes | str) -> EarthEngineError:
        """Build the error from a Google API error response (``{"error": {code, message, status}}``)."""
        message, status = _parse_google_error(body)
        return cls(
            message or f"HTTP {status_code}",
            status_code=status_code,
            status=status,
            retryable=status_code in RETRYABLE_STATUS_CODES or bool(QUEUE_FULL.search(message)),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the keyword-only fields when the exception crosses a process boundary.
        return (_rebuild_error, (self.message, self.status_code, self.status, self.retryable))


def _rebuild_error(message: str, status_code: int | None, status: str | None, retryable: bool):
    return EarthEngineError(message, status_code=status_code, status=status, retryable=retryable)


def _parse_google_error(body: bytes | str) -> tuple[str, str | None]:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        error = json.loads(text).get("error", {})
    except (ValueError, AttributeError):
        return text.strip()[:500], None
    if isinstance(error, str):
        return error, None
    return str(error.get("message") or ""), error.get("status")


class EarthEngineTaskFailed(EarthEngineError):
    """An EE batch task ended FAILED or CANCELLED; ``message`` is EE's error message."""

    def __init__(self, message: str, *, operation: str, state: str) -> None:
        super().__init__(message, status=state, retryable=False)
        self.operation = operation
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,), {"operation": self.operation, "state": self.state})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.operation = state["operation"]
        self.state = state["state"]


class EarthEngineTooBig(EarthEngineTaskFailed, AirflowFailException):
    """EE refused the export for its size (one of
    :data:`~airflow_provider_gee.utils.splitting.SIZE_ERRORS`) and it was not split, or is still
    too big at ``max_split_depth``: fails without retries, as the same export fails the same way."""


class DownloadVerificationError(AirflowException):
    """A downloaded file's size or md5 differs from the source's; the source copy is kept."""


class GeeConfigurationError(AirflowFailException):
    """The user's input (arguments, connection, files) is wrong; the message names it and the fix.

    Fails the task without retries: the same input fails the same way."""


class EarthEngineRejected(AirflowFailException):
    """EE refused a submission for good (bad expression, permission, missing asset): fails the
    task without retries, with EE's message."""


class EecuBudgetSpent(AirflowFailException):
    """The DAG run's EECU budget (``max_eecu_seconds``) is spent: the export was not submitted.
    Fails the task without retries (a retry would find the budget as spent)."""
