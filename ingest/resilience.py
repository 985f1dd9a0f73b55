"""Rate limiting (pyrate-limiter), retries (tenacity) and a circuit breaker (pybreaker) for Yahoo calls."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import pybreaker
from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from yfinance.exceptions import YFRateLimitError

from ingest import metrics

log = logging.getLogger("ingest.resilience")
T = TypeVar("T")

_TRANSIENT_NAMES = {
    "Timeout",
    "TimeoutError",
    "ConnectTimeout",
    "ReadTimeout",
    "ConnectionError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ChunkedEncodingError",
    "RemoteDisconnected",
}


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: Yahoo's rate limit, timeouts and dropped connections (by type, any HTTP backend)."""
    if isinstance(exc, YFRateLimitError | TimeoutError | ConnectionError):
        return True
    return any(t.__name__ in _TRANSIENT_NAMES for t in type(exc).__mro__)


class RateLimiter:
    """At most `per_minute` calls a minute; a call that must wait is counted and timed in metrics."""

    def __init__(self, name: str, per_minute: int) -> None:
        self.name = name
        self._limiter = Limiter(InMemoryBucket([Rate(per_minute, Duration.MINUTE)]))

    def acquire(self) -> float:
        """Block until a call is allowed; returns the seconds waited."""
        if self._limiter.try_acquire(self.name, blocking=False):
            return 0.0
        metrics.RATE_LIMIT_WAITS.labels(self.name).inc()
        started = time.monotonic()
        self._limiter.try_acquire(self.name, blocking=True)
        waited = time.monotonic() - started
        metrics.RATE_LIMIT_WAIT_SECONDS.labels(self.name).inc(waited)
        log.info("event=rate_limited name=%s waited_s=%.3f", self.name, waited)
        return waited


_STATE_VALUE = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}


class _BreakerMetrics(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state, new_state) -> None:
        metrics.BREAKER_STATE.labels(cb.name).set(_STATE_VALUE.get(new_state.name, 0))
        log.warning("event=breaker_state name=%s from=%s to=%s", cb.name, old_state.name, new_state.name)


def circuit_breaker(name: str, fail_max: int, reset_s: float) -> pybreaker.CircuitBreaker:
    """Opens after `fail_max` failures in a row; after `reset_s` one probe call is let through."""
    breaker = pybreaker.CircuitBreaker(
        fail_max=fail_max, reset_timeout=reset_s, name=name, listeners=[_BreakerMetrics()]
    )
    metrics.BREAKER_STATE.labels(name).set(0)
    return breaker


class Guarded:
    """One guarded call path: limiter, then breaker, then retries with exponential backoff and jitter.

    An open breaker raises ``pybreaker.CircuitBreakerError`` at once (no call to Yahoo, no retry).
    """

    def __init__(
        self,
        name: str,
        *,
        per_minute: int,
        attempts: int,
        max_wait_s: float,
        fail_max: int,
        reset_s: float,
        initial_wait_s: float = 1.0,
    ) -> None:
        self.name = name
        self.limiter = RateLimiter(name, per_minute)
        self.breaker = circuit_breaker(name, fail_max, reset_s)
        self.attempts = attempts
        self.max_wait_s = max_wait_s
        self.initial_wait_s = initial_wait_s

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        retrying = Retrying(
            retry=retry_if_exception(lambda e: is_transient(e) and not self._open()),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(multiplier=self.initial_wait_s, max=self.max_wait_s),
            before_sleep=self._count_retry,
            reraise=True,
        )
        return retrying(self._once, fn, *args, **kwargs)

    def _open(self) -> bool:
        return self.breaker.current_state == pybreaker.STATE_OPEN

    def _once(self, fn: Callable[..., T], *args, **kwargs) -> T:
        if self._open():
            # fail fast without spending a rate-limit token; pybreaker raises CircuitBreakerError
            return self.breaker.call(fn, *args, **kwargs)
        self.limiter.acquire()
        return self.breaker.call(fn, *args, **kwargs)

    def _count_retry(self, state) -> None:
        exc = state.outcome.exception() if state.outcome else None
        name = type(exc).__name__ if exc else "unknown"
        metrics.RETRIES.labels(self.name, name).inc()
        log.warning("event=retry name=%s attempt=%d error=%s", self.name, state.attempt_number, name)
