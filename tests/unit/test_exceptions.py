"""One root for the provider's exceptions, two branches (retried by Airflow, or failing at once),
and every exception survives pickling with its fields (Celery, the triggerer and multiprocessing
carry them across processes)."""

from __future__ import annotations

import inspect
import pickle

import pytest
from airflow.exceptions import AirflowException
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_gee import exceptions
from airflow_provider_gee.exceptions import (
    DownloadVerificationError,
    EarthEngineError,
    EarthEngineRejected,
    EarthEngineTaskFailed,
    EarthEngineTooBig,
    EecuBudgetSpent,
    GeeConfigurationError,
    GeeError,
    GeeFailFastError,
    GeeRetryableError,
)

#: one instance of every exception the module defines, built as the provider raises it
EXAMPLES = [
    GeeError("root"),
    GeeRetryableError("later"),
    GeeFailFastError("never"),
    EarthEngineError("Quota exceeded.", status_code=429, status="RESOURCE_EXHAUSTED", retryable=True),
    EarthEngineTaskFailed("Computation timed out.", operation="projects/p/operations/OP1", state="FAILED"),
    EarthEngineTooBig("Pixel grid dimensions too big.", operation="projects/p/operations/OP2", state="FAILED"),
    DownloadVerificationError("md5 of a.tif differs"),
    GeeConfigurationError("region has no CRS"),
    EarthEngineRejected("Image.load: Asset not found."),
    EecuBudgetSpent("budget spent"),
]


def test_every_exception_of_the_module_is_exercised_here_and_has_the_one_root():
    defined = {c for _, c in inspect.getmembers(exceptions, inspect.isclass)
               if issubclass(c, BaseException) and c.__module__ == exceptions.__name__}  # fmt: skip
    assert defined == {type(e) for e in EXAMPLES}
    assert all(issubclass(c, GeeError) and issubclass(c, AirflowException) for c in defined)


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_exception_survives_pickling_with_its_fields(error):
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error) and again.args == error.args
    assert vars(again) == vars(error)


def test_the_two_branches_say_whether_airflow_retries():
    fail_fast = (GeeConfigurationError, EarthEngineRejected, EecuBudgetSpent, EarthEngineTooBig)
    for cls in fail_fast:
        assert issubclass(cls, GeeFailFastError) and issubclass(cls, AirflowFailException), cls
    for cls in (EarthEngineError, EarthEngineTaskFailed, DownloadVerificationError):
        assert issubclass(cls, GeeRetryableError) and not issubclass(cls, AirflowFailException), cls
    too_big = pickle.loads(pickle.dumps(EXAMPLES[5]))
    assert (too_big.operation, too_big.state, too_big.status, too_big.retryable) == (
        "projects/p/operations/OP2", "FAILED", "FAILED", False)  # fmt: skip
