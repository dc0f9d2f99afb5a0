"""One backoff policy for every request the provider sends to Google.

Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff and
full jitter; anything else fails at once so that EE's message reaches the user unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from airflow_provider_gee.exceptions import EarthEngineError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient errors are retried.

    :param max_retries: retries after the first attempt (so ``max_retries + 1`` attempts in all).
    :param initial_seconds: upper bound of the first delay.
    :param max_seconds: upper bound of any delay.
    :param multiplier: growth of the bound from one retry to the next.
    """

    max_retries: int = 5
    initial_seconds: float = 1.0
    max_seconds: float = 32.0
    multiplier: float = 2.0

    def delays(self) -> Iterator[float]:
        """Yield the delay before each retry ("full jitter": uniform in [0, bound])."""
        bound = self.initial_seconds
        for _ in range(self.max_retries):
            yield random.uniform(0, bound)
            bound = min(bound * self.multiplier, self.max_seconds)


def _delay_or_raise(exc: EarthEngineError, delays: Iterator[float], what: str) -> float:
    delay = next(delays, None) if exc.retryable else None
    if delay is None:
        raise exc
    log.warning("%s failed transiently (%s); retrying in %.1f s", what, exc.message, delay)
    return delay


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, what: str) -> T:
    """Call ``fn`` and retry it on transient :class:`EarthEngineError` according to ``policy``."""
    delays = policy.delays()
    while True:
        try:
            return fn()
        except EarthEngineError as exc:
            time.sleep(_delay_or_raise(exc, delays, what))


async def async_call_with_retry(fn: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str) -> T:
    """The asyncio twin of :func:`call_with_retry`; sleeps without blocking the event loop."""
    delays = policy.delays()
    while True:
        try:
            return await fn()
        except EarthEngineError as exc:
            await asyncio.sleep(_delay_or_raise(exc, delays, what))
