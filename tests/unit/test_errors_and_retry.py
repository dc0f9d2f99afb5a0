"""EarthEngineError keeps EE's message; the retry policy retries only what can succeed later."""

from __future__ import annotations

import pickle

import pytest

from airflow_provider_gee.exceptions import EarthEngineError
from airflow_provider_gee.utils.retry import RetryPolicy, call_with_retry


def test_error_from_a_google_error_body_keeps_message_and_status():
    err = EarthEngineError.from_response(
        429, b'{"error": {"code": 429, "message": "Too many", "status": "RESOURCE_EXHAUSTED"}}'
    )
    assert (err.message, err.status, err.retryable) == ("Too many", "RESOURCE_EXHAUSTED", True)
    err = EarthEngineError.from_response(400, b'{"error": {"code": 400, "message": "Bad arg"}}')
    assert err.retryable is False and str(err) == "Bad arg"
    assert EarthEngineError.from_response(502, b"<html>bad gateway</html>").message == "<html>bad gateway</html>"


def test_a_full_queue_is_transient_whatever_status_ee_gives_it():
    body = b'{"error": {"code": 400, "message": "Too many tasks already in the queue (3000). Please wait for some of '
    body += b'them to complete.", "status": "FAILED_PRECONDITION"}}'
    err = EarthEngineError.from_response(400, body)
    assert err.retryable and err.message.startswith("Too many tasks already in the queue (3000).")


def test_error_survives_pickling_with_its_fields():
    err = pickle.loads(pickle.dumps(EarthEngineError("m", status_code=503, status="UNAVAILABLE", retryable=True)))
    assert (err.message, err.status_code, err.status, err.retryable) == ("m", 503, "UNAVAILABLE", True)


def test_delays_are_bounded_and_counted():
    delays = list(RetryPolicy(max_retries=6, initial_seconds=1, max_seconds=4).delays())
    assert len(delays) == 6
    assert all(0 <= d <= bound for d, bound in zip(delays, [1, 2, 4, 4, 4, 4], strict=True))


def test_transient_errors_are_retried_until_success(monkeypatch):
    monkeypatch.setattr("airflow_provider_gee.utils.retry.time.sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise EarthEngineError("busy", status_code=503, retryable=True)
        return "ok"

    assert call_with_retry(flaky, RetryPolicy(max_retries=5), "flaky") == "ok"
    assert len(calls) == 3


def test_permanent_errors_and_exhausted_retries_raise(monkeypatch):
    monkeypatch.setattr("airflow_provider_gee.utils.retry.time.sleep", lambda s: None)
    calls = []

    def permanent():
        calls.append(1)
        raise EarthEngineError("nope", status_code=400)

    with pytest.raises(EarthEngineError, match="nope"):
        call_with_retry(permanent, RetryPolicy(max_retries=5), "x")
    assert len(calls) == 1

    def always_busy():
        calls.append(1)
        raise EarthEngineError("busy", status_code=503, retryable=True)

    calls.clear()
    with pytest.raises(EarthEngineError, match="busy"):
        call_with_retry(always_busy, RetryPolicy(max_retries=2), "x")
    assert len(calls) == 3
