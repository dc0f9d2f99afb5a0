"""Exceptions raised by the provider.

Every error the provider raises is a :class:`GeeError`, on one of two branches: a
:class:`GeeRetryableError` leaves it to the task's retries (EE or Drive may answer otherwise
later), a :class:`GeeFailFastError` fails the task without retries (the same input fails the same
way). Every error that comes back from Earth Engine becomes one :class:`EarthEngineError` that
keeps EE's own message and says whether the same request may succeed later, so callers never
have to parse HTTP codes. Every exception survives pickling (it crosses process boundaries:
Celery, the triggerer, multiprocessing), with its fields.
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


def _rebuild(cls: type[GeeError], args: tuple[Any, ...], state: dict[str, Any]) -> GeeError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class GeeError(AirflowException):
    """The root of every exception the provider raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        # args and every field as they are: the constructors take keyword-only arguments that the
        # default pickling (cls(*args)) would drop, or fail on
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class GeeRetryableError(GeeError):
    """An error the task's retries may get past (Airflow retries it as configured)."""


class GeeFailFastError(GeeError, AirflowFailException):
    """An error that fails the task at once, without retries: trying again fails the same way."""


class EarthEngineError(GeeRetryableError):
    """An Earth Engine request or task failed.

    :param message: EE's own message, unchanged.
    :param status_code: HTTP status code of the failed request (``None`` for a failed EE task or a
        connection that could not be made).
    :param status: Google's canonical status name, e.g. ``RESOURCE_EXHAUSTED`` or ``NOT_FOUND``.
    :param retryable: whether the same request may succeed later (429, 5xx, deadline, connection).
    """

    # Google's HTTP status (None for a failed EE task), where AirflowException's is the status an
    # Airflow API answers with: a narrower type than Airflow declares, never read by Airflow here
    status_code: int | None  # type: ignore[assignment]

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


class EarthEngineTooBig(EarthEngineTaskFailed, GeeFailFastError):
    """EE refused the export for its size (one of
    :data:`~airflow_provider_gee.utils.splitting.SIZE_ERRORS`) and it was not split, or is still
    too big at ``max_split_depth``: fails without retries, as the same export fails the same way."""


class DownloadVerificationError(GeeRetryableError):
    """A downloaded file's size or md5 differs from the source's; the source copy is kept."""


class GeeConfigurationError(GeeFailFastError):
    """The user's input (arguments, connection, files) is wrong; the message names it and the fix.

    Fails the task without retries: the same input fails the same way."""


class EarthEngineRejected(GeeFailFastError):
    """EE refused a submission for good (bad expression, permission, missing asset): fails the
    task without retries, with EE's message."""


class EecuBudgetSpent(GeeFailFastError):
    """The DAG run's EECU budget (``max_eecu_seconds``) is spent: the export was not submitted.
    Fails the task without retries (a retry would find the budget as spent)."""
